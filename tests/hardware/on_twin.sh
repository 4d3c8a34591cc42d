#!/usr/bin/env bash
# The board suite against the twin as a separate xbar-fwsim process on a Unix socket, writes
# allowed: what `XBAR_TEST_BOARD=usb:serial=... hardware_test` does against a real board.
#   on_twin.sh XBAR_FWSIM HARDWARE_TEST [gtest flags]
set -euo pipefail
fwsim=$1 suite=$2
shift 2
dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
"$fwsim" --profile typical --seed 5 --listen "unix:$dir/board.sock" >"$dir/fwsim.log" 2>&1 &
pid=$!
for _ in $(seq 1200); do
  [ -S "$dir/board.sock" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/fwsim.log" >&2; exit 1; }
  sleep 0.1
done
[ -S "$dir/board.sock" ] || { echo "on_twin.sh: xbar-fwsim did not listen" >&2; exit 1; }
XBAR_TEST_BOARD="unix:$dir/board.sock" XBAR_TEST_BOARD_WRITE=1 "$suite" "$@"
