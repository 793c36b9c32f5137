"""Feature store: build once, resume after a kill, lock against concurrent builders, skip bad audio."""

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_mtl.data import store as store_mod
from ser_mtl.data.audio import load_audio
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.data.manifest import ManifestRow, write_manifest
from ser_mtl.data.store import FeatureStore, StoreNotBuiltError, running_stats

REPO = Path(__file__).resolve().parents[1]
SR = 16000
N_UTTS = 10


def make_corpus(root: Path, n: int = N_UTTS) -> list[ManifestRow]:
    """n WAVs of 0.3-1.2 s (tone + noise, with a silent gap in some) and their manifest rows."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        seconds = 0.3 + 0.1 * i
        t = np.arange(int(seconds * SR)) / SR
        x = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.02 * rng.standard_normal(len(t))
        if i % 3 == 0:
            x[len(x) // 3: len(x) // 2] = 0.0  # a pause for the silence trimmer
        rel = f"spk{i % 2}/utt{i:02d}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, x.astype(np.float32), SR, subtype="PCM_16")
        rows.append(ManifestRow(f"utt{i:02d}", "synth", rel, seconds, f"spk{i % 2}", "FM"[i % 2], "1",
                                "neutral", "neu", None, None, None))
    return rows


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    return root, make_corpus(root)


def expected_frames(root: Path, row: ManifestRow, cfg: LogSpectrogram) -> np.ndarray:
    wave = load_audio(root / row.path)
    return cfg.features(cfg.speech_only(wave)).numpy().astype(np.float16)


def count_calls(monkeypatch, fail_at: int | None = None) -> list[int]:
    """Wrap the per-utterance audio read of a build: count calls, optionally raise on call number `fail_at`."""
    calls = [0]
    real = store_mod.load_audio

    def wrapped(path, sample_rate):
        calls[0] += 1
        if calls[0] == fail_at:
            raise RuntimeError("simulated crash")
        return real(path, sample_rate)

    monkeypatch.setattr(store_mod, "load_audio", wrapped)
    return calls


def all_frames(st: FeatureStore) -> list[np.ndarray]:
    return [np.array(st.frames(i)) for i in range(len(st))]


def test_build_stores_every_utterance_as_float16_memmap(corpus, tmp_path):
    root, rows = corpus
    cfg = LogSpectrogram()
    st = FeatureStore(rows, str(root), cfg, str(tmp_path / "cache"), chunk_size=3).build(progress=False)
    assert st.is_complete() and len(st) == N_UTTS and st.skipped == []
    assert st.path.parent == tmp_path / "cache" and len(st.path.name) == 16
    assert sorted(p.name for p in st.path.iterdir()) == ["COMPLETE.json", "build.lock", "features.f16",
                                                         "index.npz"]  # parts cleaned up
    for i, row in enumerate(rows):
        want = expected_frames(root, row, cfg)
        got = st.frames(i)
        assert got.shape == (128, st.lengths[i]) and got.dtype == np.float16
        assert isinstance(got.base, np.memmap) or isinstance(got, np.memmap)
        assert not got.flags.writeable  # opened with mode "r"
        np.testing.assert_array_equal(got, want)
    assert st.lengths.dtype == np.int64
    assert (st.offsets == np.concatenate([[0], np.cumsum(st.lengths)[:-1]])).all()
    meta = json.loads((st.path / "COMPLETE.json").read_text())
    assert meta["total_frames"] == int(st.lengths.sum())
    assert (st.path / "features.f16").stat().st_size == meta["total_frames"] * 128 * 2


def test_second_build_and_fresh_object_do_no_work(corpus, tmp_path, monkeypatch):
    root, rows = corpus
    calls = count_calls(monkeypatch)
    st = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "cache")).build(progress=False)
    assert calls[0] == N_UTTS
    first = all_frames(st)
    st.build(progress=False)
    again = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "cache"))
    assert again.path == st.path and again.is_complete()
    again.build(progress=False)
    assert calls[0] == N_UTTS  # nothing recomputed
    for a, b in zip(first, all_frames(again)):
        np.testing.assert_array_equal(a, b)


def test_changed_config_or_manifest_gets_a_new_path(corpus, tmp_path):
    root, rows = corpus
    cache = str(tmp_path / "cache")
    base = FeatureStore(rows, str(root), LogSpectrogram(), cache).path
    assert FeatureStore(list(rows), str(tmp_path / "moved"), LogSpectrogram(), cache).path == base  # root not hashed
    assert FeatureStore(rows, str(root), LogSpectrogram(scale="linear"), cache).path != base
    assert FeatureStore(rows, str(root), LogSpectrogram(silence_db=30.0), cache).path != base
    assert FeatureStore(rows[:-1], str(root), LogSpectrogram(), cache).path != base
    assert FeatureStore(rows[::-1], str(root), LogSpectrogram(), cache).path != base
    changed = rows[:3] + [ManifestRow(**{**rows[3].__dict__, "path": "spk1/utt05.wav"})] + rows[4:]
    assert FeatureStore(changed, str(root), LogSpectrogram(), cache).path != base
    # labels do not change the features: a relabelled manifest (another class set, age) keeps the store
    relabelled = [ManifestRow(**{**r.__dict__, "emotion": "excited", "speaker": "x", "valence": 1.0}) for r in rows]
    assert FeatureStore(relabelled, str(root), LogSpectrogram(), cache).path == base


def test_open_refuses_an_incomplete_store(corpus, tmp_path):
    root, rows = corpus
    st = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "cache"))
    with pytest.raises(StoreNotBuiltError, match="not complete"):
        st.open()
    with pytest.raises(StoreNotBuiltError, match="call build"):
        _ = st.lengths


def test_crash_mid_build_resumes_with_identical_features(corpus, tmp_path, monkeypatch):
    root, rows = corpus
    cfg = LogSpectrogram()
    clean = FeatureStore(rows, str(root), cfg, str(tmp_path / "clean"), chunk_size=3).build(progress=False)

    calls = count_calls(monkeypatch, fail_at=5)  # chunk 0 (utts 0-2) done, chunk 1 dies on its 2nd utt
    st = FeatureStore(rows, str(root), cfg, str(tmp_path / "cache"), chunk_size=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        st.build(progress=False)
    assert not st.is_complete()
    assert sorted(p.name for p in (st.path / "parts").glob("*.json")) == ["000000.json", "plan.json"]
    with pytest.raises(StoreNotBuiltError):
        FeatureStore(rows, str(root), cfg, str(tmp_path / "cache")).open()

    monkeypatch.undo()
    calls = count_calls(monkeypatch)
    # a different chunk_size on resume must not mix chunkings: the first build's plan is kept
    resumed = FeatureStore(rows, str(root), cfg, str(tmp_path / "cache"), chunk_size=4).build(progress=False)
    assert calls[0] == N_UTTS - 3
    assert (resumed.lengths == clean.lengths).all()
    for a, b in zip(all_frames(clean), all_frames(resumed)):
        np.testing.assert_array_equal(a, b)


def test_crash_during_assembly_resumes(corpus, tmp_path, monkeypatch):
    root, rows = corpus
    cfg = LogSpectrogram()
    clean = FeatureStore(rows, str(root), cfg, str(tmp_path / "clean"), chunk_size=3).build(progress=False)
    copies = [0]
    real_copy = store_mod.shutil.copyfileobj

    def dying_copy(src, dst, length=0):
        copies[0] += 1
        if copies[0] == 3:
            dst.write(src.read(100))  # half a part reaches the file, then the process "dies"
            raise KeyboardInterrupt
        return real_copy(src, dst, length)

    monkeypatch.setattr(store_mod.shutil, "copyfileobj", dying_copy)
    st = FeatureStore(rows, str(root), cfg, str(tmp_path / "cache"), chunk_size=3)
    with pytest.raises(KeyboardInterrupt):
        st.build(progress=False)
    assert not st.is_complete()
    state = json.loads((st.path / "parts" / "assemble.json").read_text())
    assert state["next"] == 2  # parts 0 and 1 appended (and deleted), part 2 half-written
    assert not (st.path / "parts" / "000000.f16").exists()
    monkeypatch.undo()
    calls = count_calls(monkeypatch)
    st.build(progress=False)
    assert calls[0] == 0  # all chunks were featurized before the crash
    for a, b in zip(all_frames(clean), all_frames(st)):
        np.testing.assert_array_equal(a, b)


def test_crash_just_before_the_complete_marker_resumes(corpus, tmp_path, monkeypatch):
    root, rows = corpus
    real_write = store_mod._write_json

    def dying_write(path, obj):
        if path.name == "COMPLETE.json":
            raise KeyboardInterrupt
        real_write(path, obj)

    monkeypatch.setattr(store_mod, "_write_json", dying_write)
    st = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "cache"), chunk_size=3)
    with pytest.raises(KeyboardInterrupt):
        st.build(progress=False)
    assert (st.path / "features.f16").exists() and not st.is_complete()
    monkeypatch.undo()
    calls = count_calls(monkeypatch)
    st.build(progress=False)
    assert calls[0] == 0 and st.is_complete()
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(st.frames(i), expected_frames(root, row, LogSpectrogram()))


def test_empty_manifest_gives_an_empty_store(tmp_path):
    st = FeatureStore([], str(tmp_path), LogSpectrogram(), str(tmp_path / "cache")).build(progress=False)
    assert len(st) == 0 and st.lengths.shape == (0,) and st.skipped == []


def test_unreadable_audio_is_skipped_and_reported(corpus, tmp_path, caplog):
    root, rows = corpus
    (root / rows[2].path).write_bytes(b"not a wav file at all")
    (root / rows[7].path).unlink()
    with caplog.at_level(logging.WARNING, logger="ser_mtl.data.store"):
        st = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "cache"), chunk_size=4)
        st.build(progress=False)
    assert st.is_complete()
    assert [(s.path, s.line) for s in st.skipped] == [(rows[2].path, None), (rows[7].path, None)]
    assert all(s.reason.startswith("cannot read audio") for s in st.skipped)
    assert st.lengths[2] == 0 and st.lengths[7] == 0 and (np.delete(st.lengths, [2, 7]) > 0).all()
    assert st.frames(2).shape == (128, 0)
    logged = caplog.text
    assert "utt02" in logged and str(root / rows[2].path) in logged and "utt07" in logged
    reopened = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "cache")).open()
    assert [str(s) for s in reopened.skipped] == [str(s) for s in st.skipped]


def test_running_stats_equal_numpy(corpus, tmp_path):
    root, rows = corpus
    st = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "cache")).build(progress=False)
    indices = [0, 3, 4, 8, 9]
    mean, std = running_stats(st, indices)
    cat = np.concatenate([st.frames(i).astype(np.float64) for i in indices], axis=1)  # (F, sum L)
    assert mean.shape == std.shape == (128,) and mean.dtype == np.float64
    np.testing.assert_allclose(mean, cat.mean(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, cat.std(axis=1), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="no frames"):
        running_stats(st, [])


def test_pickled_store_leaves_the_memmap_behind(corpus, tmp_path):
    root, rows = corpus
    st = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "cache")).build(progress=False)
    st.frames(0)  # opens the memory map
    blob = pickle.dumps(st)
    assert len(blob) < 20_000  # rows + index, not the frames
    copy = pickle.loads(blob)
    np.testing.assert_array_equal(copy.frames(9), st.frames(9))


# -- multi-process ---------------------------------------------------------------------------
BUILD_SCRIPT = """
import json, sys, time
from ser_mtl.data import store as S
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.data.manifest import read_manifest
manifest, root, cache, delay, workers = sys.argv[1:6]
real, calls = S.load_audio, [0]
def slow(path, sample_rate):
    calls[0] += 1
    time.sleep(float(delay))
    return real(path, sample_rate)
S.load_audio = slow
st = S.FeatureStore(read_manifest(manifest), root, LogSpectrogram(), cache, chunk_size=2)
st.build(num_workers=int(workers), progress=False)
print(json.dumps({"calls": calls[0], "path": str(st.path), "total": int(st.lengths.sum())}))
"""


def start_build(tmp_path: Path, root: Path, rows, cache: Path, delay: float, workers: int = 0):
    manifest = tmp_path / "manifest.csv"
    write_manifest(rows, manifest)
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(script), str(manifest), str(root), str(cache), str(delay),
                             str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)


@pytest.mark.slow
def test_killed_build_process_resumes(corpus, tmp_path, monkeypatch):
    root, rows = corpus
    cfg = LogSpectrogram()
    clean = FeatureStore(rows, str(root), cfg, str(tmp_path / "clean")).build(progress=False)
    st = FeatureStore(rows, str(root), cfg, str(tmp_path / "cache"), chunk_size=2)
    proc = start_build(tmp_path, root, rows, tmp_path / "cache", delay=0.3)
    first_part = st.path / "parts" / "000000.json"
    deadline = time.time() + 60
    while not first_part.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first_part.exists() and not st.is_complete()
    done = len(list((st.path / "parts").glob("0*.json")))
    assert 1 <= done < N_UTTS // 2
    calls = count_calls(monkeypatch)
    st.build(progress=False)
    assert calls[0] == N_UTTS - 2 * done
    for a, b in zip(all_frames(clean), all_frames(st)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_two_processes_building_at_once_make_one_store(corpus, tmp_path):
    root, rows = corpus
    procs = [start_build(tmp_path, root, rows, tmp_path / "cache", delay=0.1) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert results[0]["path"] == results[1]["path"]
    assert sorted(r["calls"] for r in results) == [0, N_UTTS]  # one built, the other waited and opened
    st = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "cache")).open()
    assert results[0]["total"] == results[1]["total"] == int(st.lengths.sum())
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(st.frames(i), expected_frames(root, row, LogSpectrogram()))


@pytest.mark.slow
def test_worker_processes_give_the_same_store(corpus, tmp_path):
    root, rows = corpus
    serial = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "serial")).build(progress=False)
    parallel = FeatureStore(rows, str(root), LogSpectrogram(), str(tmp_path / "parallel"), chunk_size=2)
    parallel.build(num_workers=2, progress=False)
    assert (parallel.lengths == serial.lengths).all()
    for a, b in zip(all_frames(serial), all_frames(parallel)):
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=1e-2)
