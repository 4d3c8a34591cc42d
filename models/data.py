#!/usr/bin/python3
"""The "zero"/"one" data of issue 7: a generator for a Heidelberg-Digits-like spoken-digit set,
a loader for the real Heidelberg Digits (HD) archive, and the model's audio preprocessing exactly
as the C++ side computes it (drivers/audio/src/audio.cc).

Generate the set (deterministic from --seed; about 65 s on 2 cores, 149 MB of WAVs):

    /usr/bin/python3 models/data.py generate --out data/digits-gen --seed 7

Check an HD archive (hd_audio.tar.gz unpacked: flac files plus train_filenames.txt and
test_filenames.txt; the paper's task is English "zero" vs "one", labels 0 and 1):

    /usr/bin/python3 models/data.py hd --root data/hd_audio [--languages english,german]

Generated set
-------------
"Speakers" are espeak-ng voice identities: accent (7 English voices) x variant (the +m1..+m8,
+f1..+f5 family plus named and Klatt variants) x base pitch (espeak -p). Every speaker says
"zero" and "one" `--renditions` times each; every rendition draws its own text punctuation
(intonation), speaking rate, pitch jitter, then sox tempo, pitch shift, gain, optional reverb,
optional band limiting, and noise (white, pink or brown) at an SNR from {clean, 40, 30,
20 dB}, leading/trailing silence. Every clip is high-passed at 40 Hz at least (an AC-coupled
microphone, as in HD's recordings): without it the model learns espeak's near-DC content. Everything is 48 kHz mono 16-bit WAV like HD. The split is
speaker-disjoint (a speaker's clips are all in train or all in test). The manifest
(manifest.csv and manifest.json) records every parameter of every clip.

Noise is mixed in numpy (seeded per clip) rather than with sox's synth, whose generator is not
seeded per clip; sox writes 32-bit float so no dither is added; the final rounding to 16 bits
is done here (no dither), so the files are reproducible to the bit.

Preprocessing (preprocess()): 48 kHz -> block average of 64 samples (ceil(n/64) steps) ->
peak-normalise -> pad/truncate to 871 steps, in the same float32/float64 arithmetic as
xbar::audio::preprocess, so a 48 kHz WAV gives the same steps bit for bit. Other rates are
resampled with sox here (libsamplerate in C++: close, not bit-identical).
"""

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
import wave
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RATE = 48000

ACCENTS = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-gb-x-rp", "en-029"]
VARIANTS = (["m%d" % i for i in range(1, 9)] + ["f%d" % i for i in range(1, 6)] +
            ["klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6"] +
            ["adam", "anika", "aunty", "benjamin", "boris", "caleb", "david", "ed", "edward",
             "grandma", "grandpa", "john", "linda", "max", "michel", "norbert", "paul",
             "quincy", "rob", "robert", "steph", "travis", "victor", "zac", "Alex", "Andy",
             "Annie", "Lee", "Michael", "Mike", "whisperf"])
BASE_PITCHES = [25, 40, 55, 70, 85]  # espeak -p (0..99, default 50)
WORDS = ["zero", "one"]              # label = index
TEXTS = ["{w}", "{w}.", "{w}!", "{w}?", "{W},", "{W}."]
SNRS = [None, 40.0, 30.0, 20.0]  # dB; None = clean
SNR_P = [0.4, 0.2, 0.2, 0.2]
NOISES = ["white", "pink", "brown"]


# --------------------------------------------------------------------------------------------
# Audio I/O and the preprocessing of the C++ side


def read_wav(path):
    """A PCM WAV -> (float32 mono samples scaled like libsndfile: int16 / 32768, rate)."""
    with wave.open(path, "rb") as w:
        ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    elif width == 4:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128) / np.float32(128.0)
    else:
        raise ValueError("%s: %d-byte samples not supported" % (path, width))
    x = x.reshape(-1, ch)
    mono = (x.astype(np.float64).sum(axis=1) / ch).astype(np.float32)
    return mono, rate


def read_audio(path, rate=None):
    """Any file sox reads (FLAC, WAV, ...) -> float32 mono; resampled with sox if `rate`."""
    if path.endswith(".wav"):
        try:
            x, r = read_wav(path)
            if rate is None or r == rate:
                return x, r
        except (wave.Error, ValueError):
            pass
    info = subprocess.run(["soxi", "-r", path], check=True, capture_output=True, text=True)
    r = int(float(info.stdout.strip()))
    out_rate = rate or r
    cmd = ["sox", "-D", path, "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-"]
    if out_rate != r:
        cmd += ["rate", "-v", str(out_rate)]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<f4").copy(), out_rate


def preprocess(samples, rate, sample_rate_hz=RATE, downsample=64, target_length=871,
               normalise=True):
    """xbar::audio::preprocess: block average, peak-normalise, pad/truncate (float32 result)."""
    x = np.asarray(samples, dtype=np.float32)
    if rate != sample_rate_hz:
        raise ValueError("resample first (read_audio(path, rate=%d))" % sample_rate_hz)
    n = x.size
    steps = (n + downsample - 1) // downsample
    pad = steps * downsample - n
    xd = np.concatenate([x.astype(np.float64), np.zeros(pad)]).reshape(steps, downsample)
    counts = np.full(steps, float(downsample))
    if pad:
        counts[-1] = downsample - pad
    y = (xd.sum(axis=1) / counts).astype(np.float32)
    if normalise:
        peak = np.float32(np.abs(y).max()) if y.size else np.float32(0)
        if peak > 0:
            y = (y / peak).astype(np.float32)
    if target_length > 0:
        out = np.zeros(target_length, dtype=np.float32)
        k = min(target_length, y.size)
        out[:k] = y[:k]
        y = out
    return y


def write_wav16(path, x, rate=RATE):
    q = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767)
    tmp = path + ".tmp"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(q.astype("<i2").tobytes())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Generator


def _coloured_noise(rng, kind, n):
    w = rng.standard_normal(n)
    if kind == "white":
        return w
    spec = np.fft.rfft(w)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec = spec / (np.sqrt(f) if kind == "pink" else f)
    spec[0] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.std(out) + 1e-12)


def _speakers(seed, count):
    """`count` distinct (accent, variant, base pitch) identities, drawn from the seed."""
    rng = np.random.default_rng([seed, 1])
    combos = [(a, v, p) for a in ACCENTS for v in VARIANTS for p in BASE_PITCHES]
    if count > len(combos):
        raise ValueError("at most %d speakers" % len(combos))
    pick = rng.permutation(len(combos))[:count]
    return [combos[i] for i in sorted(pick)]


def plan(seed=7, speakers=240, renditions=4, test_fraction=0.25):
    """The parameters of every clip (no audio yet): a list of dicts, deterministic."""
    spk = _speakers(seed, speakers)
    order = np.random.default_rng([seed, 2]).permutation(len(spk))
    n_test = int(round(test_fraction * len(spk)))
    test_ids = set(int(i) for i in order[:n_test])
    clips = []
    for s, (accent, variant, base_pitch) in enumerate(spk):
        split = "test" if s in test_ids else "train"
        for label, word in enumerate(WORDS):
            for r in range(renditions):
                rng = np.random.default_rng([seed, 3, s, label, r])
                text = TEXTS[rng.integers(len(TEXTS))].format(w=word, W=word.capitalize())
                snr_i = rng.choice(len(SNRS), p=SNR_P)
                c = {
                    "file": "%s/spk%03d_%s_r%d.wav" % (split, s, word, r),
                    "label": label,
                    "word": word,
                    "split": split,
                    "speaker": "spk%03d" % s,
                    "voice": "%s+%s" % (accent, variant),
                    "base_pitch": base_pitch,
                    "text": text,
                    "wpm": int(rng.integers(125, 216)),
                    "espeak_pitch": int(np.clip(base_pitch + rng.integers(-8, 9), 0, 99)),
                    "tempo": round(float(rng.uniform(0.85, 1.2)), 3),
                    "pitch_cents": int(rng.integers(-150, 151)),
                    "gain_db": round(float(rng.uniform(-20, 0)), 2),
                    "reverb": int(rng.integers(10, 51)) if rng.random() < 0.3 else 0,
                    "room_scale": int(rng.integers(30, 101)),
                    "lowpass_hz": int(rng.choice([3400, 5000, 8000])) if rng.random() < 0.25 else 0,
                    "highpass_hz": int(rng.choice([100, 150])) if rng.random() < 0.2 else 40,
                    "noise": NOISES[rng.integers(len(NOISES))] if SNRS[snr_i] else "none",
                    "snr_db": SNRS[snr_i],
                    "lead_s": round(float(rng.uniform(0.03, 0.3)), 3),
                    "tail_s": round(float(rng.uniform(0.03, 0.25)), 3),
                    "noise_seed": int(rng.integers(2**31)),
                }
                clips.append(c)
    return clips


def synth(c):
    """One clip's samples (float64, 48 kHz) from its parameters."""
    esp = subprocess.run(["espeak-ng", "-v", c["voice"], "-s", str(c["wpm"]), "-p",
                          str(c["espeak_pitch"]), "--stdout", c["text"]],
                         check=True, capture_output=True).stdout
    fx = ["rate", "-v", str(RATE), "tempo", "-s", str(c["tempo"]), "pitch",
          str(c["pitch_cents"])]
    if c["highpass_hz"]:
        fx += ["highpass", str(c["highpass_hz"])]
    if c["lowpass_hz"]:
        fx += ["lowpass", str(c["lowpass_hz"])]
    if c["reverb"]:
        fx += ["reverb", str(c["reverb"]), "50", str(c["room_scale"])]
    fx += ["gain", "-n", str(c["gain_db"])]
    raw = subprocess.run(["sox", "-D", "-t", "wav", "-", "-t", "raw", "-e", "floating-point",
                          "-b", "32", "-c", "1", "-"] + fx,
                         input=esp, check=True, capture_output=True).stdout
    x = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    # Trim espeak's and the reverb's near-silence (-50 dB of the peak), then add our own.
    peak = np.abs(x).max()
    active = np.nonzero(np.abs(x) > peak * 10 ** (-50 / 20))[0]
    x = x[active[0]:active[-1] + 1]
    speech_power = np.mean(x ** 2)
    x = np.concatenate([np.zeros(int(c["lead_s"] * RATE)), x, np.zeros(int(c["tail_s"] * RATE))])
    if c["snr_db"] is not None:
        rng = np.random.default_rng(c["noise_seed"])
        nz = _coloured_noise(rng, c["noise"], x.size)
        x = x + nz * np.sqrt(speech_power / 10 ** (c["snr_db"] / 10))
    top = np.abs(x).max()
    if top > 0.99:  # no clipping in the 16-bit file
        x *= 0.99 / top
    return x


def _make(args):
    c, out = args
    path = os.path.join(out, c["file"])
    if not os.path.exists(path):
        write_wav16(path, synth(c))
    return c["file"]


def manifest_hash(clips):
    return hashlib.sha256(json.dumps(clips, sort_keys=True).encode()).hexdigest()[:16]


def generate(out, seed=7, speakers=240, renditions=4, test_fraction=0.25, jobs=2):
    clips = plan(seed, speakers, renditions, test_fraction)
    os.makedirs(os.path.join(out, "train"), exist_ok=True)
    os.makedirs(os.path.join(out, "test"), exist_ok=True)
    old = os.path.join(out, "manifest.json")
    if os.path.exists(old):
        with open(old) as f:
            prev = json.load(f)
        if prev.get("hash") != manifest_hash(clips):  # other settings: start afresh
            for c in prev["clips"]:
                p = os.path.join(out, c["file"])
                if os.path.exists(p):
                    os.remove(p)
    for name in os.listdir(out):  # step caches of other manifests (load_dataset)
        if name.startswith("steps-") and name.endswith(".npz") and manifest_hash(clips) not in name:
            os.remove(os.path.join(out, name))
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        for i, _ in enumerate(ex.map(_make, [(c, out) for c in clips], chunksize=16)):
            if (i + 1) % 200 == 0:
                print("  %d/%d clips" % (i + 1, len(clips)), file=sys.stderr)
    for c in clips:
        with wave.open(os.path.join(out, c["file"]), "rb") as w:
            c["seconds"] = round(w.getnframes() / RATE, 4)
    meta = {"generator": "models/data.py", "seed": seed, "speakers": speakers,
            "renditions": renditions, "test_fraction": test_fraction, "rate_hz": RATE,
            "hash": manifest_hash([{k: v for k, v in c.items() if k != "seconds"} for c in clips]),
            "clips": clips}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(out, "manifest.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(clips[0].keys()))
        w.writeheader()
        w.writerows(clips)
    return clips, time.time() - t0


# --------------------------------------------------------------------------------------------
# Heidelberg Digits

HD_WORDS = {"english": ["zero", "one"], "german": ["null", "eins"]}


def parse_hd_name(name):
    """'lang-english_speaker-03_trial-4_digit-0.flac' -> dict, or None (as audio.cc)."""
    base = os.path.basename(name)
    stem, dot, ext = base.rpartition(".")
    if not dot or ext not in ("flac", "wav", "ogg"):
        return None
    parts = stem.split("_")
    if len(parts) != 4:
        return None
    keys = ["lang", "speaker", "trial", "digit"]
    vals = {}
    for k, p in zip(keys, parts):
        if not p.startswith(k + "-") or len(p) == len(k) + 1:
            return None
        vals[k] = p[len(k) + 1:]
    if not vals["lang"].isalpha() or not vals["lang"].islower():
        return None
    for k in keys[1:]:
        if not vals[k].isdigit() or len(vals[k]) > 6:
            return None
    d = int(vals["digit"])
    if d > 9:
        return None
    return {"language": vals["lang"], "speaker": int(vals["speaker"]),
            "trial": int(vals["trial"]), "digit": d}


def load_hd(root, languages=("english",)):
    """The zero/one clips of an unpacked HD archive under `root`, with HD's own split.

    The paper (§II.C) used the English words "zero" and "one" only: languages=("english",).
    German "null"/"eins" (HD digit 0/1 of lang-german, HD labels 10/11) join the same two
    classes with languages=("english", "german"). The split is HD's train_filenames.txt /
    test_filenames.txt when present (searched under root); otherwise speakers 4 and 5 (HD's
    test-only speakers) are the test set."""
    files = {}
    for d, _, names in os.walk(root):
        for n in names:
            if parse_hd_name(n):
                files.setdefault(n, os.path.join(d, n))
    if not files:
        raise FileNotFoundError("no HD files (lang-*_speaker-*_trial-*_digit-*.flac) under " + root)
    split_of = {}
    for split in ("train", "test"):
        for d, _, names in os.walk(root):
            if split + "_filenames.txt" in names:
                with open(os.path.join(d, split + "_filenames.txt")) as f:
                    for line in f:
                        if line.strip():
                            split_of[os.path.basename(line.strip())] = split
                break
    clips = []
    for n in sorted(files):
        h = parse_hd_name(n)
        if h["language"] not in languages or h["digit"] > 1:
            continue
        split = split_of.get(n) if split_of else ("test" if h["speaker"] in (4, 5) else "train")
        if split is None:
            continue
        clips.append({"file": files[n], "label": h["digit"],
                      "word": HD_WORDS.get(h["language"], WORDS)[h["digit"]], "split": split,
                      "speaker": "%s-%02d" % (h["language"], h["speaker"])})
    return clips


# --------------------------------------------------------------------------------------------
# Dataset for training: preprocessed steps, cached


def load_dataset(path, languages=("english",), target_length=871, cache=True):
    """A generated set (manifest.json in `path`) or an HD archive -> dict of numpy arrays:
    u_train, y_train, u_test, y_test (float32 steps, int labels) and the clip lists."""
    manifest = os.path.join(path, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            meta = json.load(f)
        clips = meta["clips"]
        for c in clips:
            c["path"] = os.path.join(path, c["file"])
        key = meta["hash"]
        cache_dir = path
    else:
        clips = load_hd(path, languages)
        for c in clips:
            c["path"] = c["file"]
        key = manifest_hash([c["file"] for c in clips])
        cache_dir = os.path.join(ROOT, "data")
    cache_file = os.path.join(cache_dir, "steps-%s-%d.npz" % (key, target_length))
    if cache and os.path.exists(cache_file):
        z = np.load(cache_file)
        u = z["u"]
    else:
        u = np.stack([preprocess(*read_audio(c["path"], RATE), target_length=target_length)
                      for c in clips])
        if cache:
            os.makedirs(cache_dir, exist_ok=True)
            np.savez(cache_file, u=u)
    y = np.array([c["label"] for c in clips], dtype=np.int64)
    tr = np.array([c["split"] == "train" for c in clips])
    about = {"path": os.path.relpath(path, ROOT), "hash": key}
    if os.path.exists(manifest):
        about.update({k: meta[k] for k in ("seed", "speakers", "renditions", "test_fraction")})
    return {"about": about, "u_train": u[tr], "y_train": y[tr], "u_test": u[~tr], "y_test": y[~tr],
            "clips_train": [c for c, t in zip(clips, tr) if t],
            "clips_test": [c for c, t in zip(clips, tr) if not t]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="synthesise the zero/one set with espeak-ng and sox")
    g.add_argument("--out", default=os.path.join(ROOT, "data", "digits-gen"))
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--speakers", type=int, default=240)
    g.add_argument("--renditions", type=int, default=4, help="clips per speaker and word")
    g.add_argument("--test-fraction", type=float, default=0.25)
    g.add_argument("--jobs", type=int, default=2)
    h = sub.add_parser("hd", help="list the zero/one clips of a Heidelberg Digits archive")
    h.add_argument("--root", required=True)
    h.add_argument("--languages", default="english")
    args = ap.parse_args()
    if args.cmd == "generate":
        clips, secs = generate(args.out, args.seed, args.speakers, args.renditions,
                               args.test_fraction, args.jobs)
        for split in ("train", "test"):
            cs = [c for c in clips if c["split"] == split]
            print("%s: %d clips (%d zero, %d one), %d speakers, %.2f s mean length" % (
                split, len(cs), sum(c["label"] == 0 for c in cs), sum(c["label"] == 1 for c in cs),
                len({c["speaker"] for c in cs}), np.mean([c["seconds"] for c in cs])))
        print("wrote %s in %.0f s" % (args.out, secs))
    else:
        clips = load_hd(args.root, tuple(args.languages.split(",")))
        for split in ("train", "test"):
            cs = [c for c in clips if c["split"] == split]
            print("%s: %d clips (%d zero, %d one), speakers %s" % (
                split, len(cs), sum(c["label"] == 0 for c in cs), sum(c["label"] == 1 for c in cs),
                sorted({c["speaker"] for c in cs})))


if __name__ == "__main__":
    main()
