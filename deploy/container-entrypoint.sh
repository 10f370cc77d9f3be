#!/usr/bin/env bash
# The container's entrypoint: provisions the SoftHSM2 token and development keys in the state
# volume on first start (idempotent), then serves. AUDITSTAMP_CONFIG selects another config.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
bin=${AUDITSTAMP_BIN:-auditstamp}
config=${AUDITSTAMP_CONFIG:-$PWD/firmware-config/dev.toml}
if [ "$config" = "$PWD/firmware-config/dev.toml" ]; then
    provision_dev_state "$bin" "$config" "${AUDITSTAMP_STATE_DIR:-/var/lib/auditstamp}"
fi
exec "$bin" serve --config "$config"
