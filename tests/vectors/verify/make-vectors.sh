#!/bin/sh
# Regenerates the golden vectors of the token verifier (OpenSSL 3.0). Every file is listed,
# with the command that made it, in README.md. Keys are fresh and replies carry the current
# time, so a rerun changes the bytes but not what the tests check. All keys are test-only.
set -eu
cd "$(dirname "$0")"

# ca NAME EXT START END SERIAL ISSUER_PEM ISSUER_KEY SUBJ KEY: issue NAME.pem with `openssl ca`.
# The database is reset for every certificate so that the twin can repeat a serial number.
ca() {
    rm -rf ca-db && mkdir -p ca-db/new && : > ca-db/index.txt && echo "$5" > ca-db/serial
    openssl req -new -config ca.cnf -key "$9" -subj "$8" -out "$1.csr"
    if [ "$6" = self ]; then
        openssl ca -batch -notext -config ca.cnf -selfsign -keyfile "$7" -in "$1.csr" \
            -extensions "$2" -startdate "$3" -enddate "$4" -out "$1.pem"
    else
        openssl ca -batch -notext -config ca.cnf -cert "$6" -keyfile "$7" -in "$1.csr" \
            -extensions "$2" -startdate "$3" -enddate "$4" -out "$1.pem"
    fi
    rm -f "$1.csr"
}
START=20200101000000Z
END=20991231235959Z

# Keys.
for k in root-ca int-ca int2-ca tsa-p256 tsa-twin evil-root evil-tsa; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$k.key"
done
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out tsa-rsa.key
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out tsa-rsa1024.key
openssl genpkey -algorithm ED25519 -out tsa-ed25519.key

# The PKI: root -> intermediate -> P-256 TSA; root -> RSA TSAs.
ca root-ca root_ext $START $END 01 self root-ca.key "/CN=auditstamp verify test root" root-ca.key
ca int-ca int_ext $START $END 02 root-ca.pem root-ca.key "/CN=auditstamp verify test intermediate" int-ca.key
ca tsa-p256 tsa_ext $START $END 1001 int-ca.pem int-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA P-256" tsa-p256.key
ca tsa-rsa tsa_ext $START $END 1002 root-ca.pem root-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA RSA" tsa-rsa.key
ca tsa-rsa1024 tsa_ext $START $END 1003 root-ca.pem root-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA RSA-1024" tsa-rsa1024.key
ca tsa-ed25519 tsa_ext $START $END 1004 int-ca.pem int-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA Ed25519" tsa-ed25519.key
# Certificates for the negative tests, all of the P-256 key but the twin's.
ca tsa-expired tsa_ext $START 20211231235959Z 1005 int-ca.pem int-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA expired" tsa-p256.key
ca tsa-eku-noncritical tsa_eku_noncritical_ext $START $END 1006 int-ca.pem int-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA EKU not critical" tsa-p256.key
ca tsa-eku-multi tsa_eku_multi_ext $START $END 1007 int-ca.pem int-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA EKU not sole" tsa-p256.key
ca tsa-is-ca tsa_is_ca_ext $START $END 1008 int-ca.pem int-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA is a CA" tsa-p256.key
ca tsa-san tsa_san_ext $START $END 1009 int-ca.pem int-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA with SAN" tsa-p256.key
# Another certificate of the same CA, and a twin: same issuer and serial as tsa-p256, other key.
ca tsa-other tsa_ext $START $END 100a int-ca.pem int-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA other" tsa-twin.key
ca tsa-twin tsa_ext $START $END 1001 int-ca.pem int-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA P-256" tsa-twin.key
# Broken paths: a TSA certificate issued by a non-CA (the RSA TSA certificate), and one
# under a second intermediate, which the first one's pathlen:0 forbids.
ca tsa-under-leaf tsa_ext $START $END 100b tsa-rsa.pem tsa-rsa.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA under a leaf" tsa-p256.key
ca int2-ca int_ext $START $END 03 int-ca.pem int-ca.key "/CN=auditstamp verify test intermediate 2" int2-ca.key
ca tsa-deep tsa_ext $START $END 100c int2-ca.pem int2-ca.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA too deep" tsa-p256.key
# An attacker's own root, with the real root's name, and its TSA certificate.
ca evil-root root_ext $START $END 01 self evil-root.key "/CN=auditstamp verify test root" evil-root.key
ca evil-tsa tsa_ext $START $END 1001 evil-root.pem evil-root.key "/C=DE/O=auditstamp/CN=auditstamp verify TSA P-256" evil-tsa.key
rm -rf ca-db

# Requests.
printf 'auditstamp verify golden vector\n' > data.txt
openssl ts -query -data data.txt -sha256 -cert -out req-cert.tsq
openssl ts -query -data data.txt -sha256 -out req-nocert.tsq
openssl ts -query -data data.txt -sha256 -cert -no_nonce -out req-nononce.tsq
openssl ts -query -data data.txt -sha1 -cert -out req-sha1.tsq

# Replies (`openssl ts -reply`), one TSA section of tsa.cnf each.
echo 01 > tsa-serial
reply() { openssl ts -reply -config tsa.cnf -section "$1" -queryfile "$2" -out "$3"; }
reply tsa_p256_v2 req-cert.tsq reply-p256-v2-certs.tsr
reply tsa_p256_v2 req-nocert.tsq reply-p256-v2-nocerts.tsr
reply tsa_p256_v2_sha384 req-cert.tsq reply-p256-v2-sha384.tsr
reply tsa_p256_v2_chain req-cert.tsq reply-p256-v2-chain.tsr
reply tsa_p256_v1 req-cert.tsq reply-p256-v1-certs.tsr
reply tsa_p256_v2 req-nononce.tsq reply-p256-v2-nononce.tsr
reply tsa_rsa_v2 req-cert.tsq reply-rsa-v2-certs.tsr
reply tsa_rsa_v1 req-nocert.tsq reply-rsa-v1-nocerts.tsr
reply tsa_rsa1024 req-cert.tsq reply-rsa1024.tsr
reply tsa_evil req-cert.tsq reply-evil-root.tsr
reply tsa_expired req-cert.tsq reply-expired.tsr
reply tsa_p256_v2 req-sha1.tsq reply-rejected.tsr
# A bare token (ContentInfo), not a TimeStampResp.
openssl ts -reply -config tsa.cnf -section tsa_p256_v2 -queryfile req-cert.tsq -token_out -out token-p256-v2.tst
rm -f tsa-serial

# What OpenSSL itself says (recorded in README.md, not used by the tests).
cat int-ca.pem tsa-p256.pem > untrusted-p256.pem
openssl ts -verify -in reply-p256-v2-certs.tsr -queryfile req-cert.tsq -CAfile root-ca.pem
openssl ts -verify -in reply-p256-v2-nocerts.tsr -queryfile req-nocert.tsq -CAfile root-ca.pem -untrusted untrusted-p256.pem
openssl ts -verify -in reply-rsa-v1-nocerts.tsr -queryfile req-nocert.tsq -CAfile root-ca.pem -untrusted tsa-rsa.pem
rm -f untrusted-p256.pem

# The strictness vectors (README.md): made from the files above by tests/verify_token.rs.
(cd ../../.. && AUDITSTAMP_WRITE_VECTORS=1 cargo test --test verify_token strict_vectors_are_what_their_generators_make)
