"""A small synchronous client for the xbar.v1 gRPC API (proto/xbar/v1/*.proto).

Every method returns the API's protobuf messages as they are (``xbar.v1.BoardInfo``,
``xbar.v1.Deployment``, ...); ``google.protobuf.json_format.MessageToDict`` turns any of them
into plain data. Failed calls raise :class:`XbarError`.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import grpc
from google.protobuf import json_format

try:
    from xbar.v1 import arrays_pb2, arrays_pb2_grpc, board_pb2, board_pb2_grpc
    from xbar.v1 import kernels_pb2, kernels_pb2_grpc
    from xbar.v1 import model_pb2, models_pb2, models_pb2_grpc
    from xbar.v1 import matrices_pb2_grpc
except ImportError as e:  # pragma: no cover - a setup problem, said plainly
    raise ImportError(
        "xbar_client needs the generated xbar.v1 stubs: build the project "
        "(cmake --build build) and put build/client/python/gen on PYTHONPATH "
        f"next to client/python ({e})"
    ) from e

from .matrices import MatrixMixin

PathLike = Union[str, "os.PathLike[str]"]

# Deadlines in seconds: board-changing streams can take minutes on a real chip.
DEFAULT_TIMEOUT_S = 60.0
DEPLOY_TIMEOUT_S = 600.0
STREAM_TIMEOUT_S = 600.0


class XbarError(Exception):
    """A failed call: ``code`` is the gRPC status code's name (``"NOT_FOUND"``,
    ``"INVALID_ARGUMENT"``, ``"UNAVAILABLE"``, ...), ``message`` the daemon's message, which
    names the field and its allowed range (docs/api.md, "Errors")."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc_error(cls, e: grpc.RpcError) -> "XbarError":
        code = e.code() if hasattr(e, "code") else None
        details = e.details() if hasattr(e, "details") else None
        return cls(code.name if code is not None else "UNKNOWN", details or str(e))


def _read_bytes(value: Union[bytes, PathLike, None]) -> Optional[bytes]:
    """PEM material given as bytes, or a path to a file holding it."""
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def _json_text(json_or_path: Union[str, dict, PathLike]) -> str:
    """A JSON document given as a dict, as JSON text, or as a path to a file."""
    if isinstance(json_or_path, dict):
        return json.dumps(json_or_path)
    text = os.fspath(json_or_path)
    if text.lstrip().startswith("{"):
        return text
    with open(text, "r", encoding="utf-8") as f:
        return f.read()


def _parse(json_or_path, message):
    """Fills `message` from the protobuf JSON mapping, unknown fields rejected (as xbarctl)."""
    try:
        return json_format.Parse(_json_text(json_or_path), message, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        where = "json" if isinstance(json_or_path, dict) else os.fspath(json_or_path)[:200]
        raise XbarError("INVALID_ARGUMENT", f"{where}: {e}") from e


def _infer_path(path: str) -> int:
    paths = {
        "hardware": models_pb2.INFER_HARDWARE,
        "software": models_pb2.INFER_SOFTWARE,
        "emulate": models_pb2.INFER_EMULATE,
    }
    if path not in paths:
        raise ValueError(f"path = {path!r}: allowed 'hardware', 'software', 'emulate'")
    return paths[path]


def _remap(remap: str) -> int:
    modes = {"auto": kernels_pb2.REMAP_AUTO, "naive": kernels_pb2.REMAP_NAIVE}
    if remap not in modes:
        raise ValueError(f"remap = {remap!r}: allowed 'auto', 'naive'")
    return modes[remap]


class Client(MatrixMixin):
    """A connection to one xbard.

    ``target`` is ``"HOST:PORT"`` (e.g. ``"127.0.0.1:50051"``) or ``"unix:/path/to/sock"``.
    ``token`` is sent as metadata ``authorization: Bearer <token>`` on every call (the daemon
    needs it for calls that change the board when it has a token file). Plaintext unless any of
    ``root_certificates`` (the CA that signed the daemon's certificate), ``private_key`` and
    ``certificate_chain`` (the client's own, for mutual TLS) is given: each is PEM bytes or a
    path to a PEM file. ``timeout`` is the deadline in seconds of the unary calls.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        token: Optional[str] = None,
        root_certificates: Union[bytes, PathLike, None] = None,
        private_key: Union[bytes, PathLike, None] = None,
        certificate_chain: Union[bytes, PathLike, None] = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ):
        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        if any(x is not None for x in (root_certificates, private_key, certificate_chain)):
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read_bytes(root_certificates),
                private_key=_read_bytes(private_key),
                certificate_chain=_read_bytes(certificate_chain),
            )
            self._channel = grpc.secure_channel(target, creds)
        else:
            self._channel = grpc.insecure_channel(target)
        self._board = board_pb2_grpc.BoardServiceStub(self._channel)
        self._arrays = arrays_pb2_grpc.ArrayServiceStub(self._channel)
        self._kernels = kernels_pb2_grpc.KernelServiceStub(self._channel)
        self._models = models_pb2_grpc.ModelServiceStub(self._channel)
        self._matrices = matrices_pb2_grpc.MatrixServiceStub(self._channel)
        self.deploy_timeout = DEPLOY_TIMEOUT_S

    # -- connection ------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Waits until the channel is connected; raises XbarError("UNAVAILABLE") after
        ``timeout`` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as e:
            raise XbarError(
                "UNAVAILABLE", f"{self.target}: no daemon answered in {timeout} s"
            ) from e

    def _unary(self, method, request, timeout: Optional[float] = None):
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise XbarError.from_rpc_error(e) from None

    def _stream_call(self, method, requests, timeout: Optional[float] = None) -> list:
        """A bidirectional call: every response to ``requests``, in order."""
        try:
            return list(method(requests, timeout=timeout or self.timeout,
                               metadata=self._metadata))
        except grpc.RpcError as e:
            raise XbarError.from_rpc_error(e) from None

    # -- board -----------------------------------------------------------------------------

    def info(self) -> board_pb2.BoardInfo:
        """What the board is (``BoardService.GetBoardInfo``): serial (``"XS..."``), firmware,
        backend, arrays x rows x cols, converter facts, pulse limits."""
        return self._unary(self._board.GetBoardInfo, board_pb2.GetBoardInfoRequest())

    def status(self) -> board_pb2.BoardStatus:
        """Live counters of the board (``BoardService.GetBoardStatus``): board clock in ns,
        requests executed, pulses applied, replays served, last error."""
        return self._unary(self._board.GetBoardStatus, board_pb2.GetBoardStatusRequest())

    def scan_faults(self, array: int, *, quick: bool = False,
                    timeout: float = DEPLOY_TIMEOUT_S) -> arrays_pb2.ScanReport:
        """Scans one array for stuck devices (``ArrayService.ScanFaults``) and returns the
        final ``xbar.v1.ScanReport``; the daemon records what it finds, and later deploys place
        around it. ``quick``: read-only, nothing recorded."""
        report = None
        try:
            for msg in self._arrays.ScanFaults(
                arrays_pb2.ScanFaultsRequest(array=array, quick=quick), timeout=timeout,
                metadata=self._metadata,
            ):
                if msg.HasField("report"):
                    report = msg.report
        except grpc.RpcError as e:
            raise XbarError.from_rpc_error(e) from None
        if report is None:
            raise XbarError("INTERNAL", "the daemon closed the scan stream without a report")
        return report

    # -- deployments -----------------------------------------------------------------------

    def _deploy(self, call, request, on_progress, timeout) -> kernels_pb2.Deployment:
        deployment = None
        try:
            for msg in call(request, timeout=timeout, metadata=self._metadata):
                if msg.HasField("deployment"):
                    deployment = msg.deployment
                elif on_progress is not None:
                    on_progress(msg.progress)
        except grpc.RpcError as e:
            raise XbarError.from_rpc_error(e) from None
        if deployment is None:
            raise XbarError("INTERNAL", "the daemon closed the deploy stream without a deployment")
        return deployment

    @staticmethod
    def _options(
        name: str, remap: str, arrays: Optional[Sequence[int]], replace: bool, tol_uS: float,
        max_rounds: int, max_nrmse: float,
    ) -> kernels_pb2.DeployKernelRequest:
        return kernels_pb2.DeployKernelRequest(
            name=name, remap=_remap(remap), arrays=list(arrays or []), replace=replace,
            tol_uS=tol_uS, max_rounds=max_rounds, max_nrmse=max_nrmse,
        )

    def deploy_kernel(
        self,
        kernel_set_json_or_path: Union[str, dict, PathLike],
        on_progress: Optional[Callable[[kernels_pb2.DeployProgress], None]] = None,
        *,
        name: str = "",
        remap: str = "auto",
        arrays: Optional[Sequence[int]] = None,
        replace: bool = False,
        tol_uS: float = 0.0,
        max_rounds: int = 0,
        max_nrmse: float = 0.0,
        timeout: float = DEPLOY_TIMEOUT_S,
    ) -> kernels_pb2.Deployment:
        """Deploys 1..3 S4D kernels (``KernelService.DeployKernel``): compile, remap,
        program-verify, verify.

        ``kernel_set_json_or_path`` is an ``xbar.v1.KernelSet`` in the protobuf JSON mapping
        (docs/kernels.md, configs/kernels/example.json): a path, JSON text, or a dict. Unknown
        fields are rejected, as by ``xbarctl deploy``. ``on_progress`` is called with every
        ``xbar.v1.DeployProgress`` (stage, kernel, array, program round, message). ``replace``
        takes arrays held by other deployments; ``remap`` is ``"auto"`` or ``"naive"``; the
        other options are those of ``DeployKernelRequest`` (0 = the daemon's default).

        Returns the ``xbar.v1.Deployment``; its ``state`` is ``ready``, ``degraded`` or
        ``failed`` (check it: a finished deployment is not necessarily a good one).
        """
        request = self._options(name, remap, arrays, replace, tol_uS, max_rounds, max_nrmse)
        _parse(kernel_set_json_or_path, request.kernel_set)
        return self._deploy(self._kernels.DeployKernel, request, on_progress, timeout)

    def deploy_model(
        self,
        model_json_path: Union[str, dict, PathLike],
        on_progress: Optional[Callable[[kernels_pb2.DeployProgress], None]] = None,
        *,
        name: str = "",
        remap: str = "auto",
        arrays: Optional[Sequence[int]] = None,
        replace: bool = False,
        tol_uS: float = 0.0,
        max_rounds: int = 0,
        max_nrmse: float = 0.0,
        min_label_agreement: Optional[float] = None,
        timeout: float = DEPLOY_TIMEOUT_S,
    ) -> kernels_pb2.Deployment:
        """Deploys a model (``ModelService.DeployModel``): its kernels onto the arrays exactly
        as :meth:`deploy_kernel` does, its digital layers, preprocessing and classes recorded
        with the deployment. A model that carries fidelity clips (``calibration.fidelity_clips``,
        ``xbarctl calibrate --keep-clips``) is run on them on the board and in software; the
        result is the deployment's ``fidelity``, and it is degraded when the labels agree on
        fewer than ``min_label_agreement`` of them (None: the daemon's 0.8).

        ``model_json_path`` is an ``xbar.v1.Model`` in the protobuf JSON mapping
        (models/example-model.json, docs/models.md): a path, JSON text, or a dict; read as
        ``xbarctl deploy-model`` reads it (unknown fields rejected). ``on_progress`` and the
        options are those of :meth:`deploy_kernel`. Returns the ``xbar.v1.Deployment`` (its
        ``id`` is what :meth:`infer` and :meth:`stream` take; check its ``state``).
        """
        request = models_pb2.DeployModelRequest(
            options=self._options(name, remap, arrays, replace, tol_uS, max_rounds, max_nrmse)
        )
        if min_label_agreement is not None:
            request.min_label_agreement = min_label_agreement
        _parse(model_json_path, request.model)
        return self._deploy(self._models.DeployModel, request, on_progress, timeout)

    def deployments(
        self, full: bool = False, *, include_archived: bool = False, page_size: int = 0
    ) -> list:
        """The attached chip's deployments, newest first (``KernelService.ListDeployments``),
        as a list of ``xbar.v1.Deployment``: every page, each its own call (``page_token`` =
        the previous ``next_page_token`` until it is empty). The per-device matrices only with
        ``full``; the deployments retention archived (``archived_at_ms`` > 0, kept without
        their matrices) only with ``include_archived``. ``page_size`` is per call: 0 = the
        daemon's default (50), at most 1000; a page may hold fewer (it ends before 1 MiB)."""
        out = []
        request = kernels_pb2.ListDeploymentsRequest(
            full=full, include_archived=include_archived, page_size=page_size
        )
        seen = set()
        while True:
            reply = self._unary(self._kernels.ListDeployments, request)
            out.extend(reply.deployments)
            token = reply.next_page_token
            if not token:
                return out
            if token in seen:
                raise XbarError("INTERNAL", "ListDeployments handed out the same page token twice")
            seen.add(token)
            request.page_token = token

    def deployment(self, deployment_id: str) -> kernels_pb2.Deployment:
        """One deployment by id (``KernelService.GetDeployment``); NOT_FOUND otherwise."""
        return self._unary(
            self._kernels.GetDeployment, kernels_pb2.GetDeploymentRequest(id=deployment_id)
        )

    def model(self, deployment_id: str) -> model_pb2.Model:
        """The ``xbar.v1.Model`` a deployment made by :meth:`deploy_model` carries (its
        preprocessing says the sample rate :meth:`stream` must send at). FAILED_PRECONDITION
        for a deployment without a model."""
        dep = self.deployment(deployment_id)
        if not dep.HasField("model"):
            raise XbarError("FAILED_PRECONDITION", f"deployment {deployment_id} has no model")
        return dep.model

    def delete_deployment(self, deployment_id: str) -> None:
        """Forgets a deployment and frees its arrays, no pulses (``KernelService.
        DeleteDeployment``); NOT_FOUND for an unknown id."""
        self._unary(
            self._kernels.DeleteDeployment, kernels_pb2.DeleteDeploymentRequest(id=deployment_id)
        )

    # -- inference -------------------------------------------------------------------------

    def infer(
        self,
        deployment: str,
        wav_path: Optional[PathLike] = None,
        *,
        samples: Optional[Iterable[float]] = None,
        sample_rate_hz: int = 0,
        audio: Optional[bytes] = None,
        path: str = "hardware",
        kernel_outputs: bool = False,
        timeout: Optional[float] = None,
    ) -> models_pb2.InferResponse:
        """Classifies one clip with a deployed model (``ModelService.Infer``).

        Give the clip as ``wav_path`` (a WAV/FLAC/OGG file, any rate and channels: its bytes
        are sent and decoded by the daemon), as ``audio`` (such a file's bytes), or as mono
        ``samples`` at ``sample_rate_hz`` (resampled by the daemon to the model's rate).
        ``path`` is ``"hardware"`` (the kernels as a closed loop on the board),
        ``"software"`` (the compiled kernels in floating point) or ``"emulate"`` (the
        board-exact reference: the loop's integer arithmetic on the host, one VMM per step on
        the board; on the twin the same codes as ``"hardware"``, bit for bit). Returns the
        ``xbar.v1.InferResponse``: logits, probabilities, label, class_name, steps, board_ms
        and, with ``kernel_outputs``, each kernel's output sequence.
        """
        request = models_pb2.InferRequest(
            deployment=deployment, path=_infer_path(path), kernel_outputs=kernel_outputs
        )
        given = sum(x is not None for x in (wav_path, samples, audio))
        if given != 1:
            raise ValueError("infer: give exactly one of wav_path, audio, samples")
        if wav_path is not None:
            with open(wav_path, "rb") as f:
                request.audio = f.read()
        elif audio is not None:
            request.audio = audio
        else:
            if sample_rate_hz <= 0:
                raise ValueError("infer: samples need sample_rate_hz")
            request.samples.extend(samples)
            request.sample_rate_hz = sample_rate_hz
        return self._unary(self._models.Infer, request, timeout)

    def stream(
        self,
        deployment: str,
        samples: Sequence[float],
        sample_rate_hz: int,
        chunk_ms: float = 20,
        *,
        path: str = "hardware",
        kernel_outputs: bool = False,
        timeout: float = STREAM_TIMEOUT_S,
    ) -> Iterator[models_pb2.StreamInferResponse]:
        """Streams one utterance to a deployed model (``ModelService.StreamInfer``) in chunks
        of ``chunk_ms`` milliseconds, and yields each ``xbar.v1.StreamInferResponse`` as it
        comes: steps so far, the running logits/probabilities/label/class_name (mean-pool over
        the steps so far) and, with ``kernel_outputs``, the kernels' outputs for the new steps.
        The last one has ``final`` set.

        ``samples`` are mono, at ``sample_rate_hz``, which must be the model's preprocessing
        rate (no resampling on a stream: see :meth:`model`). The steps are those of ``infer``
        on the whole utterance but never padded, and with the block-average front end not
        peak-normalised; a model with ``preprocessing.log_mel`` normalises a stream as a clip
        (its reference is the loudest band so far). The final answer includes the last,
        partial step.
        Breaking out of the loop cancels the call (the daemon closes the board's loop run).
        """
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms = {chunk_ms}: must be > 0")
        samples = list(samples)
        chunk = max(1, int(chunk_ms * 1e-3 * sample_rate_hz))

        def requests():
            first = models_pb2.StreamInferRequest(
                deployment=deployment, sample_rate_hz=sample_rate_hz,
                path=_infer_path(path), kernel_outputs=kernel_outputs,
            )
            start = 0
            while True:
                end = min(len(samples), start + chunk)
                msg = first if start == 0 else models_pb2.StreamInferRequest()
                msg.samples.extend(samples[start:end])
                msg.end = end == len(samples)
                yield msg
                if msg.end:
                    return
                start = end

        call = self._models.StreamInfer(requests(), timeout=timeout, metadata=self._metadata)
        try:
            for reply in call:
                yield reply
        except grpc.RpcError as e:
            raise XbarError.from_rpc_error(e) from None
        finally:
            call.cancel()  # a no-op once the call finished; frees the board when abandoned
