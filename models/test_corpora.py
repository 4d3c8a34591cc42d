#!/usr/bin/python3
"""Tests of models/corpora.py (issue 18, item 2): every loader on a small fake archive built in
a temp folder (tiny WAVs written with the wave module, FLACs made with sox, at 8000, 16000 and
44100 Hz), resampling through data.read_audio, and every bad-input case.

    /usr/bin/python3 -m unittest models/test_corpora.py      (or run this file; ctest corpora_test)
"""

import csv
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpora  # noqa: E402
import data  # noqa: E402
from corpora import CorpusError  # noqa: E402

HAVE_SOX = shutil.which("sox") is not None
RATES = (8000, 16000, 44100)


def write_wav(path, rate=16000, n=None, width=2, channels=1):
    """A short sine: n frames (default 0.05 s) at `rate`."""
    n = int(0.05 * rate) if n is None else n
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames = bytearray()
    for i in range(n):
        v = int(8000 * math.sin(2 * math.pi * 440 * i / rate))
        frames += struct.pack("<h", v) * channels if width == 2 else bytes([128]) * channels
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return n


_FLAC_CACHE = {}
_FLAC_DIR = []


def tearDownModule():
    for d in _FLAC_DIR:
        shutil.rmtree(d, ignore_errors=True)


def write_flac(path, rate=16000):
    """A short FLAC made by sox (one per rate, copied: sox is the slow part)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if rate not in _FLAC_CACHE:
        if not _FLAC_DIR:
            _FLAC_DIR.append(tempfile.mkdtemp(prefix="corpora-flac-"))
        src = os.path.join(_FLAC_DIR[0], "x%d.flac" % rate)
        subprocess.run(["sox", "-n", "-r", str(rate), "-c", "1", "-b", "16", src, "synth",
                        "0.05", "sine", "440"], check=True, capture_output=True)
        _FLAC_CACHE[rate] = src
    shutil.copyfile(_FLAC_CACHE[rate], path)


def write_audio(path, rate):
    if path.endswith(".flac") and HAVE_SOX:
        write_flac(path, rate)
    else:
        write_wav(path, rate)


def touch(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="corpora-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def assertRecords(self, records, source):
        for r in records:
            self.assertEqual(set(r), {"path", "label", "word", "split", "speaker", "source",
                                      "rate"})
            self.assertTrue(os.path.isabs(r["path"]) and os.path.isfile(r["path"]), r)
            self.assertIn(r["split"], ("train", "test"))
            self.assertIsInstance(r["speaker"], str)
            self.assertEqual(r["source"], source)

    def assertError(self, fn, *needles):
        with self.assertRaises(CorpusError) as cm:
            fn()
        self.assertIsInstance(cm.exception, ValueError)
        for n in needles:
            self.assertIn(n, str(cm.exception))
        return str(cm.exception)


# --------------------------------------------------------------------------------------------


class DigitLayout(Base):
    SPEAKERS = {"jackson": 8000, "theo": 16000, "lucas": 44100}

    def make(self, root=None, digits=(0, 1, 2), indices=range(7)):
        root = root or self.path("fsdd")
        for spk, rate in self.SPEAKERS.items():
            for d in digits:
                for i in indices:
                    sub = "recordings" if spk != "lucas" else "recordings/more"  # recursive
                    write_wav(os.path.join(root, sub, "%d_%s_%d.wav" % (d, spk, i)), rate)
        touch(os.path.join(root, "README.md"), "hi")
        write_wav(os.path.join(root, "recordings", "notes.wav"), 8000)       # unmatched_name
        touch(os.path.join(root, "recordings", "._0_jackson_0.wav"), "mac")  # hidden
        touch(os.path.join(root, "__MACOSX", "recordings", "._1_theo_0.wav"), "mac")
        touch(os.path.join(root, "recordings", "9_theo_0.mp3"), "mp3")       # not_wav_flac
        return root

    def test_fsdd_split_labels_summary(self):
        root = self.make()
        records, summary = corpora.load_digit_layout(root)
        self.assertRecords(records, "digits")
        self.assertEqual(len(records), 2 * 3 * 7)
        self.assertEqual(summary["kept"], 42)
        self.assertEqual(summary["skipped"], {"other_class": 21, "unmatched_name": 1,
                                              "hidden": 2, "not_wav_flac": 1})
        self.assertEqual(summary["classes"], ["zero", "one"])
        for r in records:
            name = os.path.basename(r["path"])
            d, spk, i = name[:-4].split("_")
            self.assertEqual(r["label"], int(d))
            self.assertEqual(r["word"], ("zero", "one")[int(d)])
            self.assertEqual(r["speaker"], spk)
            self.assertEqual(r["split"], "test" if int(i) <= 4 else "train")
            self.assertEqual(r["rate"], self.SPEAKERS[spk])
        self.assertEqual(sum(r["split"] == "test" for r in records), 2 * 3 * 5)
        # other classes, in the order given: one -> 0, two -> 1
        records, summary = corpora.load_digit_layout(root, classes=("one", "two"))
        self.assertEqual({(r["word"], r["label"]) for r in records}, {("one", 0), ("two", 1)})
        self.assertEqual(summary["skipped"]["other_class"], 21)

    def test_speaker_split(self):
        root = self.make()
        records, _ = corpora.load_digit_layout(root, split="speaker")
        tests = corpora.choose_test_speakers(self.SPEAKERS)
        self.assertEqual(len(tests), 1)  # round(0.2 * 3) = 1
        for r in records:
            self.assertEqual(r["split"], "test" if r["speaker"] in tests else "train")
        again, _ = corpora.load_digit_layout(root, split="speaker")
        self.assertEqual(records, again)
        # deterministic, order-independent, at least 1 and at most n-1, "unknown" is no speaker
        many = ["s%02d" % i for i in range(20)]
        self.assertEqual(corpora.choose_test_speakers(many),
                         corpora.choose_test_speakers(reversed(many)))
        self.assertEqual(len(corpora.choose_test_speakers(many)), 4)
        self.assertEqual(len(corpora.choose_test_speakers(["a", "b"])), 1)
        self.assertEqual(corpora.choose_test_speakers(["a", "unknown"]), set())

    def test_resampling_to_8000(self):
        root = self.path("rates")
        ns = {}
        for rate in RATES:
            ns[rate] = write_wav(os.path.join(root, "0_s%d_0.wav" % rate), rate, n=rate // 10 + 7)
        if HAVE_SOX:
            write_flac(os.path.join(root, "1_flac_5.flac"), 16000)
            ns["flac"] = 800
            # a float WAV: the wave module does not read it, soxi does
            subprocess.run(["sox", "-n", "-r", "22050", "-e", "floating-point", "-b", "32",
                            os.path.join(root, "1_float_6.wav"), "synth", "0.05", "sine", "440"],
                           check=True, capture_output=True)
            ns[22050] = 1103
        records, _ = corpora.load_digit_layout(root)
        self.assertEqual(len(records), len(ns))
        for r in records:
            x, rate = data.read_audio(r["path"], 8000)
            self.assertEqual(rate, 8000)
            n = ns["flac"] if r["path"].endswith(".flac") else ns[r["rate"]]
            self.assertAlmostEqual(x.size, n * 8000 / r["rate"], delta=2, msg=r["path"])

    def test_bad_input(self):
        empty = self.path("empty")
        os.makedirs(empty)
        self.assertError(lambda: corpora.load_digit_layout(empty), "no WAV/FLAC files under",
                         empty)
        touch(self.path("txt", "a.txt"), "x")
        self.assertError(lambda: corpora.load_digit_layout(self.path("txt")),
                         "no WAV/FLAC files under")
        write_wav(self.path("other", "hello.wav"))
        self.assertError(lambda: corpora.load_digit_layout(self.path("other")),
                         "no {digit}_{speaker}_{index}.wav files under", "hello.wav")
        root = self.make(digits=(5,), indices=range(2))
        self.assertError(lambda: corpora.load_digit_layout(root), "no files of the classes",
                         "zero, one", "other_class 6")
        self.assertError(lambda: corpora.load_digit_layout(root, classes=("zero", "ten")),
                         "'ten'", "not a digit name", "zero, one, two")
        self.assertError(lambda: corpora.load_digit_layout(root, split="random"), "'random'")
        one = self.path("one")
        write_wav(os.path.join(one, "0_ann_0.wav"))
        self.assertError(lambda: corpora.load_digit_layout(one, split="speaker"),
                         "two or more speakers", "ann")
        missing = self.path("nope")
        self.assertError(lambda: corpora.load_digit_layout(missing), missing, "no such folder")


class Hd(Base):
    def make(self):
        root = self.path("hd_audio")
        names = []
        for lang in ("english", "german"):
            for spk, rate in ((0, 8000), (4, 16000), (7, 44100)):
                for trial in (0, 1):
                    for d in (0, 1, 2):
                        n = "lang-%s_speaker-%02d_trial-%d_digit-%d.flac" % (lang, spk, trial, d)
                        write_audio(os.path.join(root, "audio", n), rate)
                        names.append(n)
        write_wav(os.path.join(root, "audio", "stray.wav"))  # unmatched_name
        unlisted = "lang-english_speaker-07_trial-1_digit-0.flac"
        with open(os.path.join(root, "train_filenames.txt"), "w") as f:
            f.write("\n".join(n for n in names if "speaker-04" not in n and n != unlisted) + "\n")
        with open(os.path.join(root, "test_filenames.txt"), "w") as f:
            f.write("\n".join(n for n in names if "speaker-04" in n) + "\n")
        return root

    @unittest.skipUnless(HAVE_SOX, "sox makes the FLACs")
    def test_hd_matches_data_load_hd(self):
        root = self.make()
        records, summary = corpora.load_hd(root)
        self.assertRecords(records, "hd")
        self.assertEqual(len(records), 3 * 2 * 2 - 1)
        self.assertEqual(summary["skipped"], {"other_language": 18, "other_class": 6,
                                              "not_in_split_lists": 1, "unmatched_name": 1})
        old = data.load_hd(root)
        self.assertEqual([(os.path.abspath(c["file"]), c["label"], c["word"], c["split"],
                           c["speaker"]) for c in old],
                         [(r["path"], r["label"], r["word"], r["split"], r["speaker"])
                          for r in records])
        self.assertEqual({r["speaker"] for r in records if r["split"] == "test"}, {"english-04"})
        both, _ = corpora.load_hd(root, languages=("english", "german"), classes=("zero", "one",
                                                                                   "two"))
        self.assertEqual(len(both), 3 * 2 * 3 * 2 - 1)
        self.assertIn(("null", 0), {(r["word"], r["label"]) for r in both})
        self.assertIn(("zwei", 2), {(r["word"], r["label"]) for r in both})
        # without the split lists: speakers 4 and 5 are the test set (as data.load_hd)
        os.remove(os.path.join(root, "train_filenames.txt"))
        os.remove(os.path.join(root, "test_filenames.txt"))
        records, summary = corpora.load_hd(root)
        self.assertEqual(len(records), 12)
        self.assertEqual({r["speaker"] for r in records if r["split"] == "test"}, {"english-04"})
        self.assertEqual({r["rate"] for r in records}, set(RATES))
        x, _ = data.read_audio(records[-1]["path"], 8000)
        self.assertAlmostEqual(x.size, 0.05 * 8000, delta=2)

    def test_hd_bad_input(self):
        empty = self.path("empty")
        os.makedirs(empty)
        self.assertError(lambda: corpora.load_hd(empty), "no WAV/FLAC files under", empty)
        write_wav(self.path("x", "a.wav"))
        self.assertError(lambda: corpora.load_hd(self.path("x")), "no HD files", "a.wav")
        write_wav(self.path("h", "lang-english_speaker-01_trial-0_digit-3.wav"))
        self.assertError(lambda: corpora.load_hd(self.path("h")), "no HD files of the languages",
                         "other_class 1")
        self.assertError(lambda: corpora.load_hd(self.path("h"), languages=("klingon",)),
                         "klingon", "english, german")


class Folder(Base):
    def make_subfolders(self, root):
        write_wav(os.path.join(root, "zero", "a.wav"), 8000)
        write_wav(os.path.join(root, "zero", "b.WAV"), 16000)
        write_wav(os.path.join(root, "zero", "alice", "c.wav"), 44100)   # speaker alice
        write_wav(os.path.join(root, "zero", "bob", "c.wav"), 44100)     # speaker bob
        write_wav(os.path.join(root, "one", "9d1c_nohash_0.wav"), 16000)  # speaker 9d1c
        write_audio(os.path.join(root, "one", "d.flac"), 16000)
        write_wav(os.path.join(root, "one", "carol", "e.wav"), 8000)
        write_wav(os.path.join(root, "stray.wav"), 8000)                 # no_label
        touch(os.path.join(root, "notes.txt"), "x")
        return root

    def test_subfolders(self):
        root = self.make_subfolders(self.path("lab"))
        records, summary = corpora.load_labelled_folder(root)
        self.assertRecords(records, "folder")
        self.assertEqual(summary["classes"], ["zero", "one"])  # digit order, not alphabetical
        self.assertEqual(summary["skipped"], {"no_label": 1})
        self.assertEqual(len(records), 7)
        by = {os.path.relpath(r["path"], root): r for r in records}
        self.assertEqual(by["zero/a.wav"]["label"], 0)
        self.assertEqual(by["one/d.flac"]["label"], 1)
        self.assertEqual(by["one/d.flac"]["word"], "one")
        self.assertEqual(by["zero/alice/c.wav"]["speaker"], "alice")
        self.assertEqual(by["one/9d1c_nohash_0.wav"]["speaker"], "9d1c")
        self.assertEqual(by["zero/a.wav"]["speaker"], "unknown")
        self.assertEqual(by["zero/b.WAV"]["rate"], 16000)
        # split: by speaker for the known speakers (4 of them: 1 test), by a hash of the path
        tests = corpora.choose_test_speakers(["alice", "bob", "9d1c", "carol"])
        for rel, r in by.items():
            if r["speaker"] == "unknown":
                self.assertEqual(r["split"], corpora.hash_split(rel))
            else:
                self.assertEqual(r["split"], "test" if r["speaker"] in tests else "train")
        self.assertEqual(corpora.load_labelled_folder(root), (records, summary))
        # the hash split's fraction is about 20 %
        frac = sum(corpora.hash_split("x/%d.wav" % i) == "test" for i in range(4000)) / 4000
        self.assertAlmostEqual(frac, corpora.TEST_FRACTION, delta=0.03)
        # classes given: their order is the labels
        records, _ = corpora.load_labelled_folder(root, classes=("one", "zero"))
        self.assertEqual(by["zero/a.wav"]["path"],
                         [r["path"] for r in records if r["label"] == 1][0])

    def test_train_test_folders(self):
        root = self.path("tt")
        write_wav(os.path.join(root, "train", "zero", "a.wav"), 8000)
        write_wav(os.path.join(root, "train", "one", "b.wav"), 16000)
        write_wav(os.path.join(root, "test", "zero", "c.wav"), 44100)
        write_wav(os.path.join(root, "test", "one", "spk", "d.wav"), 8000)
        records, summary = corpora.load_labelled_folder(root, classes=("zero", "one"))
        got = {os.path.relpath(r["path"], root): (r["label"], r["split"], r["speaker"])
               for r in records}
        self.assertEqual(got, {"train/zero/a.wav": (0, "train", "unknown"),
                               "train/one/b.wav": (1, "train", "unknown"),
                               "test/zero/c.wav": (0, "test", "unknown"),
                               "test/one/spk/d.wav": (1, "test", "spk")})
        self.assertEqual(summary["skipped"], {})
        os.makedirs(os.path.join(root, "validation", "zero"))
        write_wav(os.path.join(root, "validation", "zero", "e.wav"))
        self.assertError(lambda: corpora.load_labelled_folder(root), "validation",
                         "only train/ and test/")

    def test_labels_csv(self):
        root = self.path("csv")
        write_wav(os.path.join(root, "clips", "a.wav"), 8000)
        write_wav(os.path.join(root, "clips", "b.wav"), 16000)
        write_audio(os.path.join(root, "clips", "c.flac"), 44100)
        write_wav(os.path.join(root, "train", "d.wav"), 16000)
        write_wav(os.path.join(root, "clips", "unlisted.wav"), 16000)
        with open(os.path.join(root, "labels.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["File", "label", "speaker", "split", "notes"])
            w.writerow(["clips/a.wav", "zero", "ann", "test", "x"])
            w.writerow(["clips/b.wav", "one", "ann", "", ""])
            w.writerow(["clips/c.flac", "one", "", "train", ""])
            w.writerow(["train/d.wav", "zero", "bob", "", ""])
            w.writerow([])
        records, summary = corpora.load_labelled_folder(root, classes=("zero", "one"))
        self.assertRecords(records, "folder")
        self.assertEqual(summary["skipped"], {"not_in_labels_csv": 1})
        got = {os.path.relpath(r["path"], root): (r["label"], r["split"], r["speaker"], r["rate"])
               for r in records}
        # b.wav: no split, one known speaker among the fallback files -> the hash split
        self.assertEqual(got, {"clips/a.wav": (0, "test", "ann", 8000),
                               "clips/b.wav": (1, corpora.hash_split("clips/b.wav"), "ann", 16000),
                               "clips/c.flac": (1, "train", "unknown", 44100),
                               "train/d.wav": (0, "train", "bob", 16000)})
        self.assertEqual(corpora.detect_kind(root), "folder")

    def test_bad_input(self):
        empty = self.path("empty")
        os.makedirs(empty)
        self.assertError(lambda: corpora.load_labelled_folder(empty), "no WAV/FLAC files under",
                         empty)
        touch(self.path("mp3", "zero", "a.mp3"), "x")
        self.assertError(lambda: corpora.load_labelled_folder(self.path("mp3")),
                         "no WAV/FLAC files under", "a.mp3", "convert")
        flat = self.path("flat")
        write_wav(os.path.join(flat, "a.wav"))
        self.assertError(lambda: corpora.load_labelled_folder(flat), "no WAV/FLAC files in class "
                         "folders", "a.wav")
        notafolder = os.path.join(flat, "a.wav")
        self.assertError(lambda: corpora.load_labelled_folder(notafolder), notafolder,
                         "not a folder")

        # unknown label: named, with its folder and the allowed classes; skip_other counts it
        root = self.make_subfolders(self.path("lab"))
        write_wav(os.path.join(root, "two", "x.wav"))
        write_wav(os.path.join(root, "two", "y.wav"))
        msg = self.assertError(lambda: corpora.load_labelled_folder(root, ("zero", "one")),
                               "'two'", os.path.join(root, "two"), "zero, one", "2 files")
        records, summary = corpora.load_labelled_folder(root, ("zero", "one"), skip_other=True)
        self.assertEqual(summary["skipped"], {"no_label": 1, "other_class": 2})
        self.assertEqual(len(records), 7)
        self.assertNotIn("Traceback", msg)

        # unreadable audio: the file and sox's message; lenient: skipped and counted
        bad = os.path.join(root, "one", "broken.wav")
        touch(bad, "this is not a RIFF file")
        self.assertError(lambda: corpora.load_labelled_folder(root, ("zero", "one", "two")),
                         bad, "unreadable audio", "RIFF header not found" if HAVE_SOX else "")
        records, summary = corpora.load_labelled_folder(root, ("zero", "one", "two"),
                                                        strict=False)
        self.assertEqual(summary["skipped"]["unreadable"], 1)
        self.assertIn(bad, summary["examples"]["unreadable"][0])
        self.assertEqual(len(records), 9)
        os.remove(bad)
        badflac = os.path.join(root, "one", "broken.flac")
        with open(badflac, "wb") as f:
            f.write(b"fLaC\x00\x00\x00\x22" + b"\x00" * 10)  # truncated STREAMINFO
        self.assertError(lambda: corpora.load_labelled_folder(root, ("zero", "one", "two")),
                         badflac, "unreadable audio")
        os.remove(badflac)
        empty_wav = os.path.join(root, "one", "empty.wav")
        write_wav(empty_wav, n=0)
        self.assertError(lambda: corpora.load_labelled_folder(root, ("zero", "one", "two")),
                         empty_wav, "no samples")
        os.remove(empty_wav)

        # sample rate out of range (1000..384000 Hz)
        for rate in (500, 400000):
            slow = os.path.join(root, "zero", "rate%d.wav" % rate)
            write_wav(slow, rate, n=10)
            self.assertError(lambda: corpora.load_labelled_folder(root, ("zero", "one", "two")),
                             slow, "%d Hz" % rate, "1000..384000")
            records, summary = corpora.load_labelled_folder(root, ("zero", "one", "two"),
                                                            strict=False)
            self.assertEqual(summary["skipped"]["rate_out_of_range"], 1)
            os.remove(slow)
        write_wav(os.path.join(root, "zero", "r1000.wav"), 1000, n=10)   # the limits are allowed
        write_wav(os.path.join(root, "zero", "r384k.wav"), 384000, n=10)
        self.assertEqual(len(corpora.load_labelled_folder(root, ("zero", "one", "two"))[0]), 11)

    def test_labels_csv_bad_input(self):
        root = self.path("csv")
        write_wav(os.path.join(root, "a.wav"))
        lab = os.path.join(root, "labels.csv")

        def rows(*lines):
            with open(lab, "w") as f:
                f.write("\n".join(lines) + "\n")

        load = lambda: corpora.load_labelled_folder(root, ("zero", "one"))  # noqa: E731
        rows("file,label", "a.wav,zero", "missing.wav,one")
        self.assertError(load, lab + " line 3", "missing.wav", "does not exist")
        rows("file,word", "a.wav,zero")
        self.assertError(load, lab, "'label' column")
        rows("file,label", "a.wav,three")
        self.assertError(load, "'three'", lab + " line 2", "zero, one")
        rows("file,label,split", "a.wav,zero,validation")
        self.assertError(load, lab + " line 2", "'validation'", "train, test")
        rows("file,label", "a.wav,")
        self.assertError(load, lab + " line 2", "empty label")
        rows("file,label", "a.wav,zero", "a.wav,one")
        self.assertError(load, lab + " line 3", "listed twice")
        rows("file,label", "notes.txt,zero")
        self.assertError(load, "notes.txt", "not a WAV/FLAC")
        rows("")
        self.assertError(load, lab, "empty")
        rows("file,label")
        self.assertError(load, lab, "no rows")
        with open(lab, "wb") as f:
            f.write(b"file,label\n\xff\xfe\x00bad")
        self.assertError(load, lab, "cannot read")


class Detection(Base):
    def test_detect_and_dispatch(self):
        fsdd = self.path("fsdd")
        write_wav(os.path.join(fsdd, "recordings", "0_ann_0.wav"))
        write_wav(os.path.join(fsdd, "recordings", "1_ann_7.wav"))
        hd = self.path("hd")
        write_wav(os.path.join(hd, "audio", "lang-english_speaker-04_trial-0_digit-1.wav"))
        write_wav(os.path.join(hd, "audio", "lang-english_speaker-01_trial-0_digit-0.wav"))
        folder = self.path("folder")
        write_wav(os.path.join(folder, "zero", "x.wav"))
        write_wav(os.path.join(folder, "one", "y.wav"))
        gen = self.path("gen")
        os.makedirs(gen)
        with open(os.path.join(gen, "manifest.json"), "w") as f:
            f.write('{"rate_hz": 48000, "clips": [{"file": "train/a.wav", "word": "zero", '
                    '"label": 0, "split": "train", "speaker": "spk000"}, {"file": "test/b.wav", '
                    '"word": "one", "label": 1, "split": "test", "speaker": "spk001"}]}')
        for path, kind in ((fsdd, "digits"), (hd, "hd"), (folder, "folder"), (gen, "generated")):
            self.assertEqual(corpora.detect_kind(path), kind)
            records, summary = corpora.load_corpus(path, ("zero", "one"))
            self.assertEqual(summary["kind"], kind)
            self.assertEqual(len(records), 2, kind)
            self.assertEqual(sorted(r["label"] for r in records), [0, 1])
            self.assertEqual({r["source"] for r in records}, {kind})
        self.assertEqual([r["split"] for r in corpora.load_corpus(fsdd)[0]], ["test", "train"])
        self.assertEqual(sorted(r["split"] for r in corpora.load_corpus(hd)[0]), ["test", "train"])
        # forcing a kind
        self.assertEqual(corpora.load_corpus(fsdd, None, kind="folder")[1]["classes"],
                         ["recordings"])
        self.assertError(lambda: corpora.load_corpus(folder, kind="digits"),
                         "no {digit}_{speaker}_{index}.wav")
        self.assertError(lambda: corpora.load_corpus(folder, kind="bogus"), "'bogus'")
        empty = self.path("empty")
        os.makedirs(empty)
        self.assertError(lambda: corpora.load_corpus(empty), "no WAV/FLAC files under", empty)
        # classes=None: all ten digits / the labels found
        self.assertEqual(corpora.load_corpus(fsdd, None)[1]["classes"], list(corpora.DIGITS))
        self.assertEqual(corpora.load_corpus(folder, None)[1]["classes"], ["zero", "one"])

    def test_cli(self):
        root = self.path("fsdd")
        for d in (0, 1, 3):
            for i in (0, 6):
                write_wav(os.path.join(root, "%d_ann_%d.wav" % (d, i)), 8000)
        script = os.path.join(HERE, "corpora.py")
        p = subprocess.run([sys.executable, script, root, "--classes", "zero,one"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("kind digits", p.stdout)
        self.assertIn("train:      2 clips (zero 1, one 1); 1 speakers: ann", p.stdout)
        self.assertIn("test:      2 clips (zero 1, one 1)", p.stdout)
        self.assertIn("8000 Hz x 4", p.stdout)
        self.assertIn("skipped: other_class 2", p.stdout)
        touch(os.path.join(root, "3_ann_9.wav"), "junk")
        p = subprocess.run([sys.executable, script, root, "--classes", "zero,one,three"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn("3_ann_9.wav", p.stderr)
        self.assertIn("unreadable audio", p.stderr)
        self.assertNotIn("Traceback", p.stderr)
        p = subprocess.run([sys.executable, script, root, "--classes", "zero,one,three",
                            "--lenient"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("unreadable 1", p.stdout)


if __name__ == "__main__":
    unittest.main()
