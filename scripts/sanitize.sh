#!/usr/bin/env bash
# Builds and runs the whole test suite under ASan+UBSan, then the server and concurrency tests
# under TSan (they start real xbard/xbar-fwsim processes, which are built the same way).
# Usage: bash scripts/sanitize.sh [asan|tsan]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-both}
if [ "$what" = asan ] || [ "$what" = both ]; then
  # -O1 for the code the tests spend their time in (XBAR_HOT_OPT: the twin, the codec, the
  # drivers, the compiler, the model), -O0 for the rest, which compiles 2.4 times faster
  # (cmake/compile_time.cmake). The accuracy benchmark (real audio through an instrumented xbard)
  # and the package check (a .deb of instrumented binaries) are left to the normal build.
  BUILD_TYPE=Release BUILD_DIR=build-asan bash scripts/build.sh -DXBAR_SANITIZE=address,undefined \
    -DXBAR_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS_RELEASE=-O0 -DCMAKE_C_FLAGS_RELEASE=-O0 \
    -DXBAR_HOT_OPT=-O1
  # System libraries' process-lifetime caches (fontconfig under cairo's text) are suppressed by
  # library in tests/lsan.supp; every other leak fails the test.
  lsan_supp="$PWD/tests/lsan.supp"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
     LSAN_OPTIONS="suppressions=$lsan_supp:print_suppressions=0" \
     ctest --output-on-failure -j "$(nproc)" --timeout 600 -E 'accuracy|package_contents')
fi
if [ "$what" = tsan ] || [ "$what" = both ]; then
  # The server and concurrency tests (ctest label "concurrency", tests/CMakeLists.txt) and the
  # processes they start; -O1 and -O0 as for ASan. TSAN_ALL=1 builds and runs every test instead.
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Release -DXBAR_SANITIZE=thread \
    -DXBAR_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS_RELEASE=-O0 -DCMAKE_C_FLAGS_RELEASE=-O0 \
    -DXBAR_HOT_OPT=-O1 >/dev/null
  if [ "${TSAN_ALL:-0}" = 1 ]; then
    ninja -C build-tsan -j "${JOBS:-$(nproc)}"
    (cd build-tsan && ctest --output-on-failure -j "$(nproc)" --timeout 600 -E accuracy)
  else
    ninja -C build-tsan -j "${JOBS:-$(nproc)}" xbar_concurrency_tests xbard xbarctl xbar-fwsim
    (cd build-tsan && ctest --output-on-failure -j "$(nproc)" --timeout 600 -L concurrency)
  fi
fi
