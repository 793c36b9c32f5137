"""What every reader does with each utterance it finds: check the audio, refuse duplicates, keep
the row or record a Skip naming the label file and line. One place, so all readers report alike."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

from ser_mtl.data.corpora._audio_info import AudioProblem, audio_duration
from ser_mtl.data.manifest import CorpusError, ManifestRow, ReadResult, Skip


def rel(root: Path, path: Path) -> str:
    """`path` relative to `root`, with '/' separators (the manifest's path convention)."""
    return path.relative_to(root).as_posix()


def require_dir(root: str | Path, corpus: str) -> Path:
    """`root` as a Path; CorpusError when it is not an existing directory."""
    path = Path(root)
    if not path.is_dir():
        raise CorpusError(f"{path}: not a directory (expected the {corpus} root)")
    return path


def first_file(root: Path, names: tuple[str, ...], missing: str) -> Path:
    """The first of ``names`` (paths under ``root``, e.g. a label file's spellings) that is a file;
    CorpusError ``missing`` when none is."""
    for name in names:
        if (root / name).is_file():
            return root / name
    raise CorpusError(missing)


def table_rows(path: Path, where: str, out: Collector,
               check_header: Callable[[list[str]], None]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: cell}) of every non-blank row of the CSV label file ``path`` (a BOM allowed),
    after ``check_header`` has accepted its header (it raises CorpusError otherwise); a row with another
    number of fields is a Skip at ``where``:line, as every reader reports it."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        check_header(header)
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                out.skip(where, reader.line_num, f"expected {len(header)} fields ({','.join(header)}), "
                                                 f"got {len(cells)}")
                continue
            yield reader.line_num, dict(zip(header, cells))


class Collector:
    """Accumulates a ReadResult; `seen` maps utt_id -> "file:line" of its first occurrence."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.result = ReadResult()
        self.seen: dict[str, str] = {}

    def skip(self, path: str, line: int | None, reason: str) -> None:
        self.result.skipped.append(Skip(path, line, reason))

    def add(self, where: str, line: int | None, **fields: object) -> None:
        """Keep ManifestRow(**fields, duration=<from the audio header>), or record a Skip at `where`:`line`
        (the label naming the utterance) when the utt_id is a duplicate or the audio is unusable."""
        utt_id, audio = str(fields["utt_id"]), str(fields["path"])
        if utt_id in self.seen:
            self.skip(where, line, f"duplicate utterance id {utt_id} (first at {self.seen[utt_id]})")
            return
        try:
            duration = audio_duration(self.root / audio)
        except AudioProblem as exc:
            self.skip(where, line, str(exc) if where == audio else f"{exc}: {audio}")
            return
        self.seen[utt_id] = where if line is None else f"{where}:{line}"
        self.result.rows.append(ManifestRow(duration=duration, **fields))
