"""A user's mistake ends `ser-mtl fit` with one line and exit status 1, as every other subcommand; a bug keeps
its traceback, and SER_MTL_TRACEBACK=1 shows the traceback of a mistake too."""

from pathlib import Path

import pytest
from cli_args import run_args

from ser_mtl.cli import main
from ser_mtl.data.folds import FoldError
from ser_mtl.data.manifest import CorpusError
from ser_mtl.lightning_cli import user_mistake


def _one_line_exit(args: list[str], capsys) -> str:
    """The stderr of ``main(args)``, which must exit with status 1 after exactly one line besides the progress
    bars of a feature store built on the way (lines redrawn with a carriage return)."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n")[:-1] if "\r" not in line]
    assert len(lines) == 1 and err.endswith("\n") and "Traceback" not in err, err
    return lines[0]


def test_a_wrong_corpus_root(corpus: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "IEMOCAP_nowhere"
    line = _one_line_exit(["fit", *run_args(corpus, tmp_path / "run"), "--data.root", str(root)], capsys)
    assert line == f"ser-mtl fit: {root}: corpus root does not exist or is not a directory (iemocap)"


def test_a_batch_size_of_zero(corpus: Path, tmp_path: Path, capsys) -> None:
    line = _one_line_exit(["fit", *run_args(corpus, tmp_path / "run"), "--data.batch_size", "0"], capsys)
    assert line.startswith("ser-mtl fit: data.batch_size=0: expected")


def test_a_fold_out_of_range(corpus: Path, tmp_path: Path, capsys) -> None:
    line = _one_line_exit(["fit", *run_args(corpus, tmp_path / "run"), "--data.fold", "7"], capsys)
    # the session corpus has 3 IEMOCAP sessions: loso_session (demo.yaml) has folds 0, 1 and 2
    assert line == "ser-mtl fit: data.fold=7 is out of range: scheme 'loso_session' on iemocap has 3 folds (0..2)"


def test_a_monitor_the_model_never_logs_stops_before_the_first_epoch(corpus: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    line = _one_line_exit(["fit", *run_args(corpus, run), "--model.tasks", "[gender]",
                           "--checkpoint.monitor", "val/nonexistent"], capsys)
    assert line == ("ser-mtl fit: monitor 'val/nonexistent' is never logged in validation of this model (tasks "
                    "['gender']); it logs val/gender_acc, val/loss_gender, val/loss_cls, val/loss_rec: choose one "
                    "with --checkpoint.monitor")  # checkpoint.mode auto follows the chosen key's direction
    assert not (run / "checkpoints").exists()  # last.ckpt is written after every epoch


@pytest.mark.parametrize("command", ["fit", "manifest"])
def test_the_traceback_on_request(corpus: Path, tmp_path: Path, monkeypatch, command: str) -> None:
    nowhere = str(tmp_path / "nowhere")
    args = {"fit": ["fit", *run_args(corpus, tmp_path / "run"), "--data.root", nowhere],
            "manifest": ["manifest", "--corpus", "iemocap", "--root", nowhere, "--out", str(tmp_path / "m.csv")]}
    with pytest.raises(SystemExit):  # the one line by default
        main(args[command])
    monkeypatch.setenv("SER_MTL_TRACEBACK", "1")
    with pytest.raises(CorpusError, match=f"{nowhere}: ") as raised:  # the error itself, with its traceback
        main(args[command])
    assert raised.traceback[-1].path.name in ("manifest_cache.py", "_collect.py")  # where the path was checked


def test_a_bug_keeps_its_traceback(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    def broken(self):
        raise ValueError("a bug, not a setting")

    monkeypatch.setattr("ser_mtl.data.datamodule.SERDataModule.describe", broken)
    with pytest.raises(ValueError, match="a bug, not a setting"):
        main(["fit", *run_args(corpus, tmp_path / "run")])


def _raised(error: BaseException, inside: BaseException, how: str) -> BaseException:
    """``error`` as raised while handling ``inside``: ``from`` it, in its ``except`` block, or ``from None``."""
    try:
        try:
            raise inside
        except type(inside) as handled:
            if how == "from":
                raise error from handled
            if how == "from None":
                raise error from None
            raise error  # the implicit chain: raised while handling `inside`
    except type(error) as raised:
        return raised


@pytest.mark.parametrize("how, found", [("from", True), ("during", True), ("from None", False)])
def test_a_declared_error_is_found_along_the_chain_a_traceback_shows(how: str, found: bool) -> None:
    fold = FoldError("fold 7 out of range")
    wrapped = _raised(RuntimeError("while instantiating SERDataModule"), fold, how)
    assert user_mistake(wrapped) is (fold if found else None)
    assert user_mistake(fold) is fold and user_mistake(ValueError("a bug")) is None


@pytest.mark.parametrize("typo, closest", [(["--model.alpah", "0.3"], "--model.alpha"),
                                           (["--trainer.max_epoch", "2"], "--trainer.max_epochs")])
def test_a_typo_is_one_line_naming_the_closest_option(corpus: Path, tmp_path: Path, capsys, typo, closest) -> None:
    # no prefix matching: --trainer.max_epoch is refused, not taken for --trainer.max_epochs
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *run_args(corpus, tmp_path / "run"), *typo])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == (f"ser-mtl fit: error: unrecognized arguments: {' '.join(typo)}; did you mean {closest}? "
                   "(see ser-mtl fit --help)\n")
    assert not (tmp_path / "run").exists()


def test_a_typo_in_cv_is_the_same_one_line(corpus: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["cv", "--config", "configs/demo.yaml", "--model.alpah", "0.3", "--cv.out", str(tmp_path / "cv")])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == ("ser-mtl cv: the configuration does not parse: error: unrecognized arguments: "
                                       "--model.alpah 0.3; did you mean --model.alpha? (see ser-mtl fit --help)\n")
    assert not (tmp_path / "cv").exists()
