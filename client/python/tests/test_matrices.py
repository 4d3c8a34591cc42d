"""Matrices through the Python client and its PyTorch module, against a real xbard on a
typical twin: run by ctest as python_client_matrices (docs/matrices.md).

Run by hand as test_client.py says, with ``-m unittest -v test_matrices``.
"""

from __future__ import annotations

import unittest

import numpy as np
import torch

from test_client import Daemon
from xbar_client import Client, XbarError
from xbar_client.torch import AnalogLinear


def median_error(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(y - ref, axis=1) / np.linalg.norm(ref, axis=1)))


def quantized(w: np.ndarray, bits: int) -> np.ndarray:
    """Eq. 3 with the range the daemon picks (the largest |w|)."""
    f = np.abs(w).max()
    n = 2 ** (bits - 1) - 1
    return np.clip(np.round(w * n / f), -n, n) * f / n


class MatrixClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(board="sim:profile=typical,seed=4")
        # No scan first: the stuck devices are unknown to the remap, and the weights the
        # read-back finds off are fixed digitally.
        cls.client = Client(cls.daemon.target)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.daemon.stop()

    def test_numpy_in_numpy_out(self):
        rng = np.random.default_rng(1)
        w = rng.standard_normal((40, 20))
        dep = self.client.deploy_matrix(w, bits=5, name="np", replace=True)
        self.assertIn(dep.state, ("ready", "degraded"), dep.message)
        self.assertEqual((dep.matrix.matrix.rows, dep.matrix.matrix.cols), (40, 20))
        x = rng.standard_normal((200, 40))
        y = self.client.multiply(dep.id, x)
        self.assertEqual(y.shape, (200, 20))
        self.assertEqual(y.dtype, np.float64)
        self.assertLess(median_error(y, x @ quantized(w, 5)), 0.1)
        one = self.client.multiply(dep.id, x[0])
        self.assertEqual(one.shape, (20,))
        # More than one message holds: streamed in chunks, same shape, same quality.
        big = rng.standard_normal((5000, 40))
        yb = self.client.multiply(dep.id, big)
        self.assertEqual(yb.shape, (5000, 20))
        self.assertLess(median_error(yb, big @ quantized(w, 5)), 0.1)
        with self.assertRaises(XbarError) as e:
            self.client.multiply_response(dep.id, big)
        self.assertEqual(e.exception.code, "RESOURCE_EXHAUSTED")
        self.assertIn("StreamMultiply", str(e.exception))
        r = self.client.multiply_response(dep.id, x[:3], details=True)
        self.assertEqual(len(r.input_codes), 3 * 40)
        self.assertEqual(len(r.gain), 20)
        self.assertGreater(r.estimated_error, 0)
        cap = self.client.matrix_capacity()
        self.assertEqual((cap.column_pairs_inputs, cap.column_pairs_outputs), (64, 32))

    def test_refusals_name_the_field(self):
        w = np.ones((4, 3))
        w[1, 2] = np.inf
        with self.assertRaises(XbarError) as e:
            self.client.deploy_matrix(w)
        self.assertEqual(e.exception.code, "INVALID_ARGUMENT")
        self.assertIn("matrix.values[5]", str(e.exception))
        with self.assertRaises(XbarError) as e:
            self.client.deploy_matrix(np.ones((4, 3)), levels=[0.1, 0.1])
        self.assertIn("distinct", str(e.exception))

    def test_torch_linear_on_the_board_and_a_straight_through_gradient(self):
        torch.manual_seed(0)
        ref = torch.nn.Linear(24, 10).double()
        layer = AnalogLinear.from_linear(self.client, ref, bits=6, replace=True)
        x = torch.randn(64, 24, dtype=torch.float64)
        with torch.no_grad():
            y = layer(x)
            y_ref = ref(x)
        self.assertEqual(y.shape, (64, 10))
        err = (torch.linalg.norm(y - y_ref, dim=1) / torch.linalg.norm(y_ref, dim=1)).median()
        self.assertLess(float(err), 0.15)
        # Chip in the loop: the loss is the board's, the gradient the software product's.
        x.requires_grad_(True)
        loss = layer(x).sum()
        loss.backward()
        expected = x.detach().sum(0).expand(10, 24)
        self.assertTrue(torch.allclose(layer.weight.grad, expected))
        self.assertTrue(torch.allclose(x.grad, layer.weight.detach().sum(0).expand(64, 24)))


if __name__ == "__main__":
    unittest.main()
