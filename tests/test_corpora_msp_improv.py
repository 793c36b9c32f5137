"""MSP-IMPROV reader on miniature trees in the release's layouts (tests/corpus_trees.py).

The default miniature: 2 sessions x 2 sentences x 2 target-role actors x 6 turns = 48 clips.
The k-th clip of a session (k = 0..23) has consensus "AHSNOX"[k % 6]: each letter 4 times per
session. Under one actor and sentence the actor speaks 4 turns and the partner 2, so each gender
speaks 12 clips per session.
"""

from __future__ import annotations

from collections import Counter

import pytest
from corpus_trees import make_iemocap, make_msp_improv

from ser_mtl.data.corpora import build_manifest, read_msp_improv
from ser_mtl.data.manifest import CorpusError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("msp") / "MSP-IMPROV"
    return root, make_msp_improv(root)


def test_counts_per_emotion_gender_session_speaker(tree):
    root, expected = tree
    result = read_msp_improv(root)
    rows = result.rows
    assert result.skipped == []
    assert len(rows) == 48 == expected["rows"]
    assert Counter(r.emotion for r in rows) == {"angry": 8, "happy": 8, "sad": 8, "neutral": 8, "other": 8, "": 8}
    assert Counter(r.raw_emotion for r in rows) == {c: 8 for c in "AHSNOX"}
    assert Counter(r.gender for r in rows) == {"F": 24, "M": 24}
    assert Counter(r.session for r in rows) == {"1": 24, "2": 24}
    assert Counter(r.speaker for r in rows) == {"MSP_F01": 12, "MSP_M01": 12, "MSP_F02": 12, "MSP_M02": 12}
    assert {r.corpus for r in rows} == {"msp_improv"}


def test_every_row_matches_what_was_written(tree):
    root, expected = tree
    rows = {r.utt_id: r for r in read_msp_improv(root).rows}
    assert set(rows) == set(expected["utts"])
    for utt_id, want in expected["utts"].items():
        assert {k: getattr(rows[utt_id], k) for k in want} == want, utt_id


def test_speaker_is_the_turn_fields_first_letter_in_the_actors_session(tree):
    root, _ = tree
    rows = {r.utt_id: r for r in read_msp_improv(root).rows}
    partner = rows["MSP-IMPROV-S01A-F01-P-MF01"]  # filed under F01, the male partner speaks
    assert (partner.speaker, partner.gender, partner.session) == ("MSP_M01", "M", "1")
    actor = rows["MSP-IMPROV-S02H-M02-R-MF01"]
    assert (actor.speaker, actor.gender, actor.session) == ("MSP_M02", "M", "2")
    assert rows["MSP-IMPROV-S02H-M02-S-FM02"].speaker == "MSP_F02"
    # 2 partner turns per (sentence, actor): 2 x 2 x 2 sessions = 16 clips where they differ
    assert sum(r.utt_id.split("-")[3][0] != r.gender for r in rows.values()) == 16


def test_values_by_key_nan_empty_and_duration_from_header(tree):
    root, _ = tree
    rows = {r.utt_id: r for r in read_msp_improv(root).rows}
    first = rows["MSP-IMPROV-S01A-F01-P-FM01"]  # k=0: "A; A:1.000000; V:5.000000; D:2.000000"
    assert (first.raw_emotion, first.emotion) == ("A", "angry")
    assert (first.activation, first.valence, first.dominance) == (1.0, 5.0, 2.0)
    nan_d = rows["MSP-IMPROV-S01A-F01-S-FM01"]  # k=3: D:NaN
    assert (nan_d.activation, nan_d.valence, nan_d.dominance) == (2.5, 3.5, None)
    shuffled = rows["MSP-IMPROV-S01A-F01-T-FM01"]  # k=5: keys written V, D, A, N
    assert (shuffled.activation, shuffled.valence, shuffled.dominance) == (3.5, 2.5, 2.0)
    assert (shuffled.raw_emotion, shuffled.emotion) == ("X", "")
    # 44.1 kHz audio: 0.3 s = 13230 samples, 0.4 s = 17640
    assert first.duration == 0.3 and rows["MSP-IMPROV-S01A-F01-P-MF01"].duration == 0.4
    assert first.path == "Audio/session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav"


def test_macos_resource_forks_are_ignored(tree):
    root, _ = tree
    forks = list(root.rglob("._*"))
    assert len(forks) == 48 + 1  # one beside every clip, one beside Evaluation.txt
    rows = read_msp_improv(root).rows
    assert not any("._" in r.path for r in rows)


def test_merged_layout_and_misspelled_label_file(tmp_path):
    root = tmp_path / "MSP-IMPROV"
    make_msp_improv(root, layout="merged", label_name="Evalution.txt", sessions=(3,))
    assert not (root / "Audio").exists() and (root / "Evalution.txt").is_file()
    result = build_manifest("msp_improv", root)
    assert result.skipped == []
    assert len(result.rows) == 24
    assert Counter(r.speaker for r in result.rows) == {"MSP_F03": 12, "MSP_M03": 12}
    assert result.rows[0].path == "session3/S01A/P/MSP-IMPROV-S01A-F03-P-FM01.wav"


def test_bad_inputs_are_skipped_with_file_and_line(tmp_path):
    root = tmp_path / "MSP-IMPROV"
    expected = make_msp_improv(root, bad_files=True)
    result = read_msp_improv(root)
    # session 1 has 24 blocks of 4 lines (consensus, 2 raters, blank): the bad ones start at 97
    assert [(s.path, s.line) for s in result.skipped] == [("Evaluation.txt", n)
                                                          for n in (97, 101, 105, 109, 113, 117)]
    for skip, (_, _, fragment) in zip(result.skipped, expected["skips"]):
        assert fragment in skip.reason
    assert str(result.skipped[0]) == ("Evaluation.txt:97: audio file not found: "
                                      "Audio/session1/S03S/P/MSP-IMPROV-S03S-F01-P-FM01.wav")
    assert len(result.rows) == 48


def test_root_that_is_not_msp_improv_is_a_corpus_error(tmp_path):
    make_iemocap(tmp_path / "IEMOCAP_full_release", sessions=(1,), utts_per_dialog=1)
    with pytest.raises(CorpusError, match="neither Evaluation.txt nor Evalution.txt"):
        read_msp_improv(tmp_path / "IEMOCAP_full_release")
    (tmp_path / "labels_only").mkdir()
    (tmp_path / "labels_only" / "Evaluation.txt").write_text("")
    with pytest.raises(CorpusError, match="no audio folders"):
        read_msp_improv(tmp_path / "labels_only")
