#!/usr/bin/env bash
# The container's HEALTHCHECK: GET /healthz on the server's own listener, as its
# configuration sets it (AUDITSTAMP_CONFIG, default firmware-config/dev.toml, with the
# AUDITSTAMP_LISTEN and AUDITSTAMP_STATE_DIR overrides), over TLS when it serves TLS.
#
# `auditstamp listener` reads the configuration with the server's own loader and prints
# the scheme, the address to connect to and the TLS certificate file. Over TLS, curl
# verifies the server against that certificate file itself (curl trusts a listed
# certificate as an anchor, so the server must present the configured certificate), or
# against AUDITSTAMP_HEALTHCHECK_CA (PEM) when set; the host name checked is the
# certificate's first DNS name (resolved to the listen address), or
# AUDITSTAMP_HEALTHCHECK_NAME. /healthz never needs a client certificate, also under
# mutual TLS (it belongs to no route group of http.tls.require_client_cert).
#
# Exit 0 when healthy; otherwise 1 with the reason on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${AUDITSTAMP_BIN:-auditstamp}
config=${AUDITSTAMP_CONFIG:-$PWD/firmware-config/dev.toml}

fail() {
    echo "unhealthy: $*" >&2
    exit 1
}

settings=$("$bin" listener --config "$config") || fail "cannot read the listener of $config"
scheme='' address='' cert_file=''
while IFS='=' read -r key value; do
    case $key in
        scheme) scheme=$value ;;
        address) address=$value ;;
        cert_file) cert_file=$value ;;
    esac
done <<<"$settings"
[ -n "$address" ] || fail "no address in: $settings"
port=${address##*:}
ip=${address%:*}

curl_get() {
    curl --silent --show-error --fail --max-time 2 --output /dev/null "$@" \
        || fail "GET /healthz failed ($scheme on $address)"
}

case $scheme in
    http)
        curl_get "http://$address/healthz"
        ;;
    https)
        ca=${AUDITSTAMP_HEALTHCHECK_CA:-$cert_file}
        [ -r "$ca" ] || fail "cannot read $ca"
        name=${AUDITSTAMP_HEALTHCHECK_NAME:-}
        if [ -z "$name" ]; then
            # The first DNS name of the certificate's subjectAltName that is not a wildcard
            # (a wildcard cannot be resolved nor put in a URL), if it has one.
            name=$(openssl x509 -in "$cert_file" -noout -ext subjectAltName 2>/dev/null \
                | tr ',' '\n' | sed -n 's/^ *DNS:\(.*\)$/\1/p' | grep -v '\*' | head -n 1) || true
        fi
        if [ -n "$name" ]; then
            curl_get --cacert "$ca" --resolve "$name:$port:$ip" "https://$name:$port/healthz"
        else
            # No DNS name: the certificate must name the address itself.
            curl_get --cacert "$ca" "https://$address/healthz"
        fi
        ;;
    *)
        fail "unknown scheme in: $settings"
        ;;
esac
