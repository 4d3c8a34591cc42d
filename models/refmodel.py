"""The xbar model file evaluated in numpy float64 exactly as the C++ software path computes it
(compute/kernel/src/kernel.cc discretize + quantize, compute/kernel/src/golden.cc run_ideal,
compute/model/src/model.cc forward). Used for the golden vectors and the accuracy numbers.

    import refmodel
    m = refmodel.load("models/reference/zero-one-2bit.json")
    logits, probs = refmodel.forward(m, u)   # u: (clips, steps) or (clips, steps, bands)

A model with the log-mel front end (preprocessing.logMel; models/frontend.py) takes `bands`
values per step and its encoder is Linear(bands -> H); older models take one value per step.
"""

import json
import math

import numpy as np


def quantize(x, bits, f):
    """kernel.cc quantize: clamp(std::round(x n / f), -n, n) f / n (halves away from zero)."""
    if bits <= 0:
        return np.asarray(x, dtype=np.float64)
    n = 2.0 ** (bits - 1) - 1
    v = np.asarray(x, dtype=np.float64) * n / f
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r, -n, n) * f / n


def quantize_c(z, bits, f):
    return quantize(z.real, bits, f) + 1j * quantize(z.imag, bits, f)


def nearest_level(x, table):
    """kernel.cc nearest_level: each value to the nearest level of the sorted table (the lower
    one on a tie)."""
    t = np.asarray(table, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    hi = np.clip(np.searchsorted(t, x, side="left"), 0, len(t) - 1)
    lo = np.clip(hi - 1, 0, len(t) - 1)
    return np.where(np.abs(x - t[lo]) <= np.abs(t[hi] - x), t[lo], t[hi])


def quantize_part(x, table, bits, f):
    """One part (Re or Im of A or C): its level table when it has one, else eq. 3."""
    return nearest_level(x, table) if table else quantize(x, bits, f)


def _cplx(lst):
    return np.array([complex(e.get("re", 0.0), e.get("im", 0.0)) for e in lst])


def _linear(d):
    w = np.array(d.get("weight", []), dtype=np.float64).reshape(d["outputs"], d["inputs"])
    b = np.array(d.get("bias", []) or [0.0] * d["outputs"], dtype=np.float64)
    return w, b


def discretize(k):
    """One kernel of the JSON -> (a_bar, c_bar, d) as kernel.cc discretize(spec, true)."""
    q = k.get("quantization", {})
    bits = int(q.get("bits", 0))
    f_a = float(q.get("fScaleA", q.get("f_scale_a", 1.0)))
    f_c = float(q.get("fScaleC", q.get("f_scale_c", 0.0)))
    if "continuous" in k:
        a, c = _cplx(k["continuous"]["a"]), _cplx(k["continuous"]["c"])
    else:
        a, c = _cplx(k["discrete"]["aBar"]), _cplx(k["discrete"]["cBar"])
    if f_c <= 0:
        f_c = max(np.abs(c.real).max(), np.abs(c.imag).max(), 1e-300)
    t_are, t_aim, t_c = (q.get(n, []) for n in ("levelsARe", "levelsAIm", "levelsC"))
    a = quantize_part(a.real, t_are, bits, f_a) + 1j * quantize_part(a.imag, t_aim, bits, f_a)
    c = quantize_part(c.real, t_c, bits, f_c) + 1j * quantize_part(c.imag, t_c, bits, f_c)
    d = float(k.get("d", 0.0))
    if "continuous" not in k:
        return a, c, d
    dt = math.exp(float(k["continuous"].get("logDt", k["continuous"].get("log_dt", 0.0))))
    dta = dt * a
    abar = np.exp(dta)
    ratio = np.where(np.abs(dta) < 1e-8, dt + 0j, (abar - 1.0) / np.where(a == 0, 1, a))
    return abar, c * ratio, d


def load(path_or_dict):
    m = path_or_dict
    if isinstance(m, str):
        with open(m) as f:
            m = json.load(f)
    ks = m["kernelSet"]["kernels"]
    return {
        "json": m,
        "kernels": [discretize(k) for k in ks],
        "encoder": _linear(m["encoder"]),
        "mixing": _linear(m["mixing"]),
        "decoder": _linear(m["decoder"]),
        "glu": bool(m.get("glu", False)),
        "classes": m.get("classes", []),
    }


def run_ideal(a_bar, c_bar, d, z):
    """x_t = a_bar x_{t-1} + z_t, y_t = 2 Re(c_bar . x_t) + d z_t, batched over rows of z."""
    b, t_len = z.shape
    x = np.zeros((b, a_bar.size), dtype=np.complex128)
    y = np.empty((b, t_len))
    for t in range(t_len):
        x = a_bar[None, :] * x + z[:, t:t + 1]
        y[:, t] = 2 * (x * c_bar[None, :]).real.sum(axis=1) + d * z[:, t]
    return y


def channels(m):
    """Values per step of the model's input: the log-mel bands, or 1."""
    lm = m["json"].get("preprocessing", {}).get("logMel")
    return int(lm["bands"]) if lm else 1


def encode(m, u):
    """u: (clips, steps[, channels]) -> the kernels' inputs z (clips, H, steps), model.cc
    encode: z_k[t] = sum_f W[k, f] u[t, f] + b_k."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim == 1:
        u = u[None, :]
    if u.ndim == 2:
        u = u[:, :, None]
    we, be = m["encoder"]
    if u.shape[2] != we.shape[1]:
        raise ValueError("input has %d values per step, the encoder takes %d" % (
            u.shape[2], we.shape[1]))
    return np.einsum("btf,hf->bht", u, we) + be[None, :, None]


def forward(m, u, return_kernel_outputs=False):
    """u: (clips, steps[, channels]) -> (logits, probabilities), model.cc forward in float64."""
    z_all = encode(m, u)
    h = z_all.shape[1]
    ys = []
    for k in range(h):
        ys.append(run_ideal(*m["kernels"][k], z_all[:, k, :]))
    y = np.stack(ys, axis=1)  # (B, H, T)
    g = 0.5 * y * _erfc(-y / math.sqrt(2.0))
    wm, bm = m["mixing"]
    mix = np.einsum("oh,bht->bot", wm, g) + bm[None, :, None]
    half = wm.shape[0] // 2
    act = mix[:, :half] / (1.0 + np.exp(-mix[:, half:])) if m["glu"] else mix
    pooled = act.mean(axis=2)
    wd, bd = m["decoder"]
    logits = pooled @ wd.T + bd
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    if return_kernel_outputs:
        return logits, probs, y
    return logits, probs


def _erfc(x):
    """erfc elementwise in float64 (math.erfc, the C library's, as std::erfc)."""
    flat = np.fromiter((math.erfc(v) for v in x.ravel()), dtype=np.float64, count=x.size)
    return flat.reshape(x.shape)


def accuracy(m, u, y, batch=256):
    correct = 0
    for i in range(0, len(u), batch):
        logits, _ = forward(m, u[i:i + batch])
        correct += int((logits.argmax(axis=1) == y[i:i + batch]).sum())
    return correct / len(u)
