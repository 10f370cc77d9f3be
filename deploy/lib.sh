# Shared by deploy/quickstart.sh and deploy/test.sh: install what is missing.
# Sourced, not run.

# ensure_debian_packages [COMMAND:PACKAGE...] : installs the Debian packages whose probe
# (a file or command) is missing.
# As root it runs apt-get; otherwise it prints the exact command and fails.
ensure_debian_packages() {
    local missing=()
    [ -f "${AUDITSTAMP_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}" ] || missing+=(softhsm2)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v cc >/dev/null 2>&1 || missing+=(gcc)
    # Extra needs as COMMAND:PACKAGE arguments (the test suite checks the systemd unit).
    local need
    for need in "$@"; do
        command -v "${need%%:*}" >/dev/null 2>&1 || missing+=("${need#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "error: missing packages: ${missing[*]}" >&2
        echo "install them with:  sudo apt-get install -y ${missing[*]}" >&2
        return 1
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo (Rust 1.85 or later) is not installed." >&2
        echo "install it with:  curl --proto '=https' -sSf https://sh.rustup.rs | sh" >&2
        return 1
    fi
}

# provision_dev_state BIN CONFIG STATE: a SoftHSM2 token in STATE/hsm and the development
# keys in it (a DEVELOPMENT root CA, the TSA key it certifies, the Ed25519 chain key);
# idempotent. Exports SOFTHSM2_CONF and AUDITSTAMP_STATE_DIR for what follows.
provision_dev_state() {
    local bin=$1 config=$2 state=$3
    mkdir -p "$state"
    state=$(cd "$state" && pwd)
    export AUDITSTAMP_STATE_DIR=$state
    AUDITSTAMP_BIN=$bin hsm-sim/create-token.sh "$state/hsm" auditstamp-dev
    export SOFTHSM2_CONF=$state/hsm/softhsm2.conf
    mkdir -p "$state/pki"
    "$bin" keys generate --config "$config" --label tsa-dev --algorithm ecdsa-p256 --purpose tsa --if-missing
    "$bin" keys generate --config "$config" --label chain-dev --algorithm ed25519 --purpose chain --if-missing
    "$bin" keys dev-ca --config "$config" --out "$state/pki/dev-root-ca.pem"
    "$bin" keys issue-dev-cert --config "$config" --label tsa-dev \
        --subject "CN=auditstamp development TSA,O=auditstamp development,C=EE" \
        --out "$state/pki/tsa-dev.pem" --if-missing
}
