"""General matrices on the board through xbard (``xbar.v1.MatrixService``), with numpy arrays.

    import numpy as np
    from xbar_client import Client
    with Client("127.0.0.1:50051") as c:
        dep = c.deploy_matrix(np.random.randn(64, 32), bits=4, name="proj")
        y = c.multiply(dep.id, np.random.randn(1000, 64))   # y = x @ W, on the chip

``W`` is K inputs x N outputs and the board computes ``x @ W`` for each row ``x``, as numpy
reads it (a PyTorch ``nn.Linear`` weight, out x in, is deployed transposed: see
:mod:`xbar_client.torch`). Results come back as float64 arrays.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from xbar.v1 import kernels_pb2, matrices_pb2, matrix_pb2

# One Multiply message holds at most this many vectors and values (matrices.proto); larger
# batches go through StreamMultiply in chunks.
MAX_VECTORS = 4096
MAX_VALUES = 262144


def to_matrix(a) -> matrix_pb2.Matrix:
    """A 1-D (one row) or 2-D array-like as an ``xbar.v1.Matrix`` (row-major float64)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[np.newaxis, :]
    if a.ndim != 2:
        raise ValueError(f"a matrix needs 1 or 2 dimensions, this one has {a.ndim}")
    return matrix_pb2.Matrix(rows=a.shape[0], cols=a.shape[1], values=a.ravel(order="C").tolist())


def from_matrix(m: matrix_pb2.Matrix) -> np.ndarray:
    """An ``xbar.v1.Matrix`` as a rows x cols float64 array."""
    return np.asarray(m.values, dtype=np.float64).reshape(m.rows, m.cols)


def quantization(bits: int = 0, range: float = 0.0, levels=None) -> matrix_pb2.MatrixQuantization:
    """``bits`` uniform levels (eq. 3), or ``levels``: one table (1-D) for the whole matrix, or
    a sequence of N tables, one per output column."""
    q = matrix_pb2.MatrixQuantization(bits=bits, range=range)
    if levels is not None:
        tables = [levels] if np.ndim(levels[0]) == 0 else levels
        for t in tables:
            q.tables.add(levels=[float(v) for v in t])
    return q


class MatrixMixin:
    """The MatrixService calls of :class:`xbar_client.Client` (mixed into it)."""

    def deploy_matrix(
        self,
        w,
        on_progress: Optional[Callable[[kernels_pb2.DeployProgress], None]] = None,
        *,
        bits: int = 0,
        range: float = 0.0,
        levels=None,
        name: str = "",
        remap: str = "auto",
        arrays: Optional[Sequence[int]] = None,
        replace: bool = False,
        tol_uS: float = 0.0,
        max_rounds: int = 0,
        max_error: float = 0.0,
        g_min_uS: float = 0.0,
        g_max_uS: float = 0.0,
        calibration_inputs=None,
        timeout: Optional[float] = None,
    ) -> kernels_pb2.Deployment:
        """Deploys ``w`` (K x N) onto the arrays (``MatrixService.DeployMatrix``): quantized
        (``bits`` uniform with ``range``, or ``levels``), tiled, placed around the stuck devices
        (``remap="naive"``: identity, no compensation), programmed, calibrated per output (on
        ``calibration_inputs``, C x K, whose largest |x| becomes the deployment's input range;
        else on random vectors). Returns the ``xbar.v1.Deployment`` (``.matrix`` holds the
        errors and the tiles); check its state."""
        request = matrices_pb2.DeployMatrixRequest(
            matrix=to_matrix(w),
            quantization=quantization(bits, range, levels),
            options=self._options(name, remap, arrays, replace, tol_uS, max_rounds, max_error),
            g_min_uS=g_min_uS,
            g_max_uS=g_max_uS,
        )
        if calibration_inputs is not None:
            request.calibration_inputs.CopyFrom(to_matrix(calibration_inputs))
        return self._deploy(
            self._matrices.DeployMatrix, request, on_progress, timeout or self.deploy_timeout
        )

    def multiply_response(
        self, deployment: str, x, *, input_range: float = 0.0, repeats: int = 1,
        uncalibrated: bool = False, details: bool = False, timeout: Optional[float] = None,
    ) -> matrices_pb2.MultiplyResponse:
        """One ``MatrixService.Multiply`` call (at most 4096 vectors and 262 144 values) and
        its whole response: outputs, the error estimates, board time, and with ``details`` the
        input codes and the calibration."""
        request = matrices_pb2.MultiplyRequest(
            deployment=deployment, inputs=to_matrix(x), input_range=input_range,
            repeats=repeats, uncalibrated=uncalibrated, details=details,
        )
        return self._unary(self._matrices.Multiply, request, timeout)

    def multiply(
        self, deployment: str, x, *, input_range: float = 0.0, repeats: int = 1,
        uncalibrated: bool = False, timeout: Optional[float] = None,
    ) -> np.ndarray:
        """``x @ W`` on the board for every row of ``x`` (B x K, or one vector of K): B x N
        (or N). Batches beyond one message go through ``StreamMultiply``. ``input_range``: the
        |x| at full 8-bit scale (0: calibrated, else each vector's own); ``repeats`` VMMs are
        averaged per vector (read noise falls as 1/sqrt(repeats))."""
        x = np.asarray(x, dtype=np.float64)
        one = x.ndim == 1
        x2 = x[np.newaxis, :] if one else x
        chunk = max(1, min(MAX_VECTORS, MAX_VALUES // max(1, x2.shape[1])))
        if x2.shape[0] <= chunk:
            y = from_matrix(
                self.multiply_response(
                    deployment, x2, input_range=input_range, repeats=repeats,
                    uncalibrated=uncalibrated, timeout=timeout,
                ).outputs
            )
        else:
            def requests():
                for at in np.arange(0, x2.shape[0], chunk):
                    yield matrices_pb2.StreamMultiplyRequest(batch=matrices_pb2.MultiplyRequest(
                        deployment=deployment, inputs=to_matrix(x2[at:at + chunk]),
                        input_range=input_range, repeats=repeats, uncalibrated=uncalibrated,
                    ))
            y = np.concatenate([from_matrix(r.outputs) for r in self._stream_call(
                self._matrices.StreamMultiply, requests(), timeout)])
        return y[0] if one else y

    def matrix_capacity(self) -> matrices_pb2.MatrixCapacity:
        """The largest matrices the chip holds, per orientation
        (``MatrixService.GetMatrixCapacity``)."""
        return self._unary(self._matrices.GetMatrixCapacity, matrices_pb2.GetMatrixCapacityRequest())
