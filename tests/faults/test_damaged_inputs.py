"""Damaged or foreign files anywhere the package reads them: one clear error naming the file and the fix,
or a reported skip; never torch's or numpy's traceback, never garbage batches."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser_mtl.cli import main
from ser_mtl.data.datamodule import skip_summary
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.data.manifest import ManifestRow
from ser_mtl.data.manifest_cache import cached_manifest
from ser_mtl.data.store import FeatureStore, StoreNotBuiltError

SR = 16000
CFG = LogSpectrogram(n_bins=32)


def _row(rel: str) -> ManifestRow:
    return ManifestRow(Path(rel).stem, "synth", rel, 1.0, "spk", "F", "1", "neutral", "neu", None, None, None)


def _corpus(root: Path) -> list[ManifestRow]:
    """Two good utterances and the faults: digital silence, 10 ms, a NaN sample, -100 dBFS noise."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    waves = {
        "good1.wav": 0.3 * np.sin(2 * np.pi * 220 * t), "good2.wav": 0.3 * np.sin(2 * np.pi * 330 * t),
        "zeros.wav": np.zeros(SR), "short.wav": 0.3 * np.sin(2 * np.pi * 220 * t[:160]),
        "nan.wav": np.where(t < 0.5, 0.3 * np.sin(2 * np.pi * 220 * t), np.nan),
        "hiss.wav": 1e-5 * rng.standard_normal(SR),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, x in waves.items():
        sf.write(root / name, x.astype(np.float32), SR, subtype="FLOAT")
    return [_row(name) for name in waves]


def test_silent_short_and_non_finite_audio_are_skipped_with_reasons(tmp_path):
    rows = _corpus(tmp_path / "corpus")
    store = FeatureStore(rows, str(tmp_path / "corpus"), CFG, str(tmp_path / "cache")).build(progress=False)
    reasons = {s.path: s.reason for s in store.skipped}
    assert sorted(reasons) == ["hiss.wav", "nan.wav", "short.wav", "zeros.wav"]
    assert reasons["zeros.wav"].startswith("no frame above the silence threshold")
    assert "-100 dBFS" in reasons["hiss.wav"]
    assert reasons["short.wav"].startswith("160 samples of speech after silence removal, fewer than one 25 ms")
    assert "NaN" in reasons["nan.wav"]
    assert store.lengths.tolist()[:2] == [101, 101] and store.lengths.tolist()[2:] == [0, 0, 0, 0]
    (line,) = skip_summary({"primary": store})
    assert line.startswith("primary corpus: 4 of 6 utterances skipped")
    assert "2 x no frame above the silence threshold" in line
    record = json.loads((store.path / "COMPLETE.json").read_text())
    assert len(record["skipped"]) == 4  # the reasons travel with the store


def test_new_audio_without_speech_is_a_reported_skip(trained_run, tmp_path):
    from ser_mtl.inference import EmotionRecognizer

    recognizer = EmotionRecognizer.from_checkpoint(trained_run / "checkpoints" / "best.ckpt")
    silent = recognizer.classify_array(np.zeros(SR, np.float32), SR)
    assert silent.label is None and "no frame above the silence threshold" in silent.skipped


@pytest.fixture
def built_store(tmp_path) -> FeatureStore:
    rows = _corpus(tmp_path / "corpus")[:2]
    return FeatureStore(rows, str(tmp_path / "corpus"), CFG, str(tmp_path / "cache")).build(progress=False)


def _reopen(store: FeatureStore) -> FeatureStore:
    return FeatureStore(store.rows, str(store.root), store.cfg, str(store.path.parent)).open()


def test_a_data_file_shorter_than_its_index_is_detected_on_open(built_store):
    data = built_store.path / "features.f16"
    data.write_bytes(data.read_bytes()[:-64])
    with pytest.raises(StoreNotBuiltError, match=r"features.f16: expected 12928 bytes .* found 12864; delete "):
        _reopen(built_store)


@pytest.mark.parametrize("name, damage", [("COMPLETE.json", b'{"format": 1, "n_utt'),
                                          ("index.npz", b"PK\x03\x04 truncated")])
def test_a_damaged_store_record_or_index_names_the_file_and_the_fix(built_store, name, damage):
    (built_store.path / name).write_bytes(damage)
    with pytest.raises(StoreNotBuiltError, match=rf"{name}: damaged .*run `ser-mtl cache`"):
        _reopen(built_store)


def test_a_damaged_store_through_the_cli_is_one_line(corpus, tmp_path, capsys):
    from cli_args import run_args

    run = tmp_path / "run"
    args = ["fit", *run_args(corpus, run), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
            "--trainer.limit_val_batches", "1"]
    main(args)
    complete = next((tmp_path / "cache").glob("*/COMPLETE.json"))
    complete.write_text("not json")
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"ser-mtl fit: {complete}: damaged") and "Traceback" not in err


@pytest.mark.parametrize("make", ["truncated", "foreign", "missing", "text"])
def test_a_bad_checkpoint_through_the_cli_is_one_line(trained_run, corpus, tmp_path, capsys, make):
    from cli_args import run_args

    bad = tmp_path / f"{make}.ckpt"
    if make == "truncated":
        bad.write_bytes((trained_run / "checkpoints" / "best.ckpt").read_bytes()[:4096])
    elif make == "foreign":
        torch.save({"model": torch.zeros(2)}, bad)
    elif make == "text":  # e.g. a config or a log given by mistake: called what it is, not "pickled objects"
        bad.write_text("model:\n  alpha: 0.3\n")
    expected = {"truncated": "not a readable PyTorch checkpoint", "foreign": "not a Lightning checkpoint of ser-mtl",
                "missing": "no such checkpoint file",
                "text": "not a checkpoint (a file starting with b'mode'; a PyTorch checkpoint is a zip archive)"}[make]
    with pytest.raises(SystemExit) as exit_:
        main(["test", *run_args(corpus, tmp_path / "run"), "--ckpt_path", str(bad)])
    assert exit_.value.code == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"ser-mtl test: {bad}: {expected}") and "\n" not in line


def test_a_damaged_cached_manifest_is_rebuilt(corpus, tmp_path, capsys):
    root = str(corpus / "IEMOCAP_full_release")
    rows = cached_manifest("iemocap", root, str(tmp_path))
    (cached,) = (tmp_path / "manifests").glob("*.csv")
    cached.write_text("utt_id,corpus\ngarbage")
    assert cached_manifest("iemocap", root, str(tmp_path)) == rows
    assert f"cached manifest {cached} is damaged" in capsys.readouterr().out


def test_a_damaged_cv_record_names_the_file_and_the_fix(tmp_path, capsys):
    run = tmp_path / "cv" / "fold0_rep0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"wa": 0.5, "ua":')
    with pytest.raises(SystemExit) as exit_:
        main(["aggregate", str(tmp_path / "cv")])
    assert exit_.value.code == 1
    line = capsys.readouterr().err.strip()
    assert f"{run / 'metrics.json'}:1: not valid JSON" in line and f"delete the run folder {run}" in line
