#!/usr/bin/env bash
# Fuzzes rxe-wire, rxe-transport and rxe-kernel's receive path: seeds the corpus from the test captures, then runs the
# wire_parse target for SECONDS (default 60), icrc, cm, cm_state and kernel_port for SECONDS/4 and transport
# for SECONDS/2 (each at least 10). Exits non-zero if any
# fuzzer fails (a crash input is then in fuzz/artifacts/<target>/).
#
# Usage: fuzz/run.sh [SECONDS]      (needs a nightly toolchain and cargo-fuzz)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

secs="${1:-60}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: $0 [SECONDS]   (a positive whole number of seconds, default 60)" >&2
    exit 2
fi
icrc_secs=$((secs / 4))
transport_secs=$((secs / 2))
if [ "$transport_secs" -lt 10 ]; then
    transport_secs=10
fi
if [ "$icrc_secs" -lt 10 ]; then
    icrc_secs=10
fi

./seed.sh

status=0
run() {
    local target="$1" t="$2"
    echo "fuzz: running $target for $t s"
    if ! cargo +nightly fuzz run "$target" -- -max_total_time="$t"; then
        echo "fuzz: $target FAILED (see fuzz/artifacts/$target/)" >&2
        status=1
    fi
}
run wire_parse "$secs"
run icrc "$icrc_secs"
run transport "$transport_secs"
run cm "$icrc_secs"
run cm_state "$icrc_secs"
run kernel_port "$icrc_secs"

if [ "$status" -ne 0 ]; then
    echo "fuzz: FAILED: a fuzzer found a crash or did not run" >&2
    exit "$status"
fi
echo "fuzz: wire_parse ran $secs s, icrc $icrc_secs s and transport $transport_secs s without a crash"
