#!/usr/bin/env python3
"""Writes models/example-model.json: an (untrained) xbar.v1.Model around the three example
kernels of configs/kernels/example.json, for demos and tests of the inference path.

Encoder Linear(1 -> 3), the 3 kernels, GELU, mixing Linear(3 -> 3), mean-pool, decoder
Linear(3 -> 2) with classes "zero" and "one"; weights ~ N(0, 0.5^2), seeded. The paper's
preprocessing: 48 kHz, block-average by 64, 871 steps. Trained models come with issue 7.

    python3 models/make_example_model.py [--seed 1]
"""

import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def linear(rng, inputs, outputs):
    return {
        "inputs": inputs,
        "outputs": outputs,
        "weight": [round(rng.gauss(0, 0.5), 6) for _ in range(inputs * outputs)],
        "bias": [round(rng.gauss(0, 0.5), 6) for _ in range(outputs)],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with open(os.path.join(HERE, "..", "configs", "kernels", "example.json")) as f:
        kernel_set = json.load(f)
    model = {
        "name": "example-untrained",
        "preprocessing": {"sampleRateHz": 48000, "downsample": 64, "targetLength": 871,
                          "normalise": True},
        "encoder": linear(rng, 1, 3),
        "kernelSet": kernel_set,
        "mixing": linear(rng, 3, 3),
        "glu": False,
        "decoder": linear(rng, 3, 2),
        "classes": ["zero", "one"],
    }
    out = os.path.join(HERE, "example-model.json")
    with open(out, "w") as f:
        json.dump(model, f, indent=2)
        f.write("\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
