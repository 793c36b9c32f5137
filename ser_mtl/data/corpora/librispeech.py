"""LibriSpeech reader: one subset of `LibriSpeech/` -> rows for the auxiliary tasks (docs/corpora.md).

Rows carry speaker and gender only. The speaker id is prefixed ("libri_60") so it never collides with
an emotion corpus's; session is the subset name; utt_id the file stem. Gender comes from SPEAKERS.TXT,
whose NAME may contain '|' (speaker 60 is `|CBW|Simon`), hence at most four splits; an unlisted speaker
gets gender "" (never guessed). Transcripts are only checked, so a line whose audio is missing is reported.
"""

from __future__ import annotations

import re
from pathlib import Path

from ser_mtl.data.corpora._collect import Collector, rel, require_dir
from ser_mtl.data.corpora.reader_spec import CorpusReader
from ser_mtl.data.manifest import GENDERS, CorpusError, ReadResult

CORPUS = "librispeech"
DEFAULT_SUBSET = "train-clean-360"
_STEM = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def _read_speakers(root: Path, out: Collector) -> dict[str, str]:
    """speaker id -> "F" | "M" from SPEAKERS.TXT; malformed lines become Skips."""
    path = root / "SPEAKERS.TXT"
    genders: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) != 5 or not fields[0].isdigit() or fields[1] not in GENDERS:
            out.skip("SPEAKERS.TXT", number, 'expected "ID | SEX | SUBSET | MINUTES | NAME" '
                                            f"with a numeric ID and SEX F or M, got {line!r}")
            continue
        genders[fields[0]] = fields[1]
    return genders


def _check_transcripts(root: Path, subset_dir: Path, out: Collector) -> None:
    """Report transcript lines that are malformed or name audio that is not there."""
    for trans in sorted(subset_dir.glob("*/*/*.trans.txt")):
        if trans.name.startswith("._"):
            continue
        where, chapter = rel(root, trans), trans.name[: -len(".trans.txt")]
        for number, raw in enumerate(trans.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            line = raw.strip()
            if not line:
                continue
            utt_id = line.split(maxsplit=1)[0]
            if not _STEM.match(utt_id) or not utt_id.startswith(chapter + "-"):
                out.skip(where, number, f'expected "{chapter}-<NNNN> TRANSCRIPT", got {line[:60]!r}')
            elif not (trans.parent / f"{utt_id}.flac").is_file():
                out.skip(where, number, f"audio file not found: {rel(root, trans.parent)}/{utt_id}.flac")


def read_librispeech(root: str | Path, subset: str = DEFAULT_SUBSET) -> ReadResult:
    """Every readable utterance of `root`/`subset` (e.g. train-clean-360). CorpusError without SPEAKERS.TXT
    or the subset folder; unusable audio, misnamed files and bad text lines become Skips."""
    root = require_dir(root, "LibriSpeech")
    if not (root / "SPEAKERS.TXT").is_file():
        raise CorpusError(f"{root}: no SPEAKERS.TXT; this is not the LibriSpeech root "
                          f"(expected SPEAKERS.TXT and <subset>/<speaker>/<chapter>/*.flac)")
    subset_dir = root / subset
    if not subset_dir.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise CorpusError(f"{subset_dir}: no such LibriSpeech subset folder "
                          f"(subsets here: {', '.join(present) or 'none'})")
    out = Collector(root)
    genders = _read_speakers(root, out)
    for flac in sorted(subset_dir.glob("*/*/*.flac")):
        if flac.name.startswith("._"):  # macOS resource forks
            continue
        audio = rel(root, flac)
        m = _STEM.match(flac.stem)
        if not m or (m.group(1), m.group(2)) != (flac.parent.parent.name, flac.parent.name):
            out.skip(audio, None, "expected <speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac")
            continue
        speaker = m.group(1)
        out.add(audio, None, utt_id=flac.stem, corpus=CORPUS, path=audio,
                speaker=f"libri_{speaker}", gender=genders.get(speaker, ""), session=subset,
                emotion="", raw_emotion="", valence=None, activation=None, dominance=None)
    _check_transcripts(root, subset_dir, out)
    return out.result


READER = CorpusReader(CORPUS, read_librispeech, ("SPEAKERS.TXT", "{subset}/*/*/*.trans.txt"),
                      default_subset=DEFAULT_SUBSET)
