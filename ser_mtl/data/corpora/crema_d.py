"""CREMA-D reader: the release root (`AudioWAV/`, `VideoDemographics.csv`) -> manifest rows (docs/corpora.md).

Labels live in the file names: `AudioWAV/<actor>_<sentence>_<EMO>_<level>.wav`, the emotion being the one
the actor was asked to portray (the crowd ratings in `processedResults/` are not read). Every clip keeps
its label: ANG/DIS/FEA/HAP/NEU/SAD -> angry/disgust/fear/happy/neutral/sad, raw_emotion the code.
Speaker = the actor id ("1001"), gender from the actor's Sex in `VideoDemographics.csv` and age (years)
from its Age; session "". An Age that is empty or not a number from 0 to below 150 leaves the actor's age
unknown (None) and is a Skip naming the line; the actor's clips are kept. No Age column: every age None.
One clip of some copies is named `1040_ITH_SAD_X.wav` (level X for XX; fixed upstream in 2022), so level
"X" is read as the unspecified level. Any other name that does not parse, and clips of actors without a
usable demographics row, are Skips naming the file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ser_mtl.data.corpora._collect import Collector, rel, require_dir, table_rows
from ser_mtl.data.corpora.reader_spec import CorpusReader
from ser_mtl.data.manifest import CorpusError, ReadResult, age_problem

CORPUS = "crema_d"
AUDIO_DIR = "AudioWAV"
DEMOGRAPHICS = "VideoDemographics.csv"
EMOTION_OF_CODE = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral",
                   "SAD": "sad"}
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = ("LO", "MD", "HI", "XX", "X")  # "X": the misnamed 1040_ITH_SAD_X.wav of older copies
GENDER_OF_SEX = {"male": "M", "female": "F"}
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")
_EXPECTED = "expected <actor>_<sentence>_<emotion>_<level>.wav (e.g. 1001_DFA_ANG_XX.wav)"


def _parse_age(text: str) -> float | str:
    """Years from an Age cell, or why it is not an age."""
    try:
        age = float(text)
    except ValueError:
        age = math.nan
    return f"Age {text!r}: {age_problem(age)}" if age_problem(age) else age


def _read_demographics(root: Path, out: Collector) -> dict[str, tuple[str, float | None]]:
    """actor id -> (gender "F" | "M", age in years or None) from VideoDemographics.csv (columns found by
    header name); bad rows are Skips, and so is a bad Age (the actor is kept with age None)."""
    path = root / DEMOGRAPHICS
    actors: dict[str, tuple[str, float | None]] = {}
    def check_header(header: list[str]) -> None:
        if "ActorID" not in header or "Sex" not in header:
            raise CorpusError(f"{path}:1: header {','.join(header) or '(empty)'}: expected the columns "
                              f'"ActorID","Age","Sex","Race","Ethnicity" (at least ActorID and Sex)')

    for number, values in table_rows(path, DEMOGRAPHICS, out, check_header):
        actor, sex = values["ActorID"].strip(), values["Sex"].strip()
        gender = GENDER_OF_SEX.get(sex.lower())
        if not re.fullmatch(r"\d{4}", actor) or gender is None:
            out.skip(DEMOGRAPHICS, number, f"expected a 4-digit ActorID and Sex Male or Female, "
                                           f"got ActorID {actor!r}, Sex {sex!r}")
            continue
        if actor in actors:
            out.skip(DEMOGRAPHICS, number, f"actor {actor} listed twice (the first row is used)")
            continue
        age = _parse_age(values["Age"].strip()) if "Age" in values else None
        if isinstance(age, str):
            out.skip(DEMOGRAPHICS, number, f"{age} (actor {actor} kept with age unknown)")
            age = None
        actors[actor] = (gender, age)
    return actors


def _parse_name(stem: str) -> tuple[str, str, str] | str:
    """(actor, emotion code, level) of a clip's file stem, or why it does not parse."""
    m = _NAME.match(stem)
    if not m:
        return _EXPECTED
    actor, sentence, code, level = m.groups()
    if sentence not in SENTENCES:
        return f"{_EXPECTED}: unknown sentence code {sentence!r} (expected one of {', '.join(SENTENCES)})"
    if code not in EMOTION_OF_CODE:
        return f"{_EXPECTED}: unknown emotion code {code!r} (expected one of {', '.join(EMOTION_OF_CODE)})"
    if level not in LEVELS:
        return f"{_EXPECTED}: unknown level {level!r} (expected LO, MD, HI or XX)"
    return actor, code, level


def read_crema_d(root: str | Path) -> ReadResult:
    """Every clip of `root`/AudioWAV/ whose name parses, whose actor has a demographics row and whose audio
    is readable, in file-name order. CorpusError without AudioWAV/ or VideoDemographics.csv."""
    root = require_dir(root, "CREMA-D")
    audio_dir = root / AUDIO_DIR
    if not audio_dir.is_dir() or not (root / DEMOGRAPHICS).is_file():
        missing = " and ".join(name for name, ok in ((f"{AUDIO_DIR}/", audio_dir.is_dir()),
                                                     (DEMOGRAPHICS, (root / DEMOGRAPHICS).is_file()))
                               if not ok)
        raise CorpusError(f"{root}: no {missing}; this is not the CREMA-D root (expected "
                          f"{AUDIO_DIR}/<actor>_<sentence>_<emotion>_<level>.wav and {DEMOGRAPHICS})")
    out = Collector(root)
    actors = _read_demographics(root, out)
    for wav in sorted(audio_dir.glob("*.wav")):
        if wav.name.startswith("._") or not wav.is_file():  # `._*`: macOS resource forks
            continue
        audio = rel(root, wav)
        parsed = _parse_name(wav.stem)
        if isinstance(parsed, str):
            out.skip(audio, None, parsed)
            continue
        actor, code, _ = parsed
        if actor not in actors:
            out.skip(audio, None, f"actor {actor} has no usable row in {DEMOGRAPHICS}")
            continue
        gender, age = actors[actor]
        out.add(audio, None, utt_id=wav.stem, corpus=CORPUS, path=audio, speaker=actor,
                gender=gender, session="", emotion=EMOTION_OF_CODE[code], raw_emotion=code,
                valence=None, activation=None, dominance=None, age=age)
    return out.result


READER = CorpusReader(name=CORPUS, read=read_crema_d, label_globs=(DEMOGRAPHICS, f"{AUDIO_DIR}/*.wav"),
                      emotions=tuple(EMOTION_OF_CODE.values()))
