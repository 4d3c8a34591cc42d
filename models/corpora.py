#!/usr/bin/python3
"""Loaders for real spoken-word corpora a lab owns (issue 18, item 2): Heidelberg Digits, the
`{digit}_{speaker}_{index}.wav` layout of public spoken-digit sets, and a plain folder of
labelled WAV/FLAC files, behind one interface.

    records, summary = load_corpus(DIR, classes=("zero", "one"))

Every loader returns `(records, summary)`. A record is a dict:

    path     absolute path of the audio file (read it with data.read_audio(path, rate), which
             resamples to the model's rate with sox)
    label    int, the index of the clip's class in `classes`
    word     the word spoken (the class name; HD's German clips keep their word, "null")
    split    "train" or "test"
    speaker  a string, or "unknown"
    source   the loader: "hd", "digits", "folder" (or "generated")
    rate     the file's sample rate in Hz, from its header

`summary` is a dict: `kind`/`source`, `root`, `classes` (the class list used), `kept` (the
number of records), `skipped` (reason -> number of files left out on purpose) and `examples`
(reason -> the first few files, with the problem). Nothing is left out without a count:

    other_class         a digit or label not among `classes` (digits, HD; folder with skip_other)
    other_language      HD: a language not in `languages`
    not_in_split_lists  HD: in neither train_filenames.txt nor test_filenames.txt
    duplicate_name      HD: the same file name twice (the first, in sorted path order, is kept)
    unmatched_name      digits/HD: a WAV/FLAC file not named like the layout
    no_label            folder: a WAV/FLAC file not inside a class folder
    not_in_labels_csv   folder: a WAV/FLAC file that labels.csv does not list
    not_wav_flac        an audio file of another format (.mp3, .ogg, ...; convert it with sox)
    hidden              files under hidden folders or named .*, and __MACOSX/ (macOS's ._x.wav
                        are not audio)
    unreadable          strict=False only: a file whose header does not read, or with no samples
    rate_out_of_range   strict=False only: a sample rate outside 1000..384000 Hz

Files that are clearly not audio (.txt, .csv, .md, ...) are not counted.

Bad input raises CorpusError (a ValueError) whose message names the file or folder and the
problem: a missing folder, no WAV/FLAC files (or none named like the layout), an unknown label
(with the allowed classes), unreadable audio (sox's message), a sample rate outside
1000..384000 Hz (the C++ side's range), an empty audio file, a labels.csv row naming a missing
file or with a bad split, a labels.csv without a file or label column. Audio is checked with
a cheap header read: the `wave` module for PCM WAV, the STREAMINFO block for FLAC, `soxi`
otherwise or when those fail (its message is the one reported). With strict=False unreadable
files and rates out of range are skipped and counted instead (CLI: --lenient).

Layouts
-------
hd (load_hd): an unpacked Heidelberg Digits archive: `lang-english_speaker-03_trial-4_digit-0.flac`
  anywhere under the root, HD's split from train_filenames.txt / test_filenames.txt (else
  speakers 4 and 5 are the test set), exactly as data.load_hd. A clip's class is the English
  name of its digit (German "null" is class "zero", as in data.py); `languages` picks the
  languages (default English).

digits (load_digit_layout): `{digit}_{speaker}_{index}.wav|.flac` anywhere under the root
  (Free Spoken Digit Dataset: recordings/0_jackson_0.wav; AudioMNIST: data/01/0_01_0.wav).
  Digit d is class zero..nine; only digits whose name is in `classes` are kept. The split is
  FSDD's by default (index 0-4 test, the rest train), or with split="speaker" by speaker
  (choose_test_speakers(): a fixed 20 % of the speakers, at least one, chosen by a hash of
  the name).

folder (load_labelled_folder): a plain folder of labelled WAV/FLAC files, either
  - one subfolder per class: root/zero/*.wav, root/one/*.flac (searched recursively inside the
    class folder; root/CLASS/SPEAKER/file.wav gives the speaker; Speech Commands' names
    SPEAKER_nohash_N.wav give it too), or
  - labels.csv at the root, with a header row: file,label[,speaker][,split] (file relative to
    the root; other columns are ignored).
  Top-level train/ and test/ folders give the split (root/train/zero/a.wav); so does the csv's
  split column (train or test; an empty cell falls back). Otherwise the split is by speaker
  when at least two speakers are known (choose_test_speakers()), else by a hash of the file's path
  relative to the root: 20 % test (hash_split()). Deterministic, and adding files does not
  move the others. With classes=None the classes are the labels found: digit names first in
  digit order (zero, one, ...), then the others alphabetically. A label not in the given
  classes is an error (a typo must not drop data) unless skip_other=True.

generated: data.py's generated set (manifest.json). load_corpus reports kind "generated" and
  gives the manifest's clips as records; a trainer should read it with data.load_dataset
  (which caches the preprocessed steps).

Detection (load_corpus kind="auto", detect_kind()), in this order, on the folder DIR:
  1. DIR/manifest.json exists                                  -> generated
  2. DIR/labels.csv exists                                     -> folder
  3. more than half of the WAV/FLAC files under DIR (recursively, hidden ones left out) are
     named like HD (lang-*_speaker-*_trial-*_digit-*)          -> hd
  4. more than half are named {digit}_{speaker}_{index}        -> digits
  5. anything else                                             -> folder (class subfolders)
  With no WAV/FLAC file at all (and no manifest), it is an error.

CLI: /usr/bin/python3 models/corpora.py DIR [--classes zero,one|auto] [--kind auto|hd|digits|folder]
     [--languages english,german] [--split fsdd|speaker] [--skip-other] [--lenient]
prints the kind, per split the clips per class and the speakers, the sample rates and the
summary; exit status 2 with the message on bad input.
"""

import argparse
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import data  # noqa: E402  (parse_hd_name; read_audio is what callers use to read the records)

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
HD_DIGIT_WORDS = {"english": DIGITS,
                  "german": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben",
                             "acht", "neun")}
AUDIO_EXTS = (".wav", ".flac")
OTHER_AUDIO_EXTS = (".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".aifc",
                    ".au", ".snd", ".wma", ".webm", ".amr", ".caf", ".w64", ".sph", ".3gp")
MIN_RATE_HZ, MAX_RATE_HZ = 1000, 384000  # xbar::audio (compute/audio/src/audio.cc)
TEST_FRACTION = 0.2
KINDS = ("hd", "digits", "folder", "generated")
DIGIT_NAME = re.compile(r"^(\d)_(.+)_(\d+)\.(wav|flac)$", re.IGNORECASE)
NOHASH_NAME = re.compile(r"^(.+?)_nohash_\d+\.", re.IGNORECASE)
EXAMPLES = 3


class CorpusError(ValueError):
    """Bad input: the message names the file or folder and the problem."""


# --------------------------------------------------------------------------------------------
# Common pieces


class _Summary:
    def __init__(self, source, root, classes):
        self.source, self.root, self.classes = source, root, list(classes)
        self.skipped, self.examples = {}, {}

    def skip(self, reason, what, n=1):
        self.skipped[reason] = self.skipped.get(reason, 0) + n
        ex = self.examples.setdefault(reason, [])
        if len(ex) < EXAMPLES:
            ex.append(what)

    def result(self, records):
        return {"kind": self.source, "source": self.source, "root": self.root,
                "classes": self.classes, "kept": len(records), "skipped": dict(self.skipped),
                "examples": {k: list(v) for k, v in self.examples.items()}}


def _root(root):
    if not isinstance(root, (str, os.PathLike)):
        raise CorpusError("corpus path %r: not a path" % (root,))
    path = os.path.abspath(os.fspath(root))
    if not os.path.exists(path):
        raise CorpusError("%s: no such folder" % path)
    if not os.path.isdir(path):
        raise CorpusError("%s: not a folder (give the unpacked archive's folder)" % path)
    return path


def _classes(classes, allow_none=False):
    if classes is None:
        if allow_none:
            return None
        raise CorpusError("no classes given")
    if isinstance(classes, str):
        classes = [c for c in classes.split(",")]
    classes = [str(c).strip() for c in classes]
    if not classes or any(not c for c in classes):
        raise CorpusError("classes %r: need one or more non-empty names" % (classes,))
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise CorpusError("classes %s: %s given twice" % (", ".join(classes), ", ".join(dup)))
    return classes


def _digit_classes(classes, loader):
    classes = _classes(DIGITS if classes is None else classes)
    bad = [c for c in classes if c not in DIGITS]
    if bad:
        raise CorpusError("%s: class %s is not a digit name (allowed: %s)" % (
            loader, ", ".join(repr(c) for c in bad), ", ".join(DIGITS)))
    return classes


def _walk(root, summary):
    """Every file under root, sorted, as (path relative to root with '/', absolute path).
    Hidden files and folders (.*) and __MACOSX/ are left out; their audio files are counted."""
    out = []

    def fail(err):
        raise CorpusError("%s: cannot list: %s" % (err.filename or root, err.strerror or err))

    for d, dirs, names in os.walk(root, onerror=fail):
        hidden = sorted(x for x in dirs if x.startswith(".") or x == "__MACOSX")
        for h in hidden:
            for hd, _, hnames in os.walk(os.path.join(d, h)):
                for n in hnames:
                    if _is_audio_name(n):
                        summary.skip("hidden", os.path.join(hd, n))
        dirs[:] = sorted(x for x in dirs if x not in hidden)
        for n in sorted(names):
            p = os.path.join(d, n)
            if n.startswith("."):
                if _is_audio_name(n):
                    summary.skip("hidden", p)
                continue
            out.append((os.path.relpath(p, root).replace(os.sep, "/"), p))
    return out


def _is_audio_name(name):
    low = name.lower()
    return low.endswith(AUDIO_EXTS) or low.endswith(OTHER_AUDIO_EXTS)


def _wav_flac(files, summary):
    """The WAV/FLAC files of `files`; other audio formats are counted as not_wav_flac."""
    out = []
    for rel, p in files:
        low = rel.lower()
        if low.endswith(AUDIO_EXTS):
            out.append((rel, p))
        elif low.endswith(OTHER_AUDIO_EXTS):
            summary.skip("not_wav_flac", p)
    return out


def _no_audio(root, summary):
    others = summary.skipped.get("not_wav_flac", 0)
    hidden = summary.skipped.get("hidden", 0)
    more = ""
    if others:
        more += "; %d audio files of other formats (e.g. %s): convert them with sox" % (
            others, summary.examples["not_wav_flac"][0])
    if hidden:
        more += "; %d hidden audio files left out (e.g. %s)" % (
            hidden, summary.examples["hidden"][0])
    return CorpusError("no WAV/FLAC files under %s%s" % (root, more))


def _flac_header(path):
    """(rate, frames or None) from a FLAC file's STREAMINFO, or None when it does not parse
    (the caller then asks soxi). The metadata block chain must fit the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(42)
        if len(head) < 42 or head[:4] != b"fLaC" or (head[4] & 0x7F) != 0:
            return None
        si = head[8:42]
        rate = (si[10] << 12) | (si[11] << 4) | (si[12] >> 4)
        frames = ((si[13] & 0x0F) << 32) | int.from_bytes(si[14:18], "big")
        pos, last = 4, False
        while not last:
            f.seek(pos)
            bh = f.read(4)
            if len(bh) < 4:
                return None
            last = bool(bh[0] & 0x80)
            pos += 4 + int.from_bytes(bh[1:4], "big")
            if pos > size:
                return None
        if pos >= size:  # no audio frames after the metadata
            return None
    return rate, (frames or None)


def _soxi(path):
    try:
        p = subprocess.run(["soxi", path], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise CorpusError("%s: unreadable audio: not a PCM WAV or FLAC the header check reads, "
                          "and soxi (sox) is not installed to check it" % path) from None
    except subprocess.TimeoutExpired:
        raise CorpusError("%s: unreadable audio: soxi did not answer in 60 s" % path) from None
    if p.returncode != 0:
        msg = " ".join((p.stderr or p.stdout or "").split()) or "exit status %d" % p.returncode
        raise CorpusError("%s: unreadable audio: %s" % (path, msg))
    rate = re.search(r"^Sample Rate\s*:\s*([0-9.]+)", p.stdout, re.MULTILINE)
    frames = re.search(r"^Duration\s*:.*?=\s*(\d+)\s+samples", p.stdout, re.MULTILINE)
    if not rate:
        raise CorpusError("%s: unreadable audio: soxi gives no sample rate" % path)
    return int(float(rate.group(1))), (int(frames.group(1)) if frames else None)


def audio_info(path):
    """(sample rate in Hz, frames or None) from the header of a WAV/FLAC file; CorpusError
    naming the file when it does not read, has no samples or a rate outside 1000..384000."""
    low = path.lower()
    info = None
    try:
        if low.endswith(".wav"):
            try:
                with wave.open(path, "rb") as w:
                    info = (w.getframerate(), w.getnframes())
            except (wave.Error, EOFError):
                info = None  # not plain PCM (float, extensible, broken): soxi decides
        elif low.endswith(".flac"):
            info = _flac_header(path)
    except OSError as e:
        raise CorpusError("%s: cannot read: %s" % (path, e.strerror or e)) from None
    if info is None:
        info = _soxi(path)
    rate, frames = info
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise CorpusError("%s: sample rate %d Hz out of range (allowed %d..%d Hz)" % (
            path, rate, MIN_RATE_HZ, MAX_RATE_HZ))
    if frames == 0:
        raise CorpusError("%s: unreadable audio: no samples (empty)" % path)
    return rate, frames


def _checked_rate(path, summary, strict):
    """The file's rate, or None when it is skipped (strict=False) as unreadable/out of range."""
    try:
        return audio_info(path)[0]
    except CorpusError as e:
        if strict:
            raise
        reason = "rate_out_of_range" if "out of range" in str(e) else "unreadable"
        summary.skip(reason, str(e))
        return None


def _hash01(text):
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 2.0 ** 32


def hash_split(name, fraction=TEST_FRACTION):
    """'test' for a fixed `fraction` of names (sha1 of the name), else 'train'."""
    return "test" if _hash01(name) < fraction else "train"


def choose_test_speakers(speakers, fraction=TEST_FRACTION):
    """The test speakers of a speaker split: the speakers ordered by the sha1 of their name,
    the first round(fraction * n) of them, at least 1 and at most n - 1 (empty for n < 2).
    "unknown" is never a speaker. Deterministic; does not depend on the order given."""
    spk = sorted({s for s in speakers if s != "unknown"}, key=lambda s: (_hash01(s), s))
    if len(spk) < 2:
        return set()
    n = min(len(spk) - 1, max(1, int(round(fraction * len(spk)))))
    return set(spk[:n])


def _result(records, summary, nothing):
    """A loader's answer, (records, summary); CorpusError saying `nothing` and what was skipped
    when no record is left."""
    if not records:
        raise CorpusError("%s (%s)" % (nothing, _skipped_text(summary)))
    return records, summary.result(records)


def _record(path, label, word, split, speaker, source, rate):
    return {"path": os.path.abspath(path), "label": label, "word": word, "split": split,
            "speaker": speaker or "unknown", "source": source, "rate": rate}


# --------------------------------------------------------------------------------------------
# Heidelberg Digits


def load_hd(root, languages=("english",), classes=("zero", "one"), strict=True):
    """An unpacked HD archive -> (records, summary); the split and speakers of data.load_hd,
    which this follows (same files, labels, words, splits for the default classes)."""
    root = _root(root)
    if isinstance(languages, str):
        languages = languages.split(",")
    languages = [x.strip() for x in languages]
    bad = [x for x in languages if x not in HD_DIGIT_WORDS]
    if not languages or bad:
        raise CorpusError("HD languages %s: allowed %s" % (
            ", ".join(languages) or "(none)", ", ".join(HD_DIGIT_WORDS)))
    classes = _digit_classes(classes, "HD")
    summary = _Summary("hd", root, classes)
    files = _walk(root, summary)
    split_of = {}
    for split in ("train", "test"):
        name = split + "_filenames.txt"
        lists = [p for rel, p in sorted(files, key=lambda f: (f[0].count("/"), f[0]))
                 if os.path.basename(rel) == name]
        if lists:
            try:
                with open(lists[0], encoding="utf-8") as f:
                    for line in f:
                        if line.strip():
                            split_of[os.path.basename(line.strip())] = split
            except (OSError, UnicodeDecodeError) as e:
                raise CorpusError("%s: cannot read: %s" % (lists[0], e)) from None
    hd, seen, n_audio = [], {}, 0
    for rel, p in files:
        n = os.path.basename(rel)
        h = data.parse_hd_name(n)
        if h is None:
            if rel.lower().endswith(AUDIO_EXTS):
                n_audio += 1
                summary.skip("unmatched_name", p)
            elif rel.lower().endswith(OTHER_AUDIO_EXTS):
                summary.skip("not_wav_flac", p)
            continue
        n_audio += 1
        if n in seen:
            summary.skip("duplicate_name", "%s (kept %s)" % (p, seen[n]))
            continue
        seen[n] = p
        hd.append((n, p, h))
    if not hd:
        if not n_audio:
            raise _no_audio(root, summary)
        raise CorpusError("no HD files (lang-*_speaker-*_trial-*_digit-*.flac) under %s "
                          "(%d WAV/FLAC files with other names, e.g. %s)" % (
                              root, n_audio, summary.examples["unmatched_name"][0]))
    records = []
    for n, p, h in sorted(hd):
        if h["language"] not in languages:
            summary.skip("other_language", p)
            continue
        cls = DIGITS[h["digit"]]
        if cls not in classes:
            summary.skip("other_class", p)
            continue
        if split_of:
            split = split_of.get(n)
            if split is None:
                summary.skip("not_in_split_lists", p)
                continue
        else:
            split = "test" if h["speaker"] in (4, 5) else "train"
        rate = _checked_rate(p, summary, strict)
        if rate is None:
            continue
        records.append(_record(p, classes.index(cls), HD_DIGIT_WORDS[h["language"]][h["digit"]],
                               split, "%s-%02d" % (h["language"], h["speaker"]), "hd", rate))
    return _result(records, summary, "no HD files of the languages %s and classes %s under %s" % (
        ", ".join(languages), ", ".join(classes), root))


# --------------------------------------------------------------------------------------------
# {digit}_{speaker}_{index}.wav


def load_digit_layout(root, classes=("zero", "one"), split="fsdd", strict=True):
    """FSDD-style `{digit}_{speaker}_{index}.wav|.flac` files under root -> (records, summary).
    split="fsdd": index 0-4 test, the rest train (FSDD's convention); split="speaker":
    choose_test_speakers() of all the speakers found (20 %, at least one) are the test set."""
    root = _root(root)
    classes = _digit_classes(classes, "digit layout")
    if split not in ("fsdd", "speaker"):
        raise CorpusError("digit layout split %r: allowed fsdd, speaker" % (split,))
    summary = _Summary("digits", root, classes)
    audio = _wav_flac(_walk(root, summary), summary)
    if not audio:
        raise _no_audio(root, summary)
    found = []
    for rel, p in audio:
        m = DIGIT_NAME.match(os.path.basename(rel))
        if m is None:
            summary.skip("unmatched_name", p)
            continue
        found.append((p, int(m.group(1)), m.group(2), int(m.group(3))))
    if not found:
        raise CorpusError("no {digit}_{speaker}_{index}.wav files under %s (%d WAV/FLAC files "
                          "with other names, e.g. %s)" % (root, len(audio),
                                                           summary.examples["unmatched_name"][0]))
    if split == "speaker":
        speakers = {s for _, _, s, _ in found}
        tests = choose_test_speakers(speakers)
        if not tests:
            raise CorpusError("%s: split='speaker' needs two or more speakers; found %s" % (
                root, ", ".join(sorted(speakers))))
    records = []
    for p, digit, speaker, index in found:
        cls = DIGITS[digit]
        if cls not in classes:
            summary.skip("other_class", p)
            continue
        if split == "speaker":
            s = "test" if speaker in tests else "train"
        else:
            s = "test" if index <= 4 else "train"
        rate = _checked_rate(p, summary, strict)
        if rate is None:
            continue
        records.append(_record(p, classes.index(cls), cls, s, speaker, "digits", rate))
    return _result(records, summary, "no files of the classes %s under %s" % (
        ", ".join(classes), root))


# --------------------------------------------------------------------------------------------
# A folder of labelled files


def _class_order(labels):
    return sorted(set(labels), key=lambda c: (0, DIGITS.index(c), c) if c in DIGITS else (1, 0, c))


def _read_labels_csv(root, csv_path):
    """labels.csv -> list of (where, file rel/abs, absolute path, label, speaker, split)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CorpusError("%s: cannot read: %s" % (csv_path, e)) from None
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not rows:
        raise CorpusError("%s: empty (need a header row file,label[,speaker][,split])" % csv_path)
    header = [c.strip().lower() for c in rows[0][1]]
    for col in ("file", "label"):
        if col not in header:
            raise CorpusError("%s: no %r column in the header row %s (need file,label"
                              "[,speaker][,split])" % (csv_path, col, ",".join(rows[0][1])))
    col = {c: header.index(c) for c in ("file", "label", "speaker", "split") if c in header}
    out, seen = [], {}
    for line, r in rows[1:]:
        def cell(name):
            i = col.get(name)
            return r[i].strip() if i is not None and i < len(r) else ""
        where = "%s line %d" % (csv_path, line)
        name, label = cell("file"), cell("label")
        if not name:
            raise CorpusError("%s: empty file cell" % where)
        if not label:
            raise CorpusError("%s: %s has an empty label" % (where, name))
        path = os.path.normpath(os.path.join(root, name))
        if not name.lower().endswith(AUDIO_EXTS):
            raise CorpusError("%s: %s is not a WAV/FLAC file" % (where, name))
        if not os.path.isfile(path):
            raise CorpusError("%s: %s does not exist (%s)" % (where, name, path))
        if path in seen:
            raise CorpusError("%s: %s is listed twice (also line %d)" % (where, name, seen[path]))
        seen[path] = line
        split = cell("split").lower()
        if split not in ("", "train", "test"):
            raise CorpusError("%s: split %r of %s: allowed train, test (or empty)" % (
                where, cell("split"), name))
        out.append((where, name, path, label, cell("speaker"), split))
    if not out:
        raise CorpusError("%s: no rows after the header" % csv_path)
    return out


def load_labelled_folder(root, classes=None, strict=True, skip_other=False):
    """A folder of labelled WAV/FLAC files (class subfolders or labels.csv) -> (records,
    summary). classes=None: the labels found. A label not in `classes` is an error unless
    skip_other=True (then counted as other_class)."""
    root = _root(root)
    classes = _classes(classes, allow_none=True)
    summary = _Summary("folder", root, classes or [])
    files = _walk(root, summary)
    top = {rel.split("/")[0] for rel, _ in files if "/" in rel}
    for t in sorted(top):
        if t.lower() in ("val", "valid", "validation", "dev", "eval"):
            raise CorpusError("%s: only train/ and test/ are understood as split folders; "
                              "rename %s/ (or give the split in labels.csv)" % (
                                  os.path.join(root, t), t))
    split_dirs = {t for t in top if t.lower() in ("train", "test")}

    def folder_split(rel):
        first = rel.split("/")[0]
        return first.lower() if "/" in rel and first in split_dirs else ""

    csv_path = os.path.join(root, "labels.csv")
    items = []  # (where, path, label, speaker, split)
    if os.path.isfile(csv_path):
        rows = _read_labels_csv(root, csv_path)
        listed = {p for _, _, p, _, _, _ in rows}
        for rel, p in _wav_flac(files, summary):
            if os.path.normpath(p) not in listed:
                summary.skip("not_in_labels_csv", p)
        for where, name, p, label, speaker, split in rows:
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            if not speaker:
                m = NOHASH_NAME.match(os.path.basename(p))
                speaker = m.group(1) if m else "unknown"
            items.append(("%s (%s)" % (where, name), p, label, speaker,
                          split or (folder_split(rel) if not rel.startswith("..") else "")))
    else:
        audio = _wav_flac(files, summary)
        if not audio:
            raise _no_audio(root, summary)
        for rel, p in audio:
            parts = rel.split("/")
            lead = 1 if folder_split(rel) else 0  # root/train/CLASS/...
            parts = parts[lead:]
            if len(parts) < 2:
                summary.skip("no_label", p)
                continue
            label = parts[0]
            m = NOHASH_NAME.match(parts[-1])
            speaker = parts[1] if len(parts) >= 3 else (m.group(1) if m else "unknown")
            folder = os.path.join(root, *rel.split("/")[:lead + 1]) + "/"
            items.append((folder, p, label, speaker, folder_split(rel)))
        if not items:
            raise CorpusError("no WAV/FLAC files in class folders under %s (%d not in a class "
                              "folder, e.g. %s; put them in root/CLASS/ or list them in labels.csv)" % (
                                  root, summary.skipped.get("no_label", 0),
                                  summary.examples["no_label"][0]))
    if classes is None:
        classes = _class_order(label for _, _, label, _, _ in items)
        summary.classes = list(classes)
    unknown = {}
    for where, p, label, _, _ in items:
        if label not in classes:
            if skip_other:
                summary.skip("other_class", p)
            else:
                u = unknown.setdefault(label, [where, 0])
                u[1] += 1
    if unknown:
        which = "; ".join("%r (%s, %d files)" % (k, v[0], v[1]) for k, v in sorted(unknown.items()))
        raise CorpusError("labels not among the classes %s: %s (skip_other=True / --skip-other "
                          "leaves them out)" % (", ".join(classes), which))
    items = [it for it in items if it[2] in classes]
    if not items:
        raise CorpusError("no files of the classes %s under %s (%s)" % (
            ", ".join(classes), root, _skipped_text(summary)))
    fallback = [it for it in items if not it[4]]
    tests = choose_test_speakers(s for _, _, _, s, _ in fallback)
    records = []
    for where, p, label, speaker, split in items:
        if not split:
            if tests and speaker != "unknown":
                split = "test" if speaker in tests else "train"
            else:
                split = hash_split(os.path.relpath(p, root).replace(os.sep, "/"))
        rate = _checked_rate(p, summary, strict)
        if rate is None:
            continue
        records.append(_record(p, classes.index(label), label, split, speaker, "folder", rate))
    return _result(records, summary, "no readable files of the classes %s under %s" % (
        ", ".join(classes), root))


# --------------------------------------------------------------------------------------------
# Detection and dispatch


def _load_generated(root, classes):
    path = os.path.join(root, "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        clips = meta["clips"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorpusError("%s: not a generated set's manifest: %s" % (path, e)) from None
    classes = _classes(data.WORDS if classes is None else classes)
    summary = _Summary("generated", root, classes)
    records = []
    try:
        for c in clips:
            p = os.path.join(root, c["file"])
            if c["word"] not in classes:
                summary.skip("other_class", p)
                continue
            records.append(_record(p, classes.index(c["word"]), c["word"], c["split"],
                                   c.get("speaker", "unknown"), "generated",
                                   c.get("rate_hz", meta.get("rate_hz"))))
    except (KeyError, TypeError) as e:
        raise CorpusError("%s: a clip without %s" % (path, e)) from None
    return records, summary.result(records)


def detect_kind(path):
    """The kind of corpus at `path` (the rule in the module docstring)."""
    root = _root(path)
    if os.path.isfile(os.path.join(root, "manifest.json")):
        return "generated"
    if os.path.isfile(os.path.join(root, "labels.csv")):
        return "folder"
    summary = _Summary("detect", root, [])
    audio = _wav_flac(_walk(root, summary), summary)
    if not audio:
        raise _no_audio(root, summary)
    names = [os.path.basename(rel) for rel, _ in audio]
    if 2 * sum(data.parse_hd_name(n) is not None for n in names) > len(names):
        return "hd"
    if 2 * sum(DIGIT_NAME.match(n) is not None for n in names) > len(names):
        return "digits"
    return "folder"


def load_corpus(path, classes=("zero", "one"), kind="auto", strict=True, languages=("english",),
                split="fsdd", skip_other=False):
    """Detect (kind="auto") or take the corpus kind and load it -> (records, summary);
    summary["kind"] is the kind. classes=None: all ten digits (hd, digits), the labels found
    (folder), the generated words. `languages` is for hd, `split` for digits, `skip_other`
    for folder; `strict`=False skips unreadable files (counted) instead of raising."""
    if kind not in ("auto",) + KINDS:
        raise CorpusError("corpus kind %r: allowed auto, %s" % (kind, ", ".join(KINDS)))
    if kind == "auto":
        kind = detect_kind(path)
    if kind == "generated":
        return _load_generated(_root(path), classes)
    if kind == "hd":
        return load_hd(path, languages, DIGITS if classes is None else classes, strict)
    if kind == "digits":
        return load_digit_layout(path, classes, split, strict)
    return load_labelled_folder(path, classes, strict, skip_other)


def _skipped_text(summary):
    return ", ".join("skipped %s %d" % kv for kv in sorted(summary.skipped.items())) or \
        "nothing skipped"


# --------------------------------------------------------------------------------------------
# CLI


def describe(records, summary):
    """The CLI's report, as lines."""
    classes = summary["classes"]
    out = ["%s: kind %s, classes %s, %d clips" % (summary["root"], summary["kind"],
                                                  ", ".join(classes), len(records))]
    for split in ("train", "test"):
        rs = [r for r in records if r["split"] == split]
        per = ", ".join("%s %d" % (c, sum(r["label"] == i for r in rs))
                        for i, c in enumerate(classes))
        spk = sorted({r["speaker"] for r in rs})
        shown = ", ".join(spk[:12]) + (", ..." if len(spk) > 12 else "")
        out.append("%-5s %6d clips (%s); %d speakers: %s" % (split + ":", len(rs), per, len(spk),
                                                            shown or "-"))
    rates = {}
    for r in records:
        rates[r["rate"]] = rates.get(r["rate"], 0) + 1
    out.append("rates: " + ", ".join("%s Hz x %d" % (k, v) for k, v in
                                     sorted(rates.items(), key=lambda kv: str(kv[0]))))
    if summary["skipped"]:
        out.append("skipped: " + ", ".join("%s %d" % kv
                                           for kv in sorted(summary["skipped"].items())))
        for reason, ex in sorted(summary["examples"].items()):
            for e in ex:
                out.append("  %s: %s" % (reason, e))
    else:
        out.append("skipped: nothing")
    if summary["kind"] == "generated":
        out.append("(a generated set: train with data.load_dataset, which caches the steps)")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="List a corpus as the loaders see it "
                                 "(models/corpora.py).")
    ap.add_argument("dir")
    ap.add_argument("--classes", default="zero,one",
                    help="comma-separated class names, or 'auto' (the labels found / all digits)")
    ap.add_argument("--kind", default="auto", choices=("auto",) + KINDS)
    ap.add_argument("--languages", default="english", help="HD languages (english,german)")
    ap.add_argument("--split", default="fsdd", choices=("fsdd", "speaker"),
                    help="digit layout's split")
    ap.add_argument("--skip-other", action="store_true",
                    help="folder: leave out labels not in --classes (counted) instead of failing")
    ap.add_argument("--lenient", action="store_true",
                    help="skip (and count) unreadable files instead of failing")
    args = ap.parse_args(argv)
    classes = None if args.classes == "auto" else args.classes.split(",")
    try:
        records, summary = load_corpus(args.dir, classes, args.kind, strict=not args.lenient,
                                       languages=tuple(args.languages.split(",")),
                                       split=args.split, skip_other=args.skip_other)
    except CorpusError as e:
        print("corpora.py: error: %s" % e, file=sys.stderr)
        return 2
    print("\n".join(describe(records, summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
