"""IEMOCAP reader on miniature trees in the release's layout (tests/corpus_trees.py).

The default miniature: 2 sessions x 3 dialogs x 6 turns = 36 utterances. Turn i of every dialog
has code (neu, hap, exc, sad, ang, fru)[i] and is spoken by F for even i, M for odd i, so per
dialog: neutral 1, happy 2 (hap + exc), sad 1, angry 1, no 4-class label 1 (fru); 3 F, 3 M.
"""

from __future__ import annotations

from collections import Counter

import pytest
from corpus_trees import iemocap_dialogs, make_iemocap

from ser_mtl.data.corpora import build_manifest, read_iemocap
from ser_mtl.data.manifest import CorpusError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release"
    return root, make_iemocap(root)


def test_counts_per_emotion_gender_session_speaker(tree):
    root, expected = tree
    result = read_iemocap(root)
    rows = result.rows
    assert result.skipped == []
    assert len(rows) == 36 == expected["rows"]
    # every code keeps its label (the label scheme merges excited into happy and leaves frustrated out)
    assert Counter(r.emotion for r in rows) == {"angry": 6, "happy": 6, "excited": 6, "neutral": 6, "sad": 6,
                                                "frustrated": 6}
    assert Counter(r.raw_emotion for r in rows) == {c: 6 for c in ("neu", "hap", "exc", "sad", "ang", "fru")}
    assert Counter(r.gender for r in rows) == {"F": 18, "M": 18}
    assert Counter(r.session for r in rows) == {"1": 18, "2": 18}
    assert Counter(r.speaker for r in rows) == {"Ses01_F": 9, "Ses01_M": 9, "Ses02_F": 9, "Ses02_M": 9}
    assert {r.corpus for r in rows} == {"iemocap"}
    assert Counter(r.emotion for r in rows) == expected["emotion"]
    assert Counter(r.gender for r in rows) == expected["gender"]


def test_every_row_matches_what_was_written(tree):
    root, expected = tree
    rows = {r.utt_id: r for r in read_iemocap(root).rows}
    assert set(rows) == set(expected["utts"])
    for utt_id, want in expected["utts"].items():
        row = rows[utt_id]
        got = {k: getattr(row, k) for k in want}
        assert got == want, utt_id


def test_speaker_is_the_last_field_not_the_dialog_prefix(tree):
    root, _ = tree
    rows = {r.utt_id: r for r in read_iemocap(root).rows}
    # Male actor speaking in a dialog whose prefix says F, and the reverse.
    assert (rows["Ses01F_impro01_M000"].speaker, rows["Ses01F_impro01_M000"].gender) == ("Ses01_M", "M")
    assert (rows["Ses02M_impro05a_F001"].speaker, rows["Ses02M_impro05a_F001"].gender) == ("Ses02_F", "F")
    # 3 of 6 turns per dialog are spoken by the actor the prefix does not name: 6 dialogs -> 18.
    cross = [r for r in rows.values() if r.utt_id[5] != r.gender]
    assert len(cross) == 18
    assert all(r.speaker == f"Ses{r.utt_id[3:5]}_{r.utt_id.rsplit('_', 1)[1][0]}" for r in rows.values())


def test_letter_suffixed_dialogs_find_their_audio(tree):
    root, _ = tree
    rows = {r.utt_id: r for r in read_iemocap(root).rows}
    assert iemocap_dialogs(1)[1:] == ["Ses01M_impro05a", "Ses01M_script01_1b"]
    assert rows["Ses01M_impro05a_F000"].path == "Session1/sentences/wav/Ses01M_impro05a/Ses01M_impro05a_F000.wav"
    assert rows["Ses02M_script01_1b_M002"].path == (
        "Session2/sentences/wav/Ses02M_script01_1b/Ses02M_script01_1b_M002.wav")
    assert rows["Ses02M_script01_1b_M002"].raw_emotion == "fru"  # turn 5
    assert rows["Ses02M_script01_1b_M002"].emotion == "frustrated"


def test_bracket_order_is_valence_activation_dominance_and_duration_from_header(tree):
    root, _ = tree
    rows = {r.utt_id: r for r in read_iemocap(root).rows}
    # turn 0: [1.5000, 5.0000, 2.0000]; turn 1: [2.0000, 4.5000, 2.2500] (corpus_trees.iemocap_vad)
    r0, r1 = rows["Ses01F_impro01_F000"], rows["Ses01F_impro01_M000"]
    assert (r0.valence, r0.activation, r0.dominance) == (1.5, 5.0, 2.0)
    assert (r1.valence, r1.activation, r1.dominance) == (2.0, 4.5, 2.25)
    # durations cycle 0.3, 0.4, 0.5 s: 4800, 6400, 8000 samples at 16 kHz
    assert [rows[f"Ses01F_impro01_{g}"].duration for g in ("F000", "M000", "F001")] == [0.3, 0.4, 0.5]
    assert rows["Ses01F_impro01_M000"].raw_emotion == "hap"
    assert rows["Ses01F_impro01_F001"].raw_emotion == "exc"
    assert rows["Ses01F_impro01_F001"].emotion == "excited"  # the label scheme merges it into happy


def test_evaluator_subfolders_are_not_dialog_files(tree):
    root, _ = tree
    label_dir = root / "Session1" / "dialog" / "EmoEvaluation"
    # The Self-evaluation file repeats 6 utterance ids with code "sur": read, it would show up
    # as duplicates or as "sur" rows.
    assert (label_dir / "Self-evaluation" / "Ses01F_impro01.txt").read_text().count("\tsur\t") == 6
    assert (label_dir / "Categorical" / "Ses01F_impro01_e2_cat.txt").is_file()
    result = read_iemocap(root)
    assert "sur" not in {r.raw_emotion for r in result.rows}
    assert result.skipped == []


def test_windows_line_endings_and_trailing_spaces_are_read(tree):
    root, _ = tree
    label_dir = root / "Session1" / "dialog" / "EmoEvaluation"
    assert b"\r\n" in (label_dir / "Ses01M_script01_1b.txt").read_bytes()
    assert b"]  \t\n" in (label_dir / "Ses01M_impro05a.txt").read_bytes()
    per_dialog = Counter(r.utt_id.rsplit("_", 1)[0] for r in read_iemocap(root).rows)
    assert per_dialog == {d: 6 for n in (1, 2) for d in iemocap_dialogs(n)}


def test_bad_inputs_are_skipped_with_file_and_line(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    expected = make_iemocap(root, bad_files=True)
    result = read_iemocap(root)
    label = "Session1/dialog/EmoEvaluation/Ses01F_impro02.txt"
    assert [(s.path, s.line) for s in result.skipped] == [(label, 7), (label, 11), (label, 15),
                                                          (label, 19), (label, 23)]
    for skip, (_, _, fragment) in zip(result.skipped, expected["skips"]):
        assert fragment in skip.reason
    assert str(result.skipped[0]) == (f"{label}:7: audio file not found: "
                                      "Session1/sentences/wav/Ses01F_impro02/Ses01F_impro02_M000.wav")
    assert "[valence, activation, dominance]" in result.skipped[3].reason
    # 36 good + 2 good utterances of the bad dialog (angry F, sad M)
    assert len(result.rows) == 38
    assert Counter(r.emotion for r in result.rows) == {"angry": 7, "happy": 6, "excited": 6, "neutral": 6,
                                                       "sad": 7, "frustrated": 6}
    assert Counter(r.gender for r in result.rows) == {"F": 19, "M": 19}


def test_five_sessions_give_ten_speakers(tmp_path):
    make_iemocap(tmp_path / "IEMOCAP_full_release", sessions=range(1, 6), utts_per_dialog=2)
    result = build_manifest("iemocap", tmp_path / "IEMOCAP_full_release")
    assert len(result.rows) == 5 * 3 * 2
    assert sorted({r.speaker for r in result.rows}) == [f"Ses{n:02d}_{g}" for n in range(1, 6) for g in "FM"]
    assert Counter(r.session for r in result.rows) == {str(n): 6 for n in range(1, 6)}


def test_agrees_with_torchaudio_parser_on_labels(tmp_path):
    """torchaudio.datasets.IEMOCAP as an independent reference for which utterances carry which
    code (it keeps neu/hap/ang/sad/exc/fru); its speaker field is the dialog prefix, ours is not."""
    iemocap_dataset = pytest.importorskip("torchaudio.datasets").IEMOCAP
    make_iemocap(tmp_path / "IEMOCAP", sessions=(1, 2))
    reference = iemocap_dataset(tmp_path, sessions=(1, 2))
    theirs = {reference.get_metadata(i)[2]: reference.get_metadata(i)[3] for i in range(len(reference))}
    ours = {r.utt_id: r.raw_emotion for r in read_iemocap(tmp_path / "IEMOCAP").rows}
    assert len(theirs) == 36
    assert theirs == ours
    prefix_speaker = {reference.get_metadata(i)[4] for i in range(len(reference))}
    assert prefix_speaker == {"Ses01F", "Ses01M", "Ses02F", "Ses02M"}


def test_root_that_is_not_iemocap_is_a_corpus_error(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(CorpusError, match="no Session1..Session5 folders"):
        read_iemocap(tmp_path)
    with pytest.raises(CorpusError, match="not a directory"):
        read_iemocap(tmp_path / "missing")
    (tmp_path / "Session1" / "sentences").mkdir(parents=True)
    with pytest.raises(CorpusError, match="EmoEvaluation"):
        read_iemocap(tmp_path)
