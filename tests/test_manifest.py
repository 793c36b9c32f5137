"""The manifest CSV (write/read/summarize) and the `manifest` command on miniature corpora."""

from __future__ import annotations

import os

import jsonargparse
import pytest
from corpus_trees import make_csv_corpus, make_iemocap, make_librispeech

from ser_mtl.data.corpora import read_iemocap
from ser_mtl.data.manifest import (
    COLUMNS,
    EMOTIONS,
    CorpusError,
    ManifestRow,
    Skip,
    read_manifest,
    summarize,
    write_manifest,
)
from ser_mtl.data_commands import manifest

OLD_HEADER = "utt_id,corpus,path,duration,speaker,gender,session,emotion,raw_emotion,valence,activation,dominance"
HEADER = OLD_HEADER + ",age"  # manifests gained the age column last; OLD_HEADER files still read


def row(utt_id="u1", corpus="iemocap", path="a/u1.wav", duration=1.5, speaker="s1", gender="F",
        session="1", emotion="angry", raw_emotion="ang", valence=2.5, activation=None,
        dominance=None, age=None) -> ManifestRow:
    return ManifestRow(utt_id, corpus, path, duration, speaker, gender, session, emotion, raw_emotion,
                       valence, activation, dominance, age)


def test_schema_constants():
    assert ",".join(COLUMNS) == HEADER and COLUMNS[-1] == "age"
    assert ManifestRow("u", "c", "p.wav", 1.0, "s", "F", "", "", "", None, None, None).age is None
    assert EMOTIONS == ("angry", "happy", "neutral", "sad")
    assert str(Skip("x/y.txt", 7, "bad line")) == "x/y.txt:7: bad line"
    assert str(Skip("x/y.flac", None, "empty audio")) == "x/y.flac: empty audio"


def test_round_trip_is_exact_and_atomic(tmp_path):
    rows = [
        row(),
        row("u,2", "msp_improv", 'dir, with "quotes"/ü.wav', 0.1 + 0.2, "Zoë", "M", "6", "", "X",
            1e-7, 4.999999, None),
        row("u3", "librispeech", "test-clean/61/100/61-100-0000.flac", 12.345, "libri_61", "",
            "test-clean", "", "", None, None, None),
    ]
    out = tmp_path / "sub" / "m.csv"
    write_manifest(rows, out)
    assert out.read_text(encoding="utf-8").splitlines()[0] == HEADER
    assert out.read_text(encoding="utf-8").splitlines()[3] == (
        "u3,librispeech,test-clean/61/100/61-100-0000.flac,12.345,libri_61,,test-clean,,,,,,")
    back = read_manifest(out)
    assert back == rows
    assert back[1].duration == 0.30000000000000004
    write_manifest(rows[:1], out)  # overwrite in place
    assert read_manifest(out) == rows[:1]
    assert [p.name for p in out.parent.iterdir()] == ["m.csv"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # readable as any file written by open()


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "m.csv"
    write_manifest([row()], out)
    before = out.read_bytes()
    with pytest.raises(TypeError):
        write_manifest([row("u9"), "not a row"], out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]


@pytest.mark.parametrize("body, match", [
    ("utt_id,path\n", r"m.csv:1: expected the header"),
    (f"{HEADER},gender\n", r"m.csv:1: expected the header"),
    (f"{OLD_HEADER.replace(',dominance', '')},age\n", r"m.csv:1: expected the header"),
    (f"{HEADER}\nu1,iemocap,a.wav,1.0,s,F,1,angry,ang,1,2,\n", r"m.csv:2: expected 13 fields"),
    (f"{OLD_HEADER}\nu1,iemocap,a.wav,1.0,s,F,1,angry,ang,1,2,,\n", r"m.csv:2: expected 12 fields"),
    (f"{HEADER}\nu1,iemocap,a.wav,1.0,s,F,1,angry,ang,,,,\nu2,iemocap,b.wav,abc,s,F,1,,,,,,\n",
     r"m.csv:3: column 'duration': expected a number, got 'abc'"),
    (f"{HEADER}\nu1,iemocap,a.wav,1.0,s,F,1,Bored ,,,,,\n", r"m.csv:2: column 'emotion'"),
    (f"{HEADER}\nu1,iemocap,a.wav,1.0,s,X,1,,,,,,\n", r"m.csv:2: column 'gender'"),
    (f"{HEADER}\nu1,iemocap,a.wav,1.0,s,F,1,,,high,,,\n", r"m.csv:2: column 'valence'"),
    (f"{HEADER}\nu1,iemocap,a.wav,1.0,s,F,1,,,,,,\nu1,iemocap,b.wav,1.0,s,F,1,,,,,,\n",
     r"m.csv:3: duplicate utt_id 'u1' \(first on line 2\)"),
    ("", r"m.csv:1: expected the header .* got an empty file"),
])
def test_read_rejects_bad_files_naming_file_and_line(tmp_path, body, match):
    (tmp_path / "m.csv").write_text(body)
    with pytest.raises(CorpusError, match=match):
        read_manifest(tmp_path / "m.csv")


def test_round_trip_with_ages(tmp_path):
    rows = [row("u1", age=51.0), row("u2", age=0.0), row("u3", age=149.5), row("u4", age=None),
            row("u5", age=1 / 3)]
    write_manifest(rows, tmp_path / "m.csv")
    lines = (tmp_path / "m.csv").read_text(encoding="utf-8").splitlines()
    assert [line.rsplit(",", 1)[1] for line in lines] == ["age", "51.0", "0.0", "149.5", "", repr(1 / 3)]
    back = read_manifest(tmp_path / "m.csv")
    assert back == rows and [r.age for r in back] == [51.0, 0.0, 149.5, None, 1 / 3]


def test_manifest_from_before_the_age_column_reads_with_age_none(tmp_path):
    (tmp_path / "old.csv").write_text(f"{OLD_HEADER}\nu1,iemocap,a/u1.wav,1.5,s1,F,1,angry,ang,2.5,,\n"
                                      "u2,crema_d,b.wav,2.0,1001,M,,sad,SAD,,,\n")
    back = read_manifest(tmp_path / "old.csv")
    assert back == [row(), row("u2", "crema_d", "b.wav", 2.0, "1001", "M", "", "sad", "SAD", None)]
    assert [r.age for r in back] == [None, None]
    write_manifest(back, tmp_path / "new.csv")  # always written with the new header
    assert (tmp_path / "new.csv").read_text(encoding="utf-8").splitlines()[0] == HEADER
    assert read_manifest(tmp_path / "new.csv") == back


@pytest.mark.parametrize("age, match", [
    ("abc", r"expected a number, got 'abc'"), ("nan", r"expected a finite number, got 'nan'"),
    ("inf", r"expected a finite number"), ("-1", r"expected years .*, got '-1'"),
    ("150", r"expected years .*, got '150'"), ("1e3", r"expected years .*, got '1e3'"),
])
def test_bad_age_is_a_corpus_error_naming_the_line(tmp_path, age, match):
    (tmp_path / "m.csv").write_text(f"{HEADER}\nu1,crema_d,a.wav,1.0,1001,M,,sad,SAD,,,,51\n"
                                    f"u2,crema_d,b.wav,1.0,1001,M,,sad,SAD,,,,{age}\n")
    with pytest.raises(CorpusError, match=rf"m.csv:3: column 'age': {match}"):
        read_manifest(tmp_path / "m.csv")


def test_summarize_counts():
    rows = [
        row("a", duration=1800.0, speaker="A", gender="F", session="1", emotion="angry"),
        row("b", duration=1800.0, speaker="B", gender="M", session="2", emotion="happy"),
        row("c", duration=3600.0, speaker="A", gender="F", session="10", emotion=""),
        row("d", corpus="librispeech", duration=3600.0, speaker="libri_1", gender="",
            session="test-clean", emotion=""),
    ]
    assert summarize(rows).splitlines() == [
        "4 utterances, 3.00 h, 3 speakers",
        "  corpus   iemocap 3, librispeech 1",
        "  emotion  angry 1, happy 1, (none) 2",
        "  gender   F 2, M 1, (unknown) 1",
        "  session  1 1, 2 1, 10 1, test-clean 1",
        "  speakers 3",
    ]
    with_ages = rows[:2] + [row("e", speaker="C", age=30.0), row("f", speaker="C", age=45.0)]
    assert summarize(with_ages).splitlines()[-2:] == ["  speakers 3", "  age      2 known, mean 37.5"]


def test_command_writes_manifest_and_prints_summary_and_skips(tmp_path, capsys):
    root = tmp_path / "IEMOCAP_full_release"
    make_iemocap(root, bad_files=True)
    out = tmp_path / "manifests" / "iemocap.csv"
    manifest("iemocap", str(root), str(out))
    printed = capsys.readouterr().out.splitlines()
    label = "Session1/dialog/EmoEvaluation/Ses01F_impro02.txt"
    assert printed[0] == f"skipped 5 (paths relative to {root}):"
    assert [line.split(": ")[0] for line in printed[1:6]] == [f"  {label}:{n}" for n in (7, 11, 15, 19, 23)]
    assert printed[1] == (f"  {label}:7: audio file not found: "
                          "Session1/sentences/wav/Ses01F_impro02/Ses01F_impro02_M000.wav")
    assert printed[6] == f"wrote 38 rows to {out}"  # frustrated and excited rows are kept with their labels
    assert printed[7:] == [
        "38 utterances, 0.00 h, 4 speakers",
        "  corpus   iemocap 38",
        "  emotion  angry 7, happy 6, neutral 6, sad 7, excited 6, frustrated 6",
        "  gender   F 19, M 19",
        "  session  1 20, 2 18",
        "  speakers 4",
    ]
    assert read_manifest(out) == read_iemocap(root).rows


def test_command_through_jsonargparse_with_subset(tmp_path, capsys):
    make_librispeech(tmp_path / "LibriSpeech", subsets=("test-clean",))
    out = tmp_path / "libri.csv"
    jsonargparse.CLI(manifest, args=["librispeech", str(tmp_path / "LibriSpeech"), str(out),
                                     "--subset", "test-clean"])
    assert "speakers 2" in capsys.readouterr().out
    rows = read_manifest(out)
    assert len(rows) == 8 and {r.session for r in rows} == {"test-clean"}
    with pytest.raises(SystemExit):
        jsonargparse.CLI(manifest, args=["--help"])
    help_text = capsys.readouterr().out
    for doc in ("Which reader to use", "The corpus root folder", "Where to write the manifest",
                "LibriSpeech only", "csv corpus only"):
        assert doc in help_text


def test_command_refuses_a_root_that_is_not_the_corpus(tmp_path):
    make_iemocap(tmp_path / "IEMOCAP_full_release", sessions=(1,), utts_per_dialog=1)
    out = tmp_path / "m.csv"
    with pytest.raises(CorpusError, match="neither Evaluation.txt nor Evalution.txt"):
        manifest("msp_improv", str(tmp_path / "IEMOCAP_full_release"), str(out))
    assert not out.exists()


def test_command_with_no_usable_rows_writes_nothing(tmp_path, capsys):
    make_csv_corpus(tmp_path)
    (tmp_path / "bad.csv").write_text("path,emotion\nwav/spk1/no_such.wav,bored\n")
    out = tmp_path / "m.csv"
    with pytest.raises(CorpusError, match="no usable csv utterances"):
        manifest("csv", str(tmp_path), str(out), csv=str(tmp_path / "bad.csv"))
    assert "bad.csv:2: audio file not found" in capsys.readouterr().out
    assert not out.exists()


def test_any_lower_case_emotion_label_round_trips(tmp_path):
    """The manifest keeps each corpus's own label (the class set is the label scheme's choice)."""
    rows = [ManifestRow(f"u{i}", "crema_d", f"{i}.wav", 1.0, "1001", "F", "", label, label[:3].upper(), None, None,
                        None) for i, label in enumerate(["disgust", "fear", "calm", "surprised", "contempt"])]
    write_manifest(rows, tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv") == rows
