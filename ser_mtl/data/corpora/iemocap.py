"""IEMOCAP reader: `IEMOCAP_full_release/` -> manifest rows (one per labelled utterance; docs/corpora.md).

Only `Session{n}/dialog/EmoEvaluation/*.txt` are dialog files. A block head is a line starting with "["
or the first line after a blank one, so a malformed head is reported, not taken for an evaluator line.
Speaker and gender come from the LAST field of the utterance id: `Ses01F_impro01_M000` is spoken by
the male actor of session 1 (speaker "Ses01_M"); the letter after `Ses01` only says who wore the
motion-capture markers. Every code keeps its label (exc is "excited": the label scheme merges it into
happy by default, as the paper); xxx (no agreement) gives emotion "". The raw code and
valence/activation/dominance are kept for the dimensional tasks.
"""

from __future__ import annotations

import re
from pathlib import Path

from ser_mtl.data.corpora._collect import Collector, rel, require_dir
from ser_mtl.data.corpora.reader_spec import CorpusReader
from ser_mtl.data.manifest import CorpusError, ReadResult

CORPUS = "iemocap"
EMOTION_OF_CODE = {"ang": "angry", "hap": "happy", "exc": "excited", "neu": "neutral", "sad": "sad",
                   "fru": "frustrated", "sur": "surprised", "fea": "fear", "dis": "disgust", "oth": "other"}
_SESSION_DIR = re.compile(r"^Session(\d+)$")
_HEAD = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]$")
_UTT = re.compile(r"^Ses(\d\d)[FM]_.+_([FM])\d+$")
_EXPECTED = 'expected "[start - end]<TAB>utt_id<TAB>code<TAB>[valence, activation, dominance]"'


def _session_dirs(root: Path) -> list[tuple[int, Path]]:
    found = sorted((int(m.group(1)), p) for p in root.iterdir()
                   if p.is_dir() and (m := _SESSION_DIR.match(p.name)))
    if not found:
        raise CorpusError(f"{root}: no Session1..Session5 folders; this is not IEMOCAP_full_release/ "
                          f"(expected Session{{n}}/dialog/EmoEvaluation/ and Session{{n}}/sentences/wav/)")
    return found


def _parse_head(line: str) -> tuple[str, str, list[float], int, str] | str:
    """(utt_id, code, [v, a, d], session, gender) from a block head, or why it is malformed."""
    m = _HEAD.match(line)
    if not m:
        return _EXPECTED
    utt_id, code, vad_text = m.group(3), m.group(4), m.group(5)
    try:
        vad = [float(x) for x in vad_text.split(",")]
    except ValueError:
        return f"{_EXPECTED}: cannot parse [{vad_text}] as numbers"
    if len(vad) != 3:
        return f"{_EXPECTED}: got {len(vad)} values in [{vad_text}]"
    utt = _UTT.match(utt_id)
    if not utt:
        return f"utterance id {utt_id!r} does not look like Ses0<n><F|M>_<dialog>_<F|M><ddd>"
    return utt_id, code, vad, int(utt.group(1)), utt.group(2)


def _read_dialog(out: Collector, label_file: Path, session: int) -> None:
    where = rel(out.root, label_file)
    previous_blank = True
    for number, raw in enumerate(label_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()  # real files may carry Windows line endings and trailing spaces
        is_head = line.startswith("[") or (previous_blank and line and not line.startswith("%"))
        previous_blank = not line
        if not is_head:
            continue
        parsed = _parse_head(line)
        if isinstance(parsed, str):
            out.skip(where, number, parsed)
            continue
        utt_id, code, (valence, activation, dominance), utt_session, gender = parsed
        if utt_session != session:
            out.skip(where, number, f"utterance {utt_id} belongs to session {utt_session}, "
                                    f"not Session{session}")
            continue
        dialog = utt_id.rsplit("_", 1)[0]
        audio = f"Session{session}/sentences/wav/{dialog}/{utt_id}.wav"
        out.add(where, number, utt_id=utt_id, corpus=CORPUS, path=audio,
                speaker=f"Ses{session:02d}_{gender}", gender=gender, session=str(session),
                emotion=EMOTION_OF_CODE.get(code, ""), raw_emotion=code,
                valence=valence, activation=activation, dominance=dominance)


def read_iemocap(root: str | Path) -> ReadResult:
    """Every utterance of every dialog file under `root` (IEMOCAP_full_release/), in file order. CorpusError
    without Session{n}/dialog/EmoEvaluation/ folders; bad lines and unusable audio become Skips."""
    root = require_dir(root, "IEMOCAP_full_release")
    out = Collector(root)
    for session, session_dir in _session_dirs(root):
        label_dir = session_dir / "dialog" / "EmoEvaluation"
        if not label_dir.is_dir():
            raise CorpusError(f"{label_dir}: missing; every IEMOCAP session has dialog/EmoEvaluation/")
        for label_file in sorted(label_dir.glob("*.txt")):
            if label_file.is_file() and not label_file.name.startswith("._"):  # `._*`: macOS resource forks
                _read_dialog(out, label_file, session)
    return out.result


READER = CorpusReader(CORPUS, read_iemocap, ("Session*/dialog/EmoEvaluation/*.txt",),
                      emotions=tuple(EMOTION_OF_CODE.values()))
