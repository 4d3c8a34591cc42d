#!/usr/bin/env python3
"""Board against software, clip by clip (issue 17): one xbard on a simulated board, a model
deployed, every test clip classified on the hardware path and on the software path. Prints the
label agreement, the logit NRMSE (board logits against software logits, over all clips) and the
accuracy of both, as one JSON line per model.

  PYTHONPATH=client/python:build/client/python/gen /usr/bin/python3 bench/accuracy/agreement.py \\
      --xbard build/server/xbard --board sim:profile=ideal,seed=1 --clips 480 \\
      models/reference/zero-one-2bit.json /tmp/zero-one-2bit-cal.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import Daemon, REPO, test_clips  # noqa: E402

from xbar_client import Client  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files (xbar.v1.Model JSON)")
    ap.add_argument("--xbard", default=str(REPO / "build/server/xbard"))
    ap.add_argument("--xbarctl", default=str(REPO / "build/client/xbarctl"))
    ap.add_argument("--board", default="sim:profile=ideal,seed=1")
    ap.add_argument("--data", default=str(REPO / "data/digits-gen"))
    ap.add_argument("--clips", type=int, default=480)
    ap.add_argument("--remap", default="auto", choices=("auto", "naive"))
    args = ap.parse_args()
    clips = test_clips(Path(args.data), args.clips)
    d = Daemon(args.xbard, args.xbarctl, args.board, scan=False)
    try:
        with Client(d.addr) as c:
            c.wait_ready(30)
            for m in args.models:
                dep = c.deploy_model(m, replace=True, remap=args.remap)
                agree = right_hw = right_sw = 0
                se = ss = 0.0
                for wav, label in clips:
                    hw = c.infer(dep.id, wav, path="hardware")
                    sw = c.infer(dep.id, wav, path="software")
                    agree += hw.label == sw.label
                    right_hw += hw.label == label
                    right_sw += sw.label == label
                    for a, b in zip(hw.logits, sw.logits):
                        se += (a - b) ** 2
                        ss += b * b
                n = len(clips)
                print(json.dumps({
                    "model": m, "board": args.board, "remap": args.remap, "clips": n,
                    "state": dep.state, "label_agreement_pct": round(100.0 * agree / n, 2),
                    "logit_nrmse": round(math.sqrt(se / ss), 4) if ss > 0 else None,
                    "accuracy_hardware_pct": round(100.0 * right_hw / n, 2),
                    "accuracy_software_pct": round(100.0 * right_sw / n, 2),
                }), flush=True)
    finally:
        d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
