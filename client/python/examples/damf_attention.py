#!/usr/bin/python3
"""DAMF on the board: an attention head's fused W_Q W_K^T kept at rank r by SVD, its singular
vectors deployed as two matrices, the dynamic product on the host (docs/matrices.md, "DAMF").

Dynamic Attention Matrix Fusion replaces the scores (x W_Q)(x' W_K)^T by x M x'^T with the
static M = W_Q W_K^T, and keeps M's largest r singular triplets: M_r = U_r S_r V_r^T. The
singular-vector matrices U_r and V_r (d_model x r, orthonormal columns of equal scale, so every
column uses the arrays' whole conductance range) are static and go onto the arrays; per token
the board computes x U_r and x V_r, and the host the r scalings by S_r and the dynamic product
(x U_r S_r)(x' V_r)^T. This script measures,
per rank r and chip, against the float scores of the full M:

  - the score error ||S_board - S|| / ||S||,
  - top-1 attention agreement: the share of queries whose highest-scoring key on the board is
    the float one (and the same for float rank r, the best the board can do at that rank).

The head is seeded (d_model 64, d_head 64, a singular spectrum decaying as exp(-i/6)), the
tokens N(0, 1). Each chip is its own xbard on the twin (`--xbard`), scanned before the deploys.

    PYTHONPATH=client/python:build/client/python/gen /usr/bin/python3 \\
        client/python/examples/damf_attention.py --xbard build/server/xbard \\
        --json bench/damf/damf.json --plot bench/damf/damf.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from xbar_client import Client  # noqa: E402


def head(d_model: int, seed: int):
    """W_Q, W_K with M = W_Q W_K^T of singular values exp(-i/6)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((d_model, d_model)))
    v, _ = np.linalg.qr(rng.standard_normal((d_model, d_model)))
    s = np.exp(-np.arange(d_model) / 6.0)
    return u * np.sqrt(s), v * np.sqrt(s)


def factors(m: np.ndarray, r: int):
    """U_r, S_r (as a vector), V_r."""
    u, s, vt = np.linalg.svd(m)
    return u[:, :r], s[:r], vt[:r].T


def top1(scores: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(scores.argmax(axis=-1) == ref.argmax(axis=-1)))


def scores_of(q: np.ndarray, k: np.ndarray, seqs: int, length: int, d_head: int) -> np.ndarray:
    q = q.reshape(seqs, length, -1)
    k = k.reshape(seqs, length, -1)
    return q @ k.transpose(0, 2, 1) / np.sqrt(d_head)


class Xbard:
    """xbard on one twin chip, on a Unix socket in a temporary directory."""

    def __init__(self, exe: str, board: str):
        self.dir = tempfile.mkdtemp(prefix="xbar-damf-")
        self.target = f"unix:{self.dir}/xbard.sock"
        self.proc = subprocess.Popen(
            [exe, "--board", board, "--listen", self.target, "--state-dir",
             f"{self.dir}/state", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = Client(self.target)
        self.client.wait_ready(60)

    def close(self):
        self.client.close()
        self.proc.terminate()
        self.proc.wait()


def run_chip(c: Client, m, x, ranks, bits, repeats, seqs, length, d_head):
    s_full = scores_of(x @ m, x, seqs, length, d_head)
    rows = []
    for r in ranks:
        u, sv, v = factors(m, r)
        s_float = scores_of((x @ u) * sv, x @ v, seqs, length, d_head)
        deps = [c.deploy_matrix(f, bits=bits, name=f"damf-{n}-r{r}")
                for n, f in (("u", u), ("v", v))]
        q, k = (c.multiply(d.id, x, repeats=repeats) for d in deps)
        s_board = scores_of(q * sv, k, seqs, length, d_head)
        rows.append({
            "rank": r,
            "states": [d.state for d in deps],
            "score_error_board": float(np.linalg.norm(s_board - s_full) / np.linalg.norm(s_full)),
            "score_error_float_rank": float(np.linalg.norm(s_float - s_full)
                                            / np.linalg.norm(s_full)),
            "top1_board": top1(s_board, s_full),
            "top1_float_rank": top1(s_float, s_full),
        })
        for d in deps:
            c.delete_deployment(d.id)
    return rows


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    first = next(iter(results.values()))
    ax.plot([r["rank"] for r in first], [100 * r["top1_float_rank"] for r in first], "k--",
            label="float, rank r")
    for chip, rows in results.items():
        ax.plot([r["rank"] for r in rows], [100 * r["top1_board"] for r in rows], "o-",
                label=f"board, {chip}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank r")
    ax.set_ylabel("top-1 attention agreement with full float (%)")
    ax.set_title("DAMF: W_Q W_K^T at rank r on the arrays")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--xbard", default="build/server/xbard")
    p.add_argument("--profiles", default="ideal,imssa,typical")
    p.add_argument("--seed", type=int, default=1, help="chip seed (twin)")
    p.add_argument("--ranks", default="2,4,8,16,24,32")
    p.add_argument("--bits", type=int, default=0, help="uniform quantization (0: none)")
    p.add_argument("--repeats", type=int, default=1, help="VMMs averaged per vector (1..16)")
    p.add_argument("--seqs", type=int, default=8)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--plot", help="write a PNG of top-1 agreement against r here")
    args = p.parse_args()
    d_model = d_head = 64
    wq, wk = head(d_model, seed=7)
    m = wq @ wk.T
    x = np.random.default_rng(11).standard_normal((args.seqs * args.length, d_model))
    ranks = [int(r) for r in args.ranks.split(",")]
    results = {}
    t0 = time.monotonic()
    for profile in args.profiles.split(","):
        x_d = Xbard(args.xbard, f"sim:profile={profile},seed={args.seed}")
        try:
            for a in range(3):
                x_d.client.scan_faults(a)
            results[profile] = run_chip(x_d.client, m, x, ranks, args.bits, args.repeats,
                                        args.seqs, args.length, d_head)
        finally:
            x_d.close()
    print(f"{'chip':<8} {'r':>3} {'top-1 board':>11} {'top-1 float r':>13} "
          f"{'score err board':>15} {'score err float r':>17}")
    for chip, rows in results.items():
        for r in rows:
            print(f"{chip:<8} {r['rank']:>3} {100 * r['top1_board']:>10.1f}% "
                  f"{100 * r['top1_float_rank']:>12.1f}% {r['score_error_board']:>15.4f} "
                  f"{r['score_error_float_rank']:>17.4f}")
    print(f"({time.monotonic() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bits": args.bits, "repeats": args.repeats, "seed": args.seed, "queries": args.seqs * args.length,
                       "results": results}, f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
