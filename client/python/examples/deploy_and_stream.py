#!/usr/bin/python3
"""Deploys a model on xbard, classifies one clip with it, then streams the same clip in 20 ms
chunks and prints the running label of each answer, and a final JSON summary line.

    PYTHONPATH=client/python:build/client/python/gen /usr/bin/python3 \\
        client/python/examples/deploy_and_stream.py --target 127.0.0.1:50051

Without --wav it makes a clip: a 1.161 s chirp at the model's rate, written as a 16-bit WAV
(the stdlib `wave` module) to --out or a temporary file. The one-shot inference sends the WAV
file's bytes (the daemon decodes, resamples and peak-normalises it); the stream sends samples
at the model's rate, prepared here the way the daemon prepares a clip (mono, resampled,
peak-normalised after the block average, padded or cut to the model's length: a stream is
neither normalised nor padded), so the stream's final label is the one-shot label. A model with
the log-mel front end (preprocessing.log_mel) normalises a stream itself (its reference is
causal), and its padding is zero steps, which no samples give: its stream is only cut to the
model's length, and its result is the one-shot result when the clip needs no padding.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import sys
import tempfile
import wave
from pathlib import Path

from xbar_client import Client, XbarError

REPO = Path(__file__).resolve().parents[3]


def make_chirp(path: str, rate_hz: int, n: int) -> None:
    """Writes a mono 16-bit WAV: a linear chirp 200 Hz -> 4 kHz with a fade in and out."""
    f0, f1, dur = 200.0, 4000.0, n / rate_hz
    frames = array.array("h")
    for i in range(n):
        t = i / rate_hz
        phase = 2 * math.pi * (f0 * t + (f1 - f0) * t * t / (2 * dur))
        env = min(1.0, t / 0.05, (dur - t) / 0.05)
        frames.append(int(round(0.8 * 32767 * env * math.sin(phase))))
    if sys.byteorder == "big":
        frames.byteswap()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(frames.tobytes())


def read_wav(path: str) -> tuple[list[float], int]:
    """Mono float samples (mean of the channels, full scale 1) and the rate of a PCM WAV."""
    with wave.open(path, "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:  # unsigned 8-bit
        values = [(b - 128) / 128.0 for b in raw]
    elif width in (2, 3, 4):
        scale = float(1 << (8 * width - 1))
        values = [
            int.from_bytes(raw[i : i + width], "little", signed=True) / scale
            for i in range(0, len(raw), width)
        ]
    else:
        raise ValueError(f"{path}: {8 * width}-bit samples are not supported")
    mono = [sum(values[i : i + channels]) / channels for i in range(0, len(values), channels)]
    return mono, rate


def resample_linear(x: list[float], rate_in: int, rate_out: int) -> list[float]:
    """Linear interpolation (the daemon uses a sinc resampler for files; this is enough for a
    demonstration)."""
    if rate_in == rate_out or not x:
        return list(x)
    n = max(1, round(len(x) * rate_out / rate_in))
    out = []
    for i in range(n):
        pos = i * rate_in / rate_out
        j = int(pos)
        frac = pos - j
        a = x[min(j, len(x) - 1)]
        b = x[min(j + 1, len(x) - 1)]
        out.append(a + (b - a) * frac)
    return out


def prepare_for_stream(x: list[float], preprocessing) -> list[float]:
    """What the daemon does to a clip before the model, done on the samples so that a stream
    (which gets none of it) sees the same steps: peak-normalise the block averages to 1,
    pad with zeros or cut to target_length steps. With log_mel only the cut (see above)."""
    ds = preprocessing.downsample or 64
    if preprocessing.HasField("log_mel"):
        if preprocessing.target_length:
            x = x[: preprocessing.target_length * ds]
        return x
    if preprocessing.normalise:
        peak = 0.0
        for i in range(0, len(x), ds):
            block = x[i : i + ds]
            peak = max(peak, abs(sum(block) / len(block)))
        if peak > 0:
            x = [v / peak for v in x]
    if preprocessing.target_length:
        n = preprocessing.target_length * ds
        x = (x + [0.0] * n)[:n]
    return x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default=os.environ.get("XBAR_ADDR", "127.0.0.1:50051"),
                    help="xbard address, HOST:PORT or unix:PATH "
                    "(default $XBAR_ADDR or %(default)s)")
    ap.add_argument("--token", default=os.environ.get("XBAR_TOKEN"),
                    help="the daemon's token (default $XBAR_TOKEN)")
    ap.add_argument("--ca", help="PEM CA of the daemon's certificate: TLS")
    ap.add_argument("--cert", help="PEM client certificate chain (mutual TLS)")
    ap.add_argument("--key", help="PEM client private key (mutual TLS)")
    ap.add_argument("--model", default=str(REPO / "models" / "example-model.json"),
                    help="xbar.v1.Model JSON (default models/example-model.json)")
    ap.add_argument("--wav", help="clip to classify (PCM WAV); default: a chirp made here")
    ap.add_argument("--out", help="where to write the chirp (default: a temporary file)")
    ap.add_argument("--chunk-ms", type=float, default=20.0, help="stream chunk (%(default)s ms)")
    ap.add_argument("--software", action="store_true", help="kernels in software, not on the board")
    ap.add_argument("--no-replace", action="store_true",
                    help="fail instead of taking arrays held by other deployments")
    args = ap.parse_args()
    path = "software" if args.software else "hardware"

    with Client(args.target, token=args.token, root_certificates=args.ca,
                private_key=args.key, certificate_chain=args.cert) as c:
        c.wait_ready(timeout=15)
        info = c.info()
        print(f"board {info.serial} ({info.backend}, {info.arrays} arrays of "
              f"{info.rows}x{info.cols}) at {args.target}", flush=True)

        def progress(p):
            if p.message:
                print(f"  {p.stage:8s} {p.message}", file=sys.stderr, flush=True)

        dep = c.deploy_model(args.model, on_progress=progress, replace=not args.no_replace)
        print(f"deployed {dep.id} ({dep.name}): {dep.state}"
              + (f" ({dep.message})" if dep.message else ""), flush=True)
        if dep.state not in ("ready", "degraded"):
            print(json.dumps({"deployment": dep.id, "state": dep.state, "ok": False}))
            return 1
        model = c.model(dep.id)
        pp = model.preprocessing
        rate = pp.sample_rate_hz or 48000
        steps = pp.target_length or 871

        tmp = None
        wav = args.wav
        if wav is None:
            if args.out:
                wav = args.out
            else:
                tmp = tempfile.NamedTemporaryFile(suffix=".wav", delete=False)
                tmp.close()
                wav = tmp.name
            make_chirp(wav, rate, steps * (pp.downsample or 64))
        try:
            one = c.infer(dep.id, wav, path=path)
            print(f"infer: {one.class_name or one.label}  p = "
                  + ", ".join(f"{p:.4f}" for p in one.probabilities)
                  + f"  ({one.steps} steps, board {one.board_ms:.1f} ms)", flush=True)

            samples, wav_rate = read_wav(wav)
            samples = prepare_for_stream(resample_linear(samples, wav_rate, rate), pp)
            partials = 0
            last = None
            for r in c.stream(dep.id, samples, rate, chunk_ms=args.chunk_ms, path=path):
                if not r.probabilities:
                    continue
                partials += 1
                last = r
                p = r.probabilities[r.label]
                print(f"{'final  ' if r.final else 'partial'} step {r.steps:4d}: "
                      f"{r.class_name or r.label} (p {p:.4f})", flush=True)
        finally:
            if tmp is not None:
                os.unlink(tmp.name)

        if last is None:
            print(json.dumps({"deployment": dep.id, "ok": False, "error": "no stream answer"}))
            return 1
        summary = {
            "target": args.target,
            "serial": info.serial,
            "deployment": dep.id,
            "state": dep.state,
            "path": path,
            "infer": {
                "label": one.label,
                "class_name": one.class_name,
                "probabilities": [round(p, 6) for p in one.probabilities],
                "steps": one.steps,
                "board_ms": round(one.board_ms, 3),
            },
            "stream": {
                "label": last.label,
                "class_name": last.class_name,
                "probabilities": [round(p, 6) for p in last.probabilities],
                "steps": last.steps,
                "final": last.final,
                "partials": partials,
                "chunk_ms": args.chunk_ms,
            },
            "labels_agree": one.label == last.label,
        }
        print(json.dumps(summary), flush=True)
        return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except XbarError as e:
        print(f"deploy_and_stream: {e.code}: {e.message}", file=sys.stderr)
        sys.exit(1)
    except (OSError, ValueError, EOFError, wave.Error) as e:
        print(f"deploy_and_stream: {e}", file=sys.stderr)
        sys.exit(2)
