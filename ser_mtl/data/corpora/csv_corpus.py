"""Generic reader: any corpus described by a CSV -> manifest rows.

The CSV (default `<root>/manifest.csv`) names its columns in a header: `path` (relative to the root)
is required, any other manifest column optional (empty if missing; utt_id defaults to the stem of
`path`, corpus to "csv"). `duration` always comes from the audio header. An unknown column is an
error, so that a typo (`emotions`) cannot silently lose the labels. Any emotion label is kept (lower-cased):
the label scheme (`data.classes`, `data.class_map`) chooses the classes; other rows are unlabelled speech.
`valence`, `activation`, `dominance` and `age` (the speaker's age in years, from 0 to below 150) are numbers
or empty (NaN reads as empty); a line with another value is a Skip naming the line and the value.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

from ser_mtl.data.corpora._collect import Collector, require_dir, table_rows
from ser_mtl.data.corpora.reader_spec import CorpusReader
from ser_mtl.data.manifest import COLUMNS, GENDERS, CorpusError, ReadResult, age_problem

CORPUS = "csv"
DEFAULT_CSV = "manifest.csv"


def _label_name(root: Path, csv_path: Path) -> str:
    try:
        return csv_path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(csv_path)


def _parse_row(values: dict[str, str]) -> dict[str, object] | str:
    """The manifest fields of one CSV row (all but duration), or the reason it is unusable."""
    path = values.get("path", "").strip().replace("\\", "/")
    if not path:
        return "empty path"
    if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts or ":" in path[:3]:
        return f"path {path!r} must be relative to the root and stay inside it"
    emotion = " ".join(values.get("emotion", "").strip().lower().split())  # any label; the scheme picks classes
    gender = values.get("gender", "").strip().upper()
    if gender not in GENDERS + ("",):
        return f"gender {gender!r}: expected F, M or empty"
    fields: dict[str, object] = {
        "utt_id": values.get("utt_id", "").strip() or PurePosixPath(path).stem,
        "corpus": values.get("corpus", "").strip() or CORPUS,
        "path": path, "speaker": values.get("speaker", "").strip(), "gender": gender,
        "session": values.get("session", "").strip(), "emotion": emotion,
        "raw_emotion": values.get("raw_emotion", "").strip(),
    }
    for column in ("valence", "activation", "dominance", "age"):
        text = values.get(column, "").strip()
        try:
            value = float(text) if text else math.nan
        except ValueError:
            return f"{column} {text!r}: expected a number or empty"
        if column == "age" and not math.isnan(value) and (problem := age_problem(value)):
            return f"age {text!r}: {problem} or empty"
        fields[column] = None if math.isnan(value) else value
    return fields


def read_csv_corpus(root: str | Path, csv_path: str | Path | None = None) -> ReadResult:
    """Rows for every CSV line whose audio (`root`/path) is readable. CorpusError when the CSV is missing or
    its header lacks `path` or has an unknown column; a bad line is a Skip."""
    root = require_dir(root, "corpus")
    csv_path = Path(csv_path) if csv_path is not None else root / DEFAULT_CSV
    if not csv_path.is_file():
        raise CorpusError(f"{csv_path}: CSV not found (expected a header with at least 'path', "
                          f"paths relative to {root})")
    where = _label_name(root, csv_path)
    out = Collector(root)
    def check_header(header: list[str]) -> None:
        unknown = [h for h in header if h not in COLUMNS]
        if "path" not in header or unknown or len(set(header)) != len(header):
            raise CorpusError(f"{csv_path}:1: header {','.join(header) or '(empty)'}: expected a "
                              f"'path' column and only these names, each once: {','.join(COLUMNS)}"
                              + (f" (unknown: {', '.join(unknown)})" if unknown else ""))

    for number, values in table_rows(csv_path, where, out, check_header):
        fields = _parse_row(values)
        if isinstance(fields, str):
            out.skip(where, number, fields)
            continue
        out.add(where, number, **fields)
    return out.result


READER = CorpusReader(CORPUS, read_csv_corpus, ("*.csv",))
