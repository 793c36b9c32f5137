"""The multi-task AAE on pretrained speech model features, end to end through the real CLI, on a tiny random
WavLM built from a config and written with ``save_pretrained`` (no download): fit -> test -> classify ->
export, a two-fold cv, the learned layer weights, and a checkpoint that refuses other weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_args import run_args
from test_pretrained_features import tiny_wavlm

from ser_mtl.checkpoint_io import read_checkpoint
from ser_mtl.cli import main
from ser_mtl.data.pretrained import PretrainedFeatures

REPO = Path(__file__).resolve().parents[1]
LAYERS = [1, 2]


def features_arg(model_dir: str) -> list[str]:
    spec = {"class_path": "ser_mtl.data.pretrained.PretrainedFeatures",
            "init_args": {"model": model_dir, "layers": LAYERS, "layer_mode": "stack"}}
    stage = {"class_path": "ser_mtl.models.input_stage.FrameProjection", "init_args": {"out_rows": 32}}
    return ["--data.features", json.dumps(spec), "--model.input_stage", json.dumps(stage)]


def ssl_args(corpus: Path, run: Path, model_dir: str) -> list[str]:
    """The CLI tests' demo run (64-frame segments: 0.256 s at the tiny model's 250 frames/s), on WavLM layers."""
    return [*run_args(corpus, run), *features_arg(model_dir), "--trainer.limit_train_batches", "6",
            "--trainer.limit_val_batches", "3"]


@pytest.fixture(scope="module")
def wavlm(tmp_path_factory) -> str:
    return tiny_wavlm(tmp_path_factory.mktemp("wavlm") / "tiny-wavlm")


@pytest.fixture(scope="module")
def ssl_run(corpus, wavlm, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ssl") / "run"
    main(["fit", *ssl_args(corpus, run, wavlm), "--trainer.max_epochs", "2"])
    main(["test", *ssl_args(corpus, run, wavlm), "--ckpt_path", str(run / "checkpoints" / "best.ckpt")])
    return run


@pytest.mark.slow
def test_fit_and_test_on_wavlm_layers(ssl_run, wavlm):
    metrics = json.loads((ssl_run / "test_metrics.json").read_text())
    assert 0.0 <= metrics["wa"] <= 1.0 and np.asarray(metrics["confmat"]).sum() == metrics["n_utterances"] > 0
    ckpt = read_checkpoint(ssl_run / "checkpoints" / "best.ckpt")
    state, hparams = ckpt["state_dict"], ckpt["hyper_parameters"]
    # the softmax layer weights started at 0 (a plain average) and moved; the input stage saw (2 layers, 16 wide)
    assert state["input_stage.layer_weights"].shape == (2,)
    assert state["input_stage.layer_weights"].abs().max() > 1e-4
    assert state["input_stage.project.weight"].shape == (32, 16)
    assert state["input_stage.unproject.weight"].shape == (2 * 16, 32)
    assert (hparams["input_channels"], tuple(hparams["input_size"])) == (2, (16, 64))
    assert hparams["input_stage"]["init_args"]["out_rows"] == 32
    # the checkpoint names the model, its weights hash and layers
    recorded = ckpt["SERDataModule"]["feature_settings"]
    extractor = PretrainedFeatures(model=wavlm, layers=LAYERS, layer_mode="stack")
    assert recorded == extractor.settings() and recorded["layers"] == LAYERS
    assert recorded["weights_sha256"] == extractor.settings()["weights_sha256"] and len(recorded["weights_sha256"]) == 64
    # the stored features are the model's: the store folder's key is the extractor's
    stores = [json.loads(p.read_text()) for p in (ssl_run.parent / "cache").glob("*/COMPLETE.json")]
    assert any(s["config"] == extractor.settings() and s["n_bins"] == 2 * 16 for s in stores)


@pytest.mark.slow
def test_predict_gives_the_test_posteriors_and_cache_finds_the_stores_built(ssl_run, corpus, wavlm, capsys):
    import csv

    main(["predict", *ssl_args(corpus, ssl_run, wavlm), "--ckpt_path", str(ssl_run / "checkpoints" / "best.ckpt")])
    with open(ssl_run / "predict.csv") as f:
        predicted = {r["utt_id"]: r for r in csv.DictReader(f)}
    with open(ssl_run / "predictions.csv") as f:
        tested = list(csv.DictReader(f))
    assert set(predicted) == {r["utt_id"] for r in tested}
    for row in tested:
        assert float(predicted[row["utt_id"]]["p_angry"]) == pytest.approx(float(row["p_angry"]), abs=1e-5)
    stores = sorted(p.parent.name for p in (ssl_run.parent / "cache").glob("*/COMPLETE.json"))
    main(["cache", *ssl_args(corpus, ssl_run, wavlm)])  # every store of the config is there: nothing rebuilt
    assert sorted(p.parent.name for p in (ssl_run.parent / "cache").glob("*/COMPLETE.json")) == stores


@pytest.mark.slow
def test_classify_and_export_run_the_same_extractor(ssl_run, corpus, tmp_path):
    import onnxruntime

    from ser_mtl.inference import EmotionRecognizer

    wavs = sorted((corpus / "IEMOCAP_full_release" / "Session1" / "sentences" / "wav").rglob("*.wav"))[:4]
    ckpt = ssl_run / "checkpoints" / "best.ckpt"
    main(["classify", "--ckpt", str(ckpt), "--inputs", *map(str, wavs), "--out", str(tmp_path / "p.json")])
    rows = json.loads((tmp_path / "p.json").read_text())
    assert [r["path"] for r in rows] == list(map(str, wavs))
    recognizer = EmotionRecognizer.from_checkpoint(ckpt)
    direct = recognizer.classify_file(wavs[0], segments=True)
    assert direct.segment_probs.shape[1] == 4 and abs(sum(direct.probs.values()) - 1) < 1e-6
    assert rows[0]["pred"] == direct.label
    # export: the network with (B, 2, 16, 64) features in; the JSON names the extractor, weights and layers
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "model.onnx")])
    front = json.loads((tmp_path / "model.frontend.json").read_text())
    assert front["features"]["class_path"] == "ser_mtl.data.pretrained.PretrainedFeatures"
    assert front["feature_settings"]["layers"] == LAYERS and front["feature_settings"]["weights_sha256"]
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    frames = recognizer.frontend.frames(torch.from_numpy(np.asarray(
        __import__("soundfile").read(wavs[0], dtype="float32")[0])))
    _, x = next(recognizer.frontend.batches(frames, 64))  # (S, 2, 16, 64)
    (onnx_probs,) = session.run(["posteriors"], {"segments": x})
    np.testing.assert_allclose(onnx_probs, direct.segment_probs, atol=1e-5)


@pytest.mark.slow
def test_a_checkpoint_refuses_features_of_other_weights(ssl_run, wavlm, corpus, tmp_path):
    import shutil

    other = tmp_path / "tiny-wavlm"
    shutil.copytree(wavlm, other)
    weights = other / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x3f")  # one float of the last tensor is now 1.0
    wav = next((corpus / "IEMOCAP_full_release" / "Session1" / "sentences" / "wav").rglob("*.wav"))
    done = subprocess.run([sys.executable, "-m", "ser_mtl.cli", "classify", "--ckpt",
                           str(ssl_run / "checkpoints" / "best.ckpt"), "--inputs", str(wav), "--out",
                           str(tmp_path / "p.csv"), "--features_model", str(other)],
                          check=False, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr[-2000:]
    old = PretrainedFeatures(model=wavlm, layers=LAYERS).settings()["weights_sha256"]
    new = PretrainedFeatures(model=str(other), layers=LAYERS).settings()["weights_sha256"]
    assert old != new and old in done.stderr and new in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # one line, no traceback
    # the same weights in another folder are accepted
    same = tmp_path / "moved" / "tiny-wavlm"
    shutil.copytree(wavlm, same)
    main(["classify", "--ckpt", str(ssl_run / "checkpoints" / "best.ckpt"), "--inputs", str(wav), "--out",
          str(tmp_path / "ok.csv"), "--features_model", str(same)])
    assert (tmp_path / "ok.csv").read_text().count("\n") == 2


@pytest.mark.slow
def test_two_fold_cv_on_wavlm_layers(corpus, wavlm, tmp_path):
    out = tmp_path / "cv"
    args = [a for a in ssl_args(corpus, tmp_path / "unused", wavlm)]
    i = args.index("--trainer.default_root_dir")
    args = [*args[:i], *args[i + 2:], "--trainer.max_epochs", "1", "--data.scheme", "loso_session"]
    main(["cv", *args, "--cv.folds", "0,1", "--cv.repeats", "1", "--cv.out", str(out), "--cv.in_process", "true"])
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads((out / f"fold{f}_rep0" / "metrics.json").read_text()) for f in (0, 1)]
    assert all(0.0 <= m["wa"] <= 1.0 for m in metrics)
    assert summary["wa_mean"] == pytest.approx(np.mean([m["wa"] for m in metrics]))
    # the report and the comparison read such a folder like any other
    main(["report", str(out), "--out", str(tmp_path / "report")])
    markdown = (tmp_path / "report" / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {out.name} |"))
    assert f"{100 * summary['wa_mean']:.1f}" in row and f"{100 * summary['macro_f1_mean']:.1f}" in row


@pytest.mark.slow
def test_the_plan_costs_the_store_and_the_baseline_reads_it(corpus, wavlm, tmp_path, capsys):
    from ser_mtl.runs.cv import run_cv

    args = [*run_args(corpus, tmp_path / "unused"), *features_arg(wavlm), "--trainer.max_epochs", "2"]
    i = args.index("--trainer.default_root_dir")
    args = [*args[:i], *args[i + 2:]]
    plan = run_cv(args, [0, 1], 1, str(tmp_path / "cv"), plan_only=True)
    printed = capsys.readouterr().out
    store_lines = [line for line in printed.splitlines() if line.startswith("[cv] feature store primary")]
    assert len(store_lines) == 1 and "PretrainedFeatures" in store_lines[0] and "h to build on cpu" in store_lines[0]
    assert plan["store_hours"] > 0 and "to build the feature stores once" in printed
    # the utterance-statistics baseline on the same stored features: mean and std of 2 x 16 rows and deltas
    out = tmp_path / "baseline.json"
    main(["baseline", *args, "--baseline.out", str(out)])
    result = json.loads(out.read_text())
    assert result["n_features"] == 4 * 2 * 16 and 0.0 <= result["ua"] <= 1.0
