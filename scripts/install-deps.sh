#!/usr/bin/env bash
# Installs the Debian 12 packages gq-bench needs, only those that are missing.
#   scripts/install-deps.sh        build, run and test
#   scripts/install-deps.sh fuzz   the same plus clang, its libFuzzer/sanitizer runtimes
#                                  (libclang-rt-14-dev) and OpenMP (libomp-14-dev), for `make fuzz`
# Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config git
  libopenblas-openmp-dev liblapacke-dev libhdf5-dev hdf5-tools libjansson-dev libcmocka-dev
  libpcre2-dev libutf8proc-dev
  gnuplot-nox curl ca-certificates unzip python3
  libopenmpi-dev openmpi-bin
)
if [ "${1:-}" = fuzz ]; then
  packages+=(clang libclang-rt-14-dev libomp-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "install-deps: missing packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
