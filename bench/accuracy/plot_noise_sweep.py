#!/usr/bin/env python3
"""The write-noise sweep's box plot (the paper's Fig. 4) from the JSON that
bench/accuracy/write_noise_sweep writes with --json:

  build/bench/write_noise_sweep --kernels board --noise-on weights --json fig4.json
  /usr/bin/python3 bench/accuracy/plot_noise_sweep.py fig4.json -o bench/accuracy/fig4.png

x: the write-noise sigma; at each sigma one box per model over its instantiations (quartiles,
the median as a black line, the mean as a diamond, whiskers to the furthest value within
1.5 IQR, the values beyond drawn singly); y: test accuracy in percent, 100 down to the ten below
the lowest value shown. Each model's software accuracy is a dashed line of its colour (the
models' dashes interleaved, so that equal baselines show every colour).

Exit codes: 0 written, 2 unreadable or malformed JSON, 1 the PNG could not be written.
Needs python3-matplotlib (Debian 12); draws without a display (Agg).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

COLOURS = plt.rcParams["axes.prop_cycle"].by_key()["color"]  # matplotlib's tab10


class BadInput(Exception):
    pass


def load(path: Path) -> dict:
    """The sweep's document, checked for the keys the figure reads."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: {e}") from e
    try:
        if doc.get("benchmark") != "write_noise_sweep":
            raise BadInput(f"{path}: not a write_noise_sweep document (\"benchmark\")")
        sigmas = [float(s) for s in doc["sigmas_uS"]]
        for m in doc["models"]:
            str(m["label"])
            float(m["software_accuracy_pct"])
            if [float(p["sigma_uS"]) for p in m["sweep"]] != sigmas:
                raise BadInput(f"{path}: model {m['label']}: its sweep is not at sigmas_uS")
            for p in m["sweep"]:
                [float(a) for a in p["accuracy_pct"]]
        int(doc["clips"])
        int(doc["instantiations"])
    except (KeyError, TypeError, ValueError) as e:
        raise BadInput(f"{path}: missing or malformed {e}") from e
    return doc


def title(doc: dict) -> str:
    where = ("float crossbar" if doc.get("kernels") == "crossbar"
             else f"twin, profile {doc.get('profile', '?')}")
    if doc.get("noise_on") == "weights":
        where += ", noisy weights only"
    return (f"Write noise: {doc['instantiations']} draws per box, {doc['clips']} clips, "
            f"{where}")


def lighter(colour: str, keep: float = 0.45) -> tuple:
    """The colour mixed with white, `keep` of it left: the boxes' fill."""
    r, g, b, _ = to_rgba(colour)
    return (1 - keep * (1 - r), 1 - keep * (1 - g), 1 - keep * (1 - b))


def plot(doc: dict, out: Path) -> None:
    sigmas = [float(s) for s in doc["sigmas_uS"]]
    models = doc["models"]
    n = len(models)
    fig, ax = plt.subplots(figsize=(10, 6.4), dpi=100)

    # y: 100 % down to a multiple of 10 below every value shown.
    lowest = min([float(m["software_accuracy_pct"]) for m in models] +
                 [float(a) for m in models for p in m["sweep"] for a in p["accuracy_pct"]],
                 default=100.0)
    lo = min(90.0, max(0.0, math.floor((lowest - 1) / 10) * 10))

    slot = 0.72 / max(n, 1)  # each sigma's group spans 0.72 of the distance between sigmas
    for i, m in enumerate(models):
        colour = COLOURS[i % len(COLOURS)]
        data = [[float(a) for a in p["accuracy_pct"]] for p in m["sweep"]]
        positions = [s + (i - (n - 1) / 2) * slot for s in range(len(sigmas))]
        ax.boxplot(
            data, positions=positions, widths=slot * 0.78, whis=1.5, patch_artist=True,
            manage_ticks=False, showmeans=True,
            boxprops=dict(facecolor=lighter(colour), edgecolor=colour, linewidth=1.5),
            whiskerprops=dict(color=colour, linewidth=1.5),
            capprops=dict(color=colour, linewidth=1.5),
            medianprops=dict(color="black", linewidth=2),
            meanprops=dict(marker="D", markerfacecolor=colour, markeredgecolor="white",
                           markersize=6),
            flierprops=dict(marker="o", markerfacecolor="white", markeredgecolor=colour,
                            markersize=5))
        # Software baseline: dashes of 6 points, the models' interleaved.
        dash, gap = 6.0, max(4.0, 6.0 * (n - 1))
        ax.axhline(float(m["software_accuracy_pct"]), color=colour, linewidth=1.5,
                   linestyle=(i * dash, (dash, gap)), zorder=1)

    ax.set_xticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
    ax.set_xlim(-0.5, len(sigmas) - 0.5)
    ax.set_ylim(lo, 101)  # room for a baseline at 100 %
    ax.set_xlabel("write noise σ (µS)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title(doc))
    ax.grid(axis="y", color="0.88")
    ax.set_axisbelow(True)

    handles = [Patch(facecolor=lighter(COLOURS[i % len(COLOURS)]),
                     edgecolor=COLOURS[i % len(COLOURS)], label=str(m["label"]))
               for i, m in enumerate(models)]
    handles += [
        Line2D([], [], color="0.35", linestyle=(0, (6, 4)), label="software baseline"),
        Line2D([], [], color="black", linewidth=2, label="median"),
        Line2D([], [], color="0.35", marker="D", linestyle="none", markeredgecolor="white",
               label="mean"),
        Line2D([], [], color="0.35", marker="o", markerfacecolor="white", linestyle="none",
               label="beyond 1.5 IQR"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1),
              ncol=len(handles), frameon=False, handlelength=3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", type=Path, help="write_noise_sweep --json output")
    ap.add_argument("-o", "--out", type=Path,
                    help="the PNG to write (default: the JSON's path with .png)")
    a = ap.parse_args(argv)
    try:
        doc = load(a.json)
    except BadInput as e:
        print(f"plot_noise_sweep: {e}", file=sys.stderr)
        return 2
    out = a.out or a.json.with_suffix(".png")
    try:
        plot(doc, out)
    except OSError as e:
        print(f"plot_noise_sweep: cannot write {out}: {e}", file=sys.stderr)
        return 1
    print(f"PNG: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
