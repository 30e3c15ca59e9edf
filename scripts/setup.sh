# Shared by scripts/run and scripts/test (sourced, not run): installs what is
# missing with apt-get, then configures and builds one build folder.
# Quick the second time: nothing is installed when every package is present,
# and the build is incremental.

SB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# What building needs.
SB_BUILD_PACKAGES="build-essential cmake pkg-config openssl libev-dev libzmq3-dev libssl-dev
  libexpat1-dev libyaml-dev libmariadb-dev libsqlite3-dev zlib1g-dev"
# What the tests need on top: real peers, a real MariaDB server, Python clients.
SB_TEST_PACKAGES="mariadb-server mariadb-client python3 python3-pytest python3-zmq
  python3-slixmpp go-sendxmpp"

sb_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "switchboard: installing ${missing[*]}" >&2
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# sb_build DIR [cmake options...]
sb_build() {
    local dir=$1
    shift
    if [ ! -f "$dir/CMakeCache.txt" ]; then
        cmake -S "$SB_ROOT" -B "$dir" "$@" >/dev/null
    fi
    cmake --build "$dir" -j"$(nproc)" -- --no-print-directory
}

# A self-signed development certificate for localhost, made once.
sb_dev_certificate() {
    local dir=$1
    [ -f "$dir/dev.crt" ] && [ -f "$dir/dev.key" ] && return 0
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/dev.key" -out "$dir/dev.crt" 2>/dev/null
    chmod 600 "$dir/dev.key"
    echo "switchboard: made a self-signed development certificate in $dir" >&2
}
