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
"$B/server/xbard" --listen "$ADDR" --board "sim:profile=imssa,seed=7" --state-dir demo-out/state \
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
# The job itself: the trained 2-bit "zero"/"one" model on this imssa chip, first placed naively
# (identity placement, fault-unaware), then remapped around the stuck devices the scans above
# recorded; both classify the same clips, spoken by voices no model was trained on (festival's,
# models/reference/clips/heldout), and the software path gives the reference answer.
MODEL=models/reference/zero-one-2bit.json
CLIPS=(models/reference/clips/heldout/*.wav)
classify() {  # $1 deployment, $2 clip, then xbarctl flags: prints the class name
  "$B/client/xbarctl" infer "$2" -d "$1" "${@:3}" | awk '{print $1}'
}
deploy_model() {  # $1 naive|auto: prints the deployment id
  "$B/client/xbarctl" deploy-model "$MODEL" --remap "$1" --replace --name "zero-one-$1" \
    > "demo-out/deploy-$1.txt" 2>&1 || true
  grep -E '^deployment|why:|fidelity' "demo-out/deploy-$1.txt" >&2 || true
  grep -o 'dep-[0-9a-f]*' "demo-out/deploy-$1.txt" | head -1
}
echo "== xbarctl deploy-model $MODEL --remap naive (identity placement, stuck devices ignored)"
NDEP=$(deploy_model naive)
declare -A naive
for clip in "${CLIPS[@]}"; do naive[$clip]=$(classify "$NDEP" "$clip"); done
echo
echo "== xbarctl deploy-model $MODEL (remapped around the recorded stuck devices)"
MDEP=$(deploy_model auto)
"$B/client/xbarctl" map --deployment "$MDEP" --png demo-out/model-deployment.png
echo "map of the model's arrays: demo-out/model-deployment.png"
echo
echo "== xbarctl infer, ${#CLIPS[@]} clips of voices never trained on (closed loop on the board)"
n=0 ok_naive=0 ok_board=0 ok_soft=0
for clip in "${CLIPS[@]}"; do
  said=$(basename "$clip" .wav | awk -F_ '{print $(NF-1)}')
  voice=$(basename "$clip" .wav | sed -E 's/_(zero|one)_[0-9]+$//')
  board=$(classify "$MDEP" "$clip")
  soft=$(classify "$MDEP" "$clip" --software)
  printf '%-24s said %-5s  board: %-5s  software: %-5s  naive placement: %s\n' \
    "$voice" "$said" "$board" "$soft" "${naive[$clip]}"
  n=$((n + 1))
  [ "$board" = "$said" ] && ok_board=$((ok_board + 1))
  [ "$soft" = "$said" ] && ok_soft=$((ok_soft + 1))
  [ "${naive[$clip]}" = "$said" ] && ok_naive=$((ok_naive + 1))
done
echo
echo "accuracy on the $n clips     correct"
printf '  %-24s %3d / %d\n' "naive placement" "$ok_naive" "$n" "remapped (xbar)" "$ok_board" "$n" \
  "software reference" "$ok_soft" "$n"
echo
echo "Classify your own voice (8 kHz or more, any length up to 60 s):"
echo "  arecord -f S16_LE -r 16000 -d 2 me.wav   # or: sox -d -r 16000 me.wav trim 0 2"
echo "  $B/client/xbarctl infer me.wav -d $MDEP"
echo
if [ "${XBAR_DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "xbard is serving xbar.v1 on $ADDR (log: demo-out/xbard.log). Ctrl-C to stop."
wait $XBARD
