"""Miniature corpora in the real on-disk layouts, for tests.

Each builder writes a tiny copy of one corpus as it unpacks (folder names, label-file formats and
the quirks listed in docs/corpora.md), with short synthetic audio written by soundfile,
and returns what a correct reader must find:

    {"rows": int, "emotion": {"angry": n, ..., "": n}, "gender": {"F": n, "M": n, ...},
     "session": {"1": n, ...}, "speakers": [sorted ids],
     "utts": {utt_id: {"path", "duration", "speaker", "gender", "session", "emotion",
                       "raw_emotion", "valence", "activation", "dominance"}},
     "skips": [(path relative to root, line or None, fragment of the reason), ...]}

The audio is a tone whose pitch depends on the emotion and the speaker's gender (plus a little
noise), so a model trained on a miniature has something learnable. Durations cycle through three
values in `seconds`; `duration` in "utts" is the exact frames / sample_rate written.

    make_iemocap(root, sessions=(1, 2), utts_per_dialog=6, ...)   # root = IEMOCAP_full_release/
    make_msp_improv(root, sessions=(1, 2), layout="audio", ...)  # root = MSP-IMPROV/
    make_librispeech(root, subsets=(...), ...)                   # root = LibriSpeech/
    make_csv_corpus(root, ...)                                    # root/manifest.csv + root/wav/
Usage from a test (tests/ is on sys.path under pytest): `from corpus_trees import make_iemocap`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

GARBAGE = b"\x00\x01 this is not audio \xff\xfe" * 8  # also the content of macOS `._*` files
_PITCH = {"angry": 330.0, "happy": 440.0, "excited": 440.0, "neutral": 220.0, "sad": 165.0, "": 275.0}


# ----------------------------------------------------------------------------- audio helpers
def duration_for(i: int, seconds: tuple[float, float]) -> float:
    """The i-th utterance's nominal length: lo, mid, hi, lo, ... seconds."""
    lo, hi = seconds
    return lo + (hi - lo) * (i % 3) / 2


def write_tone(path: Path, seconds: float, sample_rate: int = 16000, emotion: str = "",
               gender: str = "F", seed: int = 0) -> float:
    """Write a mono tone (WAV or FLAC by suffix); return its exact duration frames / sample_rate."""
    frames = max(1, round(seconds * sample_rate))
    t = np.arange(frames) / sample_rate
    pitch = _PITCH.get(emotion, 275.0) * (1.0 if gender == "F" else 0.6)
    noise = np.random.default_rng(seed).standard_normal(frames) * 0.01
    wave = (0.3 * np.sin(2 * math.pi * pitch * t) + noise).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sample_rate, subtype="PCM_16")
    return frames / sample_rate


def write_empty_audio(path: Path, sample_rate: int = 16000) -> None:
    """A 0-sample file: a valid WAV header with no data, or (FLAC) the 0-byte file soundfile writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(0, dtype=np.float32), sample_rate, subtype="PCM_16")


def write_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GARBAGE)


def _summary(utts: dict[str, dict], skips: list[tuple[str, int | None, str]]) -> dict:
    return {
        "rows": len(utts),
        "emotion": dict(Counter(u["emotion"] for u in utts.values())),
        "gender": dict(Counter(u["gender"] for u in utts.values())),
        "session": dict(Counter(u["session"] for u in utts.values())),
        "speakers": sorted({u["speaker"] for u in utts.values()}),
        "utts": utts,
        "skips": skips,
    }


def _utt(path: str, duration: float, speaker: str, gender: str, session: str, emotion: str = "",
         raw_emotion: str = "", valence: float | None = None, activation: float | None = None,
         dominance: float | None = None) -> dict:
    return {"path": path, "duration": duration, "speaker": speaker, "gender": gender,
            "session": session, "emotion": emotion, "raw_emotion": raw_emotion, "valence": valence,
            "activation": activation, "dominance": dominance}


# ----------------------------------------------------------------------------- IEMOCAP
IEMOCAP_CODES = ("neu", "hap", "exc", "sad", "ang", "fru")  # turn i of a dialog gets CODES[i % 6]
IEMOCAP_EMOTION = {"neu": "neutral", "hap": "happy", "exc": "excited", "sad": "sad", "ang": "angry",
                   "fru": "frustrated"}
IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
_EVALUATORS = ("C-E2:\tNeutral;\t()", "C-F1:\tNeutral;\t(curious)",
               "A-E3:\tval 3; act 2; dom  2;\t()", "A-F1:\tval 3; act 2; dom  1;\t()")


def iemocap_dialogs(session: int) -> list[str]:
    """Three dialogs per session, two with the release's letter suffixes (impro05a, script01_1b)."""
    return [f"Ses{session:02d}F_impro01", f"Ses{session:02d}M_impro05a",
            f"Ses{session:02d}M_script01_1b"]


def iemocap_vad(i: int) -> tuple[float, float, float]:
    """[valence, activation, dominance] of turn i: three different numbers, so order mistakes show;
    valence and activation cycle with different periods so the (V, A) plane holds 20 distinct points."""
    return 1.5 + 0.5 * (i % 4), 5.0 - 0.5 * (i % 5), 2.0 + 0.25 * (i % 4)


def _iemocap_head(start: float, end: float, utt_id: str, code: str,
                  vad: Sequence[float]) -> str:
    return (f"[{start:.4f} - {end:.4f}]\t{utt_id}\t{code}\t"
            f"[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]")


def _write_lines(path: Path, lines: list[str], newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode())


def make_iemocap(root: Path, sessions: Iterable[int] = (1, 2), utts_per_dialog: int = 6,
                 seconds: tuple[float, float] = (0.3, 0.5), bad_files: bool = False,
                 sample_rate: int = 16000) -> dict:
    """Write IEMOCAP_full_release/ at `root`; return the expected reader output (module docstring).

    Turn i of each dialog is spoken by "FM"[i % 2] (so `Ses01F_impro01_M000` is the male actor
    speaking in a dialog whose prefix says F), with code IEMOCAP_CODES[i % 6] and V/A/D
    iemocap_vad(i). Quirks: the third dialog of a session has Windows line endings, the second
    trailing spaces; EmoEvaluation/ holds Categorical/, Attribute/ and Self-evaluation/ files that
    a reader must not read (the Self-evaluation one is in dialog format with other codes).
    With bad_files, the first session gains `Ses0nF_impro02.txt` (see _iemocap_bad_dialog).
    """
    root = Path(root)
    utts: dict[str, dict] = {}
    skips: list[tuple[str, int | None, str]] = []
    sessions = list(sessions)
    for n in sessions:
        label_dir = root / f"Session{n}" / "dialog" / "EmoEvaluation"
        for d, dialog in enumerate(iemocap_dialogs(n)):
            lines = [IEMOCAP_HEADER, ""]
            for i in range(utts_per_dialog):
                gender, code = "FM"[i % 2], IEMOCAP_CODES[i % len(IEMOCAP_CODES)]
                utt_id = f"{dialog}_{gender}{i // 2:03d}"
                emotion = IEMOCAP_EMOTION.get(code, "")
                audio = f"Session{n}/sentences/wav/{dialog}/{utt_id}.wav"
                duration = write_tone(root / audio, duration_for(i, seconds), sample_rate,
                                      emotion, gender, seed=i)
                vad = iemocap_vad(i)
                head = _iemocap_head(2.5 * i, 2.5 * i + duration, utt_id, code, vad)
                lines += [head + ("  \t" if d == 1 else ""), *_EVALUATORS, ""]
                utts[utt_id] = _utt(audio, duration, f"Ses{n:02d}_{gender}", gender, str(n),
                                    emotion, code, *vad)
            _write_lines(label_dir / f"{dialog}.txt", lines, "\r\n" if d == 2 else "\n")
        _write_evaluator_files(label_dir, iemocap_dialogs(n)[0], utts_per_dialog)
        if bad_files and n == sessions[0]:
            _iemocap_bad_dialog(root, n, utts, skips, sample_rate)
    return _summary(utts, skips)


def _write_evaluator_files(label_dir: Path, dialog: str, count: int) -> None:
    ids = [f"{dialog}_{'FM'[i % 2]}{i // 2:03d}" for i in range(count)]
    _write_lines(label_dir / "Categorical" / f"{dialog}_e2_cat.txt",
                 [f"{u} :Neutral state; ()" for u in ids])
    _write_lines(label_dir / "Attribute" / f"{dialog}_e3_atr.txt",
                 [f"{u} :act 2; val 3; dom  2;  ()" for u in ids])
    # Dialog format on purpose: a reader that recursed would read these as duplicates / extra rows.
    lines = [IEMOCAP_HEADER, ""]
    for i, u in enumerate(ids):
        lines += [_iemocap_head(2.5 * i, 2.5 * i + 1, u, "sur", (3.0, 3.0, 3.0)), ""]
    _write_lines(label_dir / "Self-evaluation" / f"{dialog}.txt", lines)


def _iemocap_bad_dialog(root: Path, n: int, utts: dict, skips: list, sample_rate: int) -> None:
    """Blocks of 4 lines after a 2-line header, so block k's head is on line 3 + 4k:
    k=0 ok (ang, F), 1 audio missing, 2 empty wav, 3 garbage wav, 4 head without [V, A, D],
    5 duplicate of k=0, 6 ok (sad, M)."""
    dialog = f"Ses{n:02d}F_impro02"
    label = f"Session{n}/dialog/EmoEvaluation/{dialog}.txt"
    wav = f"Session{n}/sentences/wav/{dialog}"
    ids = [f"{dialog}_F000", f"{dialog}_M000", f"{dialog}_F001", f"{dialog}_M001",
           f"{dialog}_F002", f"{dialog}_F000", f"{dialog}_M002"]
    codes = ["ang", "neu", "neu", "hap", "neu", "ang", "sad"]
    lines = [IEMOCAP_HEADER, ""]
    for k, (utt_id, code) in enumerate(zip(ids, codes)):
        head = _iemocap_head(3.0 * k, 3.0 * k + 1, utt_id, code, iemocap_vad(k))
        if k == 4:
            head = head.rsplit("\t", 1)[0]
        lines += [head, _EVALUATORS[0], _EVALUATORS[2], ""]
    _write_lines(root / label, lines)
    for k in (0, 6):
        gender, emotion = ids[k][-4], IEMOCAP_EMOTION[codes[k]]
        duration = write_tone(root / wav / f"{ids[k]}.wav", 0.4, sample_rate, emotion, gender)
        utts[ids[k]] = _utt(f"{wav}/{ids[k]}.wav", duration, f"Ses{n:02d}_{gender}", gender,
                            str(n), emotion, codes[k], *iemocap_vad(k))
    write_empty_audio(root / wav / f"{ids[2]}.wav", sample_rate)
    write_garbage(root / wav / f"{ids[3]}.wav")
    write_garbage(root / wav / f"._{ids[0]}.wav")
    write_garbage(root / f"Session{n}/dialog/EmoEvaluation/._{dialog}.txt")  # macOS fork
    skips += [(label, 7, "audio file not found"), (label, 11, "empty audio"),
              (label, 15, "unreadable audio"), (label, 19, "expected"),
              (label, 23, "duplicate utterance id")]


# ----------------------------------------------------------------------------- MSP-IMPROV
MSP_LETTERS = "AHSNOX"  # consensus of the k-th clip of a session: MSP_LETTERS[k % 6]
MSP_EMOTION = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral", "O": "other", "X": ""}
MSP_SENTENCES = ("S01A", "S02H")
_RATER_WORD = {"A": "Angry", "H": "Happy", "S": "Sad", "N": "Neutral", "O": "Other", "X": "Other"}


def msp_turns(actor_gender: str) -> list[tuple[str, str]]:
    """(condition, turn) of the clips filed under one target-role actor and sentence: the actor
    speaks four (P, R, S, T), the partner two (P, S)."""
    a, o = actor_gender, "M" if actor_gender == "F" else "F"
    return [("P", f"{a}{o}01"), ("P", f"{o}{a}01"), ("R", f"{a}{o}01"), ("S", f"{a}{o}01"),
            ("S", f"{o}{a}02"), ("T", f"{a}{o}01")]


def msp_values(k: int) -> tuple[float | None, float | None, float | None, float | None]:
    """(activation, valence, dominance, naturalness) of clip k; D is NaN for k == 3, N for k == 4."""
    a, v = 1.0 + 0.5 * (k % 9), 5.0 - 0.5 * (k % 7)
    d = None if k == 3 else 2.0 + 0.25 * (k % 5)
    nat = None if k == 4 else 3.5
    return a, v, d, nat


def _msp_consensus(name: str, letter: str, values: Sequence[float | None], k: int) -> str:
    a, v, d, nat = ("NaN" if x is None else f"{x:.6f}" for x in values)
    if k == 5:  # keys in another order: a reader must parse key:value, not columns
        return f"UTD-IMPROV-{name}.avi; {letter}; V:{v}; D:{d} ; A:{a}; N:{nat};"
    return f"UTD-IMPROV-{name}.avi; {letter}; A:{a}; V:{v}; D:{d} ; N:{nat};" + (" " if k % 2 else "")


def _msp_raters(k: int, letter: str) -> list[str]:
    word = _RATER_WORD[letter]
    return [f"mturk-{k:04d}a; {word}; {word},; A:3.000000; V:3.000000; D:2.000000; N:4.000000;",
            f"mturk-{k:04d}b; Neutral; Neutral, Other; A:2.000000; V:3.000000; D:NaN; N:NaN;"]


def make_msp_improv(root: Path, sessions: Iterable[int] = (1, 2), layout: str = "audio",
                    label_name: str = "Evaluation.txt", bad_files: bool = False,
                    seconds: tuple[float, float] = (0.3, 0.5), sample_rate: int = 44100) -> dict:
    """Write MSP-IMPROV/ at `root`; return the expected reader output (module docstring).

    layout "audio": Audio/session{n}/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav; "merged": the same
    without Audio/. label_name "Evalution.txt" reproduces the misspelled copies. Per session:
    2 sentences x 2 actors x 6 turns (msp_turns) = 24 clips, the k-th with consensus
    MSP_LETTERS[k % 6] and values msp_values(k); speaker MSP_{turn[0]}{session:02d}. macOS `._*`
    files lie beside the audio and the label file. With bad_files, session sessions[0] gains six
    bad blocks (see _msp_bad_blocks).
    """
    root = Path(root)
    prefix = {"audio": "Audio/", "merged": ""}[layout]
    utts: dict[str, dict] = {}
    skips: list[tuple[str, int | None, str]] = []
    lines: list[str] = []
    sessions = list(sessions)
    for n in sessions:
        k = 0
        for sentence in MSP_SENTENCES:
            for actor in "FM":
                for condition, turn in msp_turns(actor):
                    name = f"{sentence}-{actor}{n:02d}-{condition}-{turn}"
                    letter, values = MSP_LETTERS[k % 6], msp_values(k)
                    emotion, gender = MSP_EMOTION[letter], turn[0]
                    audio = f"{prefix}session{n}/{sentence}/{condition}/MSP-IMPROV-{name}.wav"
                    duration = write_tone(root / audio, duration_for(k, seconds), sample_rate,
                                          emotion, gender, seed=k)
                    write_garbage((root / audio).parent / f"._MSP-IMPROV-{name}.wav")
                    lines += [_msp_consensus(name, letter, values, k), *_msp_raters(k, letter), ""]
                    a, v, d, _ = values
                    utts[f"MSP-IMPROV-{name}"] = _utt(audio, duration, f"MSP_{gender}{n:02d}", gender,
                                                      str(n), emotion, letter, v, a, d)
                    k += 1
        if bad_files and n == sessions[0]:
            _msp_bad_blocks(root, prefix, n, lines, label_name, utts, skips, sample_rate)
    _write_lines(root / label_name, lines)
    write_garbage(root / f"._{label_name}")
    return _summary(utts, skips)


def _msp_bad_blocks(root: Path, prefix: str, n: int, lines: list[str], label_name: str,
                    utts: dict, skips: list, sample_rate: int) -> None:
    """Append: audio missing, empty wav, garbage wav, condition Q (bad name), A:abc (bad value),
    and a repeat of the session's first clip; each head's line number goes into `skips`."""
    good = (3.0, 3.0, 3.0, 3.0)
    bad = [(f"S03S-F{n:02d}-P-FM01", "N", "audio file not found"),
           (f"S03S-F{n:02d}-R-FM01", "A", "empty audio"),
           (f"S03S-F{n:02d}-T-FM01", "H", "unreadable audio"),
           (f"S03S-F{n:02d}-Q-FM01", "N", "cannot parse the clip name"),
           (f"S03S-M{n:02d}-P-MF01", "S", "A: could not convert"),
           (f"S01A-F{n:02d}-P-FM01", "A", "duplicate utterance id")]
    for j, (name, letter, reason) in enumerate(bad):
        head = _msp_consensus(name, letter, good, 0)
        if j == 4:
            head = head.replace("A:3.000000", "A:abc")
        skips.append((label_name, len(lines) + 1, reason))
        lines += [head, *_msp_raters(90 + j, letter), ""]
    folder = root / f"{prefix}session{n}/S03S"
    write_empty_audio(folder / "R" / f"MSP-IMPROV-{bad[1][0]}.wav", sample_rate)
    write_garbage(folder / "T" / f"MSP-IMPROV-{bad[2][0]}.wav")


# ----------------------------------------------------------------------------- LibriSpeech
# id: (sex, subset, minutes, name), as in the release's SPEAKERS.TXT; 20 is listed without audio.
LIBRI_SPEAKERS = {
    "14": ("F", "train-clean-360", "25.03", "Kristin LeMoine"),
    "16": ("F", "train-clean-360", "25.11", "Alys AtteWater"),
    "17": ("M", "train-clean-360", "25.04", "Gord Mackenzie"),
    "19": ("F", "train-clean-100", "25.19", "Kara Shallenberg"),
    "20": ("F", "train-other-500", "30.07", "Gesine"),
    "60": ("M", "train-clean-100", "20.18", "|CBW|Simon"),
    "61": ("M", "test-clean", "25.08", "Paul-Gerhard Mutschler"),
    "121": ("F", "test-clean", "24.94", "Nicole Brennan"),
}
LIBRI_SUBSETS = ("train-clean-360", "train-clean-100", "test-clean")
_SPEAKERS_HEADER = [
    "; Some speakers have also been designated as part of the \"dev\" and \"test\" sets.",
    ";",
    ";ID  |SEX| SUBSET           |MINUTES| NAME",
]


def make_librispeech(root: Path, subsets: Iterable[str] = LIBRI_SUBSETS, chapters_per_speaker: int = 2,
                     utts_per_chapter: int = 2, seconds: tuple[float, float] = (0.3, 0.5),
                     bad_files: bool = False, sample_rate: int = 16000) -> dict[str, dict]:
    """Write LibriSpeech/ at `root`; return {subset: expected reader output} (module docstring).

    Every speaker of LIBRI_SPEAKERS in a written subset gets `chapters_per_speaker` chapters
    (ids 100, 101, ...) of `utts_per_chapter` FLAC files plus the chapter's trans.txt. With
    bad_files, train-clean-360 (which must be written) also gets, in 14/100/: a transcript line
    without audio, a 0-byte FLAC, a garbage FLAC, a malformed transcript line, a `._` file, and a
    speaker 999 missing from SPEAKERS.TXT (kept, gender "").
    """
    root = Path(root)
    speakers_txt = _SPEAKERS_HEADER + [f"{sid:<5}| {sex} | {sub:<16} | {mins} | {name}"
                                       for sid, (sex, sub, mins, name) in LIBRI_SPEAKERS.items()]
    _write_lines(root / "SPEAKERS.TXT", speakers_txt)
    expected: dict[str, dict] = {}
    for subset in subsets:
        utts: dict[str, dict] = {}
        skips: list[tuple[str, int | None, str]] = []
        for sid, (sex, sub, _, _) in LIBRI_SPEAKERS.items():
            if sub != subset:
                continue
            for j in range(chapters_per_speaker):
                _libri_chapter(root, subset, sid, sex, str(100 + j), utts_per_chapter, seconds,
                               sample_rate, utts)
        if bad_files and subset == "train-clean-360":
            _libri_bad_files(root, subset, seconds, sample_rate, utts, skips)
        expected[subset] = _summary(utts, skips)
    return expected


def _libri_chapter(root: Path, subset: str, sid: str, sex: str, chapter: str, count: int,
                   seconds: tuple[float, float], sample_rate: int, utts: dict,
                   extra_lines: Sequence[str] = ()) -> None:
    folder = f"{subset}/{sid}/{chapter}"
    trans = []
    for i in range(count):
        utt_id = f"{sid}-{chapter}-{i:04d}"
        duration = write_tone(root / folder / f"{utt_id}.flac", duration_for(i, seconds),
                              sample_rate, "", sex, seed=i)
        utts[utt_id] = _utt(f"{folder}/{utt_id}.flac", duration, f"libri_{sid}", sex, subset)
        trans.append(f"{utt_id} CHAPTER {chapter} LINE {i} OF SPEAKER {sid}")
    _write_lines(root / folder / f"{sid}-{chapter}.trans.txt", trans + list(extra_lines))


def _libri_bad_files(root: Path, subset: str, seconds: tuple[float, float], sample_rate: int,
                     utts: dict, skips: list) -> None:
    folder = f"{subset}/14/100"
    trans = f"{folder}/14-100.trans.txt"
    count = sum(1 for u in utts if u.startswith("14-100-"))
    # Rewrite chapter 14/100 with four more transcript lines after its `count` good ones.
    extra = ["14-100-0900 THIS LINE HAS NO AUDIO", "14-100-0901 EMPTY FILE",
             "14-100-0902 GARBAGE FILE", "a malformed line without an utterance id"]
    _libri_chapter(root, subset, "14", "F", "100", count, seconds, sample_rate, utts, extra)
    write_empty_audio(root / folder / "14-100-0901.flac", sample_rate)
    write_garbage(root / folder / "14-100-0902.flac")
    write_garbage(root / folder / "._14-100-0000.flac")
    skips += [(f"{folder}/14-100-0901.flac", None, "empty audio"),
              (f"{folder}/14-100-0902.flac", None, "unreadable audio"),
              (trans, count + 1, "audio file not found"), (trans, count + 4, "expected")]
    _libri_chapter(root, subset, "999", "", "100", 1, seconds, sample_rate, utts)  # gender ""


# ----------------------------------------------------------------------------- generic CSV
def make_csv_corpus(root: Path, bad_files: bool = False, csv_name: str = "manifest.csv",
                    sample_rate: int = 16000) -> dict:
    """Write root/wav/<speaker>/<utt>.wav and root/<csv_name> (columns path, speaker, gender,
    emotion, valence); six good lines (emotions angry, happy, neutral, sad, "", "Sad" in another
    case). With bad_files, lines 8-12 are: emotion "bored" (kept: any label is), audio missing, garbage audio,
    valence "high", and a repeat of line 2 (duplicate id)."""
    root = Path(root)
    good = [("spk1", "F", "angry", "2.0"), ("spk1", "F", "happy", "4.5"), ("spk2", "M", "neutral", ""),
            ("spk2", "M", "sad", "1.5"), ("spk3", "F", "", ""), ("spk3", "F", "Sad", "NaN")]
    lines = ["path,speaker,gender,emotion,valence"]
    utts: dict[str, dict] = {}
    for i, (spk, gender, emotion, valence) in enumerate(good):
        path = f"wav/{spk}/utt{i}.wav"
        duration = write_tone(root / path, 0.3 + 0.1 * i, sample_rate, emotion.lower(), gender, i)
        lines.append(f"{path},{spk},{gender},{emotion},{valence}")
        value = float(valence) if valence and valence != "NaN" else None
        utts[f"utt{i}"] = _utt(path, duration, spk, gender, "", emotion.lower(), "", value)
    skips: list[tuple[str, int | None, str]] = []
    if bad_files:
        write_tone(root / "wav/spk4/bored.wav", 0.3, sample_rate)
        write_garbage(root / "wav/spk4/garbage.wav")
        write_tone(root / "wav/spk4/high.wav", 0.3, sample_rate)
        lines += ["wav/spk4/bored.wav,spk4,M,bored,", "wav/spk4/missing.wav,spk4,M,sad,",
                  "wav/spk4/garbage.wav,spk4,M,sad,", "wav/spk4/high.wav,spk4,M,sad,high", lines[1]]
        utts["bored"] = _utt("wav/spk4/bored.wav", 0.3, "spk4", "M", "", "bored", "", None)
        skips = [(csv_name, 9, "audio file not found"),
                 (csv_name, 10, "unreadable audio"), (csv_name, 11, "valence 'high'"),
                 (csv_name, 12, "duplicate utterance id")]
    _write_lines(root / csv_name, lines)
    return _summary(utts, skips)
