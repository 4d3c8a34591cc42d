#!/usr/bin/python3
"""Does training's emulation of the board's loop (models/hwloop.py) make the board's errors?
Deploys a model file that carries its loop scales (modeRange, calibration.stateRange: every
quantized reference model) on an xbard with an ideal twin, runs clips (the held-out voices'
WAVs in models/reference/clips/heldout; their features computed here by models/frontend.py,
which the C++ front end reproduces exactly) on the board-exact
path (INFER_EMULATE, the board's own codes) with kernel outputs, and compares the board's error
against the float recurrence (the software path) with the emulation's error against it, at the
scales the file carries. Not bit for bit: the conductances the board holds differ from the
compiled targets by program-verify's tolerance, enough to flip a rounding decision now and
then, after which the error feedback follows another, equally valid sequence (docs/firmware.md
§7); what must agree is the size of the error, which is what training sees.

  PYTHONPATH=client/python:build/client/python/gen /usr/bin/python3 models/check_hwloop.py \\
      --xbard build/server/xbard models/reference/zero-one-2bit.json

Prints one JSON line per kernel: the NRMSE of the board and of the emulation against the float
path. Exits 1 when, on some kernel, the two differ by more than a factor --factor (unless both
are below --floor).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "bench", "accuracy"))
import data  # noqa: E402
import hwloop  # noqa: E402
import train  # noqa: E402
from accuracy import Daemon  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a model file with modeRange and calibration.stateRange")
    ap.add_argument("--xbard", default=os.path.join(ROOT, "build", "server", "xbard"))
    ap.add_argument("--xbarctl", default=os.path.join(ROOT, "build", "client", "xbarctl"))
    ap.add_argument("--board", default="sim:profile=ideal,seed=1")
    ap.add_argument("--ideal-adc", action="store_true",
                    help="emulate an ideal converter (for a board with e.g. adc_bits=16)")
    ap.add_argument("--clips", default=os.path.join(HERE, "reference", "clips", "heldout"))
    ap.add_argument("--count", type=int, default=8, help="clips used (the first, by name)")
    ap.add_argument("--factor", type=float, default=2.0)
    ap.add_argument("--floor", type=float, default=0.02)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with open(a.model) as f:
        js = json.load(f)
    wavs = sorted(os.path.join(a.clips, n) for n in os.listdir(a.clips)
                  if n.endswith(".wav"))[:a.count]
    clips = [data.clip_features(w, js["preprocessing"]) for w in wavs]
    bits = int(js["kernelSet"]["kernels"][0].get("quantization", {}).get("bits", 0))
    m = train.S4DModel(bits, 1.0, 1.0, 1)
    m.load_json(js)
    scales = hwloop.scales_from_model(js)
    u = torch.from_numpy(np.stack(clips))
    with torch.no_grad():
        z = m.encode(u)
        a_bar, c_bar = m.discrete()
        adc = None if a.ideal_adc else hwloop.Adc(a_bar, c_bar, scales.beta)
        emulated = hwloop.loop_outputs(a_bar, c_bar, z, scales, adc=adc).double().numpy()
        soft = m.kernel_outputs(z).double().numpy()
    d = Daemon(a.xbard, a.xbarctl, a.board, scan=False)
    try:
        dep = d.client.deploy_model(js, replace=True)
        board = []
        for wav in wavs:
            r = d.client.infer(dep.id, wav, path="emulate", kernel_outputs=True)
            board.append([list(s.values) for s in r.kernel_outputs])
        board = np.array(board)  # (clips, H, T)
    finally:
        d.close()
    ok = True
    for h in range(board.shape[1]):
        soft_h = soft[:, h]
        norm = np.sqrt((soft_h ** 2).sum())
        e_board = float(np.sqrt(((board[:, h] - soft_h) ** 2).sum()) / norm)
        e_emul = float(np.sqrt(((emulated[:, h] - soft_h) ** 2).sum()) / norm)
        print(json.dumps({"kernel": h, "board_vs_software_nrmse": round(e_board, 5),
                          "emulation_vs_software_nrmse": round(e_emul, 5)}))
        both_small = e_board < a.floor and e_emul < a.floor
        ok &= both_small or (e_emul <= a.factor * e_board and e_board <= a.factor * e_emul)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
