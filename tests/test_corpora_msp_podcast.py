"""MSP-Podcast reader on a miniature release (tests/corpus_trees_extra.py).

Labels/labels_consensus.csv: header on line 1, then 20 good rows (lines 2-21): EmoClass "ASHUFDCNOX"[i % 10]
(each letter twice), Split_Set (Train, Development, Test1, Test2)[i % 4] (5 each), SpkrID 100 + i % 3 with
100 and 102 Female, 101 Male, except row 7 (SpkrID and Gender "Unknown"); EmoAct 1 + 0.25 i, EmoVal
7 - 0.25 i, EmoDom 4.5 (empty in row 5). Line 22: a Test3 row without labels. With bad rows, lines 23-29.
"""

from __future__ import annotations

from collections import Counter

import pytest
from corpus_trees_extra import MSP_PODCAST_COLUMNS, make_msp_podcast

from ser_mtl.data.corpora.msp_podcast import READER, read_msp_podcast
from ser_mtl.data.manifest import CorpusError, read_manifest, write_manifest

LABELS = "Labels/labels_consensus.csv"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("podcast") / "MSP-Podcast"
    expected = make_msp_podcast(root, bad_rows=True)
    return root, expected, read_msp_podcast(root)


def test_counts_per_emotion_session_speaker_gender(tree):
    _, expected, result = tree
    rows = result.rows
    assert len(rows) == 21 == expected["rows"]
    assert Counter(r.emotion for r in rows) == {"angry": 2, "sad": 2, "happy": 2, "surprised": 2, "fear": 2,
                                                "disgust": 2, "contempt": 2, "neutral": 2, "other": 2, "": 3}
    assert Counter(r.raw_emotion for r in rows) == {**{c: 2 for c in "ASHUFDCNOX"}, "": 1}
    assert Counter(r.session for r in rows) == {"Train": 5, "Development": 5, "Test1": 5, "Test2": 5,
                                                "Test3": 1}
    assert Counter(r.speaker for r in rows) == {"100": 7, "101": 6, "102": 6, "": 2}
    assert Counter(r.gender for r in rows) == {"F": 13, "M": 6, "": 2}
    assert {r.corpus for r in rows} == {"msp_podcast"}


def test_every_row_matches_what_was_written(tree):
    _, expected, result = tree
    rows = {r.utt_id: r for r in result.rows}
    assert set(rows) == set(expected["utts"])
    for utt_id, want in expected["utts"].items():
        assert {k: getattr(rows[utt_id], k) for k in want} == want, utt_id


def test_values_unknown_speaker_empty_cells(tree):
    _, _, result = tree
    rows = {r.utt_id: r for r in result.rows}
    first = rows["MSP-PODCAST_0001_0001"]
    assert (first.path, first.emotion, first.raw_emotion, first.speaker, first.gender, first.session) == (
        "Audios/MSP-PODCAST_0001_0001.wav", "angry", "A", "100", "F", "Train")
    assert (first.activation, first.valence, first.dominance, first.duration) == (1.0, 7.0, 4.5, 0.2)
    no_dom = rows["MSP-PODCAST_0002_0001"]  # row 5: D, EmoDom empty
    assert (no_dom.raw_emotion, no_dom.emotion) == ("D", "disgust")
    assert (no_dom.activation, no_dom.valence, no_dom.dominance) == (2.25, 5.75, None)
    unknown = rows["MSP-PODCAST_0002_0003"]  # row 7: N, SpkrID Unknown, Gender Unknown
    assert (unknown.speaker, unknown.gender, unknown.emotion, unknown.session) == ("", "", "neutral", "Test2")
    no_agreement = rows["MSP-PODCAST_0002_0005"]  # row 9: X
    assert (no_agreement.emotion, no_agreement.raw_emotion, no_agreement.activation) == ("", "X", 3.25)
    assert rows["MSP-PODCAST_0003_0004"].emotion == "surprised"  # U
    assert rows["MSP-PODCAST_0002_0004"].emotion == "other"  # O
    test3 = rows["MSP-PODCAST_0100_0001"]
    assert (test3.emotion, test3.raw_emotion, test3.session, test3.speaker) == ("", "", "Test3", "")
    assert (test3.activation, test3.valence, test3.dominance) == (None, None, None)


def test_bad_rows_are_skips_with_file_and_line(tree):
    _, expected, result = tree
    assert [(s.path, s.line) for s in result.skipped] == [(LABELS, n) for n in range(23, 30)]
    for skip, (_, _, fragment) in zip(result.skipped, expected["skips"]):
        assert fragment in skip.reason, (skip, fragment)
    assert str(result.skipped[0]) == (f"{LABELS}:23: expected 8 fields ({','.join(MSP_PODCAST_COLUMNS)}), "
                                      "got 7")
    assert str(result.skipped[4]) == f"{LABELS}:27: audio file not found: Audios/MSP-PODCAST_0200_0005.wav"
    assert str(result.skipped[6]) == (f"{LABELS}:29: duplicate utterance id MSP-PODCAST_0001_0001 "
                                      f"(first at {LABELS}:2)")


def test_columns_are_read_by_header_name(tmp_path, tree):
    _, _, reference = tree
    root = tmp_path / "MSP-Podcast"
    columns = ("Split_Set", "EmoDom", "FileName", "Gender", "EmoClass", "EmoClass_Secondary", "SpkrID",
               "EmoVal", "EmoAct")
    make_msp_podcast(root, columns=columns)
    assert (root / LABELS).read_text().splitlines()[0] == ",".join(columns)
    result = read_msp_podcast(root)
    assert result.skipped == []
    assert result.rows == reference.rows


def test_older_releases_spelling_of_the_label_file(tmp_path):
    root = tmp_path / "MSP-PODCAST-Publish-1.8"
    make_msp_podcast(root, label_name="labels_concensus.csv")
    result = read_msp_podcast(root)
    assert len(result.rows) == 21 and result.skipped == []


def test_missing_parts_are_corpus_errors(tmp_path):
    root = tmp_path / "MSP-Podcast"
    make_msp_podcast(root, columns=MSP_PODCAST_COLUMNS[:-1])
    with pytest.raises(CorpusError, match="missing the column\\(s\\) Split_Set"):
        read_msp_podcast(root)
    (root / LABELS).unlink()
    with pytest.raises(CorpusError, match="no Labels/labels_consensus.csv"):
        read_msp_podcast(root)
    other = tmp_path / "labels_only"
    (other / "Labels").mkdir(parents=True)
    (other / LABELS).write_text(",".join(MSP_PODCAST_COLUMNS) + "\n")
    with pytest.raises(CorpusError, match="no Audios/ folder"):
        read_msp_podcast(other)


def test_rows_survive_a_manifest_round_trip(tree, tmp_path):
    _, _, result = tree
    write_manifest(result.rows, tmp_path / "manifest.csv")
    assert read_manifest(tmp_path / "manifest.csv") == result.rows


def test_reader_record():
    assert READER.name == "msp_podcast" and READER.read is read_msp_podcast and READER.default_subset is None
    assert READER.label_globs == (LABELS, "Labels/labels_concensus.csv")
    assert READER.emotions == ("angry", "sad", "happy", "surprised", "fear", "disgust", "contempt", "neutral",
                               "other")
