#!/usr/bin/env bash
# Installs every build, test and run dependency of xbar from Debian 12's packages.
# Idempotent; needs root (or sudo). Used by both README commands and by .ci/run.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config git
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev libgrpc-dev
  libboost-dev libboost-system-dev
  libeigen3-dev libspdlog-dev libfmt-dev
  libusb-1.0-0-dev libyaml-cpp-dev libcli11-dev libsqlite3-dev libpng-dev
  libsndfile1-dev libsamplerate0-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-grpcio python3-protobuf openssl
  umockdev libumockdev-dev
  clang-format
  python3-torch python3-numpy espeak-ng sox
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
