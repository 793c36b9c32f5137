"""The manifest: one CSV row per utterance, the only thing training knows about a corpus.

Readers (`ser_mtl.data.corpora`) turn a corpus layout into `ManifestRow`s, so corpus quirks stop there.
Paths are relative to the corpus root, so a manifest survives moving the corpus. Empty cells mean
"absent"; floats are written with `repr`, so `read_manifest(write_manifest(rows))` gives equal rows.
`age` (the speaker's age in years at recording) is the newest column: a manifest written before it
(header COLUMNS without `age`) still reads, its rows with age None.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import astuple, dataclass, field
from pathlib import Path

from ser_mtl.io_utils import atomic_open

COLUMNS = ["utt_id", "corpus", "path", "duration", "speaker", "gender", "session", "emotion",
           "raw_emotion", "valence", "activation", "dominance", "age"]
LEGACY_COLUMNS = COLUMNS[:-1]  # manifests written before the age column; read with age None
EMOTIONS = ("angry", "happy", "neutral", "sad")  # the paper's 4 classes: data.classes' default, in index order
GENDERS = ("F", "M")
_FLOAT_COLUMNS = ("valence", "activation", "dominance", "age")
MAX_AGE = 150.0  # ages are years in [0, MAX_AGE)


class CorpusError(ValueError):
    """The root is not the corpus, or an input is unusable; the message names file (and line)."""


@dataclass(frozen=True)
class ManifestRow:
    """One utterance. `emotion` is the corpus's own label as a lower-case name (angry, excited, disgust, ...;
    "" = none or no agreement), whatever the class set (`data.classes` picks); `gender` "F", "M" or ""."""

    utt_id: str
    corpus: str
    path: str  # relative to the corpus root, '/' separators
    duration: float  # seconds, from the audio header
    speaker: str
    gender: str
    session: str  # IEMOCAP "1".."5", MSP-IMPROV "1".."6", LibriSpeech subset name
    emotion: str
    raw_emotion: str  # the corpus's own code ("exc", "N", ...) or ""
    valence: float | None
    activation: float | None
    dominance: float | None
    age: float | None = None  # the speaker's age in years at recording, None = unknown


@dataclass
class Skip:
    """An input left out, and why. `path` is relative to the corpus root; `line` is 1-based."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class ReadResult:
    """What a reader found: the usable utterances and every input it left out."""

    rows: list[ManifestRow] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def _cell(value: object) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def write_manifest(rows: Iterable[ManifestRow], path: str | os.PathLike) -> None:
    """Write `rows` as CSV with header COLUMNS, atomically (temporary file, then os.replace)."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(v) for v in astuple(row)])


def _parse_float(text: str, column: str, where: str, optional: bool) -> float | None:
    if text == "" and optional:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CorpusError(f"{where}: column {column!r}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise CorpusError(f"{where}: column {column!r}: expected a finite number, got {text!r}")
    return value


def age_problem(value: float) -> str | None:
    """Why `value` is not an age in years (0 <= age < MAX_AGE), or None when it is one."""
    if not math.isfinite(value) or not 0.0 <= value < MAX_AGE:
        return f"expected years from 0 to below {MAX_AGE:g}"
    return None


def _parse_row(cells: list[str], where: str, columns: list[str]) -> ManifestRow:
    if len(cells) != len(columns):
        raise CorpusError(f"{where}: expected {len(columns)} fields ({','.join(columns)}), "
                          f"got {len(cells)}")
    values = dict(zip(columns, cells))
    values.setdefault("age", "")  # a manifest from before the age column
    if not values["utt_id"] or not values["path"]:
        raise CorpusError(f"{where}: utt_id and path must not be empty")
    duration = _parse_float(values["duration"], "duration", where, optional=False)
    if duration is None or duration <= 0:
        raise CorpusError(f"{where}: column 'duration': expected seconds > 0, got {values['duration']!r}")
    if values["gender"] not in GENDERS + ("",):
        raise CorpusError(f"{where}: column 'gender': expected F, M or empty, got {values['gender']!r}")
    if values["emotion"] != values["emotion"].strip().lower():
        raise CorpusError(f"{where}: column 'emotion': expected a lower-case label without surrounding spaces "
                          f"(e.g. {', '.join(EMOTIONS)}) or empty, got {values['emotion']!r}")
    floats = {c: _parse_float(values[c], c, where, optional=True) for c in _FLOAT_COLUMNS}
    if floats["age"] is not None and (problem := age_problem(floats["age"])):
        raise CorpusError(f"{where}: column 'age': {problem}, got {values['age']!r}")
    strings = {c: values[c] for c in COLUMNS if c not in _FLOAT_COLUMNS and c != "duration"}
    return ManifestRow(duration=duration, **strings, **floats)


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read a manifest written by `write_manifest` (or one from before the age column: ages None);
    CorpusError naming file:line on a bad row."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: manifest not found")
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != COLUMNS and header != LEGACY_COLUMNS:
            raise CorpusError(f"{path}:1: expected the header {','.join(COLUMNS)}, "
                              f"got {','.join(header) if header else 'an empty file'}")
        for cells in reader:
            if not cells:  # a blank line (e.g. a trailing one) carries no row
                continue
            where = f"{path}:{reader.line_num}"
            row = _parse_row(cells, where, header)
            if row.utt_id in seen:
                raise CorpusError(f"{where}: duplicate utt_id {row.utt_id!r} "
                                  f"(first on line {seen[row.utt_id]})")
            seen[row.utt_id] = reader.line_num
            rows.append(row)
    return rows


def _natural_key(text: str) -> tuple[int, int | str]:
    # Sessions "1".."10" sort numerically, subset names alphabetically after them.
    return (0, int(text)) if text.isdigit() else (1, text)


def _counts(label: str, counter: Counter, order: tuple[str, ...], missing: str) -> str:
    """`label  a 3, b 2, (missing) 1`: keys of `order` first, then the rest in natural order."""
    keys = [k for k in order if counter[k]] + sorted(
        (k for k in counter if k not in order and k != ""), key=_natural_key)
    parts = [f"{k} {counter[k]}" for k in keys]
    if counter[""]:
        parts.append(f"{missing} {counter['']}")
    return f"  {label:<9}{', '.join(parts) if parts else '-'}"


def summarize(rows: Iterable[ManifestRow]) -> str:
    """A multi-line human summary: totals, counts per corpus, emotion, gender, session, speakers (and
    the known ages, when any row has one)."""
    rows = list(rows)
    hours = sum(r.duration for r in rows) / 3600.0
    speakers = {r.speaker for r in rows if r.speaker}
    ages = [r.age for r in rows if r.age is not None]
    age_line = [f"  {'age':<9}{len(ages)} known, mean {sum(ages) / len(ages):.1f}"] if ages else []
    return "\n".join([
        f"{len(rows)} utterances, {hours:.2f} h, {len(speakers)} speakers",
        _counts("corpus", Counter(r.corpus for r in rows), (), "(none)"),
        _counts("emotion", Counter(r.emotion for r in rows), EMOTIONS, "(none)"),
        _counts("gender", Counter(r.gender for r in rows), GENDERS, "(unknown)"),
        _counts("session", Counter(r.session for r in rows), (), "(none)"),
        f"  {'speakers':<9}{len(speakers)}",
        *age_line,
    ])
