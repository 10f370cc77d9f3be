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

export AUDITSTAMP_STATE_DIR=${AUDITSTAMP_STATE_DIR:-$PWD/var}
export AUDITSTAMP_LISTEN=${AUDITSTAMP_LISTEN:-127.0.0.1:8318}
mkdir -p "$AUDITSTAMP_STATE_DIR"
export AUDITSTAMP_STATE_DIR=$(cd "$AUDITSTAMP_STATE_DIR" && pwd)
config=$PWD/firmware-config/dev.toml
state=$AUDITSTAMP_STATE_DIR

# The simulated HSM: a SoftHSM2 token of our own, PINs in files (mode 0600).
AUDITSTAMP_BIN=$bin hsm-sim/create-token.sh "$state/hsm" auditstamp-dev
export SOFTHSM2_CONF=$state/hsm/softhsm2.conf

# Development keys, all inside the token: a DEVELOPMENT root CA, the TSA key it certifies,
# and the Ed25519 key that signs the event chain's blocks and checkpoints.
mkdir -p "$state/pki"
"$bin" keys generate --config "$config" --label tsa-dev --algorithm ecdsa-p256 --purpose tsa --if-missing
"$bin" keys generate --config "$config" --label chain-dev --algorithm ed25519 --purpose chain --if-missing
"$bin" keys dev-ca --config "$config" --out "$state/pki/dev-root-ca.pem"
"$bin" keys issue-dev-cert --config "$config" --label tsa-dev \
    --subject "CN=auditstamp development TSA,O=auditstamp development,C=EE" \
    --out "$state/pki/tsa-dev.pem" --if-missing

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
