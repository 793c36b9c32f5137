"""A mistake in a cross-validation's settings ends ``ser-mtl cv`` with one line, before any run starts
where the settings can be built, and at the first run's end otherwise, naming its log; nothing is retried."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_args import run_args

from ser_mtl.cli import main


def cv_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    args = run_args(corpus, out / "unused")
    i = args.index("--trainer.default_root_dir")
    return ["cv", *args[:i], *args[i + 2:], "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--cv.out", str(out), *extra]


def one_line(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line and "\r" not in line]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_a_data_mistake_stops_before_any_run(corpus, tmp_path, capsys):
    out = tmp_path / "cv"
    line = one_line(cv_args(corpus, out, "--data.batch_size", "0", "--cv.folds", "0,1"), capsys)
    assert line.startswith("ser-mtl cv: data.batch_size=0: expected a number of segments per batch >= 1")
    assert not list(out.glob("fold*"))  # no run started, none to retry


def test_folds_beyond_the_scheme_are_refused_before_anything_is_written(corpus, tmp_path, capsys):
    out = tmp_path / "cv"
    line = one_line(cv_args(corpus, out, "--cv.folds", "1,7"), capsys)
    # the session corpus has 3 IEMOCAP sessions: loso_session (demo.yaml) has folds 0, 1 and 2
    assert line == "ser-mtl cv: --cv.folds 7: this data.scheme has 3 folds (0..2); nothing was run or written"
    assert not (out / "cv.json").exists()


@pytest.mark.slow
def test_a_mistake_the_first_run_meets_stops_the_command_with_its_line(corpus, tmp_path, capsys):
    out = tmp_path / "cv"
    line = one_line(cv_args(corpus, out, "--checkpoint.monitor", "val/nonexistent", "--cv.folds", "0,1"), capsys)
    log = out / "fold0_rep0" / "fit.log"
    assert line.startswith("ser-mtl cv: monitor 'val/nonexistent' is never logged in validation of this model")
    assert line.endswith(f"(fit of fold0_rep0, log {log}; every run would fail the same way, so none was retried)")
    assert "Re-run the same command" not in line
    assert not (out / "fold1_rep0" / "fit.log").exists()  # the second run never started
