#!/usr/bin/env bash
# Builds the xbar Debian package: ${BUILD_DIR:-build}/xbar_<version>_<arch>.deb (CPack,
# cmake/packaging.cmake), then checks its metadata and file list (scripts/check-package.sh).
# Install it with: sudo apt install ./build/xbar_*.deb   (README: "Install as a service").
# XBAR_BUILD_LOCK=FILE serialises the configure/build/cpack steps with other builds (flock).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

locked() {
  if [ -n "${XBAR_BUILD_LOCK:-}" ]; then flock "$XBAR_BUILD_LOCK" "$@"; else "$@"; fi
}

command -v dpkg-shlibdeps >/dev/null || { echo "package: dpkg-shlibdeps missing (apt-get install dpkg-dev)" >&2; exit 1; }
echo "== build ($BUILD_DIR)"
locked env BUILD_DIR="$BUILD_DIR" bash scripts/build.sh
echo "== cpack"
rm -f "$BUILD_DIR"/xbar_*.deb
locked cpack --config "$BUILD_DIR/CPackConfig.cmake" -B "$PWD/$BUILD_DIR" >"$BUILD_DIR/cpack.log" 2>&1 ||
  { cat "$BUILD_DIR/cpack.log" >&2; echo "package: cpack failed" >&2; exit 1; }
debs=("$BUILD_DIR"/xbar_*.deb)
[ -f "${debs[0]}" ] || { cat "$BUILD_DIR/cpack.log" >&2; echo "package: cpack made no .deb" >&2; exit 1; }
bash scripts/check-package.sh "${debs[0]}"
echo "package: ${debs[0]}"
