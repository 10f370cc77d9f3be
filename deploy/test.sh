#!/usr/bin/env bash
# Installs what is missing and runs the whole test suite (unit, SoftHSM, end-to-end, openssl interop,
# PostgreSQL, S3, HAProxy in front of several appliances, the web consoles in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages systemd-analyze:systemd \
    /usr/lib/python3/dist-packages/prometheus_client:python3-prometheus-client \
    '/usr/lib/postgresql/*/bin/initdb:postgresql' \
    /usr/sbin/haproxy:haproxy \
    /usr/bin/chromium:chromium /usr/bin/chromedriver:chromium-driver \
    /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core
ensure_rust
# the throw-away S3 server of the archive's tests (exports AUDITSTAMP_MOTO_SERVER)
ensure_moto

cargo build --locked --all-targets
cargo test --locked --all-targets
