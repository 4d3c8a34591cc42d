"""The board's closed loop in torch, for training that sees the hardware (issue 17, item 2).

What the firmware's loop computes for one S4D kernel (docs/firmware.md §7, kernel::plan_loop and
kernel::run_quantized in compute/kernel/src/loop_plan.cc), with ideal conductances and
converters, differentiable with straight-through gradients through every rounding:

  ranges   r_k   = the largest |Re|, |Im| of mode k's state on the training clips, floored at
                   max_k r_k / 100                           (KernelSpec::mode_range)
  gains    beta_k = min_j r_j / r_k                          (compile's mode gains)
  range    R     = max(1.1 * max_k beta_k r_k, least)        (KernelRange.state_range, exact)
  scale    s     = R / 255                                   (LoopPlan::x_scale)
  input    m_t   = clamp(round(z_t / (b s)), +-255)          (the input tap's row magnitude;
                                                              b = max |Re|,|Im| of A_bar)
  state    n_k   = A_bar_k x_k + b beta_k m_t + e_k          (codes; e: error feedback)
           x_k   = clamp(round(n_k), +-255),  e_k = clamp(n_k - x_k, +-1/2)   (Re and Im)
  output   y_t   = 2 s sum_k Re(C_bar_k / beta_k x_k)        (+ D z_t, D = 0 here)

round() is half away from zero, as the firmware's rshift_round.

With `adc` (Adc below) the loop also sees the converter: each step is one VMM of the driven
rows (the input pair and every state pair, as loop_rows drives them) against the kernel's
compiled conductances (kernel::compile's layout, default window 7..200 uS), bit plane by bit
plane; each plane's column current is rounded to a 10-bit ADC code at the gain plan_loop picks
(the highest whose range holds the largest column sum), and the codes are shifted and added.
What that rounding leaves in each route's differential pair, over k x state_scale_uS, is the
state's error in codes; in the output pair, over k x output_scale_uS, the output's. It enters
as a detached offset (straight through). The output of step t is read in the VMM of step t+1
(eq. 7's lag; the host flushes the last with a zero input), so its error is that VMM's.

What is left out: the input's 16-bit code (1/32767 of the encoder's bound), the fixed-point
multipliers (15 bits) and the route trims; `measure` in train.py's --check-board compares this
with the board's own codes.
"""

import numpy as np

import torch

CLAMP = 255.0
MODE_RANGE_FLOOR = 100.0  # model::kModeRangeFloor
HEADROOM = 1.1  # LoopPlanOptions::calibrated_headroom


def round_half_away(v):
    return torch.sign(v) * torch.floor(torch.abs(v) + 0.5)


def q_ste(v):
    """Rounded and clamped to the 8-bit magnitudes; gradient straight through (zero where
    clamped)."""
    return torch.clamp(v + (round_half_away(v) - v).detach(), -CLAMP, CLAMP)


def b_weight(a_bar):
    """compile's b: the largest |Re| or |Im| of A_bar, per kernel. a_bar: (H, N) complex."""
    return torch.maximum(a_bar.real.abs(), a_bar.imag.abs()).amax(dim=1)


def float_states_max(a_bar, z, chunk=64):
    """Per kernel and mode, the largest |Re|, |Im| of the float state over clips and steps.
    a_bar: (H, N) complex; z: (B, H, T) real (the encoder's outputs). Computed by FFT
    convolution with A_bar^t, in chunks of clips (no gradient)."""
    with torch.no_grad():
        t_len = z.shape[-1]
        powers = torch.exp(torch.log(a_bar.to(torch.complex128))[..., None]
                           * torch.arange(t_len, dtype=torch.float64))  # (H, N, T)
        nfft = 2 * t_len
        kf = torch.fft.fft(powers, n=nfft)
        out = torch.zeros(a_bar.shape, dtype=torch.float64)
        for i in range(0, z.shape[0], chunk):
            zf = torch.fft.fft(z[i:i + chunk].to(torch.float64), n=nfft)  # (b, H, nfft)
            x = torch.fft.ifft(zf[:, :, None, :] * kf[None], n=nfft)[..., :t_len]
            m = torch.maximum(x.real.abs(), x.imag.abs()).amax(dim=(0, 3))
            out = torch.maximum(out, m)
        return out


class LoopScales:
    """The loop's fixed scales for a model's kernels, measured on training clips: what the
    exported model file carries (kernel_set mode_range, calibration state ranges) and what
    xbard's plan_loop then represents exactly."""

    def __init__(self, a_bar=None, z=None):
        if a_bar is None:
            return  # from_model fills it
        r = float_states_max(a_bar, z)  # (H, N)
        top = r.amax(dim=1, keepdim=True)
        self.mode_range = torch.maximum(r, top / MODE_RANGE_FLOOR)
        self.beta = self.mode_range.amin(dim=1, keepdim=True) / self.mode_range
        self.state_max = (self.beta * r).amax(dim=1)  # what the array holds at most
        self.input_max = z.abs().amax(dim=(0, 2)).to(torch.float64)
        # validate()'s least range: one step of the largest input in the most sensitive mode;
        # and the input's own codes, u / (b s), clip below input_max / b (plan_loop raises the
        # range to that, LoopPlanOptions::input_max).
        least = torch.maximum(self.input_max * self.beta.amax(dim=1),
                              self.input_max / b_weight(a_bar).to(torch.float64))
        self.state_range = torch.maximum(HEADROOM * self.state_max, least)
        self.x_scale = self.state_range / CLAMP


def scales_from_model(js):
    """The scales a model file carries (kernel_set modeRange, calibration stateRange), as
    xbard's plan_loop represents them."""
    s = LoopScales()
    mode_range = torch.tensor([k["modeRange"] for k in js["kernelSet"]["kernels"]],
                              dtype=torch.float64)
    s.mode_range = mode_range
    s.beta = mode_range.amin(dim=1, keepdim=True) / mode_range
    s.state_range = torch.tensor([k["stateRange"] for k in js["calibration"]["kernels"]],
                                 dtype=torch.float64)
    s.x_scale = s.state_range / CLAMP
    return s


SPAN_US = 193.0  # the default window, 7..200 uS: conductance per unit weight = SPAN / max weight


def weight_noise(a_bar, c_bar, scales, sigma_uS, batch, generator=None):
    """Programming error as the weights see it: every used device off its target by
    N(0, sigma_uS), a weight being a differential pair (so sqrt(2) sigma) on the column scale of
    its block (compile: SPAN / max |A_bar| for the state and input rows, SPAN / max |C_bar /
    beta| for the output columns). The state block is dense: the zero entries between modes
    are devices too, and their errors couple the modes (bench/RESULTS.md, Fig. 4 sweep), so
    the state noise is a full (2N x 2N) matrix on [Re x; Im x]. One draw per clip (a different
    chip each): (dA (batch, H, 2N, 2N), dB (batch, H, N), dC_re, dC_im (batch, H, N))."""
    with torch.no_grad():
        beta = scales.beta.to(torch.float32)
        h, n = a_bar.shape
        sig_state = (2 ** 0.5) * sigma_uS * b_weight(a_bar) / SPAN_US  # (H,)
        c_t = c_bar / beta
        c_max = torch.maximum(c_t.real.abs(), c_t.imag.abs()).amax(dim=1)
        sig_out = (2 ** 0.5) * sigma_uS * c_max / SPAN_US

        def draw(sig, *shape):
            return (torch.randn(batch, h, *shape, generator=generator)
                    * sig.reshape(1, h, *([1] * len(shape))))

        return (draw(sig_state, 2 * n, 2 * n), draw(sig_state, n), draw(sig_out, n),
                draw(sig_out, n))


# The converters of the shipped chip profiles (configs/profiles/*.yaml: tia, adc, read).
TIA_GAINS_OHM = (1000.0, 5000.0, 30000.0, 200000.0, 1000000.0)
TIA_V_REF_V = 0.5
ADC_BITS = 10
ADC_V_LO_V, ADC_V_HI_V = 0.5, 4.0
V_READ_V = 0.2
G_MIN_US = 7.0  # kernel::Window defaults
PLANES = 8


def expand(m):
    """kernel.cc's expand: a complex weight as the 4 x 4 block of a differential pair of rows
    (Re+, Re-, Im+, Im-) into the four columns of a state or output. [input row][column]."""
    rp, rn = max(m.real, 0.0), max(-m.real, 0.0)
    ip, i_n = max(m.imag, 0.0), max(-m.imag, 0.0)
    out_by_in = np.array([[rp, rn, i_n, ip], [rn, rp, ip, i_n], [ip, i_n, rp, rn],
                          [i_n, ip, rn, rp]])
    return out_by_in.T


class Adc:
    """The converter as one kernel's loop meets it, from the kernel's weights (no gradient):
    the conductances of the rows the loop drives (input +-, then per mode Re+, Re-, Im+, Im-)
    into the columns it reads (per mode 4 state columns, then the real output pair), the TIA
    gain plan_loop would pick and the scales that turn codes back into state and output units.
    Per kernel: g_uS (H, R, C), k (H,) codes per uS, state_scale_uS, output_scale_uS (H,)."""

    def __init__(self, a_bar, c_bar, beta, bits=ADC_BITS, g_min_uS=G_MIN_US, span_uS=None):
        span = SPAN_US if span_uS is None else span_uS
        a = a_bar.detach().to(torch.complex128).numpy()
        c = (c_bar.detach().to(torch.complex128) / beta.detach().to(torch.float64)).numpy()
        b = beta.detach().to(torch.float64).numpy()
        h, n = a.shape
        rows, cols = 2 + 4 * n, 4 * n + 2
        g = np.zeros((h, rows, cols))
        self.k = np.zeros(h)
        self.state_scale_uS = np.zeros(h)
        self.output_scale_uS = np.zeros(h)
        lsb_V = (ADC_V_HI_V - ADC_V_LO_V) / (2 ** bits - 1)
        for kh in range(h):
            a_max = max(np.abs(a[kh].real).max(), np.abs(a[kh].imag).max())
            c_max = max(np.abs(c[kh].real).max(), np.abs(c[kh].imag).max())
            part = np.zeros((4 + 4 * n, cols))
            for j in range(n):
                part[0:4, 4 * j:4 * j + 4] = expand(complex(a_max * b[kh, j], 0.0))
                part[4 + 4 * j:8 + 4 * j, 4 * j:4 * j + 4] = expand(a[kh, j])
                part[4 + 4 * j:8 + 4 * j, 4 * n:4 * n + 2] = expand(c[kh, j])[:, 0:2]
            scale = np.full(cols, span / a_max)
            scale[4 * n:] = span / c_max
            full = g_min_uS + scale[None, :] * part
            g[kh] = np.concatenate([full[0:2], full[4:]])  # input rows 2, 3 are never driven
            worst_uS = g[kh].sum(axis=0).max()
            fits = [r for r in TIA_GAINS_OHM
                    if TIA_V_REF_V + worst_uS * 1e-6 * V_READ_V * r <= ADC_V_HI_V]
            gain = max(fits) if fits else min(TIA_GAINS_OHM)
            self.k[kh] = gain * V_READ_V * 1e-6 / lsb_V
            self.state_scale_uS[kh] = span / a_max
            self.output_scale_uS[kh] = span / c_max
        self.g_uS = torch.tensor(g, dtype=torch.float32)
        self.offset = (TIA_V_REF_V - ADC_V_LO_V) / lsb_V  # the code of zero current
        self.max_code = float(2 ** bits - 1)
        self.n = n

    def errors(self, m, xr, xi):
        """The ADC's rounding in one step, for the rows the loop drives: input magnitudes m
        (B, H) and the state codes xr, xi (B, H, N). Returns (state Re, state Im (B, H, N),
        output (B, H)) errors in state codes and in output codes x 1/(k output_scale_uS)."""
        with torch.no_grad():
            n = self.n
            st = torch.stack([xr.clamp(min=0), (-xr).clamp(min=0), xi.clamp(min=0),
                              (-xi).clamp(min=0)], dim=3).reshape(*xr.shape[:2], 4 * n)
            mags = torch.cat([m.clamp(min=0)[..., None], (-m).clamp(min=0)[..., None], st], dim=2)
            ints = mags.round().to(torch.int32)
            planes = torch.arange(PLANES, dtype=torch.int32)
            bits = ((ints[..., None] >> planes) & 1).to(torch.float32)  # (B, H, R, 8)
            cur = torch.einsum("bhrp,hrc->bhpc", bits, self.g_uS)  # uS per plane and column
            k = torch.tensor(self.k, dtype=torch.float32)[None, :, None, None]
            ideal = self.offset + k * cur
            code = torch.clamp(torch.round(ideal), 0.0, self.max_code)  # nearbyint: half even
            weight = (2.0 ** planes.to(torch.float32))[None, None, :, None]
            e = ((code - ideal) * weight).sum(dim=2)  # (B, H, C) accumulator codes
            diff = e[..., 0::2] - e[..., 1::2]  # state pairs Re (2j), Im (2j+1); then output
            ks = torch.tensor(self.k * self.state_scale_uS, dtype=torch.float32)[None, :, None]
            ko = torch.tensor(self.k * self.output_scale_uS, dtype=torch.float32)[None, :]
            return diff[..., 0:2 * n:2] / ks, diff[..., 1:2 * n:2] / ks, diff[..., 2 * n] / ko


def loop_outputs(a_bar, c_bar, z, scales, noise=None, adc=None):
    """The kernels' outputs as the board's loop computes them. a_bar, c_bar: (H, N) complex
    (differentiable); z: (B, H, T); scales: LoopScales (fixed); noise: weight_noise()'s
    perturbations, or None for exact weights; adc: an Adc for these weights, or None for an
    ideal converter. Returns (B, H, T)."""
    beta = scales.beta.to(torch.float32)
    s = scales.x_scale.to(torch.float32)[:, None]  # (H, 1)
    b = b_weight(a_bar.detach())[:, None]  # (H, 1): a conductance scale, not trained through
    m = q_ste(z / (b * s)[None])  # (B, H, T) input row magnitudes
    ar, ai = a_bar.real[None], a_bar.imag[None]  # (1, H, N)
    gain_in = (b * beta)[None]  # (1, H, N)
    cr = (c_bar.real / beta)[None]
    ci = (c_bar.imag / beta)[None]
    d_a = None
    if noise is not None:
        d_a, d_b, d_cr, d_ci = noise
        gain_in, cr, ci = gain_in + d_b, cr + d_cr, ci + d_ci
    bsz, h, t_len = z.shape
    xr = torch.zeros(bsz, h, beta.shape[1])
    xi = torch.zeros_like(xr)
    er = torch.zeros_like(xr)
    ei = torch.zeros_like(xr)
    ys = []
    out_err = []  # the ADC's error of y_{t-1}, read in step t's VMM
    for t in range(t_len):
        nr = ar * xr - ai * xi + gain_in * m[:, :, t, None] + er
        ni = ai * xr + ar * xi + ei
        if adc is not None:
            dr, di, do = adc.errors(m[:, :, t].detach(), xr.detach(), xi.detach())
            nr, ni = nr + dr, ni + di
            out_err.append(do)
        if d_a is not None:  # the devices' errors, every state row into every state column
            dx = torch.einsum("bhij,bhj->bhi", d_a, torch.cat([xr, xi], dim=2))
            nr, ni = nr + dx[..., :beta.shape[1]], ni + dx[..., beta.shape[1]:]
        xr, xi = q_ste(nr), q_ste(ni)
        er = torch.clamp(nr - xr, -0.5, 0.5).detach()
        ei = torch.clamp(ni - xi, -0.5, 0.5).detach()
        ys.append((cr * xr - ci * xi).sum(dim=2))
    y = torch.stack(ys, dim=2)
    if adc is not None:  # the flush step: zero input, the last state
        out_err.append(adc.errors(torch.zeros_like(m[:, :, 0]), xr.detach(), xi.detach())[2])
        y = y + torch.stack(out_err[1:], dim=2)
    return 2 * s[None] * y
