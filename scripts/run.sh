#!/usr/bin/env bash
# The README's run command: installs what is missing (scripts/setup.sh), configures and builds
# the release preset, and runs the main program with this script's arguments.
set -euo pipefail

# The program to run: a target of the release build. With no arguments payments-demo runs
# `run` (10,000 transfers, the report and its checks) in ./payments-data.
main_target=payments-demo

cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh

cmake --preset release
cmake --build --preset release --target "$main_target"

program=$(find build/release -path '*/CMakeFiles' -prune -o -type f -name "$main_target" \
    -perm -u+x -print | head -n 1)
if [ -z "$program" ]; then
    echo "evbus run: built $main_target but found no executable of that name under build/release" >&2
    exit 1
fi
exec "$program" "$@"
