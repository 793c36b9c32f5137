"""RAVDESS reader: the folder holding `Actor_01/` .. `Actor_24/` -> manifest rows (docs/corpora.md).

Labels live in the file names: `Actor_NN/MM-VV-EE-II-SS-RR-NN.wav` (modality, vocal channel, emotion,
intensity, statement, repetition, actor). Rows are the audio-only (MM 03) speech (VV 01) files: 24 actors
x 60 = 1,440. The song archive unpacks into the same Actor_NN folders, so its files (VV 02) are Skips
"song, not speech"; an audio-visual or video-only code (MM 01, 02) on a .wav is a Skip too, and files
that are not .wav (the video archives' .mp4) are not audio and are ignored. Every emotion is kept:
01..08 -> neutral, calm, happy, sad, angry, fear, disgust, surprised, raw_emotion the two digits.
Speaker "Actor_NN", gender from the actor number (odd M, even F), session "".
"""

from __future__ import annotations

import re
from pathlib import Path

from ser_mtl.data.corpora._collect import Collector, rel, require_dir
from ser_mtl.data.corpora.reader_spec import CorpusReader
from ser_mtl.data.manifest import CorpusError, ReadResult

CORPUS = "ravdess"
EMOTION_OF_CODE = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
                   "07": "disgust", "08": "surprised"}
ACTORS = 24
_OTHER_MODALITY = {"01": "audio-video", "02": "video-only"}
_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_EXPECTED = "expected MM-VV-EE-II-SS-RR-NN.wav (e.g. 03-01-05-02-01-02-07.wav)"


def _parse_name(stem: str, folder_actor: str) -> tuple[str, int] | str:
    """(emotion code, actor number) of an audio-only speech file of Actor_<folder_actor>/, or why not."""
    m = _NAME.match(stem)
    if not m:
        return _EXPECTED
    modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
    if modality != "03":
        kind = _OTHER_MODALITY.get(modality)
        return (f"modality {modality} ({kind}), not audio-only (03)" if kind
                else f"{_EXPECTED}: unknown modality {modality} (01 audio-video, 02 video, 03 audio)")
    if channel == "02":
        return "song, not speech"
    if channel != "01":
        return f"{_EXPECTED}: unknown vocal channel {channel} (01 speech, 02 song)"
    if emotion not in EMOTION_OF_CODE:
        return f"{_EXPECTED}: unknown emotion {emotion} (01..08)"
    if intensity not in ("01", "02"):
        return f"{_EXPECTED}: unknown intensity {intensity} (01 normal, 02 strong)"
    if emotion == "01" and intensity == "02":
        return "neutral (01) has no strong intensity (02)"
    if statement not in ("01", "02") or repetition not in ("01", "02"):
        return f"{_EXPECTED}: statement {statement} and repetition {repetition} must be 01 or 02"
    if not 1 <= int(actor) <= ACTORS:
        return f"{_EXPECTED}: actor {actor} outside 01..{ACTORS}"
    if actor != folder_actor:
        return f"actor {actor} in the file name but the file is in Actor_{folder_actor}/"
    return emotion, int(actor)


def read_ravdess(root: str | Path) -> ReadResult:
    """Every audio-only speech file under `root`/Actor_NN/ whose name parses and whose audio is readable,
    in folder and file-name order. CorpusError without Actor_* folders; other .wav files are Skips."""
    root = require_dir(root, "RAVDESS")
    folders = sorted(p for p in root.glob("Actor_*") if p.is_dir())
    if not folders:
        raise CorpusError(f"{root}: no Actor_* folders; this is not the RAVDESS root (expected "
                          f"Actor_01/ .. Actor_{ACTORS}/ holding MM-VV-EE-II-SS-RR-NN.wav, as "
                          f"Audio_Speech_Actors_01-24.zip unpacks)")
    out = Collector(root)
    for folder in folders:
        folder_match = _ACTOR_DIR.match(folder.name)
        for wav in sorted(folder.glob("*.wav")):
            if wav.name.startswith("._") or not wav.is_file():  # `._*`: macOS resource forks
                continue
            audio = rel(root, wav)
            if not folder_match:
                out.skip(audio, None, f"folder {folder.name}/ is not Actor_NN/ (two digits)")
                continue
            parsed = _parse_name(wav.stem, folder_match.group(1))
            if isinstance(parsed, str):
                out.skip(audio, None, parsed)
                continue
            code, actor = parsed
            out.add(audio, None, utt_id=wav.stem, corpus=CORPUS, path=audio, speaker=folder.name,
                    gender="M" if actor % 2 else "F", session="", emotion=EMOTION_OF_CODE[code],
                    raw_emotion=code, valence=None, activation=None, dominance=None)
    return out.result


READER = CorpusReader(name=CORPUS, read=read_ravdess, label_globs=("Actor_*/*.wav",),
                      emotions=tuple(EMOTION_OF_CODE.values()))
