#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, README there) with clang-19, ASan and UBSan into
# build-fuzz, then runs each one on a fresh copy of its committed seed corpus for a while.
# Fails on any crash, leak, sanitizer report, timeout or violated property.
#
# Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET=30] [TARGET...]
#   TARGET: wire_codec firmware kernel model grpc_validators config audio (default: all)
#   CI (scripts/test.sh): bash scripts/fuzz.sh 15 wire_codec firmware
#   short, every target: bash scripts/fuzz.sh 20      long run: bash scripts/fuzz.sh 600
# Environment: FUZZ_BUILD_DIR (build-fuzz), JOBS (2: build jobs), XBAR_BUILD_LOCK
# (/tmp/xbar-build.lock: the build takes it when flock exists; machines here are shared).
#
# Why clang-19: the product returns std::expected (C++23). Debian 12's libstdc++ declares it only
# for a compiler with C++20 concepts in full (__cpp_concepts >= 202002L); clang 14, Debian's
# default clang, reports 201907L, so <expected> is empty there. clang-19 is in Debian 12 too.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
shift || true
all=(wire_codec firmware kernel model grpc_validators config audio a0_commands)
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=("${all[@]}")
build=${FUZZ_BUILD_DIR:-build-fuzz}
jobs=${JOBS:-2}
lock=${XBAR_BUILD_LOCK:-/tmp/xbar-build.lock}
start=$(date +%s)

# ---- toolchain and dependencies ----
# install-deps.sh installs clang-19 and its runtime (libFuzzer, sanitizers) with the rest.
bash scripts/install-deps.sh
if ! command -v clang++-19 >/dev/null ||
   ! ls /usr/lib/llvm-19/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz: clang++-19 or libFuzzer missing after scripts/install-deps.sh" \
    "(packages clang-19, libclang-rt-19-dev)" >&2
  exit 2
fi

# ---- configure and build ----
locked() {
  if command -v flock >/dev/null; then flock "$lock" "$@"; else "$@"; fi
}
echo "== fuzz: build ($build, clang-19, address+undefined, -j$jobs)"
CC=clang-19 CXX=clang++-19 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DXBAR_FUZZ=ON -DXBAR_BUILD_TESTS=OFF -DXBAR_BUILD_BENCH=OFF \
  -DXBAR_SANITIZE=address,undefined >/dev/null
# Only what is asked for: the protocol targets need neither gRPC nor the server.
build_targets=(xbar_fuzz)
[ "${#targets[@]}" -lt "${#all[@]}" ] && build_targets=("${targets[@]/%/_fuzz}")
locked cmake --build "$build" -j "$jobs" --target "${build_targets[@]}"
built=$(date +%s)
echo "== fuzz: built in $((built - start)) s"

# ---- run ----
max_len() {
  case $1 in
    wire_codec | firmware | config | a0_commands) echo 8192 ;;
    kernel | grpc_validators) echo 16384 ;;
    model | audio) echo 32768 ;;
  esac
}
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0:${ASAN_OPTIONS:-}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}
for s in /usr/bin/llvm-symbolizer-19 /usr/lib/llvm-19/bin/llvm-symbolizer /usr/bin/llvm-symbolizer; do
  if [ -x "$s" ]; then
    export ASAN_SYMBOLIZER_PATH=$s
    break
  fi
done

failed=()
printf '== fuzz: %s s per target\n' "$secs"
printf '%-16s %12s %10s %8s %8s %8s  %s\n' target executions exec/s cov ft corpus result
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/${t}_fuzz
  [ -x "$bin" ] || { echo "fuzz: no target $t (known: ${all[*]})"; exit 2; }
  dir=$build/fuzz-run/$t
  rm -rf "$dir"
  mkdir -p "$dir/corpus"
  cp tests/fuzz/corpus/"$t"/* "$dir/corpus/"
  rc=0
  "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=60 -rss_limit_mb=4096 \
    -max_len="$(max_len "$t")" -artifact_prefix="$dir/" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$dir/log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$dir/log")
  last=$(grep -h -E '^#[0-9]+.*(DONE|cov:)' "$dir/log" | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.*corp: \([0-9]*\).*/\1/p' <<<"$last")
  bad=$(grep -h -E 'runtime error:|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|property violated|SUMMARY: ' \
        "$dir/log" | head -3 || true)
  result=ok
  if [ "$rc" -ne 0 ] || [ -n "$bad" ] || ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* >/dev/null 2>&1; then
    result=FAILED
    failed+=("$t")
  fi
  printf '%-16s %12s %10s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
    "${corp:-?}" "$result"
  if [ "$result" = FAILED ]; then
    echo "---- $t: exit $rc; log $dir/log; inputs: $(ls "$dir" | grep -E '^(crash|leak|timeout|oom)-' | tr '\n' ' ')"
    grep -E -A25 'runtime error:|ERROR: |property violated' "$dir/log" | head -60 || tail -30 "$dir/log"
  fi
done
end=$(date +%s)
echo "== fuzz: total $((end - start)) s (build $((built - start)) s, runs $((end - built)) s)"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (reproduce: $build/tests/fuzz/<target>_fuzz <input>)"
  exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
