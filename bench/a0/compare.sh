#!/usr/bin/env bash
# The same job on the same twin chip through protocol v1 (xbar-fwsim on a Unix socket) and
# through the A0 board's serial command set (xbar-fwsim --a0 on a pty, xbard on a0:LINK):
# fault scans of the three arrays, the reference model deployed with remap, and the held-out
# clips classified on the board. Prints one line per backend (bench/RESULTS.md, "The A0 board").
#   bench/a0/compare.sh [BUILD_DIR] [PROFILE] [SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build} PROFILE=${2:-imssa} SEED=${3:-13}
MODEL=models/reference/zero-one-2bit.json
SCALE=1000  # the A0 twin's devices relax this much faster than real ones (docs/a0.md)
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

a0_counts() {  # the A0 twin's command counts so far (it logs them on SIGUSR1)
  [ -n "${a0_pid:-}" ] || return 0
  kill -USR1 "$a0_pid"
  sleep 0.3
  grep -o 'A0 board: .*' "$dir/a0.log" | tail -1
}

run_job() {  # $1 name, $2 board URI; prints the job's line
  local x="$B/client/xbarctl --server unix:$dir/$1.sock"
  "$B/server/xbard" --board "$2" --listen "unix:$dir/$1.sock" --state-dir "$dir/$1-state" \
    >"$dir/$1-xbard.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do $x status >/dev/null 2>&1 && break; sleep 0.1; done
  local t0=$SECONDS scan_tx=0
  for a in 0 1 2; do
    scan_tx=$((scan_tx + $($x scan --array $a 2>/dev/null | awk '/transactions/ {print $1; exit}')))
  done
  local t1=$SECONDS
  [ "$1" = a0 ] && echo "  after the scans: $(a0_counts)"
  $x deploy-model "$MODEL" --name job --replace >"$dir/$1-deploy.txt" 2>&1 || true
  local t2=$SECONDS
  [ "$1" = a0 ] && echo "  after the deploy: $(a0_counts)"
  local dep within fid
  dep=$($x --json deployments | grep -o 'dep-[0-9a-f]*' | head -1)
  within=$(grep -o '[0-9.]* % within tol' "$dir/$1-deploy.txt" | awk '{printf "%s ", $1}')
  fid=$(grep -o 'labels agree [0-9.]* %[^,]*, logit NRMSE [0-9.]*' "$dir/$1-deploy.txt" | head -1)
  local n=0 ok=0
  for clip in models/reference/clips/heldout/*.wav; do
    said=$(basename "$clip" .wav | awk -F_ '{print $(NF-1)}')
    got=$($x infer "$clip" -d "$dep" | awk '{print $1}')
    n=$((n + 1))
    [ "$got" = "$said" ] && ok=$((ok + 1))
  done
  local t3=$SECONDS
  [ "$1" = a0 ] && echo "  after the clips: $(a0_counts)"
  local link
  link=$($x info | sed -n 's/^backend *//p')
  printf '%-4s scans %3d transactions %3d s | deploy %3d s, programmed %s%% | %s | held-out %d/%d in %d s | %s\n' \
    "$1" "$scan_tx" $((t1 - t0)) $((t2 - t1)) "$within" "$fid" "$ok" "$n" $((t3 - t2)) "$link"
}

"$B/twin/xbar-fwsim" --profile "$PROFILE" --seed "$SEED" --listen "unix:$dir/fw.sock" \
  >"$dir/fw.log" 2>&1 &
pids+=($!)
"$B/twin/xbar-fwsim" --a0 --pty "$dir/tty" --time-scale $SCALE --profile "$PROFILE" \
  --seed "$SEED" >"$dir/a0.log" 2>&1 &
a0_pid=$!
pids+=($a0_pid)
for _ in $(seq 200); do [ -S "$dir/fw.sock" ] && [ -L "$dir/tty" ] && break; sleep 0.1; done
echo "profile $PROFILE, chip seed $SEED, model $MODEL"
run_job v1 "unix:$dir/fw.sock"
run_job a0 "a0:$dir/tty,time_scale=$SCALE"
