#!/usr/bin/env bash
# README command 2 (and what .ci/run runs): install, check formatting, lint the protos, build,
# run every test, then every test again under ASan+UBSan, then the server and concurrency tests
# under TSan, then a short fuzz run of the frame codec and the firmware. Needs no git checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "== clang-format check"
# The tracked C++ files in a git checkout; in a tree without git metadata (an exported
# tarball) every .cc and .h outside build directories and node_modules.
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$(pwd -P)" ]; then
  git ls-files -z '*.cc' '*.h'
else
  find . \( -name '.git' -o -name 'build*' -o -name node_modules -o -name demo-out \) -prune -o \
    -type f \( -name '*.cc' -o -name '*.h' \) -print0
fi | xargs -0 -r clang-format --dry-run --Werror
bash scripts/proto-lint.sh
echo "== build"
BUILD_DIR=${BUILD_DIR:-build} bash scripts/build.sh
echo "== tests"
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)" --timeout 300
cd - >/dev/null
# The whole suite again under ASan+UBSan, and the server and concurrency tests under TSan
# (XBAR_CI_ASAN=0 / XBAR_CI_TSAN=0 skip them).
if [ "${XBAR_CI_ASAN:-1}" = 1 ]; then
  echo "== tests under ASan+UBSan"
  bash scripts/sanitize.sh asan
fi
if [ "${XBAR_CI_TSAN:-1}" = 1 ]; then
  echo "== server and concurrency tests under TSan"
  bash scripts/sanitize.sh tsan
fi
# A short fuzz run of the protocol's two sides (XBAR_CI_FUZZ=0 skips it; every target and the
# long run: docs/reliability.md).
if [ "${XBAR_CI_FUZZ:-1}" = 1 ]; then
  echo "== short fuzz run: frame codec and firmware"
  bash scripts/fuzz.sh 15 wire_codec firmware
fi
