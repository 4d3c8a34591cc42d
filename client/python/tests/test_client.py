"""The Python client against a real xbard (ideal twin): run by ctest as python_client_example.

Needs $XBARD (the daemon binary; ctest passes $<TARGET_FILE:xbard>) and PYTHONPATH with
client/python and build/client/python/gen. Run by hand:

    cd client/python/tests && XBARD=../../../build/server/xbard \\
      PYTHONPATH=..:../../../build/client/python/gen /usr/bin/python3 -m unittest -v test_client
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

from xbar_client import Client, XbarError

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
XBARD = os.environ.get("XBARD", str(REPO / "build" / "server" / "xbard"))
MODEL = REPO / "models" / "example-model.json"
EXAMPLE = HERE.parent / "examples" / "deploy_and_stream.py"
BOARD = "sim:profile=ideal,seed=1"
NO_SUCH_DEPLOYMENT = "dep-000000000000"

# The example's helpers (chirp, WAV reading, stream preparation) are reused here.
_spec = importlib.util.spec_from_file_location("deploy_and_stream", EXAMPLE)
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """xbard on the ideal twin with its chip record in a temporary directory, listening on a
    free TCP port (or on a Unix socket with unix=True). Stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, unix: bool = False, config: str | None = None, board: str = BOARD,
                 **client_kwargs):
        self.client_kwargs = client_kwargs  # how to reach it (TLS material)
        self.dir = tempfile.mkdtemp(prefix="xbar-pyclient-")
        self.log_path = os.path.join(self.dir, "xbard.log")
        self.proc = None
        self.target = None
        self.exit_code = None
        for _ in range(5):  # a free port can be taken between the probe and the bind: retry
            self.target = (
                f"unix:{self.dir}/xbard.sock" if unix else f"127.0.0.1:{free_port()}"
            )
            cmd = [XBARD, "--board", board, "--listen", self.target,
                   "--state-dir", os.path.join(self.dir, "state")]
            if config is not None:
                cmd += ["--config", config]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
            # Generous: a sanitizer build on a loaded machine; only a failure waits it out.
            if self._wait_ready(120):
                return
            if self.exit_code != 4 or unix:  # 4: cannot listen
                break
        self.stop()

    def _wait_ready(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        with Client(self.target, **self.client_kwargs) as c:
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    self.exit_code = self.proc.returncode
                    return False
                try:
                    c.wait_ready(timeout=0.5)
                    c.info()
                    return True
                except XbarError:
                    pass
        return False

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def stream_clip(model, path: str):
    """The example's chirp at the model's rate: the WAV for infer, the samples for a stream."""
    pp = model.preprocessing
    rate = pp.sample_rate_hz or 48000
    example.make_chirp(path, rate, (pp.target_length or 871) * (pp.downsample or 64))
    samples, wav_rate = example.read_wav(path)
    assert wav_rate == rate
    return example.prepare_for_stream(samples, pp), rate


class ClientTest(unittest.TestCase):
    """One daemon for the whole class; the tests run in name order and build on each other
    (test_03 deploys what test_04..test_07 use)."""

    daemon: Daemon
    client: Client
    deployment = None

    @classmethod
    def setUpClass(cls):
        if not os.access(XBARD, os.X_OK):
            raise unittest.SkipTest(f"no xbard at {XBARD} (set $XBARD)")
        cls.daemon = Daemon()
        if not cls.daemon.up:
            log = cls.daemon.log()
            cls.daemon.cleanup()
            raise AssertionError(f"xbard did not come up (exit {cls.daemon.exit_code}):\n{log}")
        # A token is sent on every call; a daemon without a token file ignores it.
        cls.client = Client(cls.daemon.target, token="not-required")

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.daemon.cleanup()

    def deployed(self):
        if ClientTest.deployment is None:
            self.skipTest("needs test_03_deploy_model")
        return ClientTest.deployment

    def test_01_info(self):
        info = self.client.info()
        self.assertTrue(info.serial.startswith("XS"), info.serial)
        self.assertEqual((info.arrays, info.rows, info.cols), (3, 64, 64))
        self.assertTrue(info.simulated)

    def test_02_status(self):
        st = self.client.status()
        self.assertGreater(st.ops_executed, 0)

    def test_03_deploy_model(self):
        stages = []
        dep = self.client.deploy_model(
            str(MODEL), on_progress=lambda p: stages.append(p.stage), name="pyclient",
            replace=True)
        self.assertEqual(dep.state, "ready", dep.message)
        from xbar.v1 import kernels_pb2
        self.assertEqual(dep.state_code, kernels_pb2.DEPLOYMENT_STATE_READY)  # the enum agrees
        self.assertTrue(dep.id.startswith("dep-"), dep.id)
        self.assertEqual(dep.name, "pyclient")
        for stage in ("compile", "remap", "program", "verify"):
            self.assertIn(stage, stages)
        ClientTest.deployment = dep

    def test_04_deployments(self):
        dep = self.deployed()
        ids = [d.id for d in self.client.deployments()]
        self.assertIn(dep.id, ids)
        self.assertEqual(self.client.deployment(dep.id).state, "ready")
        model = self.client.model(dep.id)
        self.assertEqual(list(model.classes), ["zero", "one"])

    def test_05_infer_and_stream_agree(self):
        dep = self.deployed()
        model = self.client.model(dep.id)
        with tempfile.TemporaryDirectory() as d:
            wav = os.path.join(d, "chirp.wav")
            samples, rate = stream_clip(model, wav)
            one = self.client.infer(dep.id, wav)
            # samples + rate is the other way in.
            same = self.client.infer(dep.id, samples=samples, sample_rate_hz=rate,
                                     path="software")
        self.assertAlmostEqual(sum(one.probabilities), 1.0, places=4)
        self.assertEqual(len(one.probabilities), len(model.classes))
        self.assertLess(one.label, len(model.classes))
        self.assertEqual(one.class_name, model.classes[one.label])
        self.assertEqual(one.steps, model.preprocessing.target_length)
        self.assertGreater(one.board_ms, 0)
        self.assertAlmostEqual(sum(same.probabilities), 1.0, places=4)
        # The board-exact reference: the same codes as the board's loop on the twin.
        emulated = self.client.infer(dep.id, wav_path=None, samples=samples,
                                     sample_rate_hz=rate, path="emulate")
        board = self.client.infer(dep.id, samples=samples, sample_rate_hz=rate)
        self.assertEqual(list(emulated.logits), list(board.logits))
        with self.assertRaises(ValueError):
            self.client.infer(dep.id, samples=samples, sample_rate_hz=rate, path="exact")

        partials = list(self.client.stream(dep.id, samples, rate, chunk_ms=20))
        with_result = [r for r in partials if r.probabilities]
        self.assertGreater(len(with_result), 10)
        final = partials[-1]
        self.assertTrue(final.final)
        self.assertEqual(final.steps, one.steps)
        steps = [r.steps for r in partials]
        self.assertEqual(steps, sorted(steps))
        self.assertEqual(final.label, one.label,
                         f"stream {list(final.probabilities)} vs infer {list(one.probabilities)}")
        for a, b in zip(final.probabilities, one.probabilities):
            self.assertAlmostEqual(a, b, delta=0.05)

    def test_06_errors(self):
        dep = self.deployed()
        with self.assertRaises(XbarError) as e:
            self.client.delete_deployment(NO_SUCH_DEPLOYMENT)
        self.assertEqual(e.exception.code, "NOT_FOUND")
        self.assertIn(NO_SUCH_DEPLOYMENT, e.exception.message)
        with self.assertRaises(XbarError) as e:
            self.client.infer(NO_SUCH_DEPLOYMENT, samples=[0.0] * 4800, sample_rate_hz=48000)
        self.assertEqual(e.exception.code, "NOT_FOUND")
        with self.assertRaises(XbarError) as e:
            list(self.client.stream(NO_SUCH_DEPLOYMENT, [0.0] * 4800, 48000))
        self.assertEqual(e.exception.code, "NOT_FOUND")
        # A stream must be at the model's rate.
        with self.assertRaises(XbarError) as e:
            list(self.client.stream(dep.id, [0.0] * 1600, 16000))
        self.assertEqual(e.exception.code, "INVALID_ARGUMENT")
        self.assertIn("sample_rate_hz", e.exception.message)
        # The daemon validates the model: a wrong encoder shape, nothing deployed.
        with open(MODEL, encoding="utf-8") as f:
            bad = json.load(f)
        bad["encoder"]["weight"] = bad["encoder"]["weight"][:2]
        with self.assertRaises(XbarError) as e:
            self.client.deploy_model(bad, replace=True)
        self.assertEqual(e.exception.code, "INVALID_ARGUMENT")
        self.assertIn("encoder", e.exception.message)
        # The fidelity threshold is checked before anything is programmed.
        with self.assertRaises(XbarError) as e:
            self.client.deploy_model(str(MODEL), replace=True, min_label_agreement=2.0)
        self.assertEqual(e.exception.code, "INVALID_ARGUMENT")
        self.assertIn("min_label_agreement = 2", e.exception.message)
        # Unknown JSON fields are refused before anything is sent, as xbarctl does.
        with self.assertRaises(XbarError) as e:
            self.client.deploy_kernel({"kernels": [], "colour": "blue"})
        self.assertEqual(e.exception.code, "INVALID_ARGUMENT")
        self.assertEqual(self.client.deployment(dep.id).state, "ready")

    def test_07_example(self):
        self.deployed()
        env = dict(os.environ)
        out = subprocess.run(
            [sys.executable, str(EXAMPLE), "--target", self.daemon.target, "--model", str(MODEL)],
            capture_output=True, text=True, timeout=240, env=env)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        lines = out.stdout.strip().splitlines()
        partial = [l for l in lines if l.startswith("partial step")]
        final = [l for l in lines if l.startswith("final")]
        self.assertGreater(len(partial), 10, out.stdout)
        self.assertEqual(len(final), 1, out.stdout)
        summary = json.loads(lines[-1])
        self.assertTrue(summary["serial"].startswith("XS"))
        self.assertEqual(summary["state"], "ready")
        self.assertTrue(summary["labels_agree"], summary)
        self.assertEqual(summary["stream"]["steps"], summary["infer"]["steps"])
        self.assertAlmostEqual(sum(summary["infer"]["probabilities"]), 1.0, places=4)
        self.assertIn(summary["infer"]["class_name"], ("zero", "one"))
        # The example took the arrays (replace): the first deployment is stale now.
        self.assertEqual(self.client.deployment(self.deployment.id).state, "stale")
        ClientTest.example_deployment = summary["deployment"]
        # Two deployments now: one a page, the client follows the tokens to the same list.
        one_a_page = [d.id for d in self.client.deployments(page_size=1)]
        self.assertEqual(one_a_page, [d.id for d in self.client.deployments()])
        self.assertEqual(one_a_page[:2], [summary["deployment"], self.deployment.id])

    def test_08_delete(self):
        dep_id = getattr(ClientTest, "example_deployment", None) or self.deployed().id
        self.client.delete_deployment(dep_id)
        with self.assertRaises(XbarError) as e:
            self.client.deployment(dep_id)
        self.assertEqual(e.exception.code, "NOT_FOUND")
        self.assertNotIn(dep_id, [d.id for d in self.client.deployments()])


class PagingTest(unittest.TestCase):
    """Client.deployments() follows ListDeployments' pages (no daemon: a stub that hands out
    three pages)."""

    class Stub:
        def __init__(self, test):
            self.test = test
            self.requests = []
            from xbar.v1 import kernels_pb2
            self.pb = kernels_pb2
            self.pages = {"": (["dep-5", "dep-4"], "t1"), "t1": (["dep-3", "dep-2"], "t2"),
                          "t2": (["dep-1"], "")}

        def ListDeployments(self, request, timeout=None, metadata=None):
            self.requests.append((request.page_token, request.page_size,
                                  request.include_archived, request.full))
            ids, token = self.pages[request.page_token]
            reply = self.pb.ListDeploymentsResponse(next_page_token=token)
            for i in ids:
                reply.deployments.add(id=i)
            return reply

    def test_every_page_in_order_with_the_same_request(self):
        with Client("127.0.0.1:1") as c:  # never connected: the stub answers
            stub = PagingTest.Stub(self)
            c._kernels = stub
            ids = [d.id for d in c.deployments(True, include_archived=True, page_size=2)]
            self.assertEqual(ids, ["dep-5", "dep-4", "dep-3", "dep-2", "dep-1"])
            self.assertEqual(stub.requests, [("", 2, True, True), ("t1", 2, True, True),
                                             ("t2", 2, True, True)])

    def test_a_token_handed_out_twice_stops_the_loop(self):
        with Client("127.0.0.1:1") as c:
            stub = PagingTest.Stub(self)
            stub.pages["t2"] = (["dep-1"], "t1")  # a daemon going round in circles
            c._kernels = stub
            with self.assertRaises(XbarError) as e:
                c.deployments()
            self.assertEqual(e.exception.code, "INTERNAL")
            self.assertEqual(len(stub.requests), 3)


class TokenTest(unittest.TestCase):
    """A daemon with a token file, on a Unix socket: calls that change the board need
    'authorization: Bearer TOKEN'; reads do not. Skipped while xbard does not enforce it."""

    def test_token(self):
        if not os.access(XBARD, os.X_OK):
            self.skipTest(f"no xbard at {XBARD}")
        d = tempfile.mkdtemp(prefix="xbar-pyclient-token-")
        try:
            token_file = os.path.join(d, "token")
            with open(token_file, "w") as f:
                f.write("py-client-test-token-0123456789")
            os.chmod(token_file, 0o600)
            config = os.path.join(d, "xbard.yaml")
            with open(config, "w") as f:
                f.write(f"security:\n  token_file: {token_file}\n")
            daemon = Daemon(unix=True, config=config)
            try:
                if not daemon.up:
                    self.skipTest(f"xbard does not take security.token_file (exit "
                                  f"{daemon.exit_code})")
                with Client(daemon.target) as anon:
                    self.assertTrue(anon.info().serial.startswith("XS"))
                    try:
                        anon.delete_deployment(NO_SUCH_DEPLOYMENT)
                    except XbarError as e:
                        if e.code == "NOT_FOUND":
                            self.skipTest("this xbard does not enforce its token yet")
                        self.assertEqual(e.code, "UNAUTHENTICATED", e)
                with Client(daemon.target, token="wrong") as wrong:
                    with self.assertRaises(XbarError) as e:
                        wrong.delete_deployment(NO_SUCH_DEPLOYMENT)
                    self.assertEqual(e.exception.code, "UNAUTHENTICATED")
                with Client(daemon.target, token="py-client-test-token-0123456789") as good:
                    with self.assertRaises(XbarError) as e:
                        good.delete_deployment(NO_SUCH_DEPLOYMENT)
                    self.assertEqual(e.exception.code, "NOT_FOUND")
            finally:
                daemon.cleanup()
        finally:
            shutil.rmtree(d, ignore_errors=True)


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d: str) -> None:
    """ca.pem/ca.key, server.pem/server.key (127.0.0.1, localhost) and client.pem/client.key,
    both signed by the CA."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=xbar-test-ca", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "extendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN=xbar-test-{name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                f"{name}.ext", cwd=d)


class TlsTest(unittest.TestCase):
    """A daemon serving mutual TLS: the client reaches it with the CA and its own certificate
    (as paths and as bytes), and not without them. Skipped without openssl or without TLS in
    xbard."""

    def test_mutual_tls(self):
        if not os.access(XBARD, os.X_OK):
            self.skipTest(f"no xbard at {XBARD}")
        if shutil.which("openssl") is None:
            self.skipTest("no openssl to make certificates")
        d = tempfile.mkdtemp(prefix="xbar-pyclient-tls-")
        try:
            make_certificates(d)
            p = lambda name: os.path.join(d, name)  # noqa: E731
            config = p("xbard.yaml")
            with open(config, "w") as f:
                f.write(f"security:\n  tls_cert: {p('server.pem')}\n"
                        f"  tls_key: {p('server.key')}\n  tls_client_ca: {p('ca.pem')}\n")
            creds = dict(root_certificates=p("ca.pem"), private_key=p("client.key"),
                         certificate_chain=p("client.pem"))
            daemon = Daemon(config=config, **creds)
            try:
                if not daemon.up:
                    self.skipTest(f"xbard does not serve TLS from security.tls_* (exit "
                                  f"{daemon.exit_code}): {daemon.log()[-300:]}")
                with Client(daemon.target, **creds) as c:
                    self.assertTrue(c.info().serial.startswith("XS"))
                with open(p("ca.pem"), "rb") as ca, open(p("client.key"), "rb") as key, \
                        open(p("client.pem"), "rb") as chain:
                    as_bytes = dict(root_certificates=ca.read(), private_key=key.read(),
                                    certificate_chain=chain.read())
                with Client(daemon.target, **as_bytes) as c:
                    self.assertGreater(c.status().ops_executed, 0)
                # Refused by the handshake, not by the deadline (generous: a loaded machine).
                for kwargs in ({}, {"root_certificates": p("ca.pem")}):
                    with Client(daemon.target, timeout=60, **kwargs) as c:
                        with self.assertRaises(XbarError) as e:
                            c.info()
                        self.assertEqual(e.exception.code, "UNAVAILABLE", kwargs)
            finally:
                daemon.cleanup()
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
