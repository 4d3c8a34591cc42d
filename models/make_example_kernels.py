#!/usr/bin/env python3
"""Writes the example S4D kernel sets configs/kernels/example.json and example-2bit.json.

Each file is an xbar.v1.KernelSet in the protobuf JSON mapping (proto/xbar/v1/kernels.proto),
ready for `xbarctl deploy`. Three continuous S4D-Lin kernels with N = 14 states each:

    a_n    = -0.5 + i pi n                 n = 0..13 (S4D-Lin initialisation)
    log_dt = ln(0.1), ln(0.2), ln(0.5)     one step per kernel (slow, medium, fast decay)
    c_n    ~ N(0, 0.5^2) + i N(0, 0.5^2)   seeded, the same in both files

Smaller steps (dt = 0.001, |A_bar| = 0.9995) are valid kernels but too close to instability for
an analog recurrence: +-2 uS of write noise moves their poles past 1 (docs/kernels.md).

example.json is full precision; example-2bit.json adds quantization {bits: 2, f_scale_a: 1,
f_scale_c: 1}: q(x) = clamp(round(x n / f), -n, n) f / n with n = 1, so Re(a) = -0.5 becomes
-1 (rounding half away from zero, as the daemon's std::round does) and |A_bar| stays below 1.

Standard library only; the output depends on --seed alone.

    python3 models/make_example_kernels.py            # seed 1, into configs/kernels/
    python3 models/make_example_kernels.py --seed 7 --out-dir /tmp/k
"""

import argparse
import math
import os
import random

STATES = 14
LOG_DTS = (math.log(0.1), math.log(0.2), math.log(0.5))
WINDOW = {"gMinUS": 7, "gMaxUS": 200}
QUANT_2BIT = {"bits": 2, "fScaleA": 1.0, "fScaleC": 1.0}


def num(x):
    """A number with at most 6 significant digits (ints stay ints)."""
    if isinstance(x, int):
        return x
    return float(f"{x:.6g}") + 0.0  # + 0.0 turns -0.0 into 0.0


def complex_list(values):
    return [{"re": num(v.real), "im": num(v.imag)} for v in values]


def make_kernels(seed):
    rng = random.Random(seed)
    kernels = []
    for log_dt in LOG_DTS:
        a = [complex(-0.5, math.pi * n) for n in range(STATES)]
        c = [complex(rng.gauss(0.0, 0.5), rng.gauss(0.0, 0.5)) for _ in range(STATES)]
        dt = math.exp(log_dt)
        kernels.append({
            "name": f"s4d-lin-n{STATES}-dt{dt:g}",
            "continuous": {"a": complex_list(a), "logDt": num(log_dt), "c": complex_list(c)},
        })
    return kernels


def dump(value, indent=0):
    """JSON with 2-space indentation; objects of scalars (e.g. {re, im}) stay on one line."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, dict):
        if all(not isinstance(v, (dict, list)) for v in value.values()):
            return "{" + ", ".join(f'"{k}": {dump(v)}' for k, v in value.items()) + "}"
        items = [f'{inner}"{k}": {dump(v, indent + 1)}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [inner + dump(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not finite: {value}")
        return repr(value)
    return str(value)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="seed for C (default 1)")
    parser.add_argument("--out-dir", default=os.path.join(here, "..", "configs", "kernels"),
                        help="where to write the two files (default configs/kernels)")
    args = parser.parse_args()

    os.makedirs(args.out_dir, exist_ok=True)
    full = {"kernels": make_kernels(args.seed), "window": dict(WINDOW)}
    quant = {"kernels": make_kernels(args.seed), "window": dict(WINDOW)}
    for k in quant["kernels"]:
        k["name"] += "-2bit"
        k["quantization"] = dict(QUANT_2BIT)
    for name, kernel_set in (("example.json", full), ("example-2bit.json", quant)):
        path = os.path.join(args.out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(dump(kernel_set) + "\n")
        print(f"wrote {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
