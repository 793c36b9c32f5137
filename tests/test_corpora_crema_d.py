"""CREMA-D reader on miniature trees in the release's naming (tests/corpus_trees_extra.py).

The default miniature: actors 1001 (Male, 51), 1002 and 1003 (Female, 21) x 82 clips each: 12 sentences x 6
emotions at level XX, except IEO whose five non-neutral emotions come at LO, MD and HI. So per actor
14 clips of each emotion and 12 neutral: 246 clips, 42 per emotion, 36 neutral.
"""

from __future__ import annotations

import glob
from collections import Counter

import pytest
from corpus_trees_extra import CREMA_ACTORS, make_crema_d

from ser_mtl.data.corpora.crema_d import READER, read_crema_d
from ser_mtl.data.manifest import CorpusError, read_manifest, write_manifest


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("crema") / "CREMA-D"
    return root, make_crema_d(root)


def test_counts_per_emotion_gender_speaker(tree):
    root, expected = tree
    result = read_crema_d(root)
    rows = result.rows
    assert result.skipped == []  # the `._` fork and AudioWAV/readme.txt are not clips
    assert len(rows) == 246 == expected["rows"]
    assert Counter(r.emotion for r in rows) == {"angry": 42, "disgust": 42, "fear": 42, "happy": 42,
                                                "sad": 42, "neutral": 36}
    assert Counter(r.raw_emotion for r in rows) == {"ANG": 42, "DIS": 42, "FEA": 42, "HAP": 42,
                                                    "SAD": 42, "NEU": 36}
    assert Counter(r.speaker for r in rows) == {"1001": 82, "1002": 82, "1003": 82}
    assert Counter((r.speaker, r.gender) for r in rows) == {("1001", "M"): 82, ("1002", "F"): 82,
                                                            ("1003", "F"): 82}
    assert {r.session for r in rows} == {""} and {r.corpus for r in rows} == {"crema_d"}
    assert all(r.valence is r.activation is r.dominance is None for r in rows)


def test_ages_come_from_the_demographics_table(tree, tmp_path):
    root, _ = tree
    rows = read_crema_d(root).rows
    assert Counter((r.speaker, r.age) for r in rows) == {("1001", 51.0): 82, ("1002", 21.0): 82,
                                                         ("1003", 21.0): 82}
    assert all(r.age == float(CREMA_ACTORS[r.speaker][0]) and isinstance(r.age, float) for r in rows)
    write_manifest(rows, tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv") == rows


def test_bad_ages_are_skips_and_the_actors_keep_their_clips(tmp_path):
    root = tmp_path / "CREMA-D"
    expected = make_crema_d(root, actors=("1001", "1002", "1003", "1004"), bad_ages=True)
    result = read_crema_d(root)
    assert [(s.path, s.line) for s in result.skipped] == [(p, line) for p, line, _ in expected["skips"]] == [
        ("VideoDemographics.csv", 3), ("VideoDemographics.csv", 4), ("VideoDemographics.csv", 5)]
    for skip, (_, _, fragment) in zip(result.skipped, expected["skips"]):
        assert fragment in skip.reason, (skip, fragment)
    assert str(result.skipped[0]) == ("VideoDemographics.csv:3: Age 'abc': expected years from 0 to below 150 "
                                      "(actor 1002 kept with age unknown)")
    assert len(result.rows) == 4 * 82 == expected["rows"]
    assert Counter((r.speaker, r.gender, r.age) for r in result.rows) == {
        ("1001", "M", 51.0): 82, ("1002", "F", None): 82, ("1003", "F", None): 82, ("1004", "F", None): 82}
    rows = {r.utt_id: r for r in result.rows}
    for utt_id, want in expected["utts"].items():
        assert {k: getattr(rows[utt_id], k) for k in want} == want, utt_id


@pytest.mark.parametrize("age, kept", [("30", 30.0), (" 30.5 ", 30.5), ("0", 0.0), ("149.9", 149.9),
                                       ("-1", None), ("150", None), ("nan", None), ("inf", None),
                                       ("thirty", None), ("", None)])
def test_age_cells(tmp_path, age, kept):
    root = tmp_path / "CREMA-D"
    make_crema_d(root, actors=("1001",))
    (root / "VideoDemographics.csv").write_text(
        f'"ActorID","Age","Sex","Race","Ethnicity"\n1001,{age},Male,Caucasian,Not Hispanic\n')
    result = read_crema_d(root)
    assert {(r.gender, r.age) for r in result.rows} == {("M", kept)} and len(result.rows) == 82
    if kept is None:
        assert [(s.path, s.line) for s in result.skipped] == [("VideoDemographics.csv", 2)]
        assert result.skipped[0].reason.startswith(f"Age {age.strip()!r}: expected years")
    else:
        assert result.skipped == []


def test_demographics_without_an_age_column_give_no_ages(tmp_path):
    root = tmp_path / "CREMA-D"
    make_crema_d(root, actors=("1001", "1002"))
    (root / "VideoDemographics.csv").write_text('"ActorID","Sex"\n1001,Male\n1002,Female\n')
    result = read_crema_d(root)
    assert result.skipped == []
    assert Counter((r.speaker, r.gender, r.age) for r in result.rows) == {("1001", "M", None): 82,
                                                                           ("1002", "F", None): 82}


def test_every_row_matches_what_was_written(tree):
    root, expected = tree
    rows = {r.utt_id: r for r in read_crema_d(root).rows}
    assert set(rows) == set(expected["utts"])
    for utt_id, want in expected["utts"].items():
        assert {k: getattr(rows[utt_id], k) for k in want} == want, utt_id


def test_levels_and_paths(tree):
    root, _ = tree
    rows = {r.utt_id: r for r in read_crema_d(root).rows}
    assert sorted(u for u in rows if u.startswith("1002_IEO_ANG_")) == [
        "1002_IEO_ANG_HI", "1002_IEO_ANG_LO", "1002_IEO_ANG_MD"]
    assert sum(u.split("_")[1] == "IEO" for u in rows) == 3 * 16
    assert Counter(u.rsplit("_", 1)[1] for u in rows) == {"XX": 3 * 67, "LO": 15, "MD": 15, "HI": 15}
    row = rows["1003_DFA_NEU_XX"]
    assert (row.path, row.emotion, row.raw_emotion, row.gender) == ("AudioWAV/1003_DFA_NEU_XX.wav",
                                                                    "neutral", "NEU", "F")
    assert row.duration == 0.05  # 800 samples at 16 kHz, from the header


def test_bad_inputs_are_skips_naming_the_file(tmp_path):
    root = tmp_path / "CREMA-D"
    expected = make_crema_d(root, bad_files=True)
    result = read_crema_d(root)
    assert [(s.path, s.line) for s in result.skipped] == [(p, line) for p, line, _ in expected["skips"]]
    assert [s.path for s in result.skipped] == [
        "VideoDemographics.csv", "AudioWAV/1004_ABC_ANG_XX.wav", "AudioWAV/1004_DFA_ANG.wav",
        "AudioWAV/1004_DFA_ANG_XX.wav", "AudioWAV/1004_DFA_HAP_XX.wav", "AudioWAV/1004_IEO_ANG_ZZ.wav",
        "AudioWAV/1004_IEO_XYZ_HI.wav", "AudioWAV/1005_DFA_NEU_XX.wav", "AudioWAV/1099_DFA_ANG_XX.wav"]
    for skip, (_, _, fragment) in zip(result.skipped, expected["skips"]):
        assert fragment in skip.reason, (skip, fragment)
    assert result.skipped[0].line == 6
    assert str(result.skipped[3]) == "AudioWAV/1004_DFA_ANG_XX.wav: empty audio (0 samples)"
    assert str(result.skipped[-1]) == ("AudioWAV/1099_DFA_ANG_XX.wav: actor 1099 has no usable row in "
                                       "VideoDemographics.csv")
    # 246 + 1004_DFA_SAD_XX + the release's misnamed-level quirk 1004_ITH_SAD_X (level X read as XX)
    assert len(result.rows) == 248 == expected["rows"]
    rows = {r.utt_id: r for r in result.rows}
    assert (rows["1004_ITH_SAD_X"].emotion, rows["1004_ITH_SAD_X"].gender, rows["1004_ITH_SAD_X"].age) == (
        "sad", "F", 42.0)
    assert Counter(r.emotion for r in result.rows)["sad"] == 44


def test_demographics_columns_are_read_by_header_name(tmp_path):
    root = tmp_path / "CREMA-D"
    make_crema_d(root, actors=("1001", "1002"))
    (root / "VideoDemographics.csv").write_text(
        '\ufeff"Sex","ActorID","Age","Race","Ethnicity"\r\n"Female","1001","51","Caucasian","Not Hispanic"\r\n'
        '"Male","1002","21","Asian","Not Hispanic"\r\n\r\n', encoding="utf-8")
    result = read_crema_d(root)
    assert result.skipped == []
    assert Counter((r.speaker, r.gender, r.age) for r in result.rows) == {("1001", "F", 51.0): 82,
                                                                           ("1002", "M", 21.0): 82}


def test_missing_parts_are_corpus_errors(tmp_path):
    root = tmp_path / "CREMA-D"
    make_crema_d(root, actors=("1001",))
    (root / "VideoDemographics.csv").write_text('"ActorID","Age","Gender"\n1001,51,Male\n')
    with pytest.raises(CorpusError, match="expected the columns"):
        read_crema_d(root)
    (root / "VideoDemographics.csv").unlink()
    with pytest.raises(CorpusError, match="no VideoDemographics.csv; this is not the CREMA-D root"):
        read_crema_d(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no AudioWAV/ and VideoDemographics.csv"):
        read_crema_d(tmp_path / "empty")
    with pytest.raises(CorpusError, match="not a directory"):
        read_crema_d(tmp_path / "missing")


def test_reader_record(tree):
    root, _ = tree
    assert READER.name == "crema_d" and READER.read is read_crema_d and READER.default_subset is None
    assert READER.label_globs == ("VideoDemographics.csv", "AudioWAV/*.wav")
    assert READER.emotions == ("angry", "disgust", "fear", "happy", "neutral", "sad")
    assert {r.emotion for r in read_crema_d(root).rows} == set(READER.emotions)
    assert len(glob.glob(str(root / READER.label_globs[1]))) == 246  # glob skips the `._` fork
