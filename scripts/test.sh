#!/usr/bin/env bash
# scripts/test.sh: the test command, for a fresh Debian machine with only
# Rust on it as for CI (.ci/run runs exactly this).
#
#   scripts/test.sh                  # install what is missing, then every gate
#   scripts/test.sh --install-only   # only install what is missing
#   scripts/test.sh ARGS...          # ARGS go to `cargo test --workspace`
#
# 1. Installs what the tests use and the machine lacks (REQUIREMENTS below):
#    Debian packages with apt-get (as root, or through sudo), running
#    `apt-get update` only when something is to be installed; PyPI packages
#    with pip into a virtual environment under target/ (put first on PATH
#    for the tests). A second run installs nothing.
# 2. cargo fmt --all -- --check
# 3. cargo clippy --workspace --all-targets -- -D warnings
# 4. cargo test --workspace
# 5. the loom model of the scheduler's parking protocol
# 6. every fuzz target for FUZZ_SECONDS (default 10) from its committed
#    seeds (fuzz/run.sh ci; the fuzz crate's own fmt and clippy first);
#    cargo-fuzz is installed with `cargo install` when missing
# Stops at the first step that fails, with its status.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# What the tests use, one per line (adding one is adding a line; no
# apostrophes in comments: the list is one single-quoted string):
#   debian PACKAGE [COMMAND]  apt-get install PACKAGE unless COMMAND is on
#                             PATH (without COMMAND: unless dpkg has PACKAGE)
#   pypi PACKAGE [MODULE]     pip install PACKAGE unless the environment's
#                             python3 can `import MODULE` (default: PACKAGE)
REQUIREMENTS='
debian gcc cc                   # links Rust; builds the vendored Lua and SQLite
debian redis-server redis-server
debian redis-tools redis-cli    # redis-cli, redis-benchmark
debian curl curl
debian openssl openssl         # TLS peers: openssl s_client and s_server, test certificates
debian lua-cjson                # a Lua 5.4 C module that require loads into the binary
debian g++ c++                  # builds libFuzzer (fuzz/run.sh)
debian nats-server nats-server  # NATS peer: proto tests, the cluster
pypi websocket-client websocket # WebSocket peer: proto tests
'

VENV=target/test-venv

log() { printf '[test.sh] %s\n' "$*" >&2; }

# shellcheck source=scripts/debian.sh
. scripts/debian.sh

# Reads REQUIREMENTS into DEBIAN_MISSING and PYPI_WANTED.
DEBIAN_MISSING=()
PYPI_WANTED=()
while read -r kind name probe _; do
    case $kind in
    debian)
        if [ -n "$probe" ] && [ "${probe:0:1}" != "#" ]; then
            command -v "$probe" >/dev/null 2>&1 && continue
        else
            debian_installed "$name" && continue
        fi
        DEBIAN_MISSING+=("$name")
        ;;
    pypi)
        [ -n "$probe" ] && [ "${probe:0:1}" != "#" ] || probe=$name
        PYPI_WANTED+=("$name:$probe")
        ;;
    "" | "#"*) ;;
    *) log "REQUIREMENTS: unknown kind '$kind'"; exit 2 ;;
    esac
done <<<"$REQUIREMENTS"

# PyPI packages live in a virtual environment, which needs python3-venv.
if [ ${#PYPI_WANTED[@]} -gt 0 ] && [ ! -x "$VENV/bin/python3" ]; then
    command -v python3 >/dev/null 2>&1 || DEBIAN_MISSING+=(python3)
    debian_installed python3-venv || DEBIAN_MISSING+=(python3-venv)
fi

if [ ${#DEBIAN_MISSING[@]} -gt 0 ]; then
    install_debian_packages "${DEBIAN_MISSING[@]}" || exit 1
fi

if [ ${#PYPI_WANTED[@]} -gt 0 ]; then
    if [ ! -x "$VENV/bin/python3" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    missing=()
    for wanted in "${PYPI_WANTED[@]}"; do
        "$VENV/bin/python3" -c "import ${wanted#*:}" >/dev/null 2>&1 || missing+=("${wanted%%:*}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "pip install ${missing[*]} (into $VENV)"
        "$VENV/bin/python3" -m pip install --quiet "${missing[@]}"
    fi
    export PATH="$PWD/$VENV/bin:$PATH"
fi

# A toolchain installed without rustup's default profile lacks these.
for tool in rustfmt clippy; do
    if ! cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 || { log "cargo $tool is missing and rustup is not there to add it"; exit 1; }
        log "rustup component add $tool"
        rustup component add "$tool"
    fi
done

fuzz/run.sh install

if [ "${1:-}" = --install-only ]; then
    log "everything the tests use is installed"
    exit 0
fi

log "cargo fmt --all -- --check"
cargo fmt --all -- --check
log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo test --workspace $*"
cargo test --workspace "$@"
# The park/unpark protocol of core/src/scheduler/idle.rs, model-checked for
# lost wakeups (docs/internals.md). Its own target dir: the cfg changes every
# fingerprint, and sharing target/ would rebuild the workspace each time.
log "loom: cargo test -p lunet-core --release --lib loom"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p lunet-core --release --lib loom
# Short runs: a smoke test of every target and its invariants on the
# seeds and what a few seconds of mutation reach. The long runs
# (docs/fuzzing.md) are made by hand.
log "fuzz: fuzz/run.sh ci ${FUZZ_SECONDS:-10}"
fuzz/run.sh ci "${FUZZ_SECONDS:-10}"
