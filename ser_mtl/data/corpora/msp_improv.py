"""MSP-IMPROV reader: `MSP-IMPROV/` -> manifest rows, one per clip with a consensus label (docs/corpora.md).

A block of `Evaluation.txt` (or `Evalution.txt`) starts with the consensus line of one clip, named after
its video (`UTD-IMPROV-X.avi` is the clip of `MSP-IMPROV-X.wav`), then one line per rater (ignored).
The consensus line is split on ';' and then on `key:value`, never by position; `NaN` gives an empty cell.
O is emotion "other" (unlabelled under the default four classes); X (no agreement) gets emotion "".
The letter is kept in raw_emotion.

Who speaks: both actors of a dyad speak in the clips filed under one target-role actor (`F01`), so the
turn field's first letter (`FM01`) is taken as the speaker's gender and, a session having one actor of
each gender, speaker = f"MSP_{gender}{session:02d}". Public parsers differ (several take the actor
field), so this rule lives in one function, `_speaker`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ser_mtl.data.corpora._collect import Collector, first_file, rel, require_dir
from ser_mtl.data.corpora.reader_spec import CorpusReader
from ser_mtl.data.manifest import CorpusError, ReadResult

CORPUS = "msp_improv"
LABEL_FILES = ("Evaluation.txt", "Evalution.txt")  # the second spelling ships in some copies
EMOTION_OF_LETTER = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral", "O": "other", "X": ""}
_NAME = re.compile(r"^(?:UTD|MSP)-IMPROV-(S\d{2}[AHSN])-([FM])(\d{2})-([PRST])-([FM])([FM])(\d+)"
                   r"\.(?:avi|wav)$")
_EXPECTED = ('expected "UTD-IMPROV-S01A-F01-P-FM01.avi; <A|H|S|N|O|X>; A:<activation>; '
             'V:<valence>; D:<dominance>; N:<naturalness>;"')


def _speaker(session: int, turn_gender: str) -> tuple[str, str]:
    """(speaker id, gender) of a clip: the turn field's first letter is who speaks."""
    return f"MSP_{turn_gender}{session:02d}", turn_gender


def _audio_prefixes(root: Path) -> list[str]:
    prefixes = [p for p in ("Audio/", "") if any((root / p).glob("session[0-9]*"))]
    if not prefixes:
        raise CorpusError(f"{root}: no audio folders Audio/session{{n}}/ or session{{n}}/ "
                          f"(MSP-IMPROV keeps its wav files there)")
    return prefixes


def _parse_value(key: str, text: str) -> float:
    value = float(text)  # float("NaN") parses; the caller turns NaN into None
    # Activation, valence and dominance are means of 1-5 ratings; outside means a broken line.
    if key in ("A", "V", "D") and not math.isnan(value) and not 1.0 <= value <= 5.0:
        raise ValueError(f"{text} is outside the 1-5 scale")
    return value


def _parse_consensus(line: str) -> tuple[re.Match, str, dict[str, float | None]] | str:
    """(name match, consensus letter, {"A","V","D",...: value}) or the reason the line is malformed."""
    fields = [f.strip() for f in line.split(";") if f.strip()]  # lines end with ';' and may carry spaces
    if len(fields) < 2:
        return _EXPECTED
    name = _NAME.match(fields[0])
    if not name:
        return f"{_EXPECTED}: cannot parse the clip name {fields[0]!r}"
    letter = fields[1]
    if letter not in EMOTION_OF_LETTER:
        return f"{_EXPECTED}: unknown consensus {letter!r}"
    values: dict[str, float | None] = {}
    for item in fields[2:]:
        key, sep, text = item.partition(":")
        key = key.strip().upper()
        if not sep:
            return f"{_EXPECTED}: {item!r} is not key:value"
        try:
            value = _parse_value(key, text.strip())
        except ValueError as exc:
            return f"{_EXPECTED}: {key}: {exc}"
        values[key] = None if math.isnan(value) else value
    return name, letter, values


def read_msp_improv(root: str | Path) -> ReadResult:
    """Every clip of the label file under `root` (MSP-IMPROV/) whose audio is readable. CorpusError without
    a label file or audio folders; bad consensus lines and unusable audio become Skips."""
    root = require_dir(root, "MSP-IMPROV")
    label_file = first_file(root, LABEL_FILES, f"{root}: neither {' nor '.join(LABEL_FILES)} found; this is not "
                            "the MSP-IMPROV root (expected Evaluation.txt and Audio/session{n}/ or session{n}/)")
    prefixes = _audio_prefixes(root)
    out = Collector(root)
    where = rel(root, label_file)
    previous_blank = True
    for number, raw in enumerate(label_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        is_head = line.upper().startswith(("UTD-IMPROV-", "MSP-IMPROV-")) or (previous_blank and bool(line))
        previous_blank = not line
        if not is_head:
            continue  # a rater line
        parsed = _parse_consensus(line)
        if isinstance(parsed, str):
            out.skip(where, number, parsed)
            continue
        name, letter, values = parsed
        sentence, _, session_text, condition, turn_gender, _, _ = name.groups()
        session = int(session_text)
        stem = "MSP-IMPROV-" + name.group(0).split("-IMPROV-", 1)[1].rsplit(".", 1)[0]
        tail = f"session{session}/{sentence}/{condition}/{stem}.wav"
        candidates = [prefix + tail for prefix in prefixes]
        audio = next((c for c in candidates if (root / c).is_file()), candidates[0])
        speaker, gender = _speaker(session, turn_gender)
        out.add(where, number, utt_id=stem, corpus=CORPUS, path=audio, speaker=speaker,
                gender=gender, session=str(session), emotion=EMOTION_OF_LETTER[letter],
                raw_emotion=letter, valence=values.get("V"), activation=values.get("A"),
                dominance=values.get("D"))
    return out.result


READER = CorpusReader(CORPUS, read_msp_improv, ("Evaluation.txt", "Evalution.txt", "*/Evaluation.txt",
                                                "*/Evalution.txt"),
                      emotions=tuple(e for e in EMOTION_OF_LETTER.values() if e))
