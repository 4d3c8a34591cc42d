#!/usr/bin/python3
"""Trains the paper's S4D "zero"/"one" model (IMSSA §II-III) exactly as xbar's C++ forward pass
computes it, with quantization-aware training at a fixed dynamic range (eq. 3), and exports it
as an xbar model file (xbar.v1.Model JSON, like models/example-model.json).

    /usr/bin/python3 models/train.py --bits 2 --out /tmp/zero-one-2bit.json
    /usr/bin/python3 models/train.py --all          # float, 5-bit, 2-bit -> models/reference/
                                                    #   + models/reference/golden.json
    /usr/bin/python3 models/train.py --golden-only  # golden.json from the committed models
    /usr/bin/python3 models/train.py --evaluate models/reference/zero-one-2bit.json

The model (compute/model/src/model.cc, compute/kernel/src/kernel.cc):
  u (871 steps: 48 kHz audio block-averaged by 64, peak-normalised, padded; models/data.py)
  -> encoder Linear(1 -> 3) -> 3 S4D kernels, N = 14 complex modes each, B = 1, D = 0 (the
     paper has no skip): ZOH A_bar = exp(dt A), C' = C (exp(dt A) - 1) / A,
     y_t = 2 Re(C' . x_t), x_t = A_bar x_{t-1} + z_t
  -> GELU (exact) -> mixing Linear(3 -> 6) + GLU -> mean over all 871 steps
  -> decoder Linear(3 -> 2) -> softmax.
Quantization (kernel.cc quantize, eq. 3 clamped): q(x) = clamp(round(x n / f), -n, n) f / n,
n = 2^(bits-1) - 1, round halves away from zero, applied to Re and Im of A (f = fScaleA) and
of C (f = fScaleC) BEFORE the ZOH; dt stays full precision. Straight-through estimator: the
forward pass uses q(x), the gradient is that of x. Re(A) is kept at least one level below zero
(|A_bar| < 1 is required by the C++ validator). The exported file carries the quantized A and
C (q is idempotent, so the C++ compiler's own quantization leaves them unchanged) and the bits.

Training is on the CPU (1 torch thread by default, --threads) in float32 with FFT convolutions; the
accuracies reported are those of the exported file evaluated in float64 exactly as the C++
software path does (models/refmodel.py; tests/golden_model_test.cc checks C++ against it).
"""

import argparse
import json
import math
import os
import re
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import data  # noqa: E402
import frontend  # noqa: E402
import hwloop  # noqa: E402
import refmodel  # noqa: E402

H, N = 3, 14
# The front end (issue 18; models/frontend.py, docs/models.md).
FRONT_END = frontend.DEFAULT
T = FRONT_END["targetLength"]
# The head's width M (mixing Linear(H -> 2M) + GLU, decoder Linear(M -> 2)): the paper's M = H = 3
# reached 78 % on the held-out voices, M = 16 99 % (models/README.md). Host arithmetic only.
HEAD_WIDTH = 16
BANDS = FRONT_END["logMel"]["bands"]
CLASSES = ["zero", "one"]
REFERENCE = os.path.join(HERE, "reference")

# name -> (bits, fScaleA, fScaleC). f = 1: the paper's fixed dynamic range for 2-bit A (Fig. 2);
# the same range for C and for 5 bits (the encoder absorbs C's scale).
VARIANTS = {"float": (0, 1.0, 1.0), "5bit": (5, 1.0, 1.0), "2bit": (2, 1.0, 1.0),
            "5bit-learned": (5, 1.0, 1.0), "2bit-learned": (2, 1.0, 1.0)}


def num(x):
    return float(x) + 0.0  # no "-0.0" in the files


def round_half_away(v):
    return torch.sign(v) * torch.floor(torch.abs(v) + 0.5)


def levels(x, bits, f, max_level=None):
    """Integer quantization levels of x (float32, as in the forward pass)."""
    n = 2 ** (bits - 1) - 1
    r = torch.clamp(round_half_away(x * (n / f)), -n, n)
    if max_level is not None:
        r = torch.clamp(r, max=max_level)
    return r


def ste(x, bits, f, max_level=None):
    if bits <= 0:
        return x
    n = 2 ** (bits - 1) - 1
    q = levels(x, bits, f, max_level) * (f / n)
    return x + (q - x).detach()


def ste_table(x, table):
    """x to the nearest level of the sorted table (the lower one on a tie, as kernel.cc
    nearest_level), with the straight-through gradient."""
    q = table[(x.detach()[..., None] - table).abs().argmin(dim=-1)]
    return x + (q - x).detach()


def lloyd_(table, x, max_level=None):
    """One k-means (Lloyd) step on a level table: each level moves to the mean of the latent
    values nearest to it (a level no value is nearest to stays); then sorted, below max_level,
    and kept distinct (the C++ validator needs strictly increasing tables)."""
    with torch.no_grad():
        v = x.detach().reshape(-1)
        idx = (v[:, None] - table).abs().argmin(dim=1)
        for k in range(len(table)):
            sel = v[idx == k]
            if len(sel) > 0:
                table[k] = sel.mean()
        table.copy_(torch.sort(table).values)
        if max_level is not None:
            table.clamp_(max=max_level)
        for k in range(len(table) - 2, -1, -1):  # distinct, from the top down
            table[k] = torch.minimum(table[k], table[k + 1] - 1e-4)


def gelu(v):
    """GELU (the erf form, as model.cc computes it), written out. Not F.gelu: the float32
    backward of F.gelu in Debian 12's torch (1.13) reads its incoming gradient as if it were
    contiguous, and einsum's backward (the head's mixing layer) hands it a transposed one, so
    the gradient it returns is partly garbage, now and then inf or NaN: the "non-finite
    gradients" board-aware training used to skip, and a silent error in every gradient before
    (models/test_train.py shows both)."""
    return 0.5 * v * (1.0 + torch.erf(v * 0.7071067811865476))


def spread_log_dt(lo, hi, g):
    """log dt of the H kernels: log-spaced over [lo, hi] (one slow, one fast kernel; random
    dt's often start all kernels on the same band and training stalls there), jittered by
    +-20 %."""
    base = torch.linspace(math.log(lo), math.log(hi), H)
    return base + (torch.rand(H, generator=g) - 0.5) * 0.4


class S4DModel(torch.nn.Module):
    def __init__(self, bits, f_a, f_c, seed, inputs=BANDS, width=None, learned=False):
        super().__init__()
        self.bits, self.f_a, self.f_c = bits, f_a, f_c
        # Learned levels (--levels learned): one table per part, as many levels as eq. 3 has
        # (Re(A): its n negative levels), started on eq. 3's grid and moved by a k-means step
        # after every epoch (update_levels_); exported as quantization.levels* (kernel_set.proto).
        self.tables = None
        if learned and bits > 0:
            n = 2 ** (bits - 1) - 1
            self.tables = {
                "a_re": torch.tensor([-f_a * k / n for k in range(n, 0, -1)]),
                "a_im": torch.tensor([f_a * k / n for k in range(-n, n + 1)]),
                "c": torch.tensor([f_c * k / n for k in range(-n, n + 1)]),
            }
        self.width = width or HEAD_WIDTH
        g = torch.Generator().manual_seed(seed)
        self.enc = torch.nn.Linear(inputs, H)
        self.mix = torch.nn.Linear(H, 2 * self.width)
        self.dec = torch.nn.Linear(self.width, len(CLASSES))
        for lin in (self.enc, self.mix, self.dec):
            bound = 1 / math.sqrt(lin.in_features)
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=g)
                lin.bias.uniform_(-bound, bound, generator=g)
        if bits == 0:
            # S4D-Lin: A = -1/2 + i pi n; dt spread over [0.01, 0.5] (the band of each kernel
            # is about [0, 13 pi dt] rad/step; a step is 10 ms).
            a_re = torch.full((H, N), -0.5)
            a_im = math.pi * torch.arange(N).float().repeat(H, 1)
            log_dt = spread_log_dt(0.01, 0.5, g)
            c = torch.randn(H, N, 2, generator=g) * math.sqrt(0.5)
        else:
            # Inside the fixed range: Re(A) in [-f, -f/2], Im(A) spread over [0, f], C in range;
            # dt spread over [0.1, 1.5] (|A| <= sqrt(2) f: the kernels start on different bands).
            a_re = -f_a * (0.5 + 0.5 * torch.rand(H, N, generator=g))
            a_im = f_a * torch.linspace(0, 1, N).repeat(H, 1)
            log_dt = spread_log_dt(0.1, 1.5, g)
            c = (torch.rand(H, N, 2, generator=g) * 2 - 1) * f_c
        self.a_re = torch.nn.Parameter(a_re)
        self.a_im = torch.nn.Parameter(a_im)
        self.log_dt = torch.nn.Parameter(log_dt)
        self.c = torch.nn.Parameter(c)

    def clamp_(self):
        """Keeps the latent parameters where the quantizer (and |A_bar| < 1) needs them."""
        with torch.no_grad():
            if self.bits > 0:
                n = 2 ** (self.bits - 1) - 1
                self.a_re.clamp_(-self.f_a, -0.6 * self.f_a / n)
                self.a_im.clamp_(-self.f_a, self.f_a)
                self.c.clamp_(-self.f_c, self.f_c)
            else:
                self.a_re.clamp_(max=-1e-4)
            # dt <= 1 (dt |Re A| <= 1 for the slowest mode, as |Re A| <= f = 1): a kernel
            # whose A_bar is near 0 has no memory and is badly conditioned on the board, whose
            # input weight is max |A_bar| (compile's b_weight): its input codes u / (b s) then
            # need a state range of input_max / b, and its states get a code or two
            # (docs/models.md, "Training that sees the board").
            self.log_dt.clamp_(-12, 0)

    def update_levels_(self):
        """One k-means step of every level table on the latent parameters (learned levels)."""
        if self.tables is not None:
            lloyd_(self.tables["a_re"], self.a_re, max_level=-1e-3)  # Re(A) < 0: stable
            lloyd_(self.tables["a_im"], self.a_im)
            lloyd_(self.tables["c"], self.c)

    def quantized(self):
        """(A, C) as the forward pass uses them (quantized with the STE)."""
        if self.tables is not None:
            t = self.tables
            return (torch.complex(ste_table(self.a_re, t["a_re"]), ste_table(self.a_im, t["a_im"])),
                    torch.complex(ste_table(self.c[..., 0], t["c"]),
                                  ste_table(self.c[..., 1], t["c"])))
        a_re = ste(self.a_re, self.bits, self.f_a, max_level=-1)
        a_im = ste(self.a_im, self.bits, self.f_a)
        c_re = ste(self.c[..., 0], self.bits, self.f_c)
        c_im = ste(self.c[..., 1], self.bits, self.f_c)
        return torch.complex(a_re, a_im), torch.complex(c_re, c_im)

    def discrete(self):
        """(A_bar, C_bar), (H, N) complex: the ZOH of the quantized A, C (kernel.cc)."""
        a, c = self.quantized()
        dta = torch.exp(self.log_dt)[:, None] * a  # (H, N)
        return torch.exp(dta), c * (torch.exp(dta) - 1) / a

    def conv_kernel(self, length):
        a, c = self.quantized()
        dta = torch.exp(self.log_dt)[:, None] * a  # (H, N)
        cbar = c * (torch.exp(dta) - 1) / a
        l = torch.arange(length, dtype=torch.float32)
        vander = torch.exp(dta[..., None] * l)  # (H, N, L)
        return 2 * torch.einsum("hn,hnl->hl", cbar, vander).real

    def encode(self, u):
        """u: (B, T, bands) -> the kernels' inputs z (B, H, T) (model.cc encode)."""
        return torch.einsum("btf,hf->bht", u, self.enc.weight) + self.enc.bias[None, :, None]

    def kernel_outputs(self, z):
        """The kernels' float recurrence (the software path), by FFT convolution."""
        t_len = z.shape[-1]
        k = self.conv_kernel(t_len)
        nfft = 2 * t_len
        y = torch.fft.irfft(torch.fft.rfft(z, n=nfft) * torch.fft.rfft(k, n=nfft), n=nfft)
        return y[..., :t_len]

    def head(self, y):
        """The kernels' outputs (B, H, T) -> logits (B, classes)."""
        g = gelu(y)
        mix = torch.einsum("oh,bht->bot", self.mix.weight, g) + self.mix.bias[None, :, None]
        act = mix[:, :self.width] * torch.sigmoid(mix[:, self.width:])
        return self.dec(act.mean(dim=2))

    def forward(self, u):
        """u: (B, T) -> logits (B, classes)."""
        return self.head(self.kernel_outputs(self.encode(u)))

    def forward_board(self, u, scales, sigma_uS=0.0, generator=None, adc=True):
        """u: (B, T) -> logits as the board's loop computes the kernels (hwloop), with the
        10-bit ADC at the planned gain (adc=False: an ideal converter); with sigma_uS > 0, on
        weights with that programming error (a new draw per clip)."""
        a_bar, c_bar = self.discrete()
        noise = (hwloop.weight_noise(a_bar, c_bar, scales, sigma_uS, u.shape[0], generator)
                 if sigma_uS > 0 else None)
        conv = hwloop.Adc(a_bar, c_bar, scales.beta) if adc else None
        return self.head(hwloop.loop_outputs(a_bar, c_bar, self.encode(u), scales, noise, conv))

    def scales(self, u):
        """The loop's scales for the current parameters, measured on clips u (no gradient)."""
        with torch.no_grad():
            a_bar, _ = self.discrete()
            return hwloop.LoopScales(a_bar, self.encode(u))

    def load_json(self, js):
        """Sets the parameters from a model file this script wrote (the quantized values are
        fixed points of the quantizer, so training resumes where the file stands)."""
        with torch.no_grad():
            for h, k in enumerate(js["kernelSet"]["kernels"]):
                c = k["continuous"]
                self.a_re[h] = torch.tensor([e.get("re", 0.0) for e in c["a"]])
                self.a_im[h] = torch.tensor([e.get("im", 0.0) for e in c["a"]])
                self.c[h, :, 0] = torch.tensor([e.get("re", 0.0) for e in c["c"]])
                self.c[h, :, 1] = torch.tensor([e.get("im", 0.0) for e in c["c"]])
                self.log_dt[h] = float(c["logDt"])
                q = k.get("quantization", {})
                if "levelsARe" in q:
                    self.tables = {"a_re": torch.tensor(q["levelsARe"]),
                                   "a_im": torch.tensor(q["levelsAIm"]),
                                   "c": torch.tensor(q["levelsC"])}
            for lin, key in ((self.enc, "encoder"), (self.mix, "mixing"), (self.dec, "decoder")):
                lin.weight.copy_(torch.tensor(js[key]["weight"]).reshape(lin.weight.shape))
                lin.bias.copy_(torch.tensor(js[key]["bias"]))

    def to_json(self, name):
        """The xbar.v1.Model JSON (protobuf JSON mapping) of the model as trained."""
        def lin(l):
            return {"inputs": l.in_features, "outputs": l.out_features,
                    "weight": [float(v) for v in l.weight.detach().reshape(-1)],
                    "bias": [float(v) for v in l.bias.detach()]}

        tables = None
        with torch.no_grad():
            if self.tables is not None:
                # The levels as float64 JSON numbers, and every value one of them exactly (what
                # kernel.cc nearest_level yields, and a fixed point of it).
                tables = {k: [float(v) for v in t] for k, t in self.tables.items()}

                def pick(x, key):
                    t = torch.tensor(tables[key], dtype=torch.float64)
                    return t[(x.double()[..., None] - t).abs().argmin(dim=-1)]

                a_re, a_im = pick(self.a_re, "a_re"), pick(self.a_im, "a_im")
                c_re, c_im = pick(self.c[..., 0], "c"), pick(self.c[..., 1], "c")
            elif self.bits > 0:
                n = 2 ** (self.bits - 1) - 1
                # The values exported are level * f / n in float64: what the C++ quantizer
                # yields, and a fixed point of it.
                a_re = levels(self.a_re, self.bits, self.f_a, -1).double() * self.f_a / n
                a_im = levels(self.a_im, self.bits, self.f_a).double() * self.f_a / n
                c_re = levels(self.c[..., 0], self.bits, self.f_c).double() * self.f_c / n
                c_im = levels(self.c[..., 1], self.bits, self.f_c).double() * self.f_c / n
            else:
                a_re, a_im = self.a_re.double(), self.a_im.double()
                c_re, c_im = self.c[..., 0].double(), self.c[..., 1].double()
        kernels = []
        for h in range(H):
            k = {"name": "%s-k%d" % (name, h),
                 "continuous": {
                     "a": [{"re": num(a_re[h, j]), "im": num(a_im[h, j])} for j in range(N)],
                     "logDt": float(self.log_dt[h]),
                     "c": [{"re": num(c_re[h, j]), "im": num(c_im[h, j])} for j in range(N)]}}
            if self.bits > 0:
                k["quantization"] = {"bits": self.bits, "fScaleA": self.f_a, "fScaleC": self.f_c}
            if tables is not None:
                k["quantization"].update({"levelsARe": tables["a_re"],
                                          "levelsAIm": tables["a_im"], "levelsC": tables["c"]})
            kernels.append(k)
        return {
            "name": name,
            "preprocessing": json.loads(json.dumps(FRONT_END)),
            "encoder": lin(self.enc),
            "kernelSet": {"kernels": kernels, "window": {"gMinUS": 7.0, "gMaxUS": 200.0}},
            "mixing": lin(self.mix),
            "glu": True,
            "decoder": lin(self.dec),
            "classes": CLASSES,
        }


def init_encoder_from_data(model, u, target_std=1.5):
    """Data-dependent init: the encoder's random weights are scaled so that every kernel's
    output has a standard deviation of `target_std` over the clips `u` (bias 0), so GELU starts
    in its nonlinear range (the model has no normalisation layer)."""
    with torch.no_grad():
        model.enc.bias.zero_()
        y = model.kernel_outputs(model.encode(u))
        std = y.std(dim=(0, 2)).clamp(min=1e-6)
        model.enc.weight.mul_((target_std / std)[:, None])


class Run:
    """One training run: a model, its optimiser and its one-cycle schedule over `epochs`."""

    def __init__(self, variant, seed, u, y, epochs, batch, lr):
        bits, f_a, f_c = VARIANTS[variant]
        torch.manual_seed(seed)
        self.model = S4DModel(bits, f_a, f_c, seed, learned=variant.endswith("-learned"))
        self.model.clamp_()
        init_encoder_from_data(self.model, u[:256])
        m = self.model
        kernel_params = [m.a_re, m.a_im, m.log_dt, m.c]
        other = [p for n_, p in m.named_parameters() if n_.split(".")[0] in ("enc", "mix", "dec")]
        # The kernel parameters at half the rate (S4 trains A and dt slower than the rest).
        self.opt = torch.optim.Adam([{"params": other, "lr": lr},
                                     {"params": kernel_params, "lr": lr * 0.5}])
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=[lr, lr * 0.5], pct_start=0.1, epochs=epochs,
            steps_per_epoch=math.ceil(len(u) / batch))
        self.u, self.y, self.batch, self.epoch = u, y, batch, 0
        self.rng = torch.Generator().manual_seed(seed + 1)

    def step_epoch(self):
        perm = torch.randperm(len(self.u), generator=self.rng)
        total, correct = 0.0, 0
        for i in range(0, len(self.u), self.batch):
            idx = perm[i:i + self.batch]
            logits = self.model(self.u[idx])
            loss = F.cross_entropy(logits, self.y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.sched.step()
            self.model.clamp_()
            total += float(loss) * len(idx)
            correct += int((logits.argmax(1) == self.y[idx]).sum())
        self.model.update_levels_()
        self.epoch += 1
        return total / len(self.u), correct / len(self.u)

    def evaluate(self, u, y):
        with torch.no_grad():
            logits = self.model(u)
            return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def validation_split(ds, seed, fraction=0.2):
    """Training clips -> (fit, validation) masks, speaker-disjoint, from the seed."""
    speakers = sorted({c["speaker"] for c in ds["clips_train"]})
    order = np.random.default_rng([seed, 11]).permutation(len(speakers))
    held = {speakers[i] for i in order[:max(1, int(round(fraction * len(speakers))))]}
    val = np.array([c["speaker"] in held for c in ds["clips_train"]])
    return ~val, val


def train(variant, ds, seed, epochs, batch, lr, candidates=4, probe_epochs=20, log=print):
    """`candidates` runs (seeds seed*100 + k) train `probe_epochs` epochs on the fit part of
    the training set; the one with the lowest loss on the validation speakers (held-out
    training speakers, never the test set) trains on to `epochs`. Training an S4D layer this
    small lands in poor minima from some initialisations (which band each kernel takes); the
    restarts make the result depend much less on the seed."""
    fit, val = validation_split(ds, seed)
    u_all, y_all = torch.from_numpy(ds["u_train"]), torch.from_numpy(ds["y_train"])
    u_fit, y_fit = u_all[torch.from_numpy(fit)], y_all[torch.from_numpy(fit)]
    u_val, y_val = u_all[torch.from_numpy(val)], y_all[torch.from_numpy(val)]
    t0 = time.time()
    best = None
    for k in range(candidates):
        run = Run(variant, seed * 100 + k, u_fit, y_fit, epochs, batch, lr)
        for _ in range(probe_epochs):
            run.step_epoch()
        vloss, vacc = run.evaluate(u_val, y_val)
        log("  %s candidate %d: validation loss %.4f acc %.4f after %d epochs (%.0f s)" % (
            variant, k, vloss, vacc, probe_epochs, time.time() - t0))
        if not math.isfinite(vloss):
            vloss = math.inf  # a diverged candidate is never the best
        if best is None or vloss < best[0]:
            best = (vloss, k, run)
    run = best[2]
    while run.epoch < epochs:
        loss, acc = run.step_epoch()
        if run.epoch % 20 == 0 or run.epoch == epochs:
            vloss, vacc = run.evaluate(u_val, y_val)
            log("  %s candidate %d epoch %3d  loss %.4f  fit acc %.4f  validation acc %.4f  "
                "(%.0f s)" % (variant, best[1], run.epoch, loss, acc, vacc, time.time() - t0))
    run.validation_accuracy = run.evaluate(u_val, y_val)[1]
    run.candidate = best[1]
    return run, time.time() - t0


def finetune_board(model, ds, seed, epochs, batch, lr, consistency=1.0, sigma_uS=0.0,
                   adc=True, log=print):
    """Training that sees the board (issue 17, item 2): starting from a trained model, every
    batch runs both the software path (the float recurrence) and the board's loop arithmetic
    (hwloop.loop_outputs, straight-through gradients through every rounding), and the loss is
    CE(board) + CE(software) + consistency * mean((board - software logits)^2): the board's
    answer is trained to be right and to be the software model's. The loop's scales are
    measured on the fit clips at the start of every epoch (they follow the parameters), as the
    exported file then carries them. With sigma_uS > 0 the board path's weights carry a
    programming error of that size, a new draw per clip (hwloop.weight_noise), so that what is
    learnt holds on chips whose devices sit a little off their targets. With adc (the default)
    the board path rounds every bit plane's column currents as the 10-bit ADC does at the gain
    xbard's plan picks (hwloop.Adc): on the 5-bit reference that rounding, not the 8-bit state,
    is most of the board's error. Returns (model, scales, seconds)."""
    fit, val = validation_split(ds, seed)
    u_all, y_all = torch.from_numpy(ds["u_train"]), torch.from_numpy(ds["y_train"])
    u_fit, y_fit = u_all[torch.from_numpy(fit)], y_all[torch.from_numpy(fit)]
    u_val, y_val = u_all[torch.from_numpy(val)], y_all[torch.from_numpy(val)]
    kernel_params = [model.a_re, model.a_im, model.log_dt, model.c]
    other = [p for n_, p in model.named_parameters() if n_.split(".")[0] in ("enc", "mix", "dec")]
    opt = torch.optim.Adam([{"params": other, "lr": lr}, {"params": kernel_params, "lr": lr * 0.5}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * math.ceil(len(u_fit) / batch))
    rng = torch.Generator().manual_seed(seed + 7)
    t0 = time.time()

    def fidelity(u, y, scales):
        with torch.no_grad():
            lb, ls = model.forward_board(u, scales, adc=adc), model(u)
            return {"board_acc": float((lb.argmax(1) == y).float().mean()),
                    "software_acc": float((ls.argmax(1) == y).float().mean()),
                    "agreement": float((lb.argmax(1) == ls.argmax(1)).float().mean()),
                    "logit_nrmse": float(((lb - ls) ** 2).sum().sqrt() / (ls ** 2).sum().sqrt())}

    scales = model.scales(u_fit)
    log("  board-aware start: validation %s" % fidelity(u_val, y_val, scales))
    skipped = 0
    for epoch in range(1, epochs + 1):
        scales = model.scales(u_fit)
        perm = torch.randperm(len(u_fit), generator=rng)
        total = 0.0
        for i in range(0, len(u_fit), batch):
            idx = perm[i:i + batch]
            lb = model.forward_board(u_fit[idx], scales, sigma_uS, rng, adc)
            ls = model(u_fit[idx])
            loss = (F.cross_entropy(lb, y_fit[idx]) + F.cross_entropy(ls, y_fit[idx])
                    + consistency * ((lb - ls) ** 2).mean())
            opt.zero_grad()
            loss.backward()
            # Backpropagation through 871 rounded steps: the gradient norm is clipped, and a
            # step whose gradient is not finite (seen now and then) is skipped, not taken.
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if torch.isfinite(norm):
                opt.step()
            else:
                skipped += 1
            sched.step()
            model.clamp_()
            total += float(loss) * len(idx)
        if epoch % 5 == 0 or epoch == epochs:
            log("  board-aware epoch %3d  loss %.4f  validation %s  skipped %d  (%.0f s)" % (
                epoch, total / len(u_fit), fidelity(u_val, y_val, model.scales(u_fit)),
                skipped, time.time() - t0))
    return model, model.scales(u_fit), time.time() - t0


def board_calibration(model, scales, u, fidelity_clips=16, source=""):
    """What a board-aware model file carries besides its weights: each kernel's mode ranges
    (kernel_set.kernels[h].modeRange) and the calibration the loop was trained with
    (state ranges represented exactly by xbard's plan_loop, the ranges met, the loop
    arithmetic's output NRMSE on the clips `u`) plus `fidelity_clips` of them, evenly spaced,
    for DeployModel's fidelity check. The same definitions as `xbarctl calibrate`
    (compute/model/src/model.cc calibrate, measure_mode_ranges) but the state range is the one
    training used (1.1 x the largest state), not re-chosen."""
    with torch.no_grad():
        z = model.encode(u)
        a_bar, c_bar = model.discrete()
        soft = torch.cat([model.kernel_outputs(z[i:i + 64]) for i in range(0, len(u), 64)])
        adc = hwloop.Adc(a_bar, c_bar, scales.beta)
        board = torch.cat([hwloop.loop_outputs(a_bar, c_bar, z[i:i + 64], scales, adc=adc)
                           for i in range(0, len(u), 64)])
    least = scales.input_max * scales.beta.amax(dim=1)
    kernels = []
    for h in range(H):
        err = float(((board[:, h] - soft[:, h]) ** 2).sum().sqrt()
                    / (soft[:, h] ** 2).sum().sqrt().clamp(min=1e-30))
        kernels.append({"stateMax": float(max(scales.state_max[h], least[h])),
                        "outputMax": float(soft[:, h].abs().max()),
                        "inputMax": float(scales.input_max[h]),
                        "stateRange": float(scales.state_range[h]),
                        "outputNrmse": err})
    keep = [int(i * len(u) / fidelity_clips) for i in range(min(fidelity_clips, len(u)))]
    return ([[float(v) for v in scales.mode_range[h]] for h in range(H)],
            {"kernels": kernels, "clips": len(u), "source": source[:256],
             "fidelityClips": [{"values": [float("%.6g" % v) for v in u[i].reshape(-1)]}
                               for i in keep]})


def breakdown(m, ds):
    """Accuracy of a refmodel on the test and held-out splits, overall and per recording
    condition (generated set): {name: (accuracy, clips)}."""
    out = {}
    for split in ("test", "heldout"):
        u, y, cs = ds.get("u_" + split), ds.get("y_" + split), ds.get("clips_" + split, [])
        if u is None or not len(u):
            continue
        logits, _ = refmodel.forward(m, u)
        ok = logits.argmax(1) == y
        out[split] = (float(ok.mean()), int(ok.size))
        if not cs or "capture" not in cs[0]:
            continue
        groups = {}
        for key in ("synth", "capture", "noise"):
            for v in sorted({c[key] for c in cs}):
                groups["%s=%s" % (key, v)] = [c[key] == v for c in cs]
        groups["snr<15dB"] = [c["snr_db"] is not None and c["snr_db"] < 15 for c in cs]
        groups["reverb"] = [bool(c["rt60_s"]) for c in cs]
        groups["clean (no noise, no reverb)"] = [c["snr_db"] is None and not c["rt60_s"]
                                                 for c in cs]
        for name, sel in groups.items():
            sel = np.array(sel)
            if sel.any():
                out["%s %s" % (split, name)] = (float(ok[sel].mean()), int(sel.sum()))
    return out


def torch_logits(model, u):
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(u, dtype=np.float32))).double().numpy()


def golden_split(ds):
    """The split golden clips come from: the held-out voices when the set has them."""
    return "heldout" if len(ds.get("u_heldout", [])) else "test"


def golden_clips(ds, count=5):
    """`count` clips of golden_split(), classes alternating, recorded at the model's rate (so
    that C++ reads the WAV without resampling and gives the same steps), speakers as varied as
    the split allows (deterministic)."""
    split = golden_split(ds)
    picked, speakers = [], []
    cs = ds["clips_" + split]
    for fresh_only in (True, False):
        for i, c in enumerate(cs):
            if i in picked or c["label"] != len(picked) % 2:
                continue
            if c.get("rate_hz", FRONT_END["sampleRateHz"]) != FRONT_END["sampleRateHz"]:
                continue
            if fresh_only and c["speaker"] in speakers[-2:]:
                continue
            picked.append(i)
            speakers.append(c["speaker"])
            if len(picked) == count:
                return picked
    return picked


def write_golden(ds, models, torch_models=None, wav_clips=2):
    """golden.json: the clips' steps, and per model the float64 logits/probabilities."""
    idx = golden_clips(ds)
    split = golden_split(ds)
    clip_dir = os.path.join(REFERENCE, "clips")
    os.makedirs(clip_dir, exist_ok=True)
    clips = []
    for j, i in enumerate(idx):
        c = ds["clips_" + split][i]
        entry = {"id": os.path.basename(c["file"]).rsplit(".", 1)[0], "label": int(c["label"]),
                 "word": c["word"], "speaker": c["speaker"],
                 "voice": c.get("voice", ""), "split": split,
                 "steps": [float(v) for v in ds["u_" + split][i].reshape(-1)]}
        if j < wav_clips:
            dst = os.path.join(clip_dir, c["word"] + ".wav")  # zero.wav, one.wav
            shutil.copyfile(c["path"], dst)
            entry["wav"] = os.path.relpath(dst, REFERENCE)
        clips.append(entry)
    u = np.stack([ds["u_" + split][i] for i in idx])
    out = {
        "about": "Golden vectors of the reference models (models/train.py). steps: the "
                 "preprocessed input (steps x bands float32 values, step-major; the wav, when "
                 "given, preprocesses to them). logits/probabilities: the model file evaluated in float64 exactly as "
                 "the C++ software path computes it (models/refmodel.py); torch_logits: the "
                 "float32 training graph.",
        "clips": clips,
        "models": {},
    }
    for name, path in models.items():
        m = refmodel.load(path)
        logits, probs = refmodel.forward(m, u)
        entry = {"file": os.path.basename(path),
                 "logits": logits.tolist(), "probabilities": probs.tolist(),
                 "labels": [int(v) for v in logits.argmax(1)]}
        if torch_models and name in torch_models:
            entry["torch_logits"] = torch_logits(torch_models[name], u).tolist()
        out["models"][name] = entry
    with open(os.path.join(REFERENCE, "golden.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    return out


def write_demo_clips(ds, per_word=4):
    """Clips of the held-out voices (never trained on) at the model's rate for the demo and
    for users to try: models/reference/clips/heldout/<voice>_<word>_<n>.wav, per voice a
    "zero" and a "one" (the first of each in the manifest's order), plus a README line each."""
    if not len(ds.get("u_heldout", [])):
        return []
    out_dir = os.path.join(REFERENCE, "clips", "heldout")
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    rate = FRONT_END["sampleRateHz"]
    written = []
    for voice in sorted({c["voice"] for c in ds["clips_heldout"]}):
        for label, word in enumerate(CLASSES):
            cs = [c for c in ds["clips_heldout"] if c["voice"] == voice and c["label"] == label
                  and c.get("rate_hz", rate) == rate]
            for n, c in enumerate(cs[:per_word]):
                name = "%s_%s_%d.wav" % (voice, word, n)
                shutil.copyfile(c["path"], os.path.join(out_dir, name))
                written.append({"file": name, "word": word, "voice": voice,
                                "synth": c.get("synth", ""), "capture": c["capture"],
                                "noise": c["noise"], "snr_db": c["snr_db"],
                                "rt60_s": c["rt60_s"]})
    with open(os.path.join(out_dir, "clips.json"), "w") as f:
        json.dump({"about": "Clips of voices no reference model was trained on (the held-out "
                            "synthesizer of models/data.py), as generated: voice, capture, "
                            "noise and room per clip.", "clips": written}, f, indent=1)
        f.write("\n")
    return written


def write_model(js, path):
    """The model file, indented, with every list of plain numbers on one line (a fidelity
    clip is 871 of them)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = json.dumps(js, indent=1)
    text = re.sub(r"\[\s*([-+0-9.eE]+(?:,\s*[-+0-9.eE]+)*)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
    with open(path, "w") as f:
        f.write(text + "\n")


def main():
    ap = argparse.ArgumentParser(description="Train the S4D zero/one model (QAT) for xbar.")
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "voices"),
                    help="generated set (models/data.py generate) or a corpus models/corpora.py "
                         "reads (HD, {digit}_{speaker}_{index}.wav, labelled folders)")
    ap.add_argument("--languages", default="english", help="HD only: english[,german]")
    ap.add_argument("--bits", choices=["0", "2", "5"], help="train one variant (0 = float)")
    ap.add_argument("--levels", choices=["uniform", "learned"], default="uniform",
                    help="with --bits 2 or 5: eq. 3's uniform levels, or level tables learned "
                         "by k-means during training (quantization.levels*)")
    ap.add_argument("--out", help="model file for --bits")
    ap.add_argument("--all", action="store_true",
                    help="float, 5-bit, 2-bit into models/reference/ plus golden.json")
    ap.add_argument("--golden-only", action="store_true")
    ap.add_argument("--evaluate", nargs="*", help="model files: accuracy on the test split")
    ap.add_argument("--eval-data", action="append", default=[],
                    help="with --evaluate: also every clip of this corpus (a folder "
                         "models/corpora.py reads: HD, {digit}_{speaker}_{index}.wav, or "
                         "labelled files), e.g. recordings no one trained on")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=4, help="restarts, best on validation")
    ap.add_argument("--probe-epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--board-aware", action="store_true",
                    help="then fine-tune with the board's loop arithmetic in the forward pass "
                         "(issue 17) and export the loop's scales with the model")
    ap.add_argument("--from", dest="start_from",
                    help="with --bits --board-aware: start from this model file instead of "
                         "training from scratch")
    ap.add_argument("--board-epochs", type=int, default=15)
    ap.add_argument("--board-lr", type=float, default=0.001)
    ap.add_argument("--consistency", type=float, default=3.0,
                    help="weight of the board-vs-software logit MSE in the board-aware loss")
    ap.add_argument("--ideal-adc", action="store_true",
                    help="board-aware: train without the ADC's rounding (an ideal converter)")
    ap.add_argument("--weight-noise-us", type=float, default=0.0,
                    help="board-aware: programming error of every device during training, uS")
    ap.add_argument("--report", help="also write the run's report (JSON) here")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: fastest on a shared 2-core machine)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    ds = data.load_dataset(args.data, tuple(args.languages.split(",")))
    print("data: %d train, %d test, %d held-out clips (%.0f s)" % (
        len(ds["u_train"]), len(ds["u_test"]), len(ds.get("u_heldout", [])), time.time() - t0))
    ref_paths = {v: os.path.join(REFERENCE, "zero-one-%s.json" % v)
                 for v in ("2bit", "5bit", "float")}

    if args.evaluate is not None:
        for p in args.evaluate or ref_paths.values():
            m = refmodel.load(p)
            print("%s: train accuracy %.4f" % (
                p, refmodel.accuracy(m, ds["u_train"], ds["y_train"])))
            for name, (acc, count) in breakdown(m, ds).items():
                print("  %-36s %.4f  (%d clips)" % (name, acc, count))
            for extra in args.eval_data:
                ex = data.load_dataset(extra, tuple(args.languages.split(",")),
                                       pre=m["json"]["preprocessing"])
                u = np.concatenate([ex["u_train"], ex["u_test"]])
                y = np.concatenate([ex["y_train"], ex["y_test"]])
                print("  %-36s %.4f  (%d clips)" % (extra, refmodel.accuracy(m, u, y), len(u)))
        return
    if args.golden_only:
        # The float32 training graph of each file too, loaded back into the torch model.
        graphs = {}
        for v, path in ref_paths.items():
            with open(path) as f:
                js = json.load(f)
            bits, f_a, f_c = VARIANTS[v]
            graphs[v] = S4DModel(bits, f_a, f_c, args.seed)
            graphs[v].load_json(js)
        write_golden(ds, ref_paths, graphs)
        write_demo_clips(ds)
        print("wrote", os.path.join(REFERENCE, "golden.json"))
        return

    if args.all:
        todo = [("float", ref_paths["float"]), ("5bit", ref_paths["5bit"]),
                ("2bit", ref_paths["2bit"])]
    elif args.bits:
        v = {"0": "float", "2": "2bit", "5": "5bit"}[args.bits]
        if args.levels == "learned" and v != "float":
            v += "-learned"
        todo = [(v, args.out or ref_paths.get(v, os.path.join(REFERENCE, "zero-one-%s.json" % v)))]
    else:
        ap.error("give --bits, --all, --golden-only or --evaluate")
    trained, summary = {}, {}
    for variant, path in todo:
        lr = args.lr
        if args.start_from:
            bits, f_a, f_c = VARIANTS[variant]
            model = S4DModel(bits, f_a, f_c, args.seed, learned=variant.endswith("-learned"))
            with open(args.start_from) as f:
                model.load_json(json.load(f))
            run = argparse.Namespace(model=model, candidate=None, validation_accuracy=None)
            secs = 0.0
        else:
            run, secs = train(variant, ds, args.seed, args.epochs, args.batch, lr,
                              args.candidates, args.probe_epochs)
            model = run.model
        js = model.to_json("zero-one-%s" % variant)
        board = None
        fit, _ = validation_split(ds, args.seed)
        u_fit = torch.from_numpy(ds["u_train"])[torch.from_numpy(fit)]
        if args.board_aware and variant != "float":
            model, scales, board_secs = finetune_board(model, ds, args.seed, args.board_epochs,
                                                       args.batch, args.board_lr,
                                                       args.consistency, args.weight_noise_us,
                                                       not args.ideal_adc)
            secs += board_secs
            js = model.to_json("zero-one-%s" % variant)
            board = {"epochs": args.board_epochs, "lr": args.board_lr,
                     "consistency": args.consistency, "weight_noise_uS": args.weight_noise_us,
                     "adc": "ideal" if args.ideal_adc else "10-bit at the planned gain"}
        if variant != "float":
            # Every quantized model carries the loop's scales (mode ranges, the state ranges
            # xbard's plan then represents exactly) and fidelity clips, and the report gives
            # what the board's loop arithmetic (hwloop) makes of the test and held-out clips.
            scales = model.scales(u_fit)
            mode_range, cal = board_calibration(
                model, scales, u_fit, source="models/train.py: the fit part of the training "
                                             "split")
            for h, k in enumerate(js["kernelSet"]["kernels"]):
                k["modeRange"] = mode_range[h]
            js["calibration"] = cal
            board = board or {}
            for split in ("test", "heldout"):
                if not len(ds.get("u_" + split, [])):
                    continue
                with torch.no_grad():
                    ut, yt = torch.from_numpy(ds["u_" + split]), torch.from_numpy(ds["y_" + split])
                    lb, ls = model.forward_board(ut, scales), model(ut)
                board.update({
                    split + "_accuracy_board_emulated": float((lb.argmax(1) == yt).float().mean()),
                    split + "_agreement_board_emulated":
                        float((lb.argmax(1) == ls.argmax(1)).float().mean()),
                    split + "_logit_nrmse_board_emulated":
                        float(((lb - ls) ** 2).sum().sqrt() / (ls ** 2).sum().sqrt())})
        write_model(js, path)
        m = refmodel.load(js)
        acc = refmodel.accuracy(m, ds["u_test"], ds["y_test"])
        acc_tr = refmodel.accuracy(m, ds["u_train"], ds["y_train"])
        trained[variant] = model
        summary[variant] = {"file": os.path.relpath(path, ROOT), "train_seconds": round(secs, 1),
                            "lr": lr, "candidate": run.candidate,
                            "validation_accuracy": run.validation_accuracy,
                            "test_accuracy": acc, "train_accuracy": acc_tr,
                            "heldout_accuracy": (refmodel.accuracy(m, ds["u_heldout"],
                                                                   ds["y_heldout"])
                                                 if len(ds.get("u_heldout", [])) else None),
                            "test_breakdown": breakdown(m, ds)}
        if board:
            summary[variant]["board_emulated"] = board
        print("%s: %s, trained in %.0f s, test accuracy %.4f (train %.4f)" % (
            variant, path, secs, acc, acc_tr))
    report = {"command": " ".join(["models/train.py"] + sys.argv[1:]), "seed": args.seed,
              "epochs": args.epochs, "batch": args.batch,
              "candidates": args.candidates, "probe_epochs": args.probe_epochs,
              "threads": args.threads, "data": ds.get("about", {}),
              "train_clips": len(ds["u_train"]), "test_clips": len(ds["u_test"]),
              "torch": torch.__version__, "results": summary}
    if args.all:
        write_golden(ds, ref_paths, trained)
        write_demo_clips(ds)
        print("wrote", os.path.join(REFERENCE, "golden.json"))
        with open(os.path.join(REFERENCE, "training.json"), "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
