#!/usr/bin/env bash
# auditstamp quickstart: installs what is missing, builds, creates a simulated HSM token
# and development keys under ./var (idempotent), and serves the TSA on 127.0.0.1:8318.
#
#   AUDITSTAMP_STATE_DIR  state directory (default ./var)
#   AUDITSTAMP_LISTEN     listen address  (default 127.0.0.1:8318)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages
ensure_rust

echo "building auditstamp (release)..."
cargo build --release --locked --quiet
bin=$PWD/target/release/auditstamp

export AUDITSTAMP_LISTEN=${AUDITSTAMP_LISTEN:-127.0.0.1:8318}
config=$PWD/firmware-config/dev.toml
# The simulated HSM (a SoftHSM2 token of our own, PINs in files, mode 0600) and the
# development keys, all inside the token.
provision_dev_state "$bin" "$config" "${AUDITSTAMP_STATE_DIR:-$PWD/var}"
state=$AUDITSTAMP_STATE_DIR

url="http://$AUDITSTAMP_LISTEN/tsa"
cat <<TXT

auditstamp is starting.
  TSA URL:  $url
  CA file:  $state/pki/dev-root-ca.pem   (development root: trust it for testing only)

Request and verify a token from another terminal:
  echo hello > doc.txt
  openssl ts -query -data doc.txt -sha256 -cert -out req.tsq
  curl -sS -H 'Content-Type: application/timestamp-query' --data-binary @req.tsq $url -o resp.tsr
  openssl ts -verify -data doc.txt -in resp.tsr -CAfile $state/pki/dev-root-ca.pem

TXT
exec "$bin" serve --config "$config"
