#!/usr/bin/env bash
# README command 1: install, build, and run xbard on the embedded simulated board (the twin),
# then query it with xbarctl the way a technician would. xbard keeps serving until Ctrl-C
# (set XBAR_DEMO_EXIT=1 to stop after the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
B=build
ADDR=${XBAR_ADDR:-127.0.0.1:50051}
export XBAR_ADDR=$ADDR
mkdir -p demo-out
"$B/server/xbard" --listen "$ADDR" --board "sim:profile=typical,seed=7" --state-dir demo-out/state \
  > demo-out/xbard.log 2>&1 &
XBARD=$!
trap 'kill $XBARD 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do "$B/client/xbarctl" status >/dev/null 2>&1 && break; sleep 0.1; done

echo "== xbarctl info"
"$B/client/xbarctl" info
echo
echo "== xbarctl read --array 0 (8 reads averaged; CSV and heat map)"
"$B/client/xbarctl" read --array 0 --avg 8 --csv demo-out/array0.csv --png demo-out/array0.png
echo
echo "== xbarctl program --array 1 --random 7:200 (program-verify to random targets)"
"$B/client/xbarctl" program --array 1 --random 7:200 --png demo-out/array1.png
echo
echo "== xbarctl scan --array N (find the stuck devices; the array is restored)"
for a in 0 1 2; do "$B/client/xbarctl" scan --array "$a"; done
echo
echo "== xbarctl faults (the durable chip record in demo-out/state)"
"$B/client/xbarctl" faults | tail -5
echo
echo "== xbarctl deploy configs/kernels/example.json (three S4D kernels, remapped around the faults)"
"$B/client/xbarctl" deploy configs/kernels/example.json --name demo --replace || true
DEP=$("$B/client/xbarctl" --json deployments | grep -o 'dep-[0-9a-f]*' | head -1)
"$B/client/xbarctl" map --deployment "$DEP" --png demo-out/deployment.png
echo "map of the programmed arrays: demo-out/deployment.png"
echo
echo "== xbarctl status"
"$B/client/xbarctl" status
echo
echo "== xbarctl deploy-model models/reference/zero-one-5bit.json (the trained \"zero\"/\"one\" model;"
echo "   its fidelity: 16 clips it carries, on the board and in software)"
"$B/client/xbarctl" deploy-model models/reference/zero-one-5bit.json --replace |
  grep -E '^deployment|why:|fidelity' || true
MDEP=$("$B/client/xbarctl" --json deployments | grep -o 'dep-[0-9a-f]*' | head -1)
# Two spoken clips committed with the model (models/reference/clips): a "zero" and a "one".
for clip in spk001_zero_r0 spk008_one_r0; do
  echo "== xbarctl infer models/reference/clips/$clip.wav (said: $(echo "$clip" | cut -d_ -f2); closed loop on the board, then in software)"
  "$B/client/xbarctl" infer "models/reference/clips/$clip.wav" -d "$MDEP"
  "$B/client/xbarctl" infer "models/reference/clips/$clip.wav" -d "$MDEP" --software
done
echo
if [ "${XBAR_DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "xbard is serving xbar.v1 on $ADDR (log: demo-out/xbard.log). Ctrl-C to stop."
wait $XBARD
