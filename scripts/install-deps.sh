#!/usr/bin/env bash
# Installs every build, test and run dependency of xbar from Debian 12's packages.
# Idempotent; needs root (or sudo). Used by both README commands and by .ci/run.
set -euo pipefail

# Everything scripts/*.sh, the tests (tests/, client/python/tests, bench/accuracy) and the
# demo run, besides what Debian's minimal install has (bash, coreutils, findutils, grep, sed,
# mawk, tar, dpkg, util-linux's flock). Who needs what:
PKGS=(
  # build (scripts/build.sh); git: the clang-format step lists the tracked files with it
  build-essential cmake ninja-build pkg-config git
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev libgrpc-dev
  libboost-dev libboost-system-dev
  libeigen3-dev libspdlog-dev libfmt-dev
  libusb-1.0-0-dev libyaml-cpp-dev libcli11-dev libsqlite3-dev libpng-dev
  libsndfile1-dev libsamplerate0-dev
  # xbarctl: its heat-map figures (cairo) and --json documents (nlohmann's JSON); libpng-dev
  # above is for kernel_cli_test, which reads the figures' pixels back
  libcairo2-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # the Python client and its test, run-demo.sh's WAV; openssl: the TLS tests' certificates
  python3 python3-grpcio python3-protobuf openssl
  # run: the font of xbarctl's figures (cairo falls back to a built-in ASCII one without it)
  fonts-dejavu-core
  # the USB transport test (umockdev testbed)
  umockdev libumockdev-dev
  # the formatting check in scripts/test.sh
  clang-format
  # the accuracy benchmark and its generated clips (models/data.py: espeak-ng, flite, festival
  # with three festvox voices, sox, soxi); matplotlib: the write-noise sweep's box plot
  # (bench/accuracy/plot_noise_sweep.py)
  python3-torch python3-numpy espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k
  festvox-us-slt-hts sox python3-matplotlib
  # the .deb (scripts/package.sh, ctest package_contents): CPack's DEB generator runs `file`
  # on every installed file, dpkg-shlibdeps (dpkg-dev) computes Depends
  file dpkg-dev
  # scripts/proto-lint.sh: buf comes from the npm registry (tools/proto-lint), over HTTPS
  nodejs npm ca-certificates
  # scripts/fuzz.sh: clang-19 with libFuzzer and the sanitizer runtimes, llvm-symbolizer-19
  clang-19 libclang-rt-19-dev llvm-19
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Node.js and npm are needed as commands: a machine whose Node.js came from elsewhere (e.g.
# NodeSource's nodejs, which carries its own npm and conflicts with Debian's npm package) keeps
# it; Debian's packages are installed only where `node` or `npm` is missing.
have_node=0
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then have_node=1; fi

missing=()
for p in "${PKGS[@]}"; do
  if [ "$have_node" = 1 ] && { [ "$p" = nodejs ] || [ "$p" = npm ]; }; then continue; fi
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
