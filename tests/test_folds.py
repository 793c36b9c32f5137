"""Fold schemes on synthetic IEMOCAP-like (5 sessions x F/M) and MSP-IMPROV-like (6 sessions) speakers."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from ser_mtl.data.folds import SCHEMES, Split, check_split, make_split, num_folds, write_folds
from ser_mtl.data.manifest import EMOTIONS, ManifestRow, write_manifest
from ser_mtl.data_commands import folds


def _corpus(name: str, sessions: int, seed: int = 0, unlabelled: int = 5) -> list[ManifestRow]:
    """Two speakers (F, M) per session, 20-39 labelled and `unlabelled` unlabelled utterances each."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(1, sessions + 1):
        for g in "FM":
            spk = f"Ses{s:02d}{g}" if name == "iemocap" else f"{g}{s:02d}"
            n = int(rng.integers(20, 40))
            for k in range(n + unlabelled):
                emotion = EMOTIONS[k % 4] if k < n else ""
                rows.append(ManifestRow(f"{spk}_{k:03d}", name, f"{spk}/{k}.wav", 1.0, spk, g, str(s), emotion,
                                        "", 3.0, 3.0, 3.0))
    order = rng.permutation(len(rows))  # manifests are not grouped by speaker
    return [rows[i] for i in order]


IEMOCAP = _corpus("iemocap", 5)
MSP = _corpus("msp_improv", 6, seed=1)


def _labelled(rows):
    return {i for i, r in enumerate(rows) if r.emotion}


def _speakers(rows, idx):
    return {rows[i].speaker for i in idx}


@pytest.mark.parametrize("rows, expected", [(IEMOCAP, {"10fold": 10, "loso": 10, "loso_session": 5}),
                                            (MSP, {"10fold": 10, "loso": 12, "loso_session": 6})])
def test_num_folds(rows, expected):
    assert {s: num_folds(rows, s) for s in expected} == expected
    assert num_folds(rows, "cross_corpus") == 1
    assert SCHEMES == ("10fold", "loso", "loso_session", "speaker5fold", "speaker10fold", "official", "cross_corpus")
    assert num_folds(rows, "speaker5fold") == 5 and num_folds(rows, "speaker10fold") == 10


@pytest.mark.parametrize("rows", [IEMOCAP, MSP], ids=["iemocap", "msp"])
@pytest.mark.parametrize("scheme", ["10fold", "loso", "loso_session"])
def test_partition_and_coverage(rows, scheme):
    labelled = _labelled(rows)
    tested = Counter()
    for fold in range(num_folds(rows, scheme)):
        split = make_split(rows, scheme, fold, seed=0)
        parts = [set(split.train), set(split.val), set(split.test)]
        assert sum(map(len, parts)) == len(labelled)  # disjoint ...
        assert set().union(*parts) == labelled  # ... and exactly the labelled rows
        assert split.train and split.val and split.test
        tested.update(split.test)
        if scheme != "10fold":
            train_spk, val_spk, test_spk = (_speakers(rows, p) for p in parts)
            assert not (train_spk & test_spk) and not (train_spk & val_spk) and not (val_spk & test_spk)
    assert set(tested) == labelled and set(tested.values()) == {1}  # every utterance tested exactly once


@pytest.mark.parametrize("rows", [IEMOCAP, MSP], ids=["iemocap", "msp"])
def test_tenfold_every_fold_holds_every_speaker(rows):
    all_speakers = _speakers(rows, _labelled(rows))
    splits = [make_split(rows, "10fold", k, seed=3) for k in range(10)]
    sizes = [len(s.test) for s in splits]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(_labelled(rows))
    for k, split in enumerate(splits):
        assert _speakers(rows, split.test) == all_speakers
        assert split.val == splits[(k + 1) % 10].test  # fold k+1 validates
        assert len(split.train) == len(_labelled(rows)) - len(split.val) - len(split.test)
    for spk in all_speakers:  # round-robin within a speaker: its counts per fold differ by at most one
        per_fold = [sum(rows[i].speaker == spk for i in s.test) for s in splits]
        assert max(per_fold) - min(per_fold) <= 1, (spk, per_fold)


def test_tenfold_warns_about_small_speakers():
    rows = IEMOCAP + [ManifestRow(f"x{k}", "iemocap", f"x{k}.wav", 1.0, "Ses06F", "F", "6", "sad", "", None, None,
                                  None) for k in range(4)]
    with pytest.warns(UserWarning, match="speaker 'Ses06F' has 4 labelled utterances, fewer than 10"):
        split = make_split(rows, "10fold", 0, seed=0)
    assert len(split.train) + len(split.val) + len(split.test) == len(_labelled(IEMOCAP)) + 4


def test_tenfold_seed_determinism():
    a = make_split(IEMOCAP, "10fold", 4, seed=7)
    assert a == make_split(IEMOCAP, "10fold", 4, seed=7)
    b = make_split(IEMOCAP, "10fold", 4, seed=8)
    assert set(a.test) != set(b.test) and len(set(a.test) & set(b.test)) < len(a.test) // 2


def test_loso_session_partner_validates():
    seen = []
    for fold in range(10):
        split = make_split(IEMOCAP, "loso", fold, seed=0)
        (test_spk,), (val_spk,) = _speakers(IEMOCAP, split.test), _speakers(IEMOCAP, split.val)
        seen.append(test_spk)
        assert val_spk[:5] == test_spk[:5] and val_spk[5] != test_spk[5]  # same session, other actor
        assert not any(s.startswith(test_spk[:5]) for s in _speakers(IEMOCAP, split.train))
        assert len(_speakers(IEMOCAP, split.train)) == 8
    assert seen == [f"Ses{s:02d}{g}" for s in range(1, 6) for g in "FM"]  # (session, speaker) order
    msp = make_split(MSP, "loso", 11, seed=0)
    assert _speakers(MSP, msp.test) == {"M06"} and _speakers(MSP, msp.val) == {"F06"}


def test_loso_falls_back_to_next_speaker_without_a_partner():
    rows = [r for r in IEMOCAP if r.speaker != "Ses02M"]  # session 2 has one speaker left
    split = make_split(rows, "loso", 2, seed=0)  # order: Ses01F Ses01M Ses02F Ses03F ...
    assert _speakers(rows, split.test) == {"Ses02F"} and _speakers(rows, split.val) == {"Ses03F"}


def test_loso_session_next_session_validates():
    for fold in range(6):
        split = make_split(MSP, "loso_session", fold, seed=0)
        assert {MSP[i].session for i in split.test} == {str(fold + 1)}
        assert {MSP[i].session for i in split.val} == {str((fold + 1) % 6 + 1)}
        assert len(_speakers(MSP, split.test)) == 2 and len(_speakers(MSP, split.train)) == 8


def test_cross_corpus_speaker_split_of_the_target():
    # 12 target speakers with 20 labelled utterances each: 30 % of 240 = 72 lies between 3 speakers (25 %)
    # and 4 speakers (33.3 %); 4 is closer
    kept: Counter = Counter()
    target = []
    for r in MSP:
        if r.emotion and kept[r.speaker] < 20:
            kept[r.speaker] += 1
            target.append(r)
    assert len(target) == 240 and set(kept.values()) == {20}
    split = make_split(IEMOCAP, "cross_corpus", 0, seed=0, target_rows=target)
    assert sorted(split.train) == sorted(_labelled(IEMOCAP))
    assert len(split.val) == 80 and len(split.test) == 160
    assert len(_speakers(target, split.val)) == 4 and not _speakers(target, split.val) & _speakers(target, split.test)
    assert split == make_split(IEMOCAP, "cross_corpus", 0, seed=0, target_rows=target)
    other = [make_split(IEMOCAP, "cross_corpus", 0, seed=s, target_rows=target) for s in range(1, 4)]
    assert any(_speakers(target, o.val) != _speakers(target, split.val) for o in other)
    with pytest.raises(ValueError, match="target_rows is required"):
        make_split(IEMOCAP, "cross_corpus", 0, seed=0)


def test_labelled_mask_selects_rows():
    mask = [r.emotion in ("angry", "sad") for r in IEMOCAP]
    split = make_split(IEMOCAP, "loso", 0, seed=0, labelled=mask)
    assert {IEMOCAP[i].emotion for i in split.train + split.val + split.test} == {"angry", "sad"}
    assert len(split.train + split.val + split.test) == sum(mask)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="fold 5 out of range for scheme 'loso_session': 5 folds"):
        make_split(IEMOCAP, "loso_session", 5, seed=0)
    with pytest.raises(ValueError, match="unknown fold scheme"):
        make_split(IEMOCAP, "5fold", 0, seed=0)
    # a speaker recorded in two sessions breaks session-wise speaker independence
    moved = [r if not (r.speaker == "Ses01F" and r.utt_id.endswith("0")) else
             ManifestRow(**{**r.__dict__, "session": "2"}) for r in IEMOCAP]
    with pytest.raises(ValueError, match=r"share speaker\(s\) \['iemocap/Ses01F'\]"):
        make_split(moved, "loso_session", 0, seed=0)
    first = min(_labelled(IEMOCAP))
    nameless = [ManifestRow(**{**r.__dict__, "speaker": ""}) if i == first else r for i, r in enumerate(IEMOCAP)]
    with pytest.raises(ValueError, match="needs a speaker for every labelled utterance"):
        make_split(nameless, "loso", 0, seed=0)
    rows = IEMOCAP
    bad = Split(train=[next(iter(_labelled(rows)))], val=[], test=[next(iter(_labelled(rows)))])
    with pytest.raises(ValueError, match="more than once"):
        check_split(bad, rows, speaker_independent=False)


def test_write_folds_and_command(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    write_manifest(MSP, manifest)
    out = tmp_path / "sub" / "folds.csv"
    folds(str(manifest), "loso", str(out), seed=0)
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    n_lab = len(_labelled(MSP))
    assert len(table) == 12 * n_lab and list(table[0]) == ["fold", "split", "utt_id", "speaker"]
    assert Counter(r["utt_id"] for r in table if r["split"] == "test") == Counter(
        r.utt_id for r in MSP if r.emotion)
    fold0 = make_split(MSP, "loso", 0, seed=0)
    assert [r["utt_id"] for r in table if r["fold"] == "0" and r["split"] == "val"] == [
        MSP[i].utt_id for i in fold0.val]
    printed = capsys.readouterr().out
    assert f"loso: 12 folds over {n_lab} labelled of {len(MSP)} utterances" in printed
    assert f"fold  0: train {len(fold0.train):5d} (10 spk)  val {len(fold0.val):5d} (1 spk)" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["folds.csv"]  # no temporary left behind
    counts = write_folds(IEMOCAP, "10fold", 0, tmp_path / "ten.csv")
    assert [c["test_speakers"] for c in counts] == [10] * 10


def test_command_rejects_unlabelled_manifest(tmp_path):
    manifest = tmp_path / "m.csv"
    write_manifest([r for r in MSP if not r.emotion], manifest)
    with pytest.raises(ValueError, match=r"no utterance has a label among \[.angry., .happy., .neutral., .sad.\]"):
        folds(str(manifest), "loso", str(tmp_path / "f.csv"))
    assert not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize("k", [5, 10])
def test_speaker_kfold_is_speaker_independent_balanced_and_seeded(k):
    rows = _corpus("crema_d", 12, seed=3)  # 24 speakers
    labelled = _labelled(rows)
    tests = [make_split(rows, f"speaker{k}fold", fold, seed=7) for fold in range(k)]
    # every labelled utterance is tested exactly once; test and validation speakers never train
    assert sorted(i for sp in tests for i in sp.test) == sorted(labelled)
    for fold, sp in enumerate(tests):
        assert set(sp.train) | set(sp.val) | set(sp.test) == labelled
        assert not (_speakers(rows, sp.train) & _speakers(rows, sp.test + sp.val))
        assert set(sp.val) == set(tests[(fold + 1) % k].test)  # fold k+1 validates
    sizes = [len(sp.test) for sp in tests]
    per_speaker = max(Counter(rows[i].speaker for i in labelled).values())
    assert max(sizes) - min(sizes) <= per_speaker  # greedy balancing: within one speaker's utterances
    assert [make_split(rows, f"speaker{k}fold", 0, seed=7).test] == [tests[0].test]
    assert make_split(rows, f"speaker{k}fold", 0, seed=8).test != tests[0].test
    with pytest.raises(ValueError, match="speaker10fold needs at least 10 speakers"):
        make_split(_corpus("crema_d", 2), "speaker10fold", 0, seed=0)


def test_official_partition_trains_develops_and_tests_each_test_set():
    parts = ["Train"] * 5 + ["Development"] * 2 + ["Test1"] * 2 + ["Test2"]
    rows = [ManifestRow(f"u{i}", "msp_podcast", f"{i}.wav", 1.0, "" if i % 3 else f"s{i}", "F", part, "happy", "H",
                        None, None, None) for i, part in enumerate(parts * 3)]
    assert num_folds(rows, "official") == 2
    first, second = (make_split(rows, "official", k, seed=0) for k in (0, 1))
    assert [rows[i].session for i in first.train] == ["Train"] * 15
    assert {rows[i].session for i in first.val} == {"Development"} and len(first.val) == 6
    assert {rows[i].session for i in first.test} == {"Test1"} and {rows[i].session for i in second.test} == {"Test2"}
    with pytest.raises(ValueError, match="needs the partition in the session column"):
        make_split(IEMOCAP, "official", 0, seed=0)
