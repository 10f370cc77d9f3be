#!/usr/bin/env bash
# Creates a simulated HSM (a SoftHSM2 token) in DIR, with its own SOFTHSM2_CONF.
#
#   hsm-sim/create-token.sh DIR LABEL
#
# Writes DIR/softhsm2.conf, DIR/tokens/, and random PINs in DIR/so.pin and DIR/user.pin
# (mode 0600), then initialises the token through PKCS#11 with `auditstamp hsm init-token`,
# so no PIN ever appears on a command line. Idempotent: an existing token is left alone.
# The auditstamp binary is $AUDITSTAMP_BIN, else target/release/auditstamp, else on PATH.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DIR LABEL" >&2
    exit 2
fi
dir=$1
label=$2
here=$(cd "$(dirname "$0")" && pwd)
module=${AUDITSTAMP_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}

if [ ! -f "$module" ]; then
    echo "error: the SoftHSM2 PKCS#11 module $module is missing; install it with: apt-get install -y softhsm2" >&2
    exit 1
fi
bin=${AUDITSTAMP_BIN:-}
if [ -z "$bin" ]; then
    if [ -x "$here/../target/release/auditstamp" ]; then
        bin="$here/../target/release/auditstamp"
    else
        bin=$(command -v auditstamp || true)
    fi
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "error: auditstamp binary not found; build it (cargo build --release) or set AUDITSTAMP_BIN" >&2
    exit 1
fi

umask 077
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
sed "s#@TOKENDIR@#$dir/tokens#" "$here/softhsm2.conf.template" > "$dir/softhsm2.conf"
for f in so.pin user.pin; do
    if [ ! -s "$dir/$f" ]; then
        od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$dir/$f"
        echo >> "$dir/$f"
    fi
done

SOFTHSM2_CONF="$dir/softhsm2.conf" "$bin" hsm init-token \
    --module "$module" --label "$label" \
    --so-pin-file "$dir/so.pin" --pin-file "$dir/user.pin" --if-missing
