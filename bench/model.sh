#!/usr/bin/env bash
# bench/model.sh: the runtime model's benchmarks (issue 10), in one bounded
# run (about 40 s once built).
#
#   bench/model.sh
#
# Rows, each a script under bench/model/ run with `lunet run --modules
# bench/model/modules`:
#   Sub call      subcall.lua: a Sub call vs a plain lunet.call with the same
#                 values (one integer), one pair, one call at a time, the two
#                 kinds alternating; cost of a Sub call / cost of a plain one
#   spawn         spawn.lua: spawning a runtime with one module vs a plain
#                 service (each spawn waits for its start), spawns/s
#   memory        memory.lua: VmRSS and Lua heap per runtime with 3 modules,
#                 vs an idle plain service
#   event         events.lua: one event fired to 1,000 runtimes attached from
#                 outside: deliveries/s from the first fire to the last
#                 delivery
# Throughput rows run BENCH_ROUNDS times (default 5) and report the median.
# Prints a markdown table with the goals of issue 10. BENCH_RESULTS=FILE
# also appends it there.
#
# Knobs (environment): BENCH_ROUNDS=5, BENCH_CALLS=1000000, BENCH_SECONDS=2,
# MODEL_SPAWNS=5000, MODEL_RUNTIMES=5000, MODEL_ATTACHED=1000,
# MODEL_FIRES=200, LUNET_WORKERS=N (--workers N), LUNET_BIN=PATH (use this
# lunet instead of building one).

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init model-bench

ROUNDS=${BENCH_ROUNDS:-5}
CALLS=${BENCH_CALLS:-1000000}
SECONDS_CAP=${BENCH_SECONDS:-2}
SPAWNS=${MODEL_SPAWNS:-5000}
RUNTIMES=${MODEL_RUNTIMES:-5000}
ATTACHED=${MODEL_ATTACHED:-1000}
FIRES=${MODEL_FIRES:-200}
ENGINE=(--log-level error --modules bench/model/modules)
[ -n "${LUNET_WORKERS:-}" ] && ENGINE+=(--workers "$LUNET_WORKERS")

lunet_binary || exit 1

# run SCRIPT ARGS...: one benchmark (bounded by `timeout`), its output.
run() {
    local script=$1
    shift
    timeout 180 "$BIN" run "$script" "${ENGINE[@]}" "$@"
}
record_run() { record "$BIN" run "$1" "${ENGINE[@]}" "${@:2}"; }
value() { printf '%s\n' "$2" | sed -n "s/^$1=//p" | head -n1; }
thousands() { awk -v n="$1" 'BEGIN { printf "%.0fk", n / 1000 }'; }
runs() { for r in "$@"; do printf '%s ' "$(thousands "$r")"; done | sed 's/ $//'; }

record_run bench/model/subcall.lua kind=sub "calls=$CALLS" "seconds=$SECONDS_CAP"
record_run bench/model/subcall.lua kind=plain "calls=$CALLS" "seconds=$SECONDS_CAP"
sub_runs=() plain_runs=()
for round in $(seq "$ROUNDS"); do
    log "Sub call vs plain call, round $round"
    out=$(run bench/model/subcall.lua kind=sub "calls=$CALLS" "seconds=$SECONDS_CAP") || { log "subcall.lua (sub) failed"; exit 1; }
    sub_runs+=("$(value calls_per_s "$out")")
    out=$(run bench/model/subcall.lua kind=plain "calls=$CALLS" "seconds=$SECONDS_CAP") || { log "subcall.lua (plain) failed"; exit 1; }
    plain_runs+=("$(value calls_per_s "$out")")
done

record_run bench/model/spawn.lua kind=module "count=$SPAWNS"
record_run bench/model/spawn.lua kind=plain "count=$SPAWNS"
module_spawns=() plain_spawns=()
for round in $(seq "$ROUNDS"); do
    log "spawn, round $round"
    out=$(run bench/model/spawn.lua kind=module "count=$SPAWNS") || { log "spawn.lua (module) failed"; exit 1; }
    module_spawns+=("$(value spawns_per_s "$out")")
    out=$(run bench/model/spawn.lua kind=plain "count=$SPAWNS") || { log "spawn.lua (plain) failed"; exit 1; }
    plain_spawns+=("$(value spawns_per_s "$out")")
done

log "memory: $RUNTIMES runtimes"
record_run bench/model/memory.lua kind=modules "count=$RUNTIMES"
record_run bench/model/memory.lua kind=plain "count=$RUNTIMES"
out=$(run bench/model/memory.lua kind=modules "count=$RUNTIMES") || { log "memory.lua (modules) failed"; exit 1; }
runtime_kb=$(value kb_per_runtime "$out")
runtime_lua_kb=$(value lua_kb_per_runtime "$out")
out=$(run bench/model/memory.lua kind=plain "count=$RUNTIMES") || { log "memory.lua (plain) failed"; exit 1; }
plain_kb=$(value kb_per_runtime "$out")
plain_lua_kb=$(value lua_kb_per_runtime "$out")

record_run bench/model/events.lua "attached=$ATTACHED" "fires=$FIRES"
event_runs=()
for round in $(seq "$ROUNDS"); do
    log "event to $ATTACHED attached runtimes, round $round"
    out=$(run bench/model/events.lua "attached=$ATTACHED" "fires=$FIRES") || { log "events.lua failed"; exit 1; }
    event_runs+=("$(value deliveries_per_s "$out")")
done

sub=$(median "${sub_runs[@]}")
plain=$(median "${plain_runs[@]}")
module_spawn=$(median "${module_spawns[@]}")
plain_spawn=$(median "${plain_spawns[@]}")
events=$(median "${event_runs[@]}")
# Cost ratios: the time of one Sub call (spawn) over the time of a plain one.
call_cost=$(ratio "$plain" "$sub")
spawn_cost=$(ratio "$plain_spawn" "$module_spawn")

table=$(
    cat <<EOF2
| row | lunet (median) | reference | cost / size ratio | goal | verdict |
| --- | --- | --- | --- | --- | --- |
| Sub call vs plain \`lunet.call\`, same values, one pair | $(thousands "$sub") calls/s (runs: $(runs "${sub_runs[@]}")) | plain call: $(thousands "$plain") calls/s (runs: $(runs "${plain_runs[@]}")) | ${call_cost}x | <= 1.15x | $(verdict "$call_cost" "<=" 1.15) |
| spawn a runtime with one module vs a plain service | $(fmt_int "$module_spawn") spawns/s (runs: $(for r in "${module_spawns[@]}"; do printf '%s ' "$(fmt_int "$r")"; done | sed 's/ $//')) | plain: $(fmt_int "$plain_spawn") spawns/s (runs: $(for r in "${plain_spawns[@]}"; do printf '%s ' "$(fmt_int "$r")"; done | sed 's/ $//')) | ${spawn_cost}x | - | - |
| memory per runtime with 3 modules ($RUNTIMES spawned) | $runtime_kb KB RSS (Lua heap $runtime_lua_kb KB) | idle plain service: $plain_kb KB (Lua heap $plain_lua_kb KB) | $(ratio "$runtime_kb" "$plain_kb")x | - | - |
| an event fired to $ATTACHED attached runtimes ($FIRES fires) | $(thousands "$events") deliveries/s (runs: $(runs "${event_runs[@]}")) | - | - | - | - |

Machine: $(machine).

Commands:
$(for c in "${COMMANDS[@]}"; do printf -- '- `%s`\n' "$c"; done)
EOF2
)

emit_table "Runtime model" "$table"
