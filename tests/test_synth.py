"""Synthetic demo corpora (ser_mtl.data.synth): real layouts, real label formats, speech-like signals.

The shared miniature (`tiny`): 5 sessions x 2 dialogs x (4 F + 4 M) turns = 40 IEMOCAP wavs (5 sessions
so that the letter-suffix dialogs Ses03M_impro05a and Ses05M_script01_1b appear), LibriSpeech
train-clean-360 4 speakers x 8 utterances (2 chapters each: 4 + 4), test-clean 2 speakers x 3 (1 chapter).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import find_peaks

from ser_mtl.data.synth import _evaluate, _plan_session, load_stamp, synth
from ser_mtl.data.synth_voice import make_voice, prosody_for, synthesize

TINY = {"iemocap_sessions": 5, "iemocap_dialogs": 2, "iemocap_utterances": 4, "iemocap_seconds": (1.5, 2.0),
        "librispeech_train_speakers": 4, "librispeech_train_utterances": 8,
        "librispeech_test_speakers": 2, "librispeech_test_utterances": 3, "librispeech_seconds": (2.0, 2.5)}
MICRO = {"iemocap_sessions": 1, "iemocap_dialogs": 1, "iemocap_utterances": 2, "iemocap_seconds": (1.0, 1.2),
         "librispeech_train_speakers": 2, "librispeech_train_utterances": 1,
         "librispeech_test_speakers": 1, "librispeech_test_utterances": 1, "librispeech_seconds": (1.0, 1.2)}
HEAD = re.compile(r"^\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(Ses0(\d)[FM]_(?:impro0\d[ab]?|script0\d_\d[ab]?)_([FM])\d{3})"
                  r"\t(neu|hap|exc|sad|ang|fru|sur|fea|dis|oth|xxx)\t\[(\d\.\d{4}), (\d\.\d{4}), (\d\.\d{4})\]$")
CAT_LINE = re.compile(r"^C-(E\d|F1|M1):\t[A-Z][a-z]+(?: state)?;(?: [A-Z][a-z]+(?: state)?;)*\t\(\)$")
ATR_LINE = re.compile(r"^A-(E\d|F1|M1):\tval ([1-5]); act ([1-5]); dom  ([1-5]);\t\(\)$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "demo"
    synth(str(out), seed=0, **TINY)
    return out


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    n = 1 + (len(x) - win) // hop
    return x[np.arange(win)[None, :] + hop * np.arange(n)[:, None]]  # (frames, win)


def f0_track(x: np.ndarray, sr: int = 16000) -> np.ndarray:
    """f0 (Hz) of the clearly voiced 40 ms frames (10 ms hop), by windowed autocorrelation."""
    fr = _frames(x.astype(np.float64), 640, 160)
    energy = np.mean(fr**2, 1)
    fr = fr[energy > energy.max() * 10 ** -2.5] * np.hanning(640)
    ac = np.fft.irfft(np.abs(np.fft.rfft(fr, 1280)) ** 2, 1280)[:, :640]  # (frames, lags)
    window_ac = np.fft.irfft(np.abs(np.fft.rfft(np.hanning(640), 1280)) ** 2, 1280)[:640]
    ac = ac / ac[:, :1] / np.maximum(window_ac / window_ac[0], 0.05)
    lo, hi = sr // 420, sr // 60
    seg = ac[:, lo:hi]
    lag = lo + np.argmax(seg >= 0.85 * seg.max(1, keepdims=True), 1)  # shortest good lag: no octave-down
    voiced = ac[np.arange(len(lag)), lag] > 0.6
    return sr / lag[voiced]


def estimate_f0(x: np.ndarray, sr: int = 16000) -> float:
    return float(np.median(f0_track(x, sr)))


def syllable_rate(x: np.ndarray, sr: int = 16000) -> float:
    """Energy peaks (>= 6 dB prominence) per second between the first and last active frame."""
    e = 10 * np.log10(np.mean(_frames(x.astype(np.float64), sr // 50, sr // 100) ** 2, 1) + 1e-12)
    e = np.convolve(e, np.ones(3) / 3, mode="same")
    peaks, _ = find_peaks(e, height=e.max() - 25, prominence=6)
    active = np.nonzero(e > e.max() - 25)[0]
    return len(peaks) / ((active[-1] - active[0]) / 100)


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "ser_mtl_synth.json"}


def _blocks(label_file: Path) -> list[list[str]]:
    text = label_file.read_text()
    header, _, body = text.partition("\n\n")
    assert header == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
    assert body.endswith("\n\n") and "\n\n\n" not in body
    return [block.split("\n") for block in body.strip("\n").split("\n\n")]


def test_iemocap_tree_has_the_real_layout(tiny):
    root = tiny / "IEMOCAP_full_release"
    assert sorted(p.name for p in root.iterdir()) == ["README.txt"] + [f"Session{n}" for n in range(1, 6)]
    for n in range(1, 6):
        wavs = sorted((root / f"Session{n}" / "sentences" / "wav").glob("*/*.wav"))
        dialogs = sorted((root / f"Session{n}" / "dialog" / "EmoEvaluation").glob("*.txt"))
        assert len(wavs) == 8 and len(dialogs) == 2
        assert all(w.parent.name == w.stem.rsplit("_", 1)[0] for w in wavs)
        assert {w.parent.name for w in wavs} == {d.stem for d in dialogs}
        for d in dialogs:  # both actors in every dialog, 2 turns each; labels name exactly the wavs
            ids = [b[0].split("\t")[1] for b in _blocks(d)]
            assert Counter(i.rsplit("_", 1)[1][0] for i in ids) == {"F": 2, "M": 2}
            assert sorted(ids) == sorted(w.stem for w in wavs if w.parent.name == d.stem)
            assert (root / f"Session{n}" / "dialog" / "transcriptions" / d.name).is_file()
        for sub in ("Categorical", "Attribute", "Self-evaluation"):
            files = list((root / f"Session{n}" / "dialog" / "EmoEvaluation" / sub).glob("*.txt"))
            names = [re.fullmatch(r"(.+)_(e\d|f1|m1)_(cat|atr|self)\.txt", f.name) for f in files]
            assert len(files) >= 2 and all(m and m[1] in {d.stem for d in dialogs} for m in names)
    assert (root / "Session3/sentences/wav/Ses03M_impro05a").is_dir()
    assert (root / "Session5/sentences/wav/Ses05M_script01_1b").is_dir()
    info = sf.info(str(next(root.glob("Session1/sentences/wav/*/*.wav"))))
    assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "WAV", "PCM_16")


def test_iemocap_label_lines_match_the_real_format(tiny):
    root = tiny / "IEMOCAP_full_release"
    n_blocks = 0
    for label_file in sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt")):
        session = int(label_file.parts[-4][-1])
        for block in _blocks(label_file):
            m = HEAD.match(block[0])
            assert m, f"{label_file.name}: {block[0]!r}"
            start, end, utt_id, utt_session = float(m[1]), float(m[2]), m[3], int(m[4])
            assert utt_session == session and utt_id.startswith(label_file.stem + "_")
            wav = root / f"Session{session}/sentences/wav/{label_file.stem}/{utt_id}.wav"
            assert abs(sf.info(str(wav)).duration - (end - start)) < 1e-3
            assert 1.5 <= end - start <= 2.0
            cats = [line for line in block[1:] if line.startswith("C-")]
            atrs = [ATR_LINE.match(line) for line in block[1:] if line.startswith("A-")]
            assert len(cats) + len(atrs) == len(block) - 1 and len(cats) == 4 and 3 <= len(atrs) <= 4
            assert all(CAT_LINE.match(c) for c in cats) and all(atrs), block
            # The consensus [V, A, D] is the mean of the external (E) evaluators' integer ratings.
            external = [[int(a[k]) for k in (2, 3, 4)] for a in atrs if a[1].startswith("E")]
            assert [float(m[k]) for k in (7, 8, 9)] == pytest.approx(np.mean(external, 0).tolist(), abs=1e-4)
            assert block[-1].startswith(f"A-{m[5]}1:")  # the speaking actor's own rating comes last
            n_blocks += 1
    assert n_blocks == 40


def test_torchaudio_reference_parser_agrees(tiny, tmp_path):
    torchaudio_iemocap = pytest.importorskip("torchaudio.datasets.iemocap")
    (tmp_path / "IEMOCAP").symlink_to(tiny / "IEMOCAP_full_release")  # it expects <root>/IEMOCAP
    dataset = torchaudio_iemocap.IEMOCAP(tmp_path)
    codes = load_stamp(tiny)["summary"]["iemocap"]["codes"]
    assert len(dataset) == sum(codes.get(c, 0) for c in ("neu", "hap", "ang", "sad", "exc", "fru"))


def test_labels_follow_the_emotions():
    """Planned over the default sizes (no audio): ~70 % 4-class, and V/A consistent with the codes."""
    params = {"iemocap_dialogs": 5, "iemocap_utterances": 70, "iemocap_seconds": (1.5, 4.0)}
    turns = [u for s in range(1, 6) for _, dialog in _plan_session(0, s, params) for u in dialog]
    assert len(turns) == 700
    rng = np.random.default_rng(0)
    vad: dict[str, list] = {}
    for u in turns:
        vad.setdefault(u.code, []).append(_evaluate(rng, u, ["E1", "E2", "E3"]).consensus())
    assert 0.6 <= sum(len(vad.get(c, [])) for c in ("ang", "hap", "exc", "neu", "sad")) / 700 <= 0.8
    v = {c: np.mean(x, 0)[0] for c, x in vad.items()}
    a = {c: np.mean(x, 0)[1] for c, x in vad.items()}
    assert min(v["hap"], v["exc"]) > v["neu"] + 0.5 > max(v["ang"], v["sad"]) + 0.5
    assert min(a["ang"], a["exc"]) > a["neu"] + 0.5 and a["neu"] > a["sad"]


def test_speaker_is_the_last_field_and_has_its_gender_f0(tiny):
    root = tiny / "IEMOCAP_full_release"
    per_speaker: dict[tuple[str, str], list[float]] = {}
    for wav in sorted(root.glob("Session*/sentences/wav/*/*.wav")):
        session, gender = wav.stem[3:5], wav.stem.rsplit("_", 1)[1][0]
        f0 = estimate_f0(sf.read(str(wav))[0])
        assert (55 <= f0 <= 240) if gender == "M" else (110 <= f0 <= 420), (wav.name, f0)
        per_speaker.setdefault((session, gender), []).append(f0)
    assert len(per_speaker) == 10 and all(len(v) == 4 for v in per_speaker.values())
    for s in {s for s, _ in per_speaker}:
        assert np.mean(per_speaker[s, "F"]) > 1.25 * np.mean(per_speaker[s, "M"])


def test_f0_estimator_matches_the_generator():
    rng = np.random.default_rng(11)
    for gender in "FMFM":
        utt = synthesize(rng, make_voice(rng, gender), prosody_for(rng, 3.0, 3.0), 2.0)
        assert estimate_f0(utt.wave) == pytest.approx(utt.f0_median, rel=0.05)


def test_angry_prosody_is_higher_faster_and_not_only_louder():
    rng = np.random.default_rng(5)
    voices = [make_voice(rng, g) for g in "FMFM"]
    stats: dict[str, list[tuple[float, float, float]]] = {"ang": [], "sad": []}
    for code, (valence, activation) in {"ang": (1.9, 3.9), "sad": (2.0, 2.1)}.items():
        for voice in voices:
            for _ in range(5):
                utt = synthesize(rng, voice, prosody_for(rng, activation, valence), 2.5)
                semitones = 12 * np.log2(estimate_f0(utt.wave) / voice.f0)
                level_db = 10 * np.log10(np.mean(utt.wave.astype(np.float64) ** 2))
                stats[code].append((semitones, syllable_rate(utt.wave), level_db))
    ang, sad = np.array(stats["ang"]), np.array(stats["sad"])  # (20, 3)
    assert ang[:, 0].mean() > sad[:, 0].mean() + 3.0  # semitones above the speaker's own pitch
    assert ang[:, 1].mean() > sad[:, 1].mean() + 0.5  # syllables per second
    assert ang[:, 2].mean() > sad[:, 2].mean() + 3.0  # louder on average...
    assert ang[:, 2].min() < sad[:, 2].max()  # ...but the random gain makes the levels overlap


def test_librispeech_tree_and_speakers_txt(tiny):
    root = tiny / "LibriSpeech"
    assert sorted(p.name for p in root.iterdir()) == ["SPEAKERS.TXT", "test-clean", "train-clean-360"]
    rows = [line.split("|", 4) for line in (root / "SPEAKERS.TXT").read_text().splitlines()
            if not line.startswith(";")]
    assert all(len(r) == 5 for r in rows) and len(rows) == 8  # 6 with audio + 2 from absent subsets
    speakers = {r[0].strip(): (r[1].strip(), r[2].strip(), r[4].strip()) for r in rows}
    assert sum("|" in name for _, _, name in speakers.values()) == 1
    assert {sub for _, sub, _ in speakers.values()} == {"train-clean-360", "test-clean", "train-clean-100",
                                                        "dev-clean"}
    for subset, n_speakers, per_speaker, n_chapters in (("train-clean-360", 4, 8, 2), ("test-clean", 2, 3, 1)):
        spk_dirs = sorted((root / subset).iterdir())
        assert len(spk_dirs) == n_speakers
        assert Counter(speakers[d.name][0] for d in spk_dirs) == {"F": n_speakers // 2, "M": n_speakers // 2}
        assert all(speakers[d.name][1] == subset for d in spk_dirs)
        for spk in spk_dirs:
            chapters = sorted(spk.iterdir())
            assert len(chapters) == n_chapters
            for ch in chapters:
                flacs = sorted(ch.glob("*.flac"))
                assert sorted(p.name for p in ch.iterdir()) == [f.name for f in flacs] + [
                    f"{spk.name}-{ch.name}.trans.txt"]
                assert [f.stem for f in flacs] == [f"{spk.name}-{ch.name}-{k:04d}" for k in range(len(flacs))]
                lines = (ch / f"{spk.name}-{ch.name}.trans.txt").read_text().splitlines()
                assert [line.split(" ", 1)[0] for line in lines] == [f.stem for f in flacs]
                assert all(re.fullmatch(r"\d+-\d+-\d{4} [A-Z]+( [A-Z]+)*", line) for line in lines)
            assert sum(len(list(ch.glob("*.flac"))) for ch in chapters) == per_speaker
    info = sf.info(str(next(root.glob("train-clean-360/*/*/*.flac"))))
    assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
    assert 2.0 <= info.duration <= 2.5


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path):
    synth(str(tmp_path / "a"), seed=3, **MICRO)
    synth(str(tmp_path / "b"), seed=3, **MICRO)
    synth(str(tmp_path / "c"), seed=4, **MICRO)
    a, b, c = (_tree_digest(tmp_path / x) for x in "abc")
    assert len(a) > 10 and a == b
    audio = [k for k in a if k.endswith((".wav", ".flac"))]
    common = [k for k in audio if k in c]  # the IEMOCAP names do not depend on the seed
    assert len(audio) == 4 + 3 and len(common) == 4 and all(a[k] != c[k] for k in common)


def test_idempotent_rewrites_half_written_and_refuses_foreign(tmp_path, capsys):
    out = tmp_path / "demo"
    synth(str(out), seed=1, **MICRO)
    digest = _tree_digest(out)
    wav = next(out.glob("IEMOCAP_full_release/Session1/sentences/wav/*/*.wav"))
    mtime = wav.stat().st_mtime_ns
    capsys.readouterr()
    synth(str(out), seed=1, **MICRO)
    assert "already complete" in capsys.readouterr().out and wav.stat().st_mtime_ns == mtime

    # Half-written: the stamp says incomplete, a file is missing and a stray one is there.
    stamp = json.loads((out / "ser_mtl_synth.json").read_text())
    (out / "ser_mtl_synth.json").write_text(json.dumps({**stamp, "complete": False}))
    wav.unlink()
    (wav.parent / "stray.wav").write_bytes(b"x")
    synth(str(out), seed=1, **MICRO)
    assert _tree_digest(out) == digest and load_stamp(out)["complete"] is True

    synth(str(out), seed=1, **{**MICRO, "librispeech_test_utterances": 2})  # other params: rewritten
    assert load_stamp(out)["summary"]["librispeech"]["subsets"]["test-clean"]["utterances"] == 2
    assert len(list(out.glob("LibriSpeech/test-clean/*/*/*.flac"))) == 2

    foreign = tmp_path / "real"
    (foreign / "IEMOCAP_full_release").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        synth(str(foreign), **MICRO)
    with pytest.raises(ValueError, match="iemocap_sessions must be 1-5"):
        synth(str(tmp_path / "bad"), iemocap_sessions=6)


def test_readers_read_back_what_was_generated(tiny):
    corpora = pytest.importorskip("ser_mtl.data.corpora", reason="corpus readers (ser_mtl/data/corpora) missing")
    summary = load_stamp(tiny)["summary"]
    result = corpora.read_iemocap(tiny / "IEMOCAP_full_release")
    assert result.skipped == [] and len(result.rows) == 40 == summary["iemocap"]["utterances"]
    from ser_mtl.data.labels import make_label_scheme

    scheme = make_label_scheme("categorical", "iemocap")  # the paper's four, excited merged into happy
    four = Counter(scheme.category(r) for r in result.rows if scheme.category(r))
    assert four == summary["iemocap"]["four_class"]
    assert Counter(r.raw_emotion for r in result.rows) == summary["iemocap"]["codes"]
    assert Counter(r.gender for r in result.rows) == {"F": 20, "M": 20}
    assert len({r.speaker for r in result.rows}) == 10
    assert all(r.gender == r.utt_id.rsplit("_", 1)[1][0] for r in result.rows)
    for subset, n_rows, n_speakers in (("train-clean-360", 32, 4), ("test-clean", 6, 2)):
        lib = corpora.read_librispeech(tiny / "LibriSpeech", subset)
        assert lib.skipped == [] and len(lib.rows) == n_rows == summary["librispeech"]["subsets"][subset][
            "utterances"]
        assert len({r.speaker for r in lib.rows}) == n_speakers
        assert Counter(r.gender for r in lib.rows) == {"F": n_rows // 2, "M": n_rows // 2}


@pytest.mark.slow
def test_classical_baseline_learns_emotion_but_not_perfectly(tmp_path):
    """Leave-one-session-out logistic regression on 5 utterance statistics (log-energy mean/std,
    median/spread of log f0, syllable rate) over the default IEMOCAP sizes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    synth(str(tmp_path), seed=0, librispeech_train_speakers=1, librispeech_train_utterances=1,
          librispeech_test_speakers=1, librispeech_test_utterances=1)
    classes = {"ang": 0, "hap": 1, "exc": 1, "neu": 2, "sad": 3}
    x, y, sessions = [], [], []
    for label_file in sorted(tmp_path.glob("IEMOCAP_full_release/Session*/dialog/EmoEvaluation/*.txt")):
        for block in _blocks(label_file):
            _, utt_id, code, _ = block[0].split("\t")
            if code in classes:
                wave = sf.read(str(label_file.parents[2] / "sentences/wav" / label_file.stem / f"{utt_id}.wav"))[0]
                e = 10 * np.log10(np.mean(_frames(wave, 400, 160) ** 2, 1) + 1e-12)
                e = e[e > e.max() - 40]
                log_f0 = np.log(f0_track(wave))
                spread = np.subtract(*np.percentile(log_f0, [75, 25]))
                x.append([e.mean(), e.std(), np.median(log_f0), spread, syllable_rate(wave)])
                y.append(classes[code])
                sessions.append(utt_id[4])
    x, y, sessions = np.array(x), np.array(y), np.array(sessions)
    accuracy = []
    for s in sorted(set(sessions)):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x[sessions != s], y[sessions != s])
        accuracy.append(model.score(x[sessions == s], y[sessions == s]))
    print(f"leave-one-session-out accuracy {np.round(accuracy, 3)}, mean {np.mean(accuracy):.3f}")
    assert 0.40 < np.mean(accuracy) < 0.75  # chance is ~0.25-0.32 (majority class)
