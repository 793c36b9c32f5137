"""EmoBox's published folds (github.com/emo-box/EmoBox, ``data/``): read them onto a manifest, write ours.

EmoBox's layout, as its loader (``EmoBox/EmoDataset.py``) and writer (``EmoBox/utils/preprocess_utils.py``)
spell it: ``<dataset>/fold_<k>/<dataset>_{train,test}_fold_<k>.jsonl``, folds numbered from 1, plus an
optional official ``<dataset>_valid_fold_<k>.jsonl`` (MELD, MSP-Podcast and M3ED have one; the loader uses
it when present, else draws its own validation share of train). One JSON object a line, e.g. IEMOCAP:

    {"key": "iemocap-Ses01F_impro04_F000", "dataset": "iemocap",
     "wav": "downloads/iemocap/Session1/sentences/wav/Ses01F_impro04/Ses01F_impro04_F000.wav",
     "type": "raw", "sample_rate": 16000, "num_frame": 70312.0, "task": "category",
     "length": 4.3945, "emo": "neu", "channel": 1}

``emo`` is the corpus's own code ("neu", "exc"; CREMA-D "ANG"; RAVDESS "Surprised"), mapped to classes by
the dataset's ``label_map.json``, so labels are returned exactly as written and the caller checks them.

Matching a line to a manifest row is exact, never fuzzy. The key is ``<dataset>-<name>``, but the name is
the file stem for only some corpora (IEMOCAP, RAVDESS, MSP-Podcast); others rewrite it (CREMA-D key
``cremad-1001-DFA-ANG-XX`` for ``1001_DFA_ANG_XX.wav``; MELD ``meld-dia0_utt0-dev``). So a line matches
the row whose ``utt_id`` equals the key, the key less its ``<dataset>-`` prefix, or the stem of ``wav``;
failing that, the one row whose ``path`` has that stem. Two rows for one line, or one row for two lines
(PAVOQUE cuts several utterances out of one file), is a `FoldError`, as is any line matching no row: a
different corpus release must fail loudly, not lose utterances silently.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ser_mtl.data.folds import FoldError, Split, check_split, speaker_share
from ser_mtl.data.manifest import ManifestRow
from ser_mtl.io_utils import atomic_open

PARTS = ("train", "valid", "test")  # EmoBox's file-name parts; "valid" is optional
DEFAULT_VAL_FRACTION = 0.2  # EmoBox's own loader keeps 80/20 when a dataset has no official valid file
_UNKNOWN_SPEAKERS = ("", "unknown")  # MSP-Podcast's speaker "Unknown" names no one
_FOLD_DIR = re.compile(r"fold_(\d+)")


@dataclass
class EmoBoxFold:
    """One EmoBox fold: indices into the manifest rows and, parallel to them, EmoBox's own labels."""

    number: int  # EmoBox's fold number, from 1
    folder: Path
    train: list[int]
    test: list[int]
    valid: list[int] | None  # the official validation split, or None (then see `validation_from_train`)
    train_labels: list[str] = field(default_factory=list)
    test_labels: list[str] = field(default_factory=list)
    valid_labels: list[str] | None = None

    @property
    def labels(self) -> set[str]:
        """Every label the fold uses, as EmoBox writes it, for checking against the expected class set."""
        return set(self.train_labels) | set(self.test_labels) | set(self.valid_labels or ())


def _unique_index(names: Sequence[str]) -> dict[str, int | None]:
    """name -> the one index carrying it, or None when several do (so a lookup can say "ambiguous")."""
    index: dict[str, int | None] = {}
    for i, name in enumerate(names):
        index[name] = None if name in index else i
    return index


class _Matcher:
    def __init__(self, rows: Sequence[ManifestRow]) -> None:
        self.by_id = _unique_index([r.utt_id for r in rows])
        self.by_stem = _unique_index([PurePosixPath(r.path).stem for r in rows])

    def match(self, entry: dict, where: str) -> int | None:
        """The row `entry` names, None if none; FoldError if the names point at different rows."""
        key, dataset = str(entry["key"]), str(entry.get("dataset", ""))
        stem = PurePosixPath(str(entry.get("wav", ""))).stem
        names = [key, key[len(dataset) + 1:] if dataset and key.startswith(dataset + "-") else key, stem]
        hits = {n: self.by_id[n] for n in dict.fromkeys(names) if n in self.by_id}
        if len(set(hits.values())) > 1 or None in hits.values():
            raise FoldError(f"{where}: key {key!r} is ambiguous: the utt_ids {sorted(hits)} name "
                            "different or duplicated manifest rows")
        if hits:
            return next(iter(hits.values()))
        return self.by_stem.get(stem) if stem else None  # a repeated stem (None) matches nothing


def _read_part(path: Path, matcher: _Matcher) -> tuple[list[int], list[str], dict[int, str]]:
    """Indices, labels and where each index was read, of one fold file; FoldError on any unusable line."""
    indices, labels, origin, missing = [], [], {}, []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise FoldError(f"{where}: not a JSON object ({err.msg})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or "emo" not in entry:
                raise FoldError(f"{where}: expected a JSON object with 'key' and 'emo' (EmoBox's line format)")
            i = matcher.match(entry, where)
            if i is None:
                missing.append((where, entry["key"]))
                continue
            if i in origin:
                raise FoldError(f"{where}: key {entry['key']!r} names the same manifest row as {origin[i]}")
            origin[i] = where
            indices.append(i)
            labels.append(str(entry["emo"]))
    if missing:
        raise FoldError(f"{missing[0][0]}: key {missing[0][1]!r} matches no manifest row (by utt_id, or the "
                        f"file stem of its wav and of the rows' paths); {len(missing)} of "
                        f"{len(missing) + len(indices)} keys of {path.name} are missing: is the manifest from "
                        "the same corpus release?")
    return indices, labels, origin


def _fold_files(folder: Path, number: int) -> tuple[str, dict[str, Path]]:
    """The dataset name and {part: file} of fold `number` in `folder` (from the train file's name, so a
    renamed dataset folder still reads; EmoDB's stray ``emodb_train_fold1.jsonl`` does not match)."""
    trains = sorted(folder.glob(f"*_train_fold_{number}.jsonl"))
    if len(trains) != 1:
        raise FoldError(f"{folder}: expected one <dataset>_train_fold_{number}.jsonl, found "
                        f"{[p.name for p in trains] or 'none'}")
    dataset = trains[0].name[:-len(f"_train_fold_{number}.jsonl")]
    files = {part: folder / f"{dataset}_{part}_fold_{number}.jsonl" for part in PARTS}
    if not files["test"].is_file():
        raise FoldError(f"{files['test']}: missing; every EmoBox fold has a train and a test file")
    return dataset, {part: p for part, p in files.items() if p.is_file()}


def _fold_folders(path: Path) -> list[tuple[int, Path]]:
    if not path.is_dir():
        raise FoldError(f"{path}: not a folder; expected an EmoBox dataset folder (holding fold_<k>/) "
                        "or one fold_<k>/ folder")
    if m := _FOLD_DIR.fullmatch(path.name):
        return [(int(m.group(1)), path)]
    found = sorted((int(m.group(1)), p) for p in path.iterdir()
                   if p.is_dir() and (m := _FOLD_DIR.fullmatch(p.name)))
    if not found:
        raise FoldError(f"{path}: no fold_<k>/ folder; expected an EmoBox dataset folder such as "
                        "EmoBox/data/iemocap")
    if [k for k, _ in found] != list(range(1, len(found) + 1)):  # a half-copied folder must not pass
        raise FoldError(f"{path}: fold folders {[p.name for _, p in found]} are not fold_1..fold_{len(found)}")
    return found


def read_emobox_folds(path: str | os.PathLike, rows: Sequence[ManifestRow]) -> list[EmoBoxFold]:
    """The folds of an EmoBox dataset folder (``EmoBox/data/iemocap``, holding ``fold_1/`` ...), or the one
    fold of a ``fold_<k>/`` folder, as indices into `rows`; ``len()`` of the result is the fold count.

    Rows a fold does not name are in none of its parts (EmoBox leaves out e.g. IEMOCAP's "fru").
    Raises FoldError naming file:line for a key without a row (with how many are missing), an ambiguous key,
    a row named twice in a fold, a malformed line, or a missing test file.
    """
    matcher = _Matcher(rows)
    folds = []
    for number, folder in _fold_folders(Path(path)):
        _, files = _fold_files(folder, number)
        parts: dict[str, tuple[list[int], list[str]]] = {}
        seen: dict[int, str] = {}
        for part, file in files.items():
            indices, labels, origin = _read_part(file, matcher)
            if (twice := next((i for i in indices if i in seen), None)) is not None:
                raise FoldError(f"{origin[twice]}: utterance {rows[twice].utt_id!r} is also in {seen[twice]}")
            seen.update(origin)
            parts[part] = (indices, labels)
        valid = parts.get("valid")
        folds.append(EmoBoxFold(number, folder, parts["train"][0], parts["test"][0],
                                valid[0] if valid else None, parts["train"][1], parts["test"][1],
                                valid[1] if valid else None))
    return folds


def _speaker_key(row: ManifestRow) -> tuple[str, str] | None:
    return None if row.speaker.strip().lower() in _UNKNOWN_SPEAKERS else (row.corpus, row.speaker)


def validation_from_train(rows: Sequence[ManifestRow], train: Sequence[int], seed: int,
                          fraction: float = DEFAULT_VAL_FRACTION) -> tuple[list[int], list[int]]:
    """Split EmoBox's training part into (train, val) for model selection, deterministic for `seed`.

    Speaker-disjoint: the training speakers (corpus, speaker), in natural order, are shuffled with
    ``np.random.default_rng(seed)``; validation takes the prefix of that order (at least one speaker, and
    at least one left to train) whose utterance share of `train` is closest to `fraction` (the shorter
    prefix on a tie). Rows without a speaker id ("" or "Unknown") stay in train: nothing shows they are
    not a validation speaker, but they do no harm to training.

    Fallback, when fewer than 2 known speakers train (MSP-Podcast, whose speaker is "Unknown"): a seeded
    share of UTTERANCES, round(fraction * n) of them (at least 1, at most n - 1), which is NOT
    speaker-independent. Both lists keep the order of `train`.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    train = list(train)
    if len(train) < 2:
        raise FoldError(f"cannot draw a validation share from {len(train)} training utterance(s)")
    rng = np.random.default_rng(seed)
    by_speaker: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in train:
        if (spk := _speaker_key(rows[i])) is not None:
            by_speaker[spk].append(i)
    if len(by_speaker) < 2:
        n_val = min(max(round(fraction * len(train)), 1), len(train) - 1)
        val = {int(j) for j in rng.permutation(train)[:n_val]}
    else:
        val = {i for s in speaker_share(by_speaker, len(train), fraction, rng) for i in by_speaker[s]}
    return [i for i in train if i not in val], [i for i in train if i in val]


def emobox_split(fold: EmoBoxFold, rows: Sequence[ManifestRow], seed: int,
                 fraction: float = DEFAULT_VAL_FRACTION) -> Split:
    """Our `Split` of an EmoBox fold: its official valid part if it has one, else `validation_from_train`."""
    if fold.valid is not None:
        return Split(list(fold.train), list(fold.valid), list(fold.test))
    train, val = validation_from_train(rows, fold.train, seed, fraction)
    return Split(train, val, list(fold.test))


def _line(row: ManifestRow, dataset: str, wav_root: str, label: str, sample_rate: int, channel: int) -> str:
    # EmoBox's write_jsonl: this key order and json.dumps' default separators.
    entry = {"key": f"{dataset}-{row.utt_id}", "dataset": dataset, "wav": f"{wav_root}/{row.path}",
             "type": "raw", "sample_rate": sample_rate, "num_frame": float(round(row.duration * sample_rate)),
             "task": "category", "length": row.duration, "emo": label, "channel": channel}
    return json.dumps(entry) + "\n"


def write_emobox_folds(rows: Sequence[ManifestRow], splits: Sequence[Split], dataset: str,
                       out_dir: str | os.PathLike, label_of: Callable[[ManifestRow], str], *,
                       merge_val: bool = False, wav_root: str | None = None, sample_rate: int = 16000,
                       channel: int = 1) -> Path:
    """Write `splits` as EmoBox fold files under ``out_dir/dataset/``; returns that folder.

    Split k becomes ``fold_<k+1>/<dataset>_{train,test}_fold_<k+1>.jsonl`` and, when it has a val part,
    ``<dataset>_valid_fold_<k+1>.jsonl``, which EmoBox's loader takes as the official validation set; so
    EmoBox users train, select and test on exactly our split. ``merge_val=True`` puts val into train
    instead, for tools that read only train/test. Each file is written atomically; stale files of our
    naming left by an earlier, larger write are removed so the folder never mixes two runs.

    Lines follow EmoBox's format: key ``<dataset>-<utt_id>`` (so reading back matches by utt_id), ``emo``
    from `label_of(row)` (write the corpus's code, e.g. IEMOCAP "neu", for EmoBox's label_map.json), and
    ``wav`` = ``<wav_root>/<row.path>``, default ``downloads/<dataset>``: EmoBox resolves wav relative
    to its repository and expects a corpus under ``downloads/<dataset>/``. The manifest does not record
    `sample_rate` and `channel`; they are descriptive (EmoBox reads and resamples the audio itself).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", dataset):
        raise ValueError(f"dataset must be a plain folder name such as 'iemocap', got {dataset!r}")
    if not splits:
        raise ValueError("write_emobox_folds: no splits to write")
    root = Path(out_dir) / dataset
    wav_root = (f"downloads/{dataset}" if wav_root is None else wav_root).rstrip("/")
    written: set[Path] = set()
    for k, split in enumerate(splits, 1):
        check_split(split, rows, speaker_independent=False)  # ValueError if an index repeats
        parts = {"train": split.train + split.val if merge_val else split.train,
                 "valid": [] if merge_val else split.val, "test": split.test}
        for part, indices in parts.items():
            if part == "valid" and not indices:
                continue
            path = root / f"fold_{k}" / f"{dataset}_{part}_fold_{k}.jsonl"
            lines = []
            for i in indices:
                label = label_of(rows[i])
                if not isinstance(label, str) or not label:
                    raise ValueError(f"label_of gave {label!r} for {rows[i].utt_id!r}; EmoBox needs a label")
                lines.append(_line(rows[i], dataset, wav_root, label, sample_rate, channel))
            with atomic_open(path, "w", newline="") as f:
                f.writelines(lines)
            written.add(path)
    _remove_stale(root, dataset, written)
    return root


def _remove_stale(root: Path, dataset: str, written: set[Path]) -> None:
    """Remove our-named fold files this write did not produce (and fold folders left empty)."""
    if not root.is_dir():
        return
    ours = re.compile(rf"{re.escape(dataset)}_({'|'.join(PARTS)})_fold_(\d+)\.jsonl")
    for folder in root.iterdir():
        if not (folder.is_dir() and _FOLD_DIR.fullmatch(folder.name)):
            continue
        for file in folder.iterdir():
            if ours.fullmatch(file.name) and file not in written:
                file.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def emobox_scheme(folds_file: str | os.PathLike | None, rows: Sequence[ManifestRow], labelled: Sequence[bool],
                  fold: int, seed: int) -> tuple[int, Split]:
    """``data.scheme: emobox``: (number of folds, our `Split` of fold ``fold``, 0-based = EmoBox's fold_<fold+1>)
    from EmoBox's files at ``folds_file``. Every utterance a fold names must have a label of the chosen classes
    (``labelled``): EmoBox's class set and ours must agree, or the results would not be on EmoBox's splits."""
    if not folds_file:
        raise FoldError("scheme 'emobox' needs data.folds_file: EmoBox's data/<dataset>/ folder (fold_1, ...)")
    folds = read_emobox_folds(folds_file, rows)
    if not 0 <= fold < len(folds):
        raise FoldError(f"data.fold={fold} is out of range: {folds_file} has {len(folds)} EmoBox folds "
                        f"(0..{len(folds) - 1}; data.fold k is EmoBox's fold_<k+1>)")
    chosen = folds[fold]
    listed = [*chosen.train, *chosen.test, *(chosen.valid or [])]
    if outside := [rows[i] for i in listed if not labelled[i]]:
        labels = sorted({r.emotion for r in outside})
        raise FoldError(f"{chosen.folder}: EmoBox's fold names {len(outside)} utterance(s) whose label is not "
                        f"among data.classes (labels {labels}, e.g. {outside[0].utt_id}); set data.classes and "
                        "data.class_map to EmoBox's label_map for this corpus")
    return len(folds), emobox_split(chosen, rows, seed)
