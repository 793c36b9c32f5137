"""``--cv.plan``: the fits a cross-validation or sweep implies and an upper bound of their device-hours,
from a few batches timed through the real CLI on the session corpus; nothing is trained or written."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_args import run_args

from ser_mtl.cli import main
from ser_mtl.lightning_cli import build_datamodule
from ser_mtl.runs.cv import run_cv
from ser_mtl.runs.estimate import epoch_bound, fit_hours, time_fit
from ser_mtl.runs.sweep import run_sweep


def config(corpus: Path, tmp_path: Path) -> list[str]:
    args = run_args(corpus, tmp_path / "unused")
    i = args.index("--trainer.default_root_dir")
    return [*args[:i], *args[i + 2:], "--trainer.max_epochs", "4"]


def test_time_fit_multiplies_the_timed_batches_by_the_epochs_batches(corpus: Path, tmp_path: Path) -> None:
    args = config(corpus, tmp_path)
    t = time_fit([*args, "--data.fold", "0"])
    data = build_datamodule([*args, "--data.fold", "0"])
    data.setup("fit")
    assert t["batches_per_epoch"] == len(data.train_dataloader()) > 0
    assert (t["max_epochs"], t["devices"], t["device"]) == (4, 1, "cpu")
    assert t["seconds_per_batch"] > 0 and t["eval_seconds_per_batch"] > 0
    assert (t["val_batches"], t["test_batches"]) == (len(data.val_dataloader()), len(data.test_dataloader()))
    # training and validation every epoch, then the test: validation and test are part of the bound
    train, evaluation = t["seconds_per_batch"] * t["batches_per_epoch"], t["eval_seconds_per_batch"]
    assert t["fit_hours"] == pytest.approx(((train + evaluation * t["val_batches"]) * 4
                                            + evaluation * t["test_batches"]) / 3600)


def test_epoch_bounds_and_devices_in_the_arithmetic() -> None:
    assert epoch_bound(7) == (7, "7 epochs")
    assert epoch_bound(None) == (1000, "1000 epochs (Lightning's default for max_epochs null)")
    assert epoch_bound(-1) == (None, "no epoch bound (trainer.max_epochs -1)")
    assert fit_hours(2.0, 100, 1.0, 10, 20, None) is None  # never a negative or made-up bound
    assert fit_hours(2.0, 100, 1.0, 10, 20, 3) == pytest.approx(((200 + 10) * 3 + 20) / 3600)


def test_an_unbounded_plan_says_so(corpus: Path, tmp_path: Path, capsys) -> None:
    plan = run_cv([*config(corpus, tmp_path), "--trainer.max_epochs", "-1"], [0], 1, str(tmp_path / "cv"),
                  plan_only=True)
    assert plan["device_hours"] is None
    assert "no upper bound of device-hours (trainer.max_epochs -1 trains until stopped)" in capsys.readouterr().out


def test_a_sweep_plan_counts_folds_x_repeats_x_settings_and_trains_nothing(corpus: Path, tmp_path: Path,
                                                                           capsys) -> None:
    out = tmp_path / "sweep"
    plan = run_sweep(config(corpus, tmp_path), ["model.alpha"], [0.3, 0.5], str(out), folds=[0, 1], repeats=2,
                     plan_only=True)
    assert plan["fits"] == 2 * 2 * 2 and plan["pretrainings"] == 0
    printed = capsys.readouterr().out
    per_fit = [float(line.split("at most ")[1].split(" h")[0]) for line in printed.splitlines() if " fit(s) x " in line]
    assert len(per_fit) == 2 and plan["device_hours"] == pytest.approx(4 * sum(per_fit), rel=0.01)
    assert "plan: 8 fits and 0 pretrainings, at most" in printed and "nothing was trained" in printed
    assert not out.exists() and not list(tmp_path.rglob("*.ckpt"))


def test_a_cv_plan_counts_its_pretrainings(corpus: Path, tmp_path: Path, capsys) -> None:
    pretrain = ["--config", "configs/demo_pretrain.yaml", "--data.root", str(corpus / "LibriSpeech"),
                "--data.cache_dir", str(tmp_path / "cache"), "--data.segment_frames", "64", "--data.segment_hop", "32",
                "--model.encoder_pools", "[[2, 2], [2, 2], [2, 2]]", "--trainer.max_epochs", "2",
                "--trainer.logger", "false", "--data.verification_enrol", "3"]
    plan = run_cv(config(corpus, tmp_path), [0, 1, 2], 2, str(tmp_path / "cv"), pretrain=pretrain, plan_only=True)
    assert (plan["fits"], plan["pretrainings"]) == (6, 2) and plan["device_hours"] > 0
    assert "2 pretraining(s) x at most" in capsys.readouterr().out
    assert not (tmp_path / "cv").exists() and not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("flag", [["--cv.plan", "true"], ["--cv.plan"]])  # a bare boolean option means true
def test_the_command_takes_the_plan_option(corpus: Path, tmp_path: Path, capsys, flag: list[str]) -> None:
    main(["cv", *config(corpus, tmp_path), *flag, "--cv.folds", "0", "--cv.out", str(tmp_path / "cv")])
    assert "plan: 1 fits and 0 pretrainings" in capsys.readouterr().out and not (tmp_path / "cv").exists()
