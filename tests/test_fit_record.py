"""FitRecord: a fit's selection and cost in fit_record.json (whole fit across a resume), the epoch log
line, and their way into metrics.json and summary.json through the run lifecycle."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger
from test_aae_phases import TINY, Segments, loader
from test_cv_runner import CONFIG_TEXT, FakeBackend

from ser_mtl.analysis.summary import read_run_metrics
from ser_mtl.callbacks import FitRecord, RestoreBestHalveLR
from ser_mtl.lightning_cli import run_callbacks
from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.runs.cv import run_cv

SCRIPT = [0.5, 0.7, 0.6]  # scripted val/ua: best at epoch 1, no improvement at epoch 2


class Scripted(MultiTaskAAE):
    """Logs the scripted val/ua of the epoch instead of the measured one."""

    def _log_utterance_metrics(self, stage, metric):
        if stage != "val":
            return super()._log_utterance_metrics(stage, metric)
        self.log("val/ua", SCRIPT[self.current_epoch])
        metric.reset()


def fit(root: Path, max_epochs: int, model: MultiTaskAAE | None = None, ckpt_path: Path | None = None,
        log_epochs: bool = False, **schedule) -> tuple[dict, pl.Trainer]:
    """A tiny fit with the CLI's callbacks and a CSV logger in ``root``: its fit_record.json and trainer."""
    pl.seed_everything(0, verbose=False)
    model = model or MultiTaskAAE(**TINY)
    callbacks = run_callbacks(root, **schedule)
    next(cb for cb in callbacks if isinstance(cb, FitRecord)).log_epochs = log_epochs
    trainer = pl.Trainer(accelerator="cpu", max_epochs=max_epochs, callbacks=callbacks, default_root_dir=root,
                         logger=CSVLogger(root, name="csv"), enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(model, loader(Segments(16)), loader(Segments(8, seed=1)), ckpt_path=ckpt_path)
    return json.loads((root / "fit_record.json").read_text()), trainer


def logged(root: Path, key: str) -> list[tuple[int, float]]:
    """(epoch, value) of ``key`` in every metrics.csv of the run's CSV logger, in order."""
    rows = [row for path in sorted(root.glob("csv/*/metrics.csv")) for row in csv.DictReader(path.open())]
    return [(int(row["epoch"]), float(row[key])) for row in rows if row.get(key)]


SEGMENTS_PER_EPOCH = sum(len(batch["x"]) for batch in loader(Segments(16)))  # 2 batches of 8


def best_logged(root: Path) -> dict:
    """The selection read from the CSV logger: the first epoch with the highest val/ua (a strict improvement)."""
    ua = logged(root, "val/ua")
    assert [epoch for epoch, _ in ua] == [0, 1, 2]
    best = max(value for _, value in ua)
    epoch = next(epoch for epoch, value in ua if value == best)
    return {"monitor": "val/ua", "mode": "max", "score": pytest.approx(best, abs=1e-6), "epoch": epoch}


def test_a_fit_records_its_selection_and_cost(tmp_path):
    record, _ = fit(tmp_path, 3)
    assert record["selection"] == best_logged(tmp_path)
    cost = record["cost"]
    assert SEGMENTS_PER_EPOCH == 16 and cost["train_segments"] == 3 * SEGMENTS_PER_EPOCH
    assert (cost["epochs"], cost["restores"], cost["halvings"]) == (3, 0, 0)
    assert (cost["precision"], cost["processes"], cost["device"]) == ("32-true", 1, "cpu")
    # set-up to end of fit (here from the setup hook: no CLI handed a clock over), the epochs inside it
    assert cost["fit_seconds"] > cost["epoch_seconds"] > 0 and cost["startup_seconds"] == 0.0
    assert cost["segments_per_second"] == pytest.approx(48 / cost["epoch_seconds"])


def test_a_resumed_fit_reports_the_whole_fit(tmp_path):
    whole, _ = fit(tmp_path / "whole", 3)
    first, _ = fit(tmp_path / "piece", 2)
    assert (first["cost"]["epochs"], first["cost"]["train_segments"]) == (2, 2 * SEGMENTS_PER_EPOCH)
    resumed, _ = fit(tmp_path / "piece", 3, ckpt_path=tmp_path / "piece" / "checkpoints" / "last.ckpt")
    assert resumed["cost"]["epochs"] == 3 and resumed["cost"]["train_segments"] == whole["cost"]["train_segments"]
    # the second piece adds its own set-up and epoch to the first's (carried in last.ckpt)
    assert resumed["cost"]["fit_seconds"] > first["cost"]["fit_seconds"]
    assert resumed["cost"]["epoch_seconds"] > first["cost"]["epoch_seconds"]
    assert resumed["selection"] == best_logged(tmp_path / "piece")  # both pieces' metrics.csv


def test_one_log_line_per_epoch_with_the_restores(tmp_path, capsys):
    record, trainer = fit(tmp_path, 3, model=Scripted(**TINY), log_epochs=True, patience=1)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["0", "1", "2"]
    assert all(re.search(r"  train loss_cls \d\.\d{3} .*loss_rec \d\.\d{3}", line) for line in lines)
    assert "val/ua 0.500 (best 0.500 @ 0)  lr 0.05/0.05/0.05" in lines[0]
    assert "val/ua 0.700 (best 0.700 @ 1)  lr 0.05/0.05/0.05" in lines[1]
    assert lines[2].endswith("val/ua 0.600 (best 0.700 @ 1)  lr 0.025/0.025/0.025  restored epoch 1, lr x0.5")
    schedule = next(cb for cb in trainer.callbacks if isinstance(cb, RestoreBestHalveLR))
    assert schedule.num_restores == 1 and (record["cost"]["restores"], record["cost"]["halvings"]) == (1, 1)
    assert record["selection"] == {"monitor": "val/ua", "mode": "max", "score": pytest.approx(0.7), "epoch": 1}
    fit(tmp_path / "quiet", 1)
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]


class RecordingBackend(FakeBackend):
    """The fake CLI, whose fits also write a fit_record.json (fold 1 on two processes), and whose tests last;
    fold 0's test times itself as ResultWriter does (``cost`` in test_metrics.json), fold 1's does not."""

    def run_stage(self, stage: str, args: list[str], run_dir: Path, env: dict | None = None) -> None:
        super().run_stage(stage, args, run_dir)
        fold = int(args[args.index("--data.fold") + 1])
        if stage == "test":
            time.sleep(0.05)
            if fold == 0:
                tested = json.loads((run_dir / "test_metrics.json").read_text())
                tested["cost"] = {"test_seconds": 7.0, "startup_seconds": 2.0}
                (run_dir / "test_metrics.json").write_text(json.dumps(tested))
            return
        cost = {"epochs": 3, "restores": 0, "halvings": 0, "fit_seconds": 100.0 * (fold + 1), "startup_seconds": 3.0,
                "epoch_seconds": 90.0 * (fold + 1), "train_segments": 48, "segments_per_second": 0.48 / (fold + 1),
                "device": f"gpu{fold}", "precision": "32-true", "processes": fold + 1}
        (run_dir / "fit_record.json").write_text(json.dumps(
            {"selection": {"monitor": "val/ua", "mode": "max", "score": 0.5, "epoch": fold}, "cost": cost}))


def test_metrics_and_summary_carry_the_selection_and_cost(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG_TEXT)
    out = tmp_path / "cv"
    summary = run_cv(["--config", str(config)], None, 1, str(out), backend=RecordingBackend(n_folds=2))
    costs = []
    for fold in (0, 1):
        metrics = read_run_metrics(out / f"fold{fold}_rep0" / "metrics.json")  # accepted by the validation
        assert metrics["selection"] == {"monitor": "val/ua", "mode": "max", "score": 0.5, "epoch": fold}
        cost = metrics.pop("cost")
        assert cost["fit_seconds"] == 100.0 * (fold + 1) and cost["shared_by"] == 1
        assert cost["processes"] == fold + 1 and cost["device"] == f"gpu{fold}"
        costs.append(cost)
    # fold 0: the test's own seconds and both stages' start-up; fold 1: its test's wall time, the fit's start-up
    assert (costs[0]["test_seconds"], costs[0]["startup_seconds"]) == (7.0, 5.0)
    assert costs[1]["test_seconds"] >= 0.05 and costs[1]["startup_seconds"] == 3.0
    assert summary["cost"] == {
        "fits": 2, "pretrainings": 0, "fit_seconds": 300.0, "test_seconds": pytest.approx(7.0 + costs[1]["test_seconds"]),
        "startup_seconds": 8.0, "shared": 0,
        "device_hours": pytest.approx((100.0 + 7.0 + 5.0 + 2 * (200.0 + costs[1]["test_seconds"] + 3.0)) / 3600),
        "devices": ["gpu0", "gpu1"]}
    assert json.loads((out / "summary.json").read_text())["cost"]["fits"] == 2


def test_runs_sharing_a_device_count_it_shared(tmp_path):
    """--cv.jobs 2 on the one CPU: each run's device time is half its seconds; with its own device, whole."""
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG_TEXT)
    shared = run_cv(["--config", str(config)], None, 1, str(tmp_path / "shared"), backend=RecordingBackend(n_folds=2),
                    jobs=2, devices="cpu")
    alone = run_cv(["--config", str(config)], None, 1, str(tmp_path / "alone"), backend=RecordingBackend(n_folds=2))
    for fold in (0, 1):
        assert read_run_metrics(tmp_path / "shared" / f"fold{fold}_rep0" / "metrics.json")["cost"]["shared_by"] == 2
    assert shared["cost"]["shared"] == 2 and alone["cost"]["shared"] == 0
    assert shared["cost"]["fit_seconds"] == alone["cost"]["fit_seconds"] == 300.0  # the seconds are not divided
    # fold 1's test seconds are its wall time (it does not time itself), so compare with the shared seconds
    costs = [read_run_metrics(tmp_path / "shared" / f"fold{f}_rep0" / "metrics.json")["cost"] for f in (0, 1)]
    assert shared["cost"]["device_hours"] == pytest.approx(sum(
        (c["fit_seconds"] + c["test_seconds"] + c["startup_seconds"]) * c["processes"] / 2 for c in costs) / 3600)
