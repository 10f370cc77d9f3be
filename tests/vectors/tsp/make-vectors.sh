#!/bin/sh
# Regenerates the golden vectors in this directory (OpenSSL 3.0). Every file is listed,
# with the command that made it, in README.md. Requests carry random nonces and replies
# carry the current time, so a rerun changes the bytes but not the structure the tests check.
set -eu
cd "$(dirname "$0")"

printf 'auditstamp golden vector\n' > data.txt

# Requests.
openssl ts -query -data data.txt -sha256 -out req-sha256.tsq
openssl ts -query -data data.txt -sha384 -out req-sha384.tsq
openssl ts -query -data data.txt -sha512 -out req-sha512.tsq
openssl ts -query -data data.txt -sha256 -no_nonce -out req-sha256-nononce.tsq
openssl ts -query -data data.txt -sha256 -cert -out req-sha256-cert.tsq
openssl ts -query -data data.txt -sha256 -tspolicy 1.3.6.1.4.1.99999.1.2 -out req-sha256-policy.tsq
openssl ts -query -data data.txt -sha1 -out req-sha1.tsq
openssl ts -query -data data.txt -sha256 -tspolicy 1.3.6.1.4.1.99999.9 -out req-sha256-otherpolicy.tsq

# A throwaway OpenSSL TSA (test key only) to produce reference replies.
openssl ecparam -genkey -name prime256v1 -noout -out openssl-tsa.key
openssl req -new -x509 -key openssl-tsa.key -out openssl-tsa.pem -days 36500 \
    -subj "/C=DE/O=auditstamp test/CN=OpenSSL reference TSA" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=critical,timeStamping"
echo 01 > openssl-tsa.serial
openssl ts -reply -config openssl-tsa.cnf -queryfile req-sha256.tsq -out reply-openssl-granted.tsr
openssl ts -reply -config openssl-tsa.cnf -queryfile req-sha1.tsq -out reply-openssl-badalg.tsr
openssl ts -reply -config openssl-tsa.cnf -queryfile req-sha256-otherpolicy.tsq -out reply-openssl-unacceptedpolicy.tsr
rm -f openssl-tsa.serial
