#!/usr/bin/python3
"""Expected log-mel features for tests/front_end_test.cc, computed by models/frontend.py (the
numpy reference) when the test runs, so that the C++ front end is always checked against the
reference as it is in the tree.

    /usr/bin/python3 tests/front_end_reference.py OUT_DIR

writes OUT_DIR/cases.txt, one line per case:
    name rate_hz hop fft_size bands low_hz high_hz range_db normalise target_length samples steps
and for each case OUT_DIR/<name>.samples.f32 (the input, float32 little-endian) and
OUT_DIR/<name>.features.f32 (steps x bands, step-major). The signals are made here from fixed
seeds: the same files on every run.
"""

import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import frontend  # noqa: E402


def signals():
    rng = np.random.default_rng(18)
    t8 = np.arange(8000 // 2 + 37) / 8000.0  # 0.5 s and a partial hop at 8 kHz
    sine = 0.5 * np.sin(2 * np.pi * 440.0 * t8)
    # A chirp that gets louder: the running reference rises step after step.
    env = np.minimum(1.0, 0.05 + t8 / t8[-1])
    chirp = 0.9 * env * np.sin(2 * np.pi * (100.0 * t8 + 0.5 * 6800.0 * t8 * t8))
    noise = np.concatenate([np.zeros(333), 0.1 * rng.standard_normal(4000)])
    quiet = 1e-4 * rng.standard_normal(2500)  # below the -80 dB floor of the reference
    t48 = np.arange(48000 // 4 + 5) / 48000.0
    vowel = sum(a * np.sin(2 * np.pi * f * t48) for a, f in ((0.3, 150), (0.2, 700), (0.1, 1200),
                                                             (0.05, 2600)))
    short = 0.7 * rng.uniform(-1, 1, 45)
    return [
        # name, samples, rate, hop, fft, bands, low, high, range, normalise, target
        ("sine8k", sine, 8000, 80, 256, 16, 125.0, 3800.0, 60.0, True, 0),
        ("chirp8k", chirp, 8000, 80, 256, 16, 125.0, 3800.0, 60.0, True, 0),
        ("chirp8k_abs", chirp, 8000, 80, 256, 16, 125.0, 3800.0, 60.0, False, 0),
        ("noise8k_pad", noise, 8000, 80, 256, 16, 125.0, 3800.0, 60.0, True, 80),
        ("noise8k_cut", noise, 8000, 80, 256, 16, 125.0, 3800.0, 60.0, True, 20),
        ("quiet8k", quiet, 8000, 100, 128, 8, 0.0, 4000.0, 120.0, True, 0),
        ("silence8k", np.zeros(1000), 8000, 80, 256, 16, 125.0, 3800.0, 60.0, True, 0),
        ("vowel48k", vowel, 48000, 64, 1024, 32, 50.0, 8000.0, 80.0, False, 0),
        ("vowel48k_hop_eq_fft", vowel, 48000, 512, 512, 40, 0.0, 24000.0, 200.0, True, 0),
        ("short16", short, 16000, 3, 16, 4, 300.0, 8000.0, 30.0, True, 0),
        ("one_band", chirp, 8000, 80, 4096, 1, 1000.0, 1100.0, 50.0, True, 0),
    ]


def main():
    out = sys.argv[1]
    lines = []
    for name, x, rate, hop, fft, bands, lo, hi, rng_db, norm, target in signals():
        x = np.asarray(x, dtype=np.float32)
        f = frontend.log_mel(x, rate, hop, fft, bands, lo, hi, rng_db, normalise=norm,
                             target_length=target)
        assert f.dtype == np.float32 and f.shape[1] == bands and all(map(math.isfinite, f.flat))
        x.astype("<f4").tofile(os.path.join(out, name + ".samples.f32"))
        f.astype("<f4").tofile(os.path.join(out, name + ".features.f32"))
        lines.append(" ".join(str(v) for v in (name, rate, hop, fft, bands, repr(lo), repr(hi),
                                               repr(rng_db), int(norm), target, x.size,
                                               f.shape[0])))
    with open(os.path.join(out, "cases.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
