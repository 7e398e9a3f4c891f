#!/usr/bin/env bash
# bench/run.sh — build evbus_bench with the `bench` preset (Release, -O2) and save one run
# under bench/results/<date>-<commit>-<cpu>-<compiler>.txt. Arguments go to evbus_bench,
# e.g. `bench/run.sh --runs 9`. EVBUS_BENCH_BUILD_DIR picks the build directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${EVBUS_BENCH_BUILD_DIR:-$root/build/bench}

cmake --preset bench -S "$root" -B "$build" >/dev/null
cmake --build "$build" --target evbus_bench

commit=$(git -C "$root" rev-parse --short=12 HEAD)
# "-dirty": the measured code (core/, bench/) differs from the commit.
if ! git -C "$root" diff --quiet HEAD -- core bench; then commit="$commit-dirty"; fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1 |
      tr -cs 'A-Za-z0-9.' '-' | sed 's/-*$//')
compiler=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
case "$("$compiler" --version | head -n 1)" in
    *clang*) compiler_id="clang-$("$compiler" -dumpversion)" ;;
    *) compiler_id="gcc-$("$compiler" -dumpfullversion)" ;;
esac
mkdir -p "$root/bench/results"
# A --pin run says so in the name; seconds keep back-to-back runs apart.
pin=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ "${args[i]}" == "--pin" && $((i + 1)) -lt ${#args[@]} ]]; then pin="-pin-${args[i + 1]}"; fi
done
out="$root/bench/results/$(date -u +%Y%m%d-%H%M%S)-$commit-$cpu-$compiler_id$pin.txt"

{
    echo "commit:     $commit"
    echo "date (UTC): $(date -u '+%Y-%m-%d %H:%M')"
    echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"
    "$build/bench/evbus_bench" "$@"
} 2>&1 | tee "$out"
echo "saved: $out"
