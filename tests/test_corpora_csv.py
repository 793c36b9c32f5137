"""Generic CSV reader on a miniature corpus (tests/corpus_trees.make_csv_corpus)."""

from __future__ import annotations

from collections import Counter

import pytest
from corpus_trees import make_csv_corpus, write_tone

from ser_mtl.data.corpora import build_manifest, read_csv_corpus
from ser_mtl.data.manifest import CorpusError


def test_rows_from_the_csv_with_defaults_for_missing_columns(tmp_path):
    expected = make_csv_corpus(tmp_path)
    result = read_csv_corpus(tmp_path)
    assert result.skipped == []
    rows = result.rows
    assert [r.utt_id for r in rows] == [f"utt{i}" for i in range(6)]  # the path stems
    assert Counter(r.emotion for r in rows) == {"angry": 1, "happy": 1, "neutral": 1, "sad": 2, "": 1}
    assert Counter(r.speaker for r in rows) == {"spk1": 2, "spk2": 2, "spk3": 2}
    assert Counter(r.gender for r in rows) == {"F": 4, "M": 2}
    assert [r.valence for r in rows] == [2.0, 4.5, None, 1.5, None, None]  # "", "NaN" -> absent
    assert [r.duration for r in rows] == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7, 0.8], abs=1e-9)
    assert {(r.corpus, r.session, r.activation) for r in rows} == {("csv", "", None)}
    for row in rows:
        assert {k: getattr(row, k) for k in expected["utts"][row.utt_id]} == expected["utts"][row.utt_id]


def test_bad_lines_are_skipped_naming_the_line(tmp_path):
    expected = make_csv_corpus(tmp_path, bad_files=True)
    result = build_manifest("csv", tmp_path)
    assert [(s.path, s.line) for s in result.skipped] == [("manifest.csv", n) for n in (9, 10, 11, 12)]
    assert [r.emotion for r in result.rows if r.utt_id == "bored"] == ["bored"]  # any label is kept
    for skip, (_, _, fragment) in zip(result.skipped, expected["skips"]):
        assert fragment in skip.reason
    assert str(result.skipped[0]) == "manifest.csv:9: audio file not found: wav/spk4/missing.wav"
    assert len(result.rows) == 7


def test_csv_elsewhere_with_explicit_ids_and_corpus(tmp_path):
    root = tmp_path / "audio_root"
    write_tone(root / "a" / "x.wav", 0.5, 8000)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("utt_id,path,corpus,emotion,session\nmy_id,a\\x.wav,mine,Neutral,7\n")
    result = build_manifest("csv", root, csv=csv_file)
    assert result.skipped == []
    (row,) = result.rows
    assert (row.utt_id, row.path, row.corpus, row.emotion, row.session, row.duration) == (
        "my_id", "a/x.wav", "mine", "neutral", "7", 0.5)


def test_unusable_csv_is_a_corpus_error(tmp_path):
    with pytest.raises(CorpusError, match="manifest.csv: CSV not found"):
        read_csv_corpus(tmp_path)
    (tmp_path / "manifest.csv").write_text("path,emotions\nx.wav,sad\n")
    with pytest.raises(CorpusError, match=r"manifest.csv:1: .*\(unknown: emotions\)"):
        read_csv_corpus(tmp_path)
    (tmp_path / "manifest.csv").write_text("file,emotion\nx.wav,sad\n")
    with pytest.raises(CorpusError, match="expected a 'path' column"):
        read_csv_corpus(tmp_path)


def test_paths_must_stay_inside_the_root(tmp_path):
    write_tone(tmp_path / "outside.wav", 0.3)
    root = tmp_path / "root"
    root.mkdir()
    (root / "manifest.csv").write_text(f"path\n../outside.wav\n{tmp_path / 'outside.wav'}\n")
    result = read_csv_corpus(root)
    assert result.rows == []
    assert [(s.line, "must be relative to the root" in s.reason) for s in result.skipped] == [
        (2, True), (3, True)]


def test_age_column(tmp_path):
    for i in range(7):
        write_tone(tmp_path / f"a{i}.wav", 0.3)
    (tmp_path / "manifest.csv").write_text(
        "path,speaker,age\na0.wav,s1,51\na1.wav,s1, 21.5 \na2.wav,s2,\na3.wav,s2,NaN\n"
        "a4.wav,s3,abc\na5.wav,s3,150\na6.wav,s3,-2\n")
    result = read_csv_corpus(tmp_path)
    assert [(r.utt_id, r.age) for r in result.rows] == [("a0", 51.0), ("a1", 21.5), ("a2", None), ("a3", None)]
    assert [str(s) for s in result.skipped] == [
        "manifest.csv:6: age 'abc': expected a number or empty",
        "manifest.csv:7: age '150': expected years from 0 to below 150 or empty",
        "manifest.csv:8: age '-2': expected years from 0 to below 150 or empty"]


def test_rows_without_an_age_column_have_no_age(tmp_path):
    make_csv_corpus(tmp_path)
    assert {r.age for r in read_csv_corpus(tmp_path).rows} == {None}
