#!/usr/bin/python3
"""The log-mel front end (xbar.v1.LogMel) in numpy: the reference the C++ side
(xbar::audio::preprocess and audio::StreamingFrontEnd) computes, to float32 rounding.

Why a front end: the paper's input (48 kHz audio block-averaged by 64: a 750 Hz sequence) keeps
only what lies below ~375 Hz, the voice's pitch and little of its formants. A model trained on it
learned one synthesizer's voices and called almost every other voice "one" (issue 18). Band
energies up to 3.8 kHz carry the formants, which is what tells "zero" from "one" in any voice, and
fit the telephone band that ordinary 8 kHz recordings have.

Arithmetic, step by step (all in float64 until the last cast):
  1. samples x (float32, at sample_rate_hz), n of them; hop = downsample;
     steps = ceil(n / hop).
  2. buffer = (fft_size - hop) zeros, x, then zeros up to steps * hop samples: frame t is
     buffer[t*hop : t*hop + fft_size], i.e. it ends with step t's own hop samples, so step t
     needs no sample after (t+1)*hop (a stream computes it as soon as they arrive).
  3. window: periodic Hann, w[i] = 0.5 - 0.5 cos(2 pi i / fft_size).
  4. X = DFT(frame * w); P[k] = |X[k]|^2 / sum(w^2), k = 0 .. fft_size/2.
  5. bands triangular filters, edges equally spaced in mel (2595 log10(1 + f/700)) from low_hz to
     high_hz (bands + 2 edges); the weight of bin k (frequency k * rate / fft_size) in band b
     with edges l < c < h is max(0, min((f - l)/(c - l), (h - f)/(h - c))).
  6. E[t, b] = sum_k weight[b, k] P[t, k]; L = 10 log10(E + 1e-10) (dB re full scale).
  7. the reference: with normalise, ref_t = max(ref_{t-1}, max_b L[t, b]) starting from
     ref_{-1} = -80 dB (the loudest band so far; causal, so a stream and a whole clip agree step
     for step); without normalise, ref_t = 0 dB (full scale).
  8. feature = clamp(1 + (L - ref_t) / range_db, 0, 1), cast to float32: 1 is the loudest band
     so far, 0 is range_db below it or silence.
  9. pad with zero steps or truncate to target_length (0: natural length).
The model's input is then steps x bands values, step-major (all bands of step 0 first).
"""

import numpy as np

REF_FLOOR_DB = -80.0

# The reference models' preprocessing (xbar.v1.AudioPreprocessing JSON): audio at 8 kHz (the
# telephone band every ordinary recording has), 16 log-mel bands of 125..3800 Hz every 10 ms,
# each step's bands relative to the loudest band so far (60 dB range), 160 steps (1.6 s).
DEFAULT = {"sampleRateHz": 8000, "downsample": 80, "targetLength": 160, "normalise": True,
           "logMel": {"bands": 16, "fftSize": 256, "lowHz": 125.0, "highHz": 3800.0,
                      "rangeDb": 60.0}}
EPS_POWER = 1e-10


def mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def inv_mel(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def filterbank(rate, fft_size, bands, low_hz, high_hz):
    """(bands, fft_size/2 + 1) triangular mel weights (step 5)."""
    edges = inv_mel(np.linspace(mel(low_hz), mel(high_hz), bands + 2))
    freqs = np.arange(fft_size // 2 + 1, dtype=np.float64) * rate / fft_size
    fb = np.zeros((bands, freqs.size))
    for b in range(bands):
        lo, c, hi = edges[b], edges[b + 1], edges[b + 2]
        fb[b] = np.maximum(0.0, np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)))
    return fb


def log_mel(x, rate, hop, fft_size, bands, low_hz, high_hz, range_db, normalise=True,
            target_length=0):
    """Samples at `rate` -> (steps, bands) float32 features (steps 1..9 above)."""
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    n = x.size
    steps = (n + hop - 1) // hop
    buf = np.concatenate([np.zeros(fft_size - hop), x, np.zeros(steps * hop - n)])
    idx = np.arange(steps)[:, None] * hop + np.arange(fft_size)[None, :]
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(fft_size) / fft_size)
    spec = np.fft.rfft(buf[idx] * w, axis=1)
    power = (spec.real ** 2 + spec.imag ** 2) / np.sum(w * w)
    level = 10 * np.log10(power @ filterbank(rate, fft_size, bands, low_hz, high_hz).T +
                          EPS_POWER)
    if normalise:
        ref = np.maximum.accumulate(np.maximum(level.max(axis=1), REF_FLOOR_DB))
    else:
        ref = np.zeros(steps)
    f = np.clip(1.0 + (level - ref[:, None]) / range_db, 0.0, 1.0).astype(np.float32)
    if target_length > 0:
        out = np.zeros((target_length, bands), dtype=np.float32)
        k = min(target_length, steps)
        out[:k] = f[:k]
        f = out
    return f


def from_model(samples, rate, pre):
    """A model file's preprocessing (its JSON dict) applied to samples already at its rate."""
    lm = pre["logMel"]
    if rate != pre["sampleRateHz"]:
        raise ValueError("resample to %d Hz first" % pre["sampleRateHz"])
    return log_mel(samples, rate, pre["downsample"], lm["fftSize"], lm["bands"], lm["lowHz"],
                   lm["highHz"], lm["rangeDb"], pre.get("normalise", False),
                   pre.get("targetLength", 0))
