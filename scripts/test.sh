#!/usr/bin/env bash
# README command 2 (and what .ci/run runs): install, check formatting, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "== clang-format check"
git ls-files '*.cc' '*.h' | xargs clang-format --dry-run --Werror
bash scripts/proto-lint.sh
echo "== build"
BUILD_DIR=${BUILD_DIR:-build} bash scripts/build.sh
echo "== tests"
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)" --timeout 300
