"""A full disk (a file-size limit on the child process: writes past it fail as on a full disk) while building a
feature store, writing a checkpoint and writing results: one clear error, nothing claims success, earlier
files are intact, and the same command resumes once space is back."""

import json

import pytest
import torch
from cli_args import run_args
from subprocess_cli import ser_mtl

pytestmark = pytest.mark.slow


def _last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_store_build_on_a_full_disk_resumes_when_space_is_back(corpus, tmp_path):
    args = ["cache", *run_args(corpus, tmp_path / "run")]
    full = ser_mtl(args, max_file_bytes=20_000)  # the first chunk of frames does not fit
    assert full.returncode == 1, full.stderr
    assert "could not be written (File too large)" in _last_line(full) and "Traceback" not in full.stderr
    assert not list((tmp_path / "cache").glob("*/COMPLETE.json"))  # nothing claims to be complete
    again = ser_mtl(args)
    assert again.returncode == 0, again.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*/COMPLETE.json")]
    assert len(records) == 3 and all(r["n_utterances"] > 0 for r in records)  # primary, aux, verification


def test_a_checkpoint_that_does_not_fit_leaves_the_previous_one_intact(corpus, tmp_path):
    run = tmp_path / "run"
    fit = ["fit", *run_args(corpus, run), "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar",
           "false"]
    assert ser_mtl([*fit, "--trainer.max_epochs", "1"]).returncode == 0
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    resume = [*fit, "--trainer.max_epochs", "2", "--ckpt_path", str(last)]
    full = ser_mtl(resume, max_file_bytes=len(before) - 1)  # epoch 1 trains, its checkpoint does not fit
    assert full.returncode == 1, full.stderr
    assert "could not be written (File too large)" in _last_line(full) and "free space" in _last_line(full)
    assert last.read_bytes() == before  # the epoch-0 checkpoint is untouched and still loads
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert not [p for p in (run / "checkpoints").iterdir() if p.name not in ("best.ckpt", "last.ckpt")]
    assert ser_mtl(resume).returncode == 0
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_results_that_do_not_fit_leave_the_earlier_results(trained_run, corpus):
    run = trained_run.parent / "full_disk_test"  # beside the trained run: its manifests and stores exist
    test = ["test", *run_args(corpus, run), "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt")]
    assert ser_mtl(test).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert sorted(before) == ["config_test.yaml", "predictions.csv", "test_metrics.json"]
    full = ser_mtl(test, max_file_bytes=1000)  # predictions.csv is ~2 kB
    assert full.returncode == 1, full.stderr
    assert _last_line(full).startswith(f"ser-mtl test: {run / 'predictions.csv'}: could not be written")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # intact, and no temporary left behind
    assert ser_mtl(test).returncode == 0
    scores, trained = (json.loads((d / "test_metrics.json").read_text()) for d in (run, trained_run))
    assert scores.pop("cost")["test_seconds"] > 0 and trained.pop("cost")["test_seconds"] > 0
    assert scores == trained  # the same scores as the trained run's own test; only the seconds differ
