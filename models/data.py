#!/usr/bin/python3
"""The "zero"/"one" data of issue 7: a generator for a Heidelberg-Digits-like spoken-digit set,
a loader for the real Heidelberg Digits (HD) archive, and the model's audio preprocessing exactly
as the C++ side computes it (compute/audio/src/audio.cc).

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

import frontend

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RATE = 48000

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
# Generator: three synthesizers, rooms, microphones, telephone bands, noise (issue 18)

ACCENTS = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-gb-x-rp", "en-029"]
VARIANTS = (["m%d" % i for i in range(1, 9)] + ["f%d" % i for i in range(1, 6)] +
            ["klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6"] +
            ["adam", "anika", "aunty", "benjamin", "boris", "caleb", "david", "ed", "edward",
             "grandma", "grandpa", "john", "linda", "max", "michel", "norbert", "paul",
             "quincy", "rob", "robert", "steph", "travis", "victor", "zac", "Alex", "Andy",
             "Annie", "Lee", "Michael", "Mike", "whisperf"])
BASE_PITCHES = [25, 40, 55, 70, 85]  # espeak -p (0..99, default 50)
FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]  # flite's built-in voices (flite -lv)
FLITE_F0 = [85, 105, 125, 160, 200]  # int_f0_target_mean, Hz: one speaker per voice and F0
FESTIVAL_VOICES = ["kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"]  # festvox-* packages
WORDS = ["zero", "one"]              # label = index
TEXTS = ["{w}", "{w}.", "{w}!", "{w}?", "{W},", "{W}."]
NOISES = ["white", "pink", "brown", "babble", "hum"]
CAPTURES = ["studio", "mic16", "mic8", "phone"]  # how the clip was recorded (_capture)
CAPTURE_P = [0.2, 0.3, 0.3, 0.2]
CAPTURE_RATE = {"studio": 48000, "mic16": 16000, "mic8": 8000, "phone": 8000}
WORK_RATE = 16000  # every voice is brought to this rate before the acoustics


def _coloured_noise(rng, kind, n, rate=WORK_RATE):
    """Unit-power noise: white, pink (1/f), brown (1/f^2), babble (speech-shaped, modulated at
    syllable rate, like a room of talkers) or hum (mains at 50 or 60 Hz with harmonics over a
    pink floor)."""
    w = rng.standard_normal(n)
    if kind == "white":
        return w
    spec = np.fft.rfft(w)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    f[0] = f[1] if f.size > 1 else 1.0
    if kind == "pink":
        spec = spec / np.sqrt(f)
    elif kind == "brown":
        spec = spec / f
    elif kind == "babble":  # the long-term speech spectrum: a peak near 500 Hz, -9 dB/oct above
        spec = spec * (f / 500.0) / (1.0 + (f / 500.0) ** 2.5)
    elif kind == "hum":
        spec = spec / np.sqrt(f) * 0.3
    spec[0] = 0
    out = np.fft.irfft(spec, n)
    if kind == "babble":  # 3..6 Hz amplitude modulation, a few talkers overlapping
        t = np.arange(n) / rate
        env = np.ones(n)
        for _ in range(3):
            env += 0.6 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 2 * np.pi))
        out = out * np.maximum(env, 0.1)
    elif kind == "hum":
        t = np.arange(n) / rate
        mains = 50.0 if rng.random() < 0.5 else 60.0
        out = out / (np.std(out) + 1e-12)
        for h in range(1, 8):
            out += (1.5 / h) * np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 2 * np.pi))
    return out / (np.std(out) + 1e-12)


def _room_ir(rng, rt60_s, drr_db, rate=WORK_RATE):
    """A generated room impulse response: the direct path, then an exponentially decaying
    noise tail (-60 dB at rt60_s), scaled so the direct-to-reverberant ratio is drr_db."""
    n = max(2, int(rt60_s * rate))
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    tail[: int(0.002 * rate)] = 0  # the first reflection arrives after the direct sound
    tail *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(tail ** 2) + 1e-12))
    tail[0] = 1.0
    return tail


def _band(x, rate, hp_hz=0.0, lp_hz=0.0, tilt=0.0):
    """Zero-phase band limiting in the frequency domain: a 2nd-order high-pass at hp_hz, a
    4th-order low-pass at lp_hz (Butterworth magnitudes), and a spectral tilt of `tilt` decades
    of gain per decade around 1 kHz (a microphone's colour)."""
    n = x.size
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    g = np.ones(f.size)
    fz = np.maximum(f, 1e-3)
    if hp_hz > 0:
        g /= np.sqrt(1 + (hp_hz / fz) ** 4)
    if lp_hz > 0:
        g /= np.sqrt(1 + (fz / lp_hz) ** 8)
    if tilt:
        g *= np.clip(fz / 1000.0, 0.05, 8.0) ** tilt
    return np.fft.irfft(spec * g, n)


def _mu_law(x):
    """A G.711 mu-law round trip (8-bit codes), as a telephone line leaves the signal."""
    mu = 255.0
    y = np.sign(x) * np.log1p(mu * np.minimum(np.abs(x), 1.0)) / np.log1p(mu)
    y = np.round(y * 127.0) / 127.0
    return np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu


def _speakers(seed, espeak_count):
    """Every voice identity, with its synthesizer: `espeak_count` espeak-ng identities drawn
    from accent x variant x base pitch, every flite voice at 5 base F0s, the festival voices."""
    rng = np.random.default_rng([seed, 1])
    combos = [(a, v, p) for a in ACCENTS for v in VARIANTS for p in BASE_PITCHES]
    if espeak_count > len(combos):
        raise ValueError("at most %d espeak-ng speakers" % len(combos))
    pick = sorted(rng.permutation(len(combos))[:espeak_count])
    spk = [{"synth": "espeak-ng", "voice": "%s+%s" % combos[i][:2], "pitch": combos[i][2]}
           for i in pick]
    spk += [{"synth": "flite", "voice": v, "pitch": f0} for v in FLITE_VOICES for f0 in FLITE_F0]
    spk += [{"synth": "festival", "voice": v, "pitch": 0} for v in FESTIVAL_VOICES]
    for s, d in enumerate(spk):
        d["speaker"] = "spk%03d" % s
    return spk


def plan(seed=7, speakers=240, renditions=4, test_fraction=0.25, flite_renditions=12,
         festival_renditions=40, heldout="festival"):
    """The parameters of every clip (no audio yet): a list of dicts, deterministic from `seed`.

    Splits: the `heldout` synthesizer's voices are never trained on (split "heldout"); every
    other speaker is in "train" or "test" (a `test_fraction` of each synthesizer's speakers)."""
    spk = _speakers(seed, speakers)
    test_ids = set()
    for synth in ("espeak-ng", "flite", "festival"):
        ids = [i for i, d in enumerate(spk) if d["synth"] == synth]
        order = np.random.default_rng([seed, 2, len(synth)]).permutation(len(ids))
        test_ids |= {ids[j] for j in order[:int(round(test_fraction * len(ids)))]}
    reps = {"espeak-ng": renditions, "flite": flite_renditions, "festival": festival_renditions}
    clips = []
    for s, d in enumerate(spk):
        split = ("heldout" if d["synth"] == heldout else
                 "test" if s in test_ids else "train")
        for label, word in enumerate(WORDS):
            for r in range(reps[d["synth"]]):
                rng = np.random.default_rng([seed, 3, s, label, r])
                text = TEXTS[rng.integers(len(TEXTS))].format(w=word, W=word.capitalize())
                capture = CAPTURES[rng.choice(len(CAPTURES), p=CAPTURE_P)]
                noisy = rng.random() < 0.75
                c = {
                    "file": "%s/%s_%s_r%d.wav" % (split, d["speaker"], word, r),
                    "label": label, "word": word, "split": split, "speaker": d["speaker"],
                    "synth": d["synth"], "voice": d["voice"], "base_pitch": d["pitch"],
                    "text": text,
                    # espeak-ng words per minute / flite and festival duration stretch
                    "wpm": int(rng.integers(120, 221)),
                    "stretch": round(float(rng.uniform(0.8, 1.35)), 3),
                    "pitch_jitter": int(rng.integers(-10, 11)),
                    "tempo": round(float(rng.uniform(0.8, 1.25)), 3),
                    "pitch_cents": int(rng.integers(-300, 301)),
                    "speed": round(float(rng.uniform(0.9, 1.1)), 3) if rng.random() < 0.3 else 1.0,
                    "rt60_s": round(float(rng.uniform(0.15, 0.9)), 3) if rng.random() < 0.4 else 0,
                    "drr_db": round(float(rng.uniform(-2, 12)), 2),
                    "capture": capture,
                    "rate_hz": CAPTURE_RATE[capture],
                    "highpass_hz": int(rng.choice([40, 80, 120, 200])),
                    "tilt": round(float(rng.uniform(-0.3, 0.3)), 3),
                    "noise": NOISES[rng.integers(len(NOISES))] if noisy else "none",
                    "snr_db": round(float(rng.uniform(5, 35)), 1) if noisy else None,
                    "peak_dbfs": round(float(rng.uniform(-30, -1)), 2),
                    "lead_s": round(float(rng.uniform(0.02, 0.45)), 3),
                    "tail_s": round(float(rng.uniform(0.02, 0.3)), 3),
                    "noise_seed": int(rng.integers(2**31)),
                }
                clips.append(c)
    return clips


def _tts(c, tmp):
    """The synthesizer's WAV bytes for one clip."""
    if c["synth"] == "espeak-ng":
        pitch = int(np.clip(c["base_pitch"] + c["pitch_jitter"], 0, 99))
        return subprocess.run(["espeak-ng", "-v", c["voice"], "-s", str(c["wpm"]), "-p",
                               str(pitch), "--stdout", c["text"]],
                              check=True, capture_output=True).stdout
    if c["synth"] == "flite":
        f0 = c["base_pitch"] * (1 + c["pitch_jitter"] / 100.0)
        subprocess.run(["flite", "-voice", c["voice"], "-t", c["text"], "-o", tmp,
                        "--setf", "duration_stretch=%g" % c["stretch"],
                        "--setf", "int_f0_target_mean=%g" % f0],
                       check=True, capture_output=True)
    else:
        subprocess.run(["text2wave", "-eval", "(voice_%s)" % c["voice"], "-eval",
                        "(Parameter.set 'Duration_Stretch %g)" % c["stretch"], "-o", tmp],
                       input=c["text"].encode(), check=True, capture_output=True)
    with open(tmp, "rb") as f:
        return f.read()


def _sox(wav_bytes, fx, in_type="wav", in_args=()):
    raw = subprocess.run(["sox", "-D", *in_args, "-t", in_type, "-", "-t", "raw", "-e",
                          "floating-point", "-b", "32", "-c", "1", "-"] + fx,
                         input=wav_bytes, check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<f4").astype(np.float64)


def synth(c, tmp="/tmp/xbar-tts.wav"):
    """One clip's samples (float64, at c["rate_hz"]) from its parameters: the voice, then sox's
    rate, tempo, pitch and speed, then (numpy, seeded per clip) the room, the microphone's band
    and colour, the noise, the level, the capture rate and for "phone" the mu-law line."""
    fx = ["rate", "-v", str(WORK_RATE), "tempo", "-s", str(c["tempo"]), "pitch",
          str(c["pitch_cents"])]
    if c["speed"] != 1.0:
        fx += ["speed", str(c["speed"]), "rate", "-v", str(WORK_RATE)]
    x = _sox(_tts(c, tmp), fx)
    # Trim the synthesizer's near-silence (-50 dB of the peak), then add our own.
    peak = np.abs(x).max()
    active = np.nonzero(np.abs(x) > peak * 10 ** (-50 / 20))[0]
    x = x[active[0]:active[-1] + 1]
    rng = np.random.default_rng(c["noise_seed"])
    x = np.concatenate([np.zeros(int(c["lead_s"] * WORK_RATE)), x,
                        np.zeros(int(c["tail_s"] * WORK_RATE))])
    if c["rt60_s"]:
        ir = _room_ir(rng, c["rt60_s"], c["drr_db"])
        n = x.size + ir.size - 1
        x = np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(ir, n), n)[:x.size]
    speech_power = np.mean(x[np.abs(x) > 1e-4 * np.abs(x).max()] ** 2)
    if c["snr_db"] is not None:
        nz = _coloured_noise(rng, c["noise"], x.size)
        x = x + nz * np.sqrt(speech_power / 10 ** (c["snr_db"] / 10))
    band = {"studio": (c["highpass_hz"] / 2, 0.0), "mic16": (c["highpass_hz"], 7000.0),
            "mic8": (c["highpass_hz"], 3600.0), "phone": (300.0, 3400.0)}[c["capture"]]
    x = _band(x, WORK_RATE, band[0], band[1], c["tilt"])
    x *= 10 ** (c["peak_dbfs"] / 20) / (np.abs(x).max() + 1e-12)
    if c["rate_hz"] != WORK_RATE:
        x = _sox(x.astype("<f4").tobytes(), ["rate", "-v", str(c["rate_hz"])], "raw",
                 ["-r", str(WORK_RATE), "-e", "floating-point", "-b", "32", "-c", "1"])
    if c["capture"] == "phone":
        x = _mu_law(x)
    return np.clip(x, -0.999, 0.999)


def _make(args):
    c, out = args
    path = os.path.join(out, c["file"])
    if not os.path.exists(path):
        tmp = "/tmp/xbar-tts-%d.wav" % os.getpid()
        write_wav16(path, synth(c, tmp), c["rate_hz"])
    return c["file"]


def manifest_hash(clips):
    return hashlib.sha256(json.dumps(clips, sort_keys=True).encode()).hexdigest()[:16]


SPLITS = ("train", "test", "heldout")


def generate(out, seed=7, speakers=240, renditions=4, test_fraction=0.25, jobs=2,
             flite_renditions=12, festival_renditions=40, heldout="festival"):
    clips = plan(seed, speakers, renditions, test_fraction, flite_renditions,
                 festival_renditions, heldout)
    for split in SPLITS:
        os.makedirs(os.path.join(out, split), exist_ok=True)
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
            if (i + 1) % 500 == 0:
                print("  %d/%d clips" % (i + 1, len(clips)), file=sys.stderr)
    for c in clips:
        with wave.open(os.path.join(out, c["file"]), "rb") as w:
            c["seconds"] = round(w.getnframes() / w.getframerate(), 4)
    meta = {"generator": "models/data.py", "seed": seed, "speakers": speakers,
            "renditions": renditions, "flite_renditions": flite_renditions,
            "festival_renditions": festival_renditions, "heldout": heldout,
            "test_fraction": test_fraction,
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


def clip_features(path, pre):
    """One audio file -> the model's input for preprocessing `pre` (an xbar.v1.
    AudioPreprocessing JSON dict): log-mel (steps, bands) with a front end, else the paper's
    block-averaged steps (steps, 1)."""
    x, rate = read_audio(path, pre["sampleRateHz"])
    if pre.get("logMel"):
        return frontend.from_model(x, rate, pre)
    return preprocess(x, rate, pre["sampleRateHz"], pre.get("downsample", 64),
                      pre.get("targetLength", 0), pre.get("normalise", True))[:, None]


def _features_job(args):
    return clip_features(*args)


def load_dataset(path, languages=("english",), pre=None, cache=True, jobs=2):
    """A generated set (manifest.json in `path`) or a corpus (corpora.load_corpus) -> dict of
    numpy arrays:
    u_<split> (clips, steps, channels) float32 inputs and y_<split> labels for the splits
    train, test and (generated sets) heldout, plus the clip lists (clips_<split>).
    `pre` is the model's preprocessing (default: frontend.DEFAULT)."""
    pre = pre or frontend.DEFAULT
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
        # A corpus a lab owns: Heidelberg Digits, the {digit}_{speaker}_{index}.wav layout, or
        # a folder of labelled files (models/corpora.py says how each is recognised).
        import corpora  # noqa: E402 (imports this module)
        clips, summary = corpora.load_corpus(path, classes=tuple(WORDS), languages=languages)
        print("\n".join(corpora.describe(clips, summary)), file=sys.stderr)
        for c in clips:
            c["file"] = c["path"]
        key = manifest_hash([c["path"] for c in clips])
        cache_dir = os.path.join(ROOT, "data")
    pre_key = hashlib.sha256(json.dumps(pre, sort_keys=True).encode()).hexdigest()[:8]
    cache_file = os.path.join(cache_dir, "steps-%s-%s.npz" % (key, pre_key))
    if cache and os.path.exists(cache_file):
        u = np.load(cache_file)["u"]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            u = np.stack(list(ex.map(_features_job, [(c["path"], pre) for c in clips],
                                     chunksize=32)))
        if cache:
            os.makedirs(cache_dir, exist_ok=True)
            np.savez(cache_file, u=u)
    y = np.array([c["label"] for c in clips], dtype=np.int64)
    about = {"path": os.path.relpath(path, ROOT), "hash": key}
    if os.path.exists(manifest):
        about.update({k: meta[k] for k in ("seed", "speakers", "renditions", "test_fraction",
                                           "flite_renditions", "festival_renditions", "heldout")
                      if k in meta})
    out = {"about": about}
    for split in SPLITS:
        sel = np.array([c["split"] == split for c in clips], dtype=bool)
        out["u_" + split], out["y_" + split] = u[sel], y[sel]
        out["clips_" + split] = [c for c, s in zip(clips, sel) if s]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="synthesise the zero/one set with espeak-ng and sox")
    g.add_argument("--out", default=os.path.join(ROOT, "data", "digits-gen"))
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--speakers", type=int, default=240)
    g.add_argument("--renditions", type=int, default=4, help="clips per speaker and word")
    g.add_argument("--test-fraction", type=float, default=0.25)
    g.add_argument("--flite-renditions", type=int, default=12)
    g.add_argument("--festival-renditions", type=int, default=40)
    g.add_argument("--heldout", default="festival", choices=["espeak-ng", "flite", "festival", "none"],
                   help="the synthesizer never trained on (split heldout)")
    g.add_argument("--jobs", type=int, default=2)
    h = sub.add_parser("hd", help="list the zero/one clips of a Heidelberg Digits archive")
    h.add_argument("--root", required=True)
    h.add_argument("--languages", default="english")
    args = ap.parse_args()
    if args.cmd == "generate":
        clips, secs = generate(args.out, args.seed, args.speakers, args.renditions,
                               args.test_fraction, args.jobs, args.flite_renditions,
                               args.festival_renditions, args.heldout)
        for split in SPLITS:
            cs = [c for c in clips if c["split"] == split]
            if not cs:
                continue
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
