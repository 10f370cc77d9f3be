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
  Console:  http://$AUDITSTAMP_LISTEN/ui/   (status, event search, proofs checked in the browser)
  CA file:  $state/pki/dev-root-ca.pem   (development root: trust it for testing only)

Request and verify a token from another terminal:
  echo hello > doc.txt
  openssl ts -query -data doc.txt -sha256 -cert -out req.tsq
  curl -sS -H 'Content-Type: application/timestamp-query' --data-binary @req.tsq $url -o resp.tsr
  openssl ts -verify -data doc.txt -in resp.tsr -CAfile $state/pki/dev-root-ca.pem

Record an auditor event in the chain, then read it back with its proof (sealed within 1 s):
  curl -sS -H 'Content-Type: application/json' http://$AUDITSTAMP_LISTEN/v1/events -d '{"agency":"agency-1",
    "auditor":"auditor-1","action":"data_collection","subject":"case/1","occurred_at":"2026-12-02T08:00:00Z",
    "data_sha256":"'"\$(sha256sum doc.txt | cut -c1-64)"'"}'
  curl -sS http://$AUDITSTAMP_LISTEN/v1/events/1

TXT
exec "$bin" serve --config "$config"
