# Shared by the deploy/ scripts: install what is missing, and provision development state
# (one appliance; or several nodes and the development CA they share). Sourced, not run.

# ensure_debian_packages [PROBE:PACKAGE...] : installs the Debian packages whose probe
# (a command, or an absolute path) is missing.
# As root it runs apt-get; otherwise it prints the exact command and fails.
ensure_debian_packages() {
    local missing=()
    [ -f "${AUDITSTAMP_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}" ] || missing+=(softhsm2)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v cc >/dev/null 2>&1 || missing+=(gcc)
    # Extra needs as PROBE:PACKAGE arguments, the probe a command or an absolute path, which
    # may hold a * (the test suite checks the systemd unit, parses /metrics with Prometheus's
    # Python client, starts throw-away PostgreSQL servers and puts HAProxy before appliances).
    local need probe
    for need in "$@"; do
        probe=${need%%:*}
        if [[ $probe == *'*'* ]]; then
            compgen -G "$probe" >/dev/null || missing+=("${need#*:}")
        elif [[ $probe == /* ]]; then
            [ -e "$probe" ] || missing+=("${need#*:}")
        else
            command -v "$probe" >/dev/null 2>&1 || missing+=("${need#*:}")
        fi
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

# ensure_moto : moto's S3 server (PyPI's moto[server] 5.x), the test suite's throw-away S3
# (src/testkit.rs), in a Python venv at ${AUDITSTAMP_TOOLS_DIR:-$HOME/.cache/auditstamp}/moto-venv,
# made once (pip takes about a minute). Exports AUDITSTAMP_MOTO_SERVER, the path of its
# moto_server, for the tests.
ensure_moto() {
    local venv=${AUDITSTAMP_TOOLS_DIR:-$HOME/.cache/auditstamp}/moto-venv
    local requirement='moto[server]>=5.2,<6'
    export AUDITSTAMP_MOTO_SERVER=$venv/bin/moto_server
    # Complete when moto's server imports (an install cut short is made again).
    if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c 'import moto.server' 2>/dev/null; then
        return 0
    fi
    # The python3 on the PATH if it can make a venv (pyenv's can); else Debian's, whose
    # venv module needs ensurepip from python3.X-venv.
    local python
    python=$(command -v python3 || true)
    if [ -z "$python" ] || ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        ensure_debian_packages /usr/bin/python3:python3
        python=/usr/bin/python3
        local version
        version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        ensure_debian_packages "/usr/lib/python$version/ensurepip/__init__.py:python$version-venv"
    fi
    echo "installing moto's S3 server ($requirement, from PyPI) in $venv: about a minute"
    mkdir -p "$(dirname "$venv")"
    if ! "$python" -m venv --clear "$venv"; then
        echo "error: $python -m venv $venv failed" >&2
        return 1
    fi
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement"; then
        echo "error: could not install $requirement; retry with:" >&2
        echo "  $venv/bin/pip install '$requirement'" >&2
        return 1
    fi
    "$venv/bin/python" -c 'import moto.server' || {
        echo "error: $requirement installed in $venv, but its server does not import" >&2
        return 1
    }
}

# rust_minimum [MANIFEST] : the rust-version that MANIFEST (default: this checkout's
# Cargo.toml) states.
rust_minimum() {
    local manifest=${1:-$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml}
    sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$manifest" | head -n 1
}

# version_at_least HAVE NEED : true when dotted version HAVE >= NEED (missing parts are 0).
version_at_least() {
    local -a have need
    IFS=. read -r -a have <<<"$1"
    IFS=. read -r -a need <<<"$2"
    local i
    for i in 0 1 2; do
        local h=${have[i]:-0} n=${need[i]:-0}
        [ "$((10#$h))" -gt "$((10#$n))" ] && return 0
        [ "$((10#$h))" -lt "$((10#$n))" ] && return 1
    done
    return 0
}

# ensure_rust [MANIFEST] : cargo and a rustc at least as new as MANIFEST's rust-version
# (default: this checkout's Cargo.toml); otherwise prints the exact fix and fails.
ensure_rust() {
    local need
    need=$(rust_minimum "${1:-}")
    if [ -z "$need" ]; then
        echo "error: cannot read rust-version from ${1:-Cargo.toml}" >&2
        return 1
    fi
    if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
        echo "error: cargo (Rust $need or later) is not installed." >&2
        echo "install it with:  curl --proto '=https' -sSf https://sh.rustup.rs | sh" >&2
        return 1
    fi
    local have
    have=$(rustc --version | awk '{print $2}')
    have=${have%%-*}
    if ! [[ $have =~ ^[0-9]+(\.[0-9]+)*$ ]]; then
        echo "error: cannot read the version of rustc from: $(rustc --version)" >&2
        return 1
    fi
    if ! version_at_least "$have" "$need"; then
        echo "error: rustc $have is older than Rust $need, which auditstamp's locked dependencies need." >&2
        if command -v rustup >/dev/null 2>&1; then
            echo "update it with:  rustup update stable && rustup default stable" >&2
        else
            echo "this rustc is not managed by rustup (a distribution package?); install rustup with:" >&2
            echo "  curl --proto '=https' -sSf https://sh.rustup.rs | sh" >&2
        fi
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

# ensure_cluster_ca DIR: a DEVELOPMENT root CA made with openssl in DIR (ca.key, mode 0600,
# and ca.pem), once, to certify the TSA keys of several appliances that each have a token
# of their own, the way an office's CA does (keys csr, the CA signs, keys import-cert), so
# that one CA file verifies every node's tokens. (`keys dev-ca` keeps its key on one
# appliance's token and certifies only keys on that token.)
ensure_cluster_ca() {
    local dir=$1 out
    mkdir -p "$dir"
    cat >"$dir/tsa.ext" <<'EXT'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
    [ -s "$dir/ca.pem" ] && [ -s "$dir/ca.key" ] && return 0
    if ! out=$(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 \
        -subj "/CN=auditstamp DEVELOPMENT cluster root CA/O=auditstamp development/C=EE" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>&1); then
        echo "error: openssl could not make the development CA in $dir:" >&2
        echo "$out" >&2
        return 1
    fi
    chmod 644 "$dir/ca.pem"
}

# cluster_node_config N STATE LISTEN: node N's configuration (printed), from dev.toml: its
# own node.id N (token serials stay unique), name, checkpoint origin, state directory and
# address; the TSA chain file is the cluster CA's; no per-client rate limit (behind the
# balancer every request comes from its address: the balancer limits per client).
cluster_node_config() {
    local n=$1 state=$2 listen=$3
    sed -e "s/^id = 1\$/id = $n/" \
        -e "s/^name = .*/name = \"node-$n\"/" \
        -e "s#^state_dir = .*#state_dir = \"$state\"#" \
        -e "s|^chain_file = .*|chain_file = \"pki/cluster-ca.pem\"  # DEVELOPMENT cluster root CA|" \
        -e "s#^origin = .*#origin = \"node-$n.cluster.localhost/chain\"#" \
        -e "s#^listen = .*#listen = \"$listen\"#" \
        -e 's/^\[http\]$/[http]\nrate_limit = { per_second = 0 }/' \
        "$(dirname "${BASH_SOURCE[0]}")/../firmware-config/dev.toml"
}

# provision_cluster_node BIN CONFIG STATE CA_DIR: a SoftHSM2 token in STATE/hsm, a TSA key
# (tsa-dev) certified by CA_DIR's CA (ensure_cluster_ca) and an Ed25519 chain key
# (chain-dev) in it; idempotent. Run it with SOFTHSM2_CONF unset or STATE's own.
provision_cluster_node() {
    local bin=$1 config=$2 state=$3 ca=$4
    mkdir -p "$state/pki"
    AUDITSTAMP_BIN=$bin hsm-sim/create-token.sh "$state/hsm" auditstamp-dev >/dev/null
    export SOFTHSM2_CONF=$state/hsm/softhsm2.conf
    cp "$ca/ca.pem" "$state/pki/cluster-ca.pem"
    "$bin" keys generate --config "$config" --label tsa-dev --algorithm ecdsa-p256 --purpose tsa --if-missing >/dev/null
    "$bin" keys generate --config "$config" --label chain-dev --algorithm ed25519 --purpose chain --if-missing >/dev/null
    if "$bin" keys export-cert --config "$config" --label tsa-dev --out "$state/pki/tsa-dev.pem" >/dev/null 2>&1; then
        return 0
    fi
    local name
    name=$(basename "$state")
    "$bin" keys csr --config "$config" --label tsa-dev --out "$state/pki/tsa-dev.csr" \
        --subject "CN=auditstamp development TSA $name,O=auditstamp development,C=EE" >/dev/null
    local out
    if ! out=$(openssl x509 -req -in "$state/pki/tsa-dev.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 365 -sha256 \
        -extfile "$ca/tsa.ext" -out "$state/pki/tsa-dev.pem" 2>&1); then
        echo "error: openssl could not certify $name's TSA key:" >&2
        echo "$out" >&2
        return 1
    fi
    "$bin" keys import-cert --config "$config" --label tsa-dev --cert "$state/pki/tsa-dev.pem" \
        --chain "$ca/ca.pem" >/dev/null
}

# now_ms : the time, in milliseconds since the epoch.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_for WHAT SECONDS COMMAND... : polls COMMAND every 0.1 s until it succeeds; after
# SECONDS, says that WHAT did not happen and fails.
wait_for() {
    local what=$1 limit=$2
    shift 2
    local deadline=$(( $(now_ms) + limit * 1000 ))
    until "$@"; do
        if [ "$(now_ms)" -gt "$deadline" ]; then
            echo "error: $what: not within $limit s" >&2
            return 1
        fi
        sleep 0.1
    done
}
