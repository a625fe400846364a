#!/usr/bin/env bash
# `make fuzz` (docs/FUZZING.md): builds Tests/Fuzz with -sanitize=fuzzer and runs each target
# for FUZZ_SECONDS (default 60), seeded from Tests/VLLMCtlKitTests/Fixtures/fuzz-seeds/TARGET
# and the crashes already committed in Fixtures/fuzz/TARGET. New inputs go to
# .build/fuzz/corpus/TARGET, a crash to .build/fuzz/crashes/TARGET/ (libFuzzer stops a target
# at its first crash). Exits 1 if any target crashed.
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-squeue sacct ssh_config known_hosts config sse prometheus connection_json}
swift build --package-path Tests/Fuzz --scratch-path .build/fuzz -Xswiftc -sanitize=fuzzer || exit 1
bin=.build/fuzz/debug/vllmctl-fuzz
fixtures=Tests/VLLMCtlKitTests/Fixtures
crashed=()
for t in $targets; do
    corpus=.build/fuzz/corpus/$t
    crashes=.build/fuzz/crashes/$t
    log=.build/fuzz/$t.log
    mkdir -p "$corpus" "$crashes"
    seeds=("$fixtures/fuzz-seeds/$t")
    [ -d "$fixtures/fuzz/$t" ] && seeds+=("$fixtures/fuzz/$t")
    start=$(date +%s)
    FUZZ_TARGET=$t SWIFT_BACKTRACE=enable=no "$bin" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$corpus" "${seeds[@]}" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    if [ $rc -eq 0 ]; then
        echo "fuzz $t: $(($(date +%s) - start)) s, ${runs:-?} runs, no crash"
    else
        crashed+=("$t")
        echo "fuzz $t: CRASHED after $(($(date +%s) - start)) s, ${runs:-?} runs: $(ls "$crashes" | head -1) (log: $log)"
        grep -m1 -E 'Fatal error|ERROR: libFuzzer' "$log"
    fi
done
if [ ${#crashed[@]} -gt 0 ]; then
    echo "Crashes in: ${crashed[*]}. Fix the parser, commit the input under $fixtures/fuzz/TARGET/."
    exit 1
fi
