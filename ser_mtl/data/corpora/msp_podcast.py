"""MSP-Podcast reader: the release root (`Audios/`, `Labels/`) -> manifest rows (docs/corpora.md).

One row per line of `Labels/labels_consensus.csv` (releases up to 1.9 spell it `labels_concensus.csv`),
whose columns are found by header name (FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender,
Split_Set; others are ignored). Audio: `Audios/<FileName>`, utt_id the FileName's stem. Every consensus
class is kept: A/S/H/U/F/D/C/N/O -> angry/sad/happy/surprised/fear/disgust/contempt/neutral/other; X (no
agreement) and an empty EmoClass give emotion "" with raw_emotion "X" / "". EmoAct/EmoVal/EmoDom (1-7)
-> activation/valence/dominance, None when empty. SpkrID "Unknown" -> speaker ""; Gender Male/Female ->
M/F, anything else (e.g. "Unknown") -> "". Split_Set, the official partition (Train, Development,
Test1, Test2, ...; older releases say Validation), is the session, verbatim.
"""

from __future__ import annotations

import math
from pathlib import Path

from ser_mtl.data.corpora._collect import Collector, first_file, rel, require_dir, table_rows
from ser_mtl.data.corpora.reader_spec import CorpusReader
from ser_mtl.data.manifest import CorpusError, ReadResult

CORPUS = "msp_podcast"
AUDIO_DIR = "Audios"
LABEL_FILES = ("Labels/labels_consensus.csv", "Labels/labels_concensus.csv")  # the second: releases <= 1.9
EMOTION_OF_CLASS = {"A": "angry", "S": "sad", "H": "happy", "U": "surprised", "F": "fear", "D": "disgust",
                    "C": "contempt", "N": "neutral", "O": "other", "X": ""}
GENDER_OF_TEXT = {"male": "M", "female": "F"}
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
_SCALE = (1.0, 7.0)


def _attribute(column: str, text: str) -> float | None:
    """An EmoAct/EmoVal/EmoDom cell: None when empty; ValueError when not a number on the 1-7 scale."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r}: expected a number (1-7) or empty") from None
    if math.isnan(value):
        return None
    if not _SCALE[0] <= value <= _SCALE[1]:
        raise ValueError(f"{column} {text!r}: outside the 1-7 scale")
    return value


def _parse_row(values: dict[str, str]) -> dict[str, object] | str:
    """The manifest fields of one label row (all but duration), or the reason it is unusable."""
    name = values["FileName"]
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return f"FileName {name!r}: expected a file name in {AUDIO_DIR}/ (e.g. MSP-PODCAST_0002_0033.wav)"
    letter = values["EmoClass"]
    if letter not in EMOTION_OF_CLASS and letter != "":
        return f"EmoClass {letter!r}: expected one of {', '.join(EMOTION_OF_CLASS)} (or empty)"
    try:
        activation = _attribute("EmoAct", values["EmoAct"])
        valence = _attribute("EmoVal", values["EmoVal"])
        dominance = _attribute("EmoDom", values["EmoDom"])
    except ValueError as exc:
        return str(exc)
    speaker = values["SpkrID"]
    return {"utt_id": Path(name).stem, "corpus": CORPUS, "path": f"{AUDIO_DIR}/{name}",
            "speaker": "" if speaker.lower() == "unknown" else speaker,
            "gender": GENDER_OF_TEXT.get(values["Gender"].lower(), ""), "session": values["Split_Set"],
            "emotion": EMOTION_OF_CLASS.get(letter, ""), "raw_emotion": letter,
            "valence": valence, "activation": activation, "dominance": dominance}


def read_msp_podcast(root: str | Path) -> ReadResult:
    """Every row of the consensus label file whose audio is readable, in file order. CorpusError without
    Audios/, the label file or one of its columns; bad rows and unusable audio become Skips (file, line)."""
    root = require_dir(root, "MSP-Podcast")
    label_file = first_file(root, LABEL_FILES, f"{root}: no {LABEL_FILES[0]} (nor {LABEL_FILES[1]}); this is not "
                            f"the MSP-Podcast root (expected {AUDIO_DIR}/<FileName> and {LABEL_FILES[0]})")
    if not (root / AUDIO_DIR).is_dir():
        raise CorpusError(f"{root}: no {AUDIO_DIR}/ folder (MSP-Podcast keeps its wav files there)")
    where = rel(root, label_file)
    out = Collector(root)
    def check_header(header: list[str]) -> None:
        if missing := [c for c in COLUMNS if c not in header]:
            raise CorpusError(f"{label_file}:1: header {','.join(header) or '(empty)'}: missing the "
                              f"column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})")

    for number, values in table_rows(label_file, where, out, check_header):
        fields = _parse_row({c: values[c].strip() for c in COLUMNS})
        if isinstance(fields, str):
            out.skip(where, number, fields)
            continue
        out.add(where, number, **fields)
    return out.result


READER = CorpusReader(name=CORPUS, read=read_msp_podcast, label_globs=LABEL_FILES,
                      emotions=tuple(e for e in EMOTION_OF_CLASS.values() if e))
