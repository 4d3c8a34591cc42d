"""The board's closed loop in torch, for training that sees the hardware (issue 17, item 2).

What the firmware's loop computes for one S4D kernel (docs/firmware.md §7, kernel::plan_loop and
kernel::run_quantized in drivers/kernel/src/loop_plan.cc), with ideal conductances and
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

round() is half away from zero, as the firmware's rshift_round. What is left out: the input's
16-bit code (1/32767 of the encoder's bound), the fixed-point multipliers (15 bits), the route
trims and the ADC's per-plane rounding; `measure` in train.py's --check-board compares this
with the board's own codes.
"""

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


def loop_outputs(a_bar, c_bar, z, scales, noise=None):
    """The kernels' outputs as the board's loop computes them. a_bar, c_bar: (H, N) complex
    (differentiable); z: (B, H, T); scales: LoopScales (fixed); noise: weight_noise()'s
    perturbations, or None for exact weights. Returns (B, H, T)."""
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
    for t in range(t_len):
        nr = ar * xr - ai * xi + gain_in * m[:, :, t, None] + er
        ni = ai * xr + ar * xi + ei
        if d_a is not None:  # the devices' errors, every state row into every state column
            dx = torch.einsum("bhij,bhj->bhi", d_a, torch.cat([xr, xi], dim=2))
            nr, ni = nr + dx[..., :beta.shape[1]], ni + dx[..., beta.shape[1]:]
        xr, xi = q_ste(nr), q_ste(ni)
        er = torch.clamp(nr - xr, -0.5, 0.5).detach()
        ei = torch.clamp(ni - xi, -0.5, 0.5).detach()
        ys.append((cr * xr - ci * xi).sum(dim=2))
    return 2 * s[None] * torch.stack(ys, dim=2)
