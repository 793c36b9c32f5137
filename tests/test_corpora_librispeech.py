"""LibriSpeech reader on a miniature tree in the release's layout (tests/corpus_trees.py).

The default miniature: every speaker of corpus_trees.LIBRI_SPEAKERS in train-clean-360 (14 F,
16 F, 17 M), train-clean-100 (19 F, 60 M `|CBW|Simon`) and test-clean (61 M, 121 F) has
2 chapters x 2 utterances = 4 FLAC files.
"""

from __future__ import annotations

from collections import Counter

import pytest
from corpus_trees import LIBRI_SPEAKERS, make_librispeech

from ser_mtl.data.corpora import build_manifest, read_librispeech
from ser_mtl.data.manifest import CorpusError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("libri") / "LibriSpeech"
    return root, make_librispeech(root)


def test_default_subset_is_train_clean_360(tree):
    root, expected = tree
    result = read_librispeech(root)
    rows = result.rows
    assert result.skipped == []
    assert len(rows) == 12 == expected["train-clean-360"]["rows"]
    assert Counter(r.speaker for r in rows) == {"libri_14": 4, "libri_16": 4, "libri_17": 4}
    assert Counter(r.gender for r in rows) == {"F": 8, "M": 4}
    assert {r.session for r in rows} == {"train-clean-360"}
    assert {r.corpus for r in rows} == {"librispeech"}
    assert {(r.emotion, r.raw_emotion, r.valence, r.activation, r.dominance) for r in rows} == {
        ("", "", None, None, None)}
    first = rows[0]
    assert (first.utt_id, first.path) == ("14-100-0000", "train-clean-360/14/100/14-100-0000.flac")
    assert [r.duration for r in rows[:2]] == [0.3, 0.4]


@pytest.mark.parametrize("subset", ["train-clean-360", "train-clean-100", "test-clean"])
def test_rows_match_what_was_written(tree, subset):
    root, expected = tree
    rows = {r.utt_id: r for r in build_manifest("librispeech", root, subset=subset).rows}
    assert set(rows) == set(expected[subset]["utts"])
    for utt_id, want in expected[subset]["utts"].items():
        assert {k: getattr(rows[utt_id], k) for k in want} == want, utt_id


def test_genders_equal_speakers_txt_for_every_speaker_including_a_name_with_bars(tree):
    root, _ = tree
    assert "|CBW|Simon" in (root / "SPEAKERS.TXT").read_text()
    seen = {}
    for subset in ("train-clean-360", "train-clean-100", "test-clean"):
        for row in read_librispeech(root, subset).rows:
            seen[row.speaker] = row.gender
    assert seen == {f"libri_{sid}": sex for sid, (sex, sub, _, _) in LIBRI_SPEAKERS.items()
                    if sub != "train-other-500"}
    assert seen["libri_60"] == "M"
    assert len(seen) == 7


def test_bad_inputs_are_skipped_and_unknown_speaker_keeps_unknown_gender(tmp_path):
    root = tmp_path / "LibriSpeech"
    expected = make_librispeech(root, subsets=("train-clean-360",), bad_files=True)["train-clean-360"]
    with (root / "SPEAKERS.TXT").open("a") as f:
        f.write("42 | X | train-clean-360 | 1.00 | Nobody\n")  # line 3 + 8 + 1 = 12
    result = read_librispeech(root)
    folder = "train-clean-360/14/100"
    assert [(s.path, s.line) for s in result.skipped] == [
        ("SPEAKERS.TXT", 12), (f"{folder}/14-100-0901.flac", None), (f"{folder}/14-100-0902.flac", None),
        (f"{folder}/14-100.trans.txt", 3), (f"{folder}/14-100.trans.txt", 6)]
    for skip, (_, _, fragment) in zip(result.skipped[1:], expected["skips"]):
        assert fragment in skip.reason
    assert str(result.skipped[1]) == f"{folder}/14-100-0901.flac: empty audio file (0 bytes)"
    assert str(result.skipped[3]) == f"{folder}/14-100.trans.txt:3: audio file not found: {folder}/14-100-0900.flac"
    # 12 good + speaker 999 (not in SPEAKERS.TXT): kept, gender unknown
    assert len(result.rows) == 13
    assert Counter(r.gender for r in result.rows) == {"F": 8, "M": 4, "": 1}
    assert [r.speaker for r in result.rows if r.gender == ""] == ["libri_999"]


def test_root_that_is_not_librispeech_is_a_corpus_error(tmp_path, tree):
    root, _ = tree
    with pytest.raises(CorpusError, match="no SPEAKERS.TXT"):
        read_librispeech(tmp_path)
    with pytest.raises(CorpusError, match=r"subsets here: test-clean, train-clean-100, train-clean-360"):
        read_librispeech(root, "dev-clean")
    with pytest.raises(CorpusError, match=r"subset='test-clean' only applies to a corpus with subsets \(librispeech\)"):
        build_manifest("iemocap", root, subset="test-clean")
