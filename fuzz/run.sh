#!/usr/bin/env bash
# fuzz/run.sh: builds and runs the fuzz targets of fuzz/fuzz_targets/
# (docs/fuzzing.md).
#
#   fuzz/run.sh ci [SECONDS]         # fmt, clippy, then every target SECONDS (default 10)
#   fuzz/run.sh run TARGET RUNS [LIBFUZZER OPTIONS]   # RUNS executions of one target
#   fuzz/run.sh cmin                 # keeps the seeds that add coverage
#   fuzz/run.sh list                 # the targets
#   fuzz/run.sh install              # only install cargo-fuzz if it is missing
#
# FUZZ_SANITIZER=none fuzz/run.sh run ...   # without AddressSanitizer (faster)
#
# cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain take them. Installs cargo-fuzz when it is missing.
# A run starts from fuzz/seeds/TARGET (committed) and grows
# fuzz/corpus/TARGET (not committed); a crash is written under
# fuzz/artifacts/TARGET and fails the run.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

export RUSTC_BOOTSTRAP=1
# --debug-assertions: integer overflow is a crash too. The crate builds
# into fuzz/target, apart from the workspace's target/ (the sanitizer
# flags would change every fingerprint there). FUZZ_SANITIZER=none (or
# another cargo-fuzz sanitizer) instead of AddressSanitizer, in a target
# dir of its own so that the builds do not undo each other.
SANITIZER=${FUZZ_SANITIZER:-address}
BUILD=(--debug-assertions --sanitizer "$SANITIZER")
[ "$SANITIZER" = address ] || BUILD+=(--target-dir "target/sanitizer-$SANITIZER")

log() { printf '[fuzz] %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi
[ "${1:-}" = install ] && exit 0

targets() { cargo fuzz list; }

# -detect_leaks=0: the Lua targets keep one VM whose garbage outlives an
# input, which libFuzzer's leak check after each input takes for a leak
# (and spends seconds on before it gives up).
run() {
    local target=$1
    shift
    mkdir -p "corpus/$target"
    cargo fuzz run "${BUILD[@]}" "$target" "corpus/$target" "seeds/$target" -- -detect_leaks=0 "$@"
}

case ${1:-} in
ci)
    seconds=${2:-10}
    # The dev profile: its cold build takes under half the release one's
    # time (2 min against 5 here), which is most of this step; the runs
    # make an eighth to a fortieth of the executions, still every seed and
    # thousands of mutations per target (docs/fuzzing.md has the figures).
    # The long runs use the release profile.
    BUILD+=(--dev)
    # This crate is a workspace of its own: the root's fmt and clippy
    # steps do not see it.
    log "cargo fmt --check; cargo clippy -D warnings (fuzz crate)"
    cargo fmt -- --check
    cargo clippy --all-targets --quiet -- -D warnings
    log "cargo fuzz build ${BUILD[*]}"
    cargo fuzz build "${BUILD[@]}"
    output=$(mktemp)
    trap 'rm -f "$output"' EXIT
    for target in $(targets); do
        if ! run "$target" -max_total_time="$seconds" -print_final_stats=1 >"$output" 2>&1; then
            tail -n 60 "$output" >&2
            log "$target: FAILED (a crash is saved under fuzz/artifacts/$target/)"
            exit 1
        fi
        log "$target: $(grep -m1 '^stat::number_of_executed_units' "$output" | awk '{print $2}') executions in ${seconds} s"
    done
    ;;
run)
    target=${2:?target}
    runs=${3:?runs}
    start=$(date +%s)
    run "$target" -runs="$runs" -print_final_stats=1 "${@:4}"
    log "$target: $runs executions in $(($(date +%s) - start)) s"
    ;;
cmin)
    for target in $(targets); do
        cargo fuzz cmin "${BUILD[@]}" "$target" "seeds/$target"
    done
    ;;
list) targets ;;
*)
    sed -n '2,12p' run.sh >&2 # (the working directory is fuzz/)
    exit 2
    ;;
esac
