"""RAVDESS reader on a full-size name tree (tests/corpus_trees_extra.py): all 1,440 speech files of the
release (24 actors x 60: 8 emotions x 2 intensities, neutral normal only, x 2 statements x 2 repetitions),
with 0.05 s tones, plus 12 song files (actors 01, 02) and, in Actor_03/ and Actor_5/, misnamed files.
"""

from __future__ import annotations

from collections import Counter

import pytest
from corpus_trees_extra import make_ravdess

from ser_mtl.data.corpora.ravdess import READER, read_ravdess
from ser_mtl.data.manifest import CorpusError

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprised")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ravdess") / "RAVDESS"
    expected = make_ravdess(root, songs=True, bad_files=True)
    return root, expected, read_ravdess(root)


def test_the_1440_speech_files(tree):
    _, expected, result = tree
    rows = result.rows
    assert len(rows) == 1440 == expected["rows"]
    assert Counter(r.emotion for r in rows) == {"neutral": 96, **{e: 192 for e in EMOTIONS[1:]}}
    assert Counter(r.raw_emotion for r in rows) == {"01": 96, **{f"{k:02d}": 192 for k in range(2, 9)}}
    assert Counter(r.speaker for r in rows) == {f"Actor_{n:02d}": 60 for n in range(1, 25)}
    speakers = {r.speaker: r.gender for r in rows}
    assert sorted(s for s, g in speakers.items() if g == "F") == [f"Actor_{n:02d}" for n in range(2, 25, 2)]
    assert sorted(s for s, g in speakers.items() if g == "M") == [f"Actor_{n:02d}" for n in range(1, 25, 2)]
    assert Counter(r.gender for r in rows) == {"F": 720, "M": 720}
    assert {r.session for r in rows} == {""} and {r.corpus for r in rows} == {"ravdess"}
    assert all(r.utt_id.startswith("03-01-") for r in rows)


def test_every_row_matches_what_was_written(tree):
    _, expected, result = tree
    rows = {r.utt_id: r for r in result.rows}
    assert set(rows) == set(expected["utts"])
    for utt_id, want in expected["utts"].items():
        assert {k: getattr(rows[utt_id], k) for k in want} == want, utt_id
    row = rows["03-01-05-02-01-02-07"]
    assert (row.path, row.emotion, row.raw_emotion, row.speaker, row.gender, row.duration) == (
        "Actor_07/03-01-05-02-01-02-07.wav", "angry", "05", "Actor_07", "M", 0.05)
    assert not any(u.startswith("03-01-01-02-") for u in rows)  # no strong neutral in the release


def test_songs_and_misnamed_files_are_skips_with_reasons(tree):
    _, expected, result = tree
    assert [s.path for s in result.skipped] == [p for p, _, _ in expected["skips"]]
    for skip, (_, _, fragment) in zip(result.skipped, expected["skips"]):
        assert fragment in skip.reason, (skip, fragment)
    songs = [s for s in result.skipped if s.path.split("/")[1].startswith("03-02-")]
    assert len(songs) == 12
    assert {s.reason for s in songs} == {"song, not speech"}
    assert all(s.line is None for s in result.skipped)
    assert len(result.skipped) == 12 + 7
    # the .mp4 of the video archive and the `._` fork are not audio: neither a row nor a skip
    assert not any(s.path.endswith(".mp4") or "/._" in s.path for s in result.skipped)
    assert str(result.skipped[12]) == ("Actor_03/02-01-05-01-01-01-03.wav: modality 02 (video-only), "
                                       "not audio-only (03)")


def test_song_only_tree_gives_no_rows(tmp_path):
    root = tmp_path / "RAVDESS"
    for actor in (1, 2):
        path = root / f"Actor_{actor:02d}" / f"03-02-03-02-01-01-{actor:02d}.wav"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")  # never opened: the name already says song
    result = read_ravdess(root)
    assert result.rows == []
    assert [str(s) for s in result.skipped] == ["Actor_01/03-02-03-02-01-01-01.wav: song, not speech",
                                                "Actor_02/03-02-03-02-01-01-02.wav: song, not speech"]


def test_root_without_actor_folders_is_a_corpus_error(tmp_path):
    (tmp_path / "Audio_Speech_Actors_01-24").mkdir()
    with pytest.raises(CorpusError, match="no Actor_\\* folders; this is not the RAVDESS root"):
        read_ravdess(tmp_path)
    with pytest.raises(CorpusError, match="not a directory"):
        read_ravdess(tmp_path / "missing")


def test_reader_record():
    assert READER.name == "ravdess" and READER.read is read_ravdess and READER.default_subset is None
    assert READER.label_globs == ("Actor_*/*.wav",)
    assert READER.emotions == EMOTIONS
