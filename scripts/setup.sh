#!/usr/bin/env bash
# Installs every Debian package evbus needs to build, test and benchmark.
# Idempotent: when everything is present it only runs dpkg-query and returns.
set -euo pipefail

packages=(
    build-essential cmake ninja-build pkg-config
    catch2 librange-v3-dev libbenchmark-dev
    libsqlite3-dev sqlite3 nlohmann-json3-dev libxxhash-dev libcli11-dev
    libconcurrentqueue-dev libatomic-queue-dev libboost-dev libtbb-dev
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "evbus setup: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "evbus setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
