"""Cross-validation splits: which utterances train, validate and test in each fold.

Only LABELLED rows are assigned (by default those of the paper's four classes; ``labelled`` for others).
Splits are index lists into ``rows``, deterministic for a seed; a speaker is (corpus, speaker), so two
corpora never share one. Schemes (the paper, section 5, offers 10-fold and leave-one-speaker-out):

- ``10fold`` (speaker-DEPENDENT, as in the paper's ref. [88]): each speaker's utterances are shuffled
  and dealt round-robin into 10 folds, the deal continuing across speakers, so fold sizes differ by at
  most one and every fold holds every speaker with >= 10 utterances. Fold k tests, (k+1) % 10 validates.
- ``loso`` (one fold per speaker): fold k tests the k-th speaker in (session, speaker) order and its
  session partner validates, so training holds no speaker of the test speaker's dialogs; without
  exactly one partner, the next speaker in that order validates.
- ``loso_session`` (one fold per session): session k tests, session (k+1) % n validates, so validation
  shares no speaker or dialog with training either (the cost: 3 of 5 IEMOCAP sessions train).
- ``speaker5fold`` / ``speaker10fold`` (speaker-INDEPENDENT k-fold): the speakers, in a seeded order,
  each go to the fold with the fewest utterances so far, so folds are balanced in utterances and share no
  speaker; fold k tests, (k+1) % k_folds validates. For corpora with many speakers (CREMA-D's 91,
  RAVDESS's 24) where one fold per speaker is too many fits.
- ``official`` (a corpus's published partition, in the ``session`` column: MSP-Podcast's Split_Set):
  ``Train`` trains, ``Development`` (older releases: ``Validation``) validates, and fold k tests the k-th
  test set (``Test1``, ``Test2``, ... in natural order); rows of other partitions are left out.
- ``cross_corpus`` (one fold): all labelled ``rows`` train; ``target_rows`` is split BY SPEAKER into
  ~30 % validation and ~70 % test (paper: "30% of the MSP-IMPROV data for parameter selection"), the
  validation speakers being the prefix of a seeded shuffle whose utterance share is closest to 30 %.
  ``val``/``test`` then index into ``target_rows``.

Every split is checked: no index twice and, for the speaker-independent schemes, no speaker in two
parts (ValueError). Settings the rows cannot split raise `FoldError`, a ValueError.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ser_mtl.data.labels import make_label_scheme
from ser_mtl.data.manifest import ManifestRow
from ser_mtl.io_utils import atomic_open

SCHEMES = ("10fold", "loso", "loso_session", "speaker5fold", "speaker10fold", "official", "cross_corpus")
OFFICIAL_TRAIN, OFFICIAL_VAL = ("Train",), ("Development", "Validation")
N_TENFOLD = 10
CROSS_CORPUS_VAL_FRACTION = 0.3


class FoldError(ValueError):
    """A scheme or fold that these rows cannot split (unknown, out of range, too few speakers/sessions)."""


@dataclass
class Split:
    """Indices of the train, validation and test utterances (into ``rows``; see ``cross_corpus``)."""

    train: list[int]
    val: list[int]
    test: list[int]


def _natural_key(text: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def _speaker(row: ManifestRow) -> tuple[str, str]:
    return row.corpus, row.speaker


def _labelled_indices(rows: Sequence[ManifestRow], labelled: Sequence[bool] | None) -> list[int]:
    if labelled is None:  # the default class set of each row's corpus (the paper's four, IEMOCAP's merge)
        schemes = {c: make_label_scheme("categorical", c) for c in {r.corpus for r in rows}}
        return [i for i, r in enumerate(rows) if schemes[r.corpus].category(r) is not None]
    if len(labelled) != len(rows):
        raise ValueError(f"labelled has {len(labelled)} entries for {len(rows)} rows")
    return [i for i, keep in enumerate(labelled) if keep]


def _require(rows: Sequence[ManifestRow], idx: list[int], field: str, scheme: str) -> None:
    if missing := [rows[i].utt_id for i in idx if not getattr(rows[i], field)]:
        raise FoldError(f"scheme {scheme!r} needs a {field} for every labelled utterance; "
                         f"{len(missing)} have none, e.g. {missing[:3]}")


def num_folds(rows: Sequence[ManifestRow], scheme: str, labelled: Sequence[bool] | None = None) -> int:
    """Number of folds of `scheme` on the labelled `rows` (10; speakers; sessions; 1 for cross_corpus)."""
    if scheme not in SCHEMES:
        raise FoldError(f"unknown fold scheme {scheme!r}; expected one of {SCHEMES}")
    idx = _labelled_indices(rows, labelled)
    if scheme == "10fold":
        return N_TENFOLD
    if scheme == "loso":
        return len({_speaker(rows[i]) for i in idx})
    if scheme == "loso_session":
        return len({(rows[i].corpus, rows[i].session) for i in idx})
    if scheme.startswith("speaker"):
        return _speaker_folds(scheme)
    if scheme == "official":
        if not (tests := _official_test_sets(rows, idx)):
            found = sorted({rows[i].session for i in idx}, key=_natural_key)
            raise FoldError(f"scheme 'official' needs the partition in the session column (Train, Development or "
                            f"Validation, Test1, ...: MSP-Podcast's Split_Set); the labelled rows have {found[:8]}")
        return len(tests)
    return 1


def _speaker_folds(scheme: str) -> int:
    return int(scheme.removeprefix("speaker").removesuffix("fold"))


def _speaker_kfold(rows: Sequence[ManifestRow], idx: list[int], fold: int, k: int, seed: int) -> Split:
    count: Counter = Counter(_speaker(rows[i]) for i in idx)
    speakers = sorted(count, key=lambda s: (s[0], _natural_key(s[1])))
    if len(speakers) < k:
        raise FoldError(f"speaker{k}fold needs at least {k} speakers with labelled utterances, got {len(speakers)}")
    load, fold_of = [0] * k, {}
    for j in np.random.default_rng(seed).permutation(len(speakers)):  # greedy: the lightest fold takes it
        target = int(np.argmin(load))
        fold_of[speakers[j]], load[target] = target, load[target] + count[speakers[j]]
    val_fold = (fold + 1) % k
    part = {i: fold_of[_speaker(rows[i])] for i in idx}
    return Split(train=[i for i in idx if part[i] not in (fold, val_fold)], val=[i for i in idx if part[i] == val_fold],
                 test=[i for i in idx if part[i] == fold])


def _official_test_sets(rows: Sequence[ManifestRow], idx: list[int]) -> list[str]:
    return sorted({rows[i].session for i in idx if rows[i].session.lower().startswith("test")}, key=_natural_key)


def _official(rows: Sequence[ManifestRow], idx: list[int], fold: int) -> Split:
    tests = _official_test_sets(rows, idx)
    train = [i for i in idx if rows[i].session in OFFICIAL_TRAIN]
    val = [i for i in idx if rows[i].session in OFFICIAL_VAL]
    if not (train and val):
        found = sorted({rows[i].session for i in idx}, key=_natural_key)
        raise FoldError(f"scheme 'official' needs Train and Development (or Validation) rows in the session column; "
                        f"the labelled rows have {found[:8]}")
    return Split(train=train, val=val, test=[i for i in idx if rows[i].session == tests[fold]])


def _tenfold(rows: Sequence[ManifestRow], idx: list[int], fold: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    by_speaker: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in idx:
        by_speaker[_speaker(rows[i])].append(i)
    fold_of: dict[int, int] = {}  # dealt round-robin: the deal continues across speakers
    for spk in sorted(by_speaker, key=lambda s: (s[0], _natural_key(s[1]))):
        utts = by_speaker[spk]
        if len(utts) < N_TENFOLD:
            warnings.warn(f"10fold: speaker {spk[1]!r} has {len(utts)} labelled utterances, fewer than "
                          f"{N_TENFOLD}: it cannot appear in every fold", stacklevel=3)
        for i in rng.permutation(utts):
            fold_of[int(i)] = len(fold_of) % N_TENFOLD
    val_fold = (fold + 1) % N_TENFOLD
    return Split(train=[i for i in idx if fold_of[i] not in (fold, val_fold)],
                 val=[i for i in idx if fold_of[i] == val_fold],
                 test=[i for i in idx if fold_of[i] == fold])


def _loso(rows: Sequence[ManifestRow], idx: list[int], fold: int) -> Split:
    session_of: dict[tuple[str, str], str] = {}  # speaker -> session of its first utterance
    for i in idx:
        session_of.setdefault(_speaker(rows[i]), rows[i].session)
    order = sorted(session_of, key=lambda s: (_natural_key(session_of[s]), s[0], _natural_key(s[1])))
    if len(order) < 3:
        raise FoldError(f"loso needs at least 3 speakers with labelled utterances, got {len(order)}")
    test_spk = order[fold]
    session = session_of[test_spk]
    mates = sorted({_speaker(rows[i]) for i in idx
                    if rows[i].session == session and rows[i].corpus == test_spk[0]} - {test_spk})
    val_spk = mates[0] if session and len(mates) == 1 else order[(fold + 1) % len(order)]
    return Split(train=[i for i in idx if _speaker(rows[i]) not in (test_spk, val_spk)],
                 val=[i for i in idx if _speaker(rows[i]) == val_spk],
                 test=[i for i in idx if _speaker(rows[i]) == test_spk])


def _loso_session(rows: Sequence[ManifestRow], idx: list[int], fold: int) -> Split:
    _require(rows, idx, "session", "loso_session")
    order = sorted({(rows[i].corpus, rows[i].session) for i in idx}, key=lambda s: (s[0], _natural_key(s[1])))
    if len(order) < 3:
        raise FoldError(f"loso_session needs at least 3 sessions with labelled utterances, got {len(order)}")
    test_ses, val_ses = order[fold], order[(fold + 1) % len(order)]
    ses = {i: (rows[i].corpus, rows[i].session) for i in idx}
    return Split(train=[i for i in idx if ses[i] not in (test_ses, val_ses)],
                 val=[i for i in idx if ses[i] == val_ses],
                 test=[i for i in idx if ses[i] == test_ses])


def speaker_share(by_speaker: dict[tuple[str, str], list[int]], total: int, fraction: float,
                  rng: np.random.Generator) -> set[tuple[str, str]]:
    """The speakers (corpus, speaker) -> utterances of ``by_speaker`` (at least 2) that hold the share of ``total``
    utterances closest to ``fraction``: the prefix of one ``rng`` shuffle of them in natural order, with at least
    one speaker on each side (cross_corpus validation, and EmoBox's validation from its training part)."""
    speakers = sorted(by_speaker, key=lambda s: (s[0], _natural_key(s[1])))
    order = [speakers[j] for j in rng.permutation(len(speakers))]
    shares = np.cumsum([len(by_speaker[s]) for s in order[:-1]]) / total
    return set(order[:int(np.argmin(np.abs(shares - fraction))) + 1])


def _cross_corpus(target_rows: Sequence[ManifestRow], target_idx: list[int], seed: int,
                  val_fraction: float) -> tuple[list[int], list[int]]:
    by_speaker: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in target_idx:
        by_speaker[_speaker(target_rows[i])].append(i)
    if len(by_speaker) < 2:
        raise FoldError(f"cross_corpus needs at least 2 target speakers to split, got {len(by_speaker)}")
    val_spk = speaker_share(by_speaker, len(target_idx), val_fraction, np.random.default_rng(seed))
    return ([i for i in target_idx if _speaker(target_rows[i]) in val_spk],
            [i for i in target_idx if _speaker(target_rows[i]) not in val_spk])


def check_split(split: Split, rows: Sequence[ManifestRow], speaker_independent: bool,
                target_rows: Sequence[ManifestRow] | None = None) -> None:
    """Raise ValueError if an index repeats or (speaker_independent) a speaker is in two parts of the split."""
    eval_rows = rows if target_rows is None else target_rows
    parts = {"train": [rows[i] for i in split.train], "val": [eval_rows[i] for i in split.val],
             "test": [eval_rows[i] for i in split.test]}
    all_idx = split.train + split.val + split.test if target_rows is None else []  # else two index spaces
    if repeated := [i for i, c in Counter(all_idx).items() if c > 1]:
        raise ValueError(f"split assigns {len(repeated)} utterance(s) more than once, e.g. "
                         f"{rows[repeated[0]].utt_id!r}")
    if not speaker_independent:
        return
    speakers = {name: {_speaker(r) for r in part} for name, part in parts.items()}
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        if shared := speakers[a] & speakers[b]:
            raise ValueError(f"split is not speaker-independent: {a} and {b} share speaker(s) "
                             f"{sorted(f'{c}/{s}' for c, s in shared)}")


def make_split(rows: Sequence[ManifestRow], scheme: str, fold: int, seed: int,
               target_rows: Sequence[ManifestRow] | None = None, labelled: Sequence[bool] | None = None,
               target_labelled: Sequence[bool] | None = None,
               val_fraction: float = CROSS_CORPUS_VAL_FRACTION) -> Split:
    """The train/val/test split of fold `fold` (0-based) of `scheme`; see the module docstring.

    Args:
        rows: the corpus' manifest rows; splits index into them (cross_corpus: the training corpus).
        scheme: one of SCHEMES.
        fold: 0 <= fold < num_folds(rows, scheme).
        seed: shuffles 10fold's deal and cross_corpus' speaker choice (the LOSO schemes ignore it).
        target_rows: cross_corpus only: the test corpus; `val` and `test` then index into it.
        labelled: per row, whether it has a label for the task (default: emotion in the 4-class set).
        target_labelled: the same for `target_rows`.
        val_fraction: cross_corpus only: share of the target utterances (by speaker) that validates.
    """
    n = num_folds(rows, scheme, labelled)
    if not 0 <= fold < n:
        raise FoldError(f"fold {fold} out of range for scheme {scheme!r}: {n} folds")
    if (target_rows is not None) != (scheme == "cross_corpus"):
        raise FoldError("target_rows is required for scheme 'cross_corpus' and only for it")
    idx = _labelled_indices(rows, labelled)
    if not idx:
        raise FoldError(f"scheme {scheme!r}: no labelled rows among {len(rows)}")
    if scheme not in ("10fold", "official"):
        _require(rows, idx, "speaker", scheme)
    if scheme == "10fold":
        split = _tenfold(rows, idx, fold, seed)
    elif scheme == "loso":
        split = _loso(rows, idx, fold)
    elif scheme == "loso_session":
        split = _loso_session(rows, idx, fold)
    elif scheme.startswith("speaker"):
        split = _speaker_kfold(rows, idx, fold, _speaker_folds(scheme), seed)
    elif scheme == "official":
        split = _official(rows, idx, fold)
    else:
        target_idx = _labelled_indices(target_rows, target_labelled)
        _require(target_rows, target_idx, "speaker", scheme)
        split = Split(idx, *_cross_corpus(target_rows, target_idx, seed, val_fraction))
    # the official partition is speaker-independent as published, except for unknown speakers
    check_split(split, rows, speaker_independent=scheme not in ("10fold", "official"), target_rows=target_rows)
    return split


def write_folds(rows: Sequence[ManifestRow], scheme: str, seed: int, out: str | os.PathLike,
                labelled: Sequence[bool] | None = None) -> list[dict[str, int]]:
    """Write `fold,split,utt_id,speaker` for every fold and labelled utterance, atomically; per fold
    {"fold", "train", "val", "test", "train_speakers", "val_speakers", "test_speakers"}."""
    if scheme == "cross_corpus":
        raise ValueError("write_folds: cross_corpus splits two manifests; use make_split(..., target_rows=...)")
    counts = []
    with atomic_open(out, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["fold", "split", "utt_id", "speaker"])
        for fold in range(num_folds(rows, scheme, labelled)):
            split = make_split(rows, scheme, fold, seed, labelled=labelled)
            entry = {"fold": fold}
            for name in ("train", "val", "test"):
                part = getattr(split, name)
                writer.writerows([fold, name, rows[i].utt_id, rows[i].speaker] for i in part)
                entry[name] = len(part)
                entry[f"{name}_speakers"] = len({_speaker(rows[i]) for i in part})
            counts.append(entry)
    return counts
