"""EmoBox fold files (github.com/emo-box/EmoBox, data/<dataset>/fold_<k>/) read onto and written from a manifest.

Rows are IEMOCAP-like (utt ids ``Ses01F_impro01_F000``, paths ``Session1/sentences/wav/...``), and the
fold lines copy EmoBox's real line format field for field (see `REAL_LINE`).
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from ser_mtl.data.emobox_folds import (
    emobox_split,
    read_emobox_folds,
    validation_from_train,
    write_emobox_folds,
)
from ser_mtl.data.folds import FoldError, Split, make_split
from ser_mtl.data.manifest import ManifestRow

# Verbatim: EmoBox data/iemocap/fold_1/iemocap_test_fold_1.jsonl, line 1 (commit 08280f2).
REAL_LINE = ('{"key": "iemocap-Ses01F_impro04_F000", "dataset": "iemocap", "wav": "downloads/iemocap/Session1/'
             'sentences/wav/Ses01F_impro04/Ses01F_impro04_F000.wav", "type": "raw", "sample_rate": 16000, '
             '"num_frame": 70312.0, "task": "category", "length": 4.3945, "emo": "neu", "channel": 1}')
CODES = ("neu", "ang", "sad", "hap", "exc")
EMOTION_OF = {"neu": "neutral", "ang": "angry", "sad": "sad", "hap": "happy", "exc": "happy"}


def _row(utt: str, code: str, duration: float = 2.0, speaker: str | None = None) -> ManifestRow:
    session, gender = int(utt[3:5]), utt[-4]
    dialog = utt.rsplit("_", 1)[0]
    return ManifestRow(utt, "iemocap", f"Session{session}/sentences/wav/{dialog}/{utt}.wav", duration,
                       f"Ses{session:02d}_{gender}" if speaker is None else speaker, gender, str(session),
                       EMOTION_OF.get(code, ""), code, None, None, None)


def _corpus() -> list[ManifestRow]:
    """3 sessions x 2 speakers x 4 utterances = 24 rows, plus one "fru" row EmoBox leaves out (index 24)."""
    rows = [_row(f"Ses{s:02d}F_impro01_{g}{k:03d}", CODES[(s + k) % 5])
            for s in (1, 2, 3) for g in "FM" for k in range(4)]
    return rows + [_row("Ses01F_impro02_F000", "fru")]


ROWS = _corpus()  # index = 8 * (session - 1) + 4 * (gender == "M") + k


def _line(row: ManifestRow, key: str | None = None) -> str:
    """A line in EmoBox's format, as EmoBox's write_jsonl builds it."""
    entry = {"key": key or f"iemocap-{row.utt_id}", "dataset": "iemocap",
             "wav": f"downloads/iemocap/{row.path}", "type": "raw", "sample_rate": 16000,
             "num_frame": row.duration * 16000, "task": "category", "length": row.duration,
             "emo": row.raw_emotion, "channel": 1}
    return json.dumps(entry) + "\n"


def _write(folder, part: str, fold: int, lines: list[str]) -> None:
    path = folder / f"fold_{fold}" / f"iemocap_{part}_fold_{fold}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))


def _session_folds(root, rows=ROWS):
    """EmoBox's IEMOCAP scheme on ROWS: fold k tests session k; the train lines are written in reverse."""
    for k in (1, 2, 3):
        _write(root, "test", k, [_line(r) for r in rows if r.session == str(k) and r.raw_emotion != "fru"])
        _write(root, "train", k, [_line(r) for r in reversed(rows) if r.session != str(k)
                                  and r.raw_emotion != "fru"])
    return root


def test_real_line_matches_its_row(tmp_path):
    rows = [_row("Ses01F_impro04_F001", "neu"), _row("Ses01F_impro04_F000", "neu", 4.3945)]
    assert list(json.loads(_line(rows[1]))) == list(json.loads(REAL_LINE))  # same fields, same order
    _write(tmp_path, "test", 1, [REAL_LINE + "\n"])
    _write(tmp_path, "train", 1, [_line(rows[0])])
    (fold,) = read_emobox_folds(tmp_path, rows)
    assert (fold.number, fold.train, fold.test, fold.valid) == (1, [0], [1], None)
    assert (fold.train_labels, fold.test_labels, fold.labels) == (["neu"], ["neu"], {"neu"})


def test_read_exact_indices(tmp_path):
    folds = read_emobox_folds(_session_folds(tmp_path), ROWS)
    assert len(folds) == 3
    assert folds[0].test == [0, 1, 2, 3, 4, 5, 6, 7]  # session 1, file order; 24 ("fru") is in no part
    assert folds[0].train == list(range(23, 7, -1))  # sessions 3 then 2, reversed as written
    assert folds[1].test == list(range(8, 16)) and folds[2].test == list(range(16, 24))
    assert folds[2].train == [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert folds[0].test_labels == ["ang", "sad", "hap", "exc"] * 2  # CODES[(1 + k) % 5], F then M
    assert folds[0].labels == {"neu", "ang", "sad", "hap", "exc"}
    (only,) = read_emobox_folds(tmp_path / "fold_2", ROWS)  # one fold folder reads that fold alone
    assert (only.number, only.test) == (2, list(range(8, 16)))


def test_missing_key_names_file_line_and_count(tmp_path):
    _session_folds(tmp_path)
    lines = [_line(r) for r in ROWS[:8]]
    lines[2] = _line(ROWS[2], key="iemocap-Ses01F_impro01_F002-v2")  # its wav's stem still names row 2
    lines[5] = _line(_row("Ses01F_impro09_F005", "neu"))  # an utterance this manifest does not have
    _write(tmp_path, "test", 1, lines)
    with pytest.raises(FoldError) as err:
        read_emobox_folds(tmp_path, ROWS)
    message = str(err.value)
    assert "iemocap_test_fold_1.jsonl:6:" in message and "'iemocap-Ses01F_impro09_F005'" in message
    assert "1 of 8 keys" in message


def test_missing_key_counts_every_miss(tmp_path):
    _session_folds(tmp_path)
    _write(tmp_path, "test", 1, [_line(ROWS[0])] + [_line(_row(f"Ses01F_impro07_F00{k}", "neu")) for k in range(3)])
    with pytest.raises(FoldError, match=r"iemocap_test_fold_1\.jsonl:2: key 'iemocap-Ses01F_impro07_F000' "
                                        r"matches no manifest row .* 3 of 4 keys"):
        read_emobox_folds(tmp_path, ROWS)


def test_keys_that_are_not_the_file_stem(tmp_path):
    """CREMA-D: key cremad-1001-DFA-ANG-XX for 1001_DFA_ANG_XX.wav; matched by wav stem, then by path stem."""
    def crema(utt_id: str, stem: str) -> ManifestRow:
        return ManifestRow(utt_id, "crema_d", f"AudioWAV/{stem}.wav", 2.0, stem[:4], "", "", "angry", "ANG",
                           None, None, None)

    rows = [crema("1001_DFA_ANG_XX", "1001_DFA_ANG_XX"), crema("c2", "1002_IEO_ANG_HI")]
    folder = tmp_path / "cremad" / "fold_1"
    folder.mkdir(parents=True)
    for part, (key, stem) in {"train": ("1001-DFA-ANG-XX", "1001_DFA_ANG_XX"),
                              "test": ("1002-IEO-ANG-HI", "1002_IEO_ANG_HI")}.items():
        (folder / f"cremad_{part}_fold_1.jsonl").write_text(json.dumps(
            {"key": f"cremad-{key}", "dataset": "cremad", "wav": f"downloads/cremad/AudioWAV/{stem}.wav",
             "type": "raw", "sample_rate": 16000, "num_frame": 44845.0, "task": "category",
             "length": 2.8028125, "emo": "ANG", "channel": 1}) + "\n")
    (fold,) = read_emobox_folds(tmp_path / "cremad", rows)
    assert (fold.train, fold.test, fold.labels) == ([0], [1], {"ANG"})


def test_a_row_named_twice_is_an_error(tmp_path):
    _session_folds(tmp_path)
    _write(tmp_path, "test", 1, [_line(r) for r in ROWS[:8]] + [_line(ROWS[9])])  # 9 also trains
    with pytest.raises(FoldError, match=r"test_fold_1\.jsonl:9: utterance 'Ses02F_impro01_F001' is also in "
                                        r".*iemocap_train_fold_1\.jsonl:15"):  # train lists 23..8
        read_emobox_folds(tmp_path, ROWS)
    _write(tmp_path, "test", 1, [_line(ROWS[0]), _line(ROWS[0])])
    with pytest.raises(FoldError, match=r"test_fold_1\.jsonl:2: key .* names the same manifest row as "
                                        r".*test_fold_1\.jsonl:1"):
        read_emobox_folds(tmp_path, ROWS)


@pytest.mark.parametrize("damage, expected", [
    (lambda root: (root / "fold_2" / "iemocap_test_fold_2.jsonl").unlink(), "missing; every EmoBox fold"),
    (lambda root: (root / "fold_2" / "iemocap_test_fold_2.jsonl").write_text("{oops\n"),
     r"test_fold_2\.jsonl:1: not a JSON object"),
    (lambda root: (root / "fold_2" / "iemocap_test_fold_2.jsonl").write_text('{"key": "iemocap-x"}\n'),
     "with 'key' and 'emo'"),
    (lambda root: (root / "fold_3").rename(root / "fold_4"), r"are not fold_1\.\.fold_3"),
])
def test_malformed_folders(tmp_path, damage, expected):
    damage(_session_folds(tmp_path))
    with pytest.raises(FoldError, match=expected):
        read_emobox_folds(tmp_path, ROWS)


def test_official_valid_file_is_used(tmp_path):
    _session_folds(tmp_path)
    _write(tmp_path, "train", 1, [_line(r) for r in ROWS[8:16]])
    _write(tmp_path, "valid", 1, [_line(r) for r in ROWS[16:24]])
    fold = read_emobox_folds(tmp_path, ROWS)[0]
    assert (fold.train, fold.valid, fold.test) == (list(range(8, 16)), list(range(16, 24)), list(range(8)))
    assert emobox_split(fold, ROWS, seed=0) == Split(list(range(8, 16)), list(range(16, 24)), list(range(8)))


def test_write_line_format_and_round_trip(tmp_path):
    labelled = [bool(r.emotion) for r in ROWS]
    splits = [make_split(ROWS, "loso_session", k, seed=0, labelled=labelled) for k in range(3)]
    root = write_emobox_folds(ROWS, splits, "iemocap", tmp_path, label_of=lambda r: r.raw_emotion)
    assert root == tmp_path / "iemocap"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jsonl")) == [
        f"fold_{k}/iemocap_{part}_fold_{k}.jsonl" for k in (1, 2, 3) for part in ("test", "train", "valid")]
    first = (root / "fold_1" / "iemocap_test_fold_1.jsonl").read_text().splitlines()[0]
    assert first == ('{"key": "iemocap-Ses01F_impro01_F000", "dataset": "iemocap", "wav": "downloads/iemocap/'
                     'Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav", "type": "raw", '
                     '"sample_rate": 16000, "num_frame": 32000.0, "task": "category", "length": 2.0, '
                     '"emo": "ang", "channel": 1}')
    folds = read_emobox_folds(root, ROWS)
    for fold, split in zip(folds, splits, strict=True):
        assert (fold.train, fold.valid, fold.test) == (split.train, split.val, split.test)
        assert fold.test_labels == [ROWS[i].raw_emotion for i in split.test]
    assert (len(splits[0].train), len(splits[0].val), len(splits[0].test)) == (8, 8, 8)

    write_emobox_folds(ROWS, splits, "iemocap", tmp_path, label_of=lambda r: r.raw_emotion, merge_val=True)
    merged = read_emobox_folds(root, ROWS)  # the earlier valid files are gone, not mixed in
    assert [(sorted(f.train), f.valid) for f in merged] == [(sorted(s.train + s.val), None) for s in splits]


def test_write_fewer_folds_removes_stale_ones(tmp_path):
    split = Split(train=[8, 9], val=[], test=[0, 1])
    write_emobox_folds(ROWS, [split] * 3, "iemocap", tmp_path, label_of=lambda r: r.raw_emotion)
    (tmp_path / "iemocap" / "README.txt").write_text("mine")
    root = write_emobox_folds(ROWS, [split], "iemocap", tmp_path, label_of=lambda r: r.raw_emotion)
    assert [f.number for f in read_emobox_folds(root, ROWS)] == [1]
    assert not (root / "fold_2").exists() and not (root / "fold_3").exists()
    assert (root / "README.txt").read_text() == "mine"  # only files of EmoBox's naming are removed


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="more than once"):
        write_emobox_folds(ROWS, [Split([0, 1], [], [1])], "iemocap", tmp_path, label_of=lambda r: "neu")
    with pytest.raises(ValueError, match="EmoBox needs a label"):
        write_emobox_folds(ROWS, [Split([0], [], [1])], "iemocap", tmp_path, label_of=lambda r: "")
    with pytest.raises(ValueError, match="plain folder name"):
        write_emobox_folds(ROWS, [Split([0], [], [1])], "../x", tmp_path, label_of=lambda r: "neu")


# --- validation_from_train --------------------------------------------------------------------------

def _speakers_rows() -> list[ManifestRow]:
    """10 speakers (sessions 1-5 x F/M) with 3..12 utterances: 3 + (7 * speaker) % 10, 75 in all."""
    rows = []
    for n, (s, g) in enumerate((s, g) for s in range(1, 6) for g in "FM"):
        rows += [_row(f"Ses{s:02d}F_script01_{g}{k:03d}", "neu") for k in range(3 + (7 * n) % 10)]
    return rows


SPK_ROWS = _speakers_rows()


def _speaker_order(seed: int) -> list[str]:
    # The documented order: speakers in natural order, shuffled by np.random.default_rng(seed).
    speakers = [f"Ses{s:02d}_{g}" for s in range(1, 6) for g in "FM"]
    return [speakers[j] for j in np.random.default_rng(seed).permutation(len(speakers))]


@pytest.mark.parametrize("seed", range(8))
def test_validation_is_speaker_disjoint_and_the_best_prefix(seed):
    assert len(SPK_ROWS) == 75
    train_in = list(range(len(SPK_ROWS)))
    train, val = validation_from_train(SPK_ROWS, train_in, seed, fraction=0.2)
    assert sorted(train + val) == train_in and not set(train) & set(val)
    val_spk = {SPK_ROWS[i].speaker for i in val}
    assert not val_spk & {SPK_ROWS[i].speaker for i in train}
    order = _speaker_order(seed)
    assert set(order[:len(val_spk)]) == val_spk  # a prefix of the seeded order ...
    count = {s: sum(r.speaker == s for r in SPK_ROWS) for s in order}
    shares = [sum(count[s] for s in order[:m]) / 75 for m in range(1, 10)]
    assert abs(len(val) / 75 - 0.2) == min(abs(x - 0.2) for x in shares)  # ... the one closest to 20 %
    assert abs(len(val) / 75 - 0.2) <= 6 / 75  # 15 utterances, give or take half the largest speaker
    assert validation_from_train(SPK_ROWS, train_in, seed, 0.2) == (train, val)  # deterministic


def test_validation_equal_speakers_gives_exactly_one_speaker():
    rows = [_row(f"Ses{s:02d}F_script01_F{k:03d}", "neu") for s in range(1, 6) for k in range(20)]
    draws = set()
    for seed in range(10):
        train, val = validation_from_train(rows, range(100), seed, fraction=0.2)
        assert (len(train), len(val), len({rows[i].speaker for i in val})) == (80, 20, 1)
        draws.add(rows[val[0]].speaker)
    assert len(draws) > 1  # the seed picks which speaker


def test_validation_keeps_train_order_and_unknown_speakers_in_train():
    rows = SPK_ROWS + [_row("Ses05F_script01_X000", "neu", speaker="Unknown"),
                       _row("Ses05F_script01_X001", "neu", speaker="")]
    train_in = [76, 75] + list(range(74, -1, -1))
    train, val = validation_from_train(rows, train_in, seed=3)
    assert train[:2] == [76, 75] and train == [i for i in train_in if i not in set(val)]
    assert val == sorted(val, reverse=True)


@pytest.mark.parametrize("speaker", ["Unknown", "", "Ses01_F"])
def test_validation_falls_back_to_utterances_without_two_speakers(speaker):
    rows = [ManifestRow(f"MSP-PODCAST_0001_{k:04d}", "msp_podcast", f"Audio/MSP-PODCAST_0001_{k:04d}.wav",
                        3.0, speaker, "", "", "neutral", "N", None, None, None) for k in range(50)]
    train, val = validation_from_train(rows, range(50), seed=7, fraction=0.2)
    assert (len(train), len(val)) == (40, 10) and sorted(train + val) == list(range(50))
    assert validation_from_train(rows, range(50), seed=7, fraction=0.2) == (train, val)
    assert validation_from_train(rows, range(50), seed=8, fraction=0.2)[1] != val
    train, val = validation_from_train(rows, [3, 4], seed=0, fraction=0.01)  # round(0.02) = 0, yet ...
    assert (len(train), len(val)) == (1, 1)  # ... at least one utterance each side


def test_validation_rejects_what_it_cannot_split():
    with pytest.raises(ValueError, match=re.escape("fraction must be in (0, 1), got 1.0")):
        validation_from_train(SPK_ROWS, range(10), seed=0, fraction=1.0)
    with pytest.raises(FoldError, match="from 1 training utterance"):
        validation_from_train(SPK_ROWS, [0], seed=0)


def test_emobox_split_draws_validation_when_emobox_has_none(tmp_path):
    fold = read_emobox_folds(_session_folds(tmp_path), ROWS)[0]  # trains sessions 2 and 3: 4 speakers, 16
    split = emobox_split(fold, ROWS, seed=0, fraction=0.25)
    assert (len(split.train), len(split.val), split.test) == (12, 4, list(range(8)))
    assert len({ROWS[i].speaker for i in split.val}) == 1


def test_ambiguous_matches_are_errors_not_guesses(tmp_path):
    _session_folds(tmp_path)
    renamed = dataclasses.replace(ROWS[0], utt_id="iemocap-Ses01F_impro01_F000")
    with pytest.raises(FoldError, match=r"test_fold_1\.jsonl:1: key 'iemocap-Ses01F_impro01_F000' is "
                                        r"ambiguous"):  # the full key and the bare name are two rows
        read_emobox_folds(tmp_path, ROWS + [renamed])
    # Rows that share a file stem but no utt_id with the line: the stem names no single row, so no match.
    copies = [ManifestRow(f"copy{j}", "iemocap", f"take{j}/Ses01F_impro01_F000.wav", 2.0, "Ses01_F", "F", "1",
                          "neutral", "neu", None, None, None) for j in (1, 2)]
    with pytest.raises(FoldError, match=r"test_fold_1\.jsonl:1: key 'iemocap-Ses01F_impro01_F000' matches no "):
        read_emobox_folds(tmp_path, ROWS[1:] + copies)
