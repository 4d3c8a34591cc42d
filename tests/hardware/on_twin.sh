#!/usr/bin/env bash
# The board suite against the twin as a separate xbar-fwsim process, writes allowed: what
# `XBAR_TEST_BOARD=usb:serial=... hardware_test` does against a real board. With --a0, the twin
# speaks the A0 board's serial command set on a pseudo-terminal and the suite opens it as
# a0:LINK (docs/a0.md); otherwise protocol v1 on a Unix socket.
#   on_twin.sh [--a0] XBAR_FWSIM HARDWARE_TEST [gtest flags]
set -euo pipefail
a0=0
if [ "${1:-}" = --a0 ]; then a0=1; shift; fi
fwsim=$1 suite=$2
shift 2
dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
if [ "$a0" = 1 ]; then
  # The devices relax 1000 times faster than real ones; the backend waits 1000 times less.
  "$fwsim" --a0 --pty "$dir/tty" --time-scale 1000 --profile typical --seed 5 \
    >"$dir/fwsim.log" 2>&1 &
  ready() { [ -L "$dir/tty" ]; }
  board="a0:$dir/tty,time_scale=1000"
else
  "$fwsim" --profile typical --seed 5 --listen "unix:$dir/board.sock" >"$dir/fwsim.log" 2>&1 &
  ready() { [ -S "$dir/board.sock" ]; }
  board="unix:$dir/board.sock"
fi
pid=$!
for _ in $(seq 1200); do
  ready && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/fwsim.log" >&2; exit 1; }
  sleep 0.1
done
ready || { echo "on_twin.sh: xbar-fwsim did not come up" >&2; exit 1; }
XBAR_TEST_BOARD="$board" XBAR_TEST_BOARD_WRITE=1 "$suite" "$@"
