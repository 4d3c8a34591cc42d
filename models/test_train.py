#!/usr/bin/python3
"""Checks of train.py's arithmetic that a wrong gradient would otherwise hide (ctest
train_test): the model head's gradient in float32 against float64, and the board-loop
emulation's converter (hwloop.Adc) against a direct per-plane computation.

  /usr/bin/python3 models/test_train.py
"""
import os
import sys
import unittest

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hwloop  # noqa: E402
import train  # noqa: E402


class HeadGradient(unittest.TestCase):
    def test_float32_gradient_matches_float64(self):
        """The head's mixing layer is an einsum whose backward gives the GELU a transposed
        gradient; with F.gelu the float32 gradient is wrong there (garbage, sometimes inf)."""
        torch.manual_seed(3)
        model = train.S4DModel(5, 1.0, 1.0, seed=1)
        y = torch.randn(32, train.H, 160) * 3
        grads = []
        for dtype in (torch.float32, torch.float64):
            m = model.to(dtype)
            yy = y.to(dtype).detach().clone().requires_grad_(True)
            m.head(yy).pow(2).sum().backward()
            grads.append(yy.grad.double())
        err = float((grads[0] - grads[1]).abs().max() / grads[1].abs().max())
        self.assertLess(err, 1e-5)

    def test_gelu_is_the_erf_form(self):
        v = torch.linspace(-8, 8, 1001, dtype=torch.float64)
        self.assertLess(float((train.gelu(v) - torch.nn.functional.gelu(v)).abs().max()), 1e-12)


class LearnedLevels(unittest.TestCase):
    def test_tables_stay_sorted_distinct_and_export_what_the_cpp_side_computes(self):
        """--levels learned: the k-means step keeps every table valid for the C++ validator
        (sorted, distinct, Re(A) negative), and the exported file's values are the tables' own
        levels, which refmodel (kernel.cc's arithmetic) maps to themselves."""
        import refmodel
        torch.manual_seed(5)
        model = train.S4DModel(2, 1.0, 1.0, seed=2, learned=True)
        with torch.no_grad():
            model.a_im.uniform_(-1, 1)
            model.c.uniform_(-0.3, 0.9)
        for _ in range(3):
            model.update_levels_()
        for key, t in model.tables.items():
            self.assertTrue(bool((t[1:] > t[:-1]).all()), key)
        self.assertTrue(bool((model.tables["a_re"] < 0).all()))
        js = model.to_json("t")
        for k in js["kernelSet"]["kernels"]:
            q = k["quantization"]
            a_bar, c_bar, _ = refmodel.discretize(k)
            self.assertEqual(sorted(q["levelsC"]), q["levelsC"])
            for e in k["continuous"]["c"]:
                self.assertIn(e["re"], q["levelsC"])
                self.assertIn(e["im"], q["levelsC"])
            for e in k["continuous"]["a"]:
                self.assertIn(e["re"], q["levelsARe"])
            self.assertTrue((abs(a_bar) < 1).all())


class Converter(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(5)
        h, n = 2, 4
        r = 0.5 + 0.45 * torch.rand(h, n)
        th = torch.rand(h, n) * 3
        self.a_bar = torch.polar(r, th)
        self.c_bar = torch.complex(torch.randn(h, n), torch.randn(h, n)) * 0.3
        self.beta = 0.2 + 0.8 * torch.rand(h, n, dtype=torch.float64)
        self.adc = hwloop.Adc(self.a_bar, self.c_bar, self.beta)

    def test_gain_is_the_highest_that_holds_every_column(self):
        worst = self.adc.g_uS.sum(dim=1).amax(dim=1).double()  # every driven row at once
        lsb = (hwloop.ADC_V_HI_V - hwloop.ADC_V_LO_V) / (2 ** hwloop.ADC_BITS - 1)
        full = self.adc.offset + torch.from_numpy(self.adc.k) * worst
        self.assertTrue(bool((full <= 2 ** hwloop.ADC_BITS - 1 + 1e-6).all()))
        for kh, k in enumerate(self.adc.k):
            gain = k * lsb / (hwloop.V_READ_V * 1e-6)
            higher = [g for g in hwloop.TIA_GAINS_OHM if g > gain * 1.0001]
            for g in higher:  # a higher gain would push the worst column past the ADC
                self.assertGreater(hwloop.TIA_V_REF_V + float(worst[kh]) * 1e-6
                                   * hwloop.V_READ_V * g, hwloop.ADC_V_HI_V)

    def test_errors_are_the_planes_roundings(self):
        b, (h, n) = 3, self.a_bar.shape
        m = torch.randint(-255, 256, (b, h)).float()
        xr = torch.randint(-255, 256, (b, h, n)).float()
        xi = torch.randint(-255, 256, (b, h, n)).float()
        dr, di, do = self.adc.errors(m, xr, xi)
        for bb in range(b):
            for kh in range(h):
                rows = [max(m[bb, kh], 0), max(-m[bb, kh], 0)]
                for j in range(n):
                    rows += [max(xr[bb, kh, j], 0), max(-xr[bb, kh, j], 0),
                             max(xi[bb, kh, j], 0), max(-xi[bb, kh, j], 0)]
                rows = [int(v) for v in rows]
                g = self.adc.g_uS[kh].double()
                k = float(self.adc.k[kh])
                err = torch.zeros(g.shape[1], dtype=torch.float64)
                for p in range(8):
                    on = torch.tensor([(v >> p) & 1 for v in rows], dtype=torch.float64)
                    exact = self.adc.offset + k * (on @ g)
                    err += (torch.clamp(torch.round(exact), 0, 1023) - exact) * 2 ** p
                ks = k * self.adc.state_scale_uS[kh]
                for j in range(n):
                    self.assertAlmostEqual(float(dr[bb, kh, j]),
                                           float(err[4 * j] - err[4 * j + 1]) / ks, places=3)
                    self.assertAlmostEqual(float(di[bb, kh, j]),
                                           float(err[4 * j + 2] - err[4 * j + 3]) / ks, places=3)
                ko = k * self.adc.output_scale_uS[kh]
                self.assertAlmostEqual(float(do[bb, kh]),
                                       float(err[4 * n] - err[4 * n + 1]) / ko, places=3)

    def test_the_converter_perturbs_the_loop_without_dominating_it(self):
        z = torch.randn(8, 2, 50) * 0.5
        scales = hwloop.LoopScales(self.a_bar, z)
        scales.beta = self.beta
        with_adc = hwloop.loop_outputs(self.a_bar, self.c_bar, z, scales, adc=self.adc)
        without = hwloop.loop_outputs(self.a_bar, self.c_bar, z, scales)
        diff = (with_adc - without).abs().max()
        self.assertGreater(float(diff), 0.0)  # the 10-bit converter is not ideal
        self.assertLess(float(diff), 0.5 * float(without.abs().max()))


if __name__ == "__main__":
    unittest.main()
