"""Two-stage cross-validation (``--cv.pretrain``) and the loss-weight checks of sweeps, with the stand-in
training CLI of tests/test_cv_runner.py (`FakeBackend`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cv_runner import CONFIG_TEXT, FakeBackend, arg

from ser_mtl.runs.cv import run_cv
from ser_mtl.runs.cv_command import cv_kwargs, cv_main, parse_pretrain
from ser_mtl.runs.errors import CVError, RunsFailed
from ser_mtl.runs.lifecycle import PRETRAIN_FOLD, derive_seed
from ser_mtl.runs.sweep import run_sweep


@pytest.fixture
def config(tmp_path: Path) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG_TEXT)
    return ["--config", str(path), "--trainer.max_epochs", "2"]


@pytest.fixture
def pretrain(tmp_path: Path) -> list[str]:
    path = tmp_path / "pre.yaml"
    path.write_text("data:\n  corpus: librispeech\n")
    return ["--config", str(path), "--data.root", "/data/Libri Speech"]


def pretrain_calls(backend: FakeBackend) -> list[tuple[int, list[str]]]:
    return [(repeat, args) for stage, repeat, args in backend.calls if stage == "pretrain"]


def test_one_pretraining_per_repeat_and_every_fold_starts_from_its_repeats(tmp_path, config, pretrain) -> None:
    backend = FakeBackend(n_folds=2)
    out = tmp_path / "cv"
    run_cv(config, None, 2, str(out), base_seed=3, backend=backend, pretrain=pretrain)
    stages = [(stage, n) for stage, n, _ in backend.calls]
    assert stages[:2] == [("pretrain", 0), ("pretrain", 1)]  # before any fold
    assert stages.count(("pretrain", 0)) == 1 and stages.count(("pretrain", 1)) == 1
    for repeat, args in pretrain_calls(backend):
        run_dir = (out / f"pretrain_rep{repeat}").absolute()
        seed = derive_seed(3, PRETRAIN_FOLD, repeat)
        assert args[:4] == pretrain and arg(args, "--seed_everything") == str(seed)
        assert arg(args, "--trainer.default_root_dir") == str(run_dir) and arg(args, "--ckpt_path") is None
        assert json.loads((run_dir / "run.json").read_text()) == {"repeat": repeat, "seed": seed, "args": pretrain}
        assert (run_dir / "fit_done.json").is_file()
    assert derive_seed(3, PRETRAIN_FOLD, 0) not in {derive_seed(3, f, r) for f in range(2) for r in range(2)}
    fits = [(args, json.loads((Path(arg(args, "--trainer.default_root_dir")) / "run.json").read_text()))
            for stage, _, args in backend.calls if stage in ("fit", "test")]
    assert len(fits) == 8
    for args, run in fits:
        best = str((out / f"pretrain_rep{run['repeat']}" / "checkpoints" / "best.ckpt").absolute())
        assert arg(args, "--model.init_from") == best and run["init_from"] == best
    record = json.loads((out / "cv.json").read_text())
    assert record["pretrain"] == pretrain and record["pretrain_config_files"] == {pretrain[1]: "data:\n  corpus: librispeech\n"}
    assert record["pretrain_resolved"]["data"]["corpus"] == "iemocap"  # what FakeBackend resolves

    rerun = FakeBackend(n_folds=2)
    run_cv(config, None, 2, str(out), base_seed=3, backend=rerun, pretrain=pretrain)
    assert rerun.calls == []  # finished pretrainings and runs are skipped


def test_a_failed_pretraining_fails_its_repeat_and_resumes_on_rerun(tmp_path, config, pretrain, capsys) -> None:
    out = tmp_path / "cv"
    backend = FakeBackend(n_folds=2, fail_pretrain=1)
    with pytest.raises(RunsFailed, match=r"2 of 4 runs failed \(fold0_rep1, fold1_rep1\)"):
        run_cv(config, [0, 1], 2, str(out), backend=backend, pretrain=pretrain)
    assert [n for s, n, _ in backend.calls if s == "fit"] == [0, 1]  # repeat 0 ran; repeat 1's folds did not
    printed = capsys.readouterr().out
    assert "pretraining of repeat 1 FAILED: " in printed and "simulated crash in the pretraining" in printed
    assert "fold 0 repeat 1 FAILED: its pretraining (pretrain_rep1) has not finished" in printed
    rerun = FakeBackend(n_folds=2)
    run_cv(config, [0, 1], 2, str(out), backend=rerun, pretrain=pretrain)
    (repeat, args), = pretrain_calls(rerun)
    assert repeat == 1 and arg(args, "--ckpt_path") == str((out / "pretrain_rep1/checkpoints/last.ckpt").absolute())
    assert [n for s, n, _ in rerun.calls if s == "fit"] == [0, 1]  # now repeat 1's folds


def test_pretraining_arguments_are_checked(tmp_path, config, pretrain) -> None:
    out = str(tmp_path / "cv")
    with pytest.raises(CVError, match=r"--model.init_from and --cv.pretrain both say where the fine-tuning starts"):
        run_cv([*config, "--model.init_from", "x.ckpt"], [0], 1, out, backend=FakeBackend(), pretrain=pretrain)
    with pytest.raises(CVError, match=r"--cv.pretrain: --seed_everything is set by the cv runner"):
        run_cv(config, [0], 1, out, backend=FakeBackend(), pretrain=[*pretrain, "--seed_everything", "1"])
    run_cv(config, [0], 1, out, backend=FakeBackend(), pretrain=pretrain)
    with pytest.raises(CVError, match=r"different pretrain"):
        run_cv(config, [0], 1, out, backend=FakeBackend(), pretrain=[*pretrain, "--data.speakers", "5"])
    with pytest.raises(CVError, match=r"different pretrain"):
        run_cv(config, [0], 1, out, backend=FakeBackend())  # the same folder without pretraining


def test_cli_splits_the_pretrain_string_with_shlex() -> None:
    ns = cv_main.parser().parse_args(["--cv.out", "x", "--cv.pretrain",
                                      "--config configs/librispeech_pretrain.yaml --data.root '/data/Libri Speech'"])
    assert cv_kwargs(ns)["pretrain"] == ["--config", "configs/librispeech_pretrain.yaml", "--data.root",
                                         "/data/Libri Speech"]
    assert parse_pretrain(None) is None and parse_pretrain(["--a", "1"]) == ["--a", "1"]
    with pytest.raises(CVError, match="No closing quotation"):
        cv_kwargs(cv_main.parser().parse_args(["--cv.out", "x", "--cv.pretrain", "--data.root 'x"]))


def test_sweep_over_aux_speakers_pretrains_each_setting_with_the_same_speakers(tmp_path, config, pretrain) -> None:
    backend = FakeBackend(n_folds=1)
    out = tmp_path / "sweep"
    record = run_sweep(config, ["data.aux_speakers"], [0, 50, 100], str(out), folds=[0], repeats=1,
                       backend=backend, pretrain=pretrain)
    calls = pretrain_calls(backend)
    assert [arg(args, "--data.speakers") for _, args in calls] == ["50", "100"]  # N = 0: nothing to pretrain on
    assert [arg(args, "--trainer.default_root_dir") for _, args in calls] == [
        str((out / f"data.aux_speakers={n}" / "pretrain_rep0").absolute()) for n in (50, 100)]
    fits = [args for stage, _, args in backend.calls if stage == "fit"]
    assert [arg(a, "--data.aux_speakers") for a in fits] == ["0", "50", "100"]
    assert [arg(a, "--model.init_from") for a in fits] == [None] + [
        str((out / f"data.aux_speakers={n}" / "pretrain_rep0/checkpoints/best.ckpt").absolute()) for n in (50, 100)]
    assert record["pretrain"] == pretrain and record["settings"][0]["pretrain"] is None
    assert record["settings"][2]["pretrain"] == [*pretrain, "--data.speakers", "100"]
    other = FakeBackend(n_folds=1)
    run_sweep(config, ["model.alpha"], [0.2], str(tmp_path / "alpha"), folds=[0], repeats=1, backend=other,
              pretrain=pretrain)
    assert arg(pretrain_calls(other)[0][1], "--data.speakers") is None  # only a speaker sweep adds it


# ------------------------------------------------------------------ alpha / beta under Adam
def model_config(**model) -> dict:
    return {"model": {"optimizer": "adam", "tasks": ["emotion", "gender", "speaker"], "use_decoder": True,
                      "use_discriminator": True, **model}}


@pytest.mark.parametrize(("param", "model", "why"), [
    ("model.beta", {"tasks": ["emotion"]}, r"L_c = beta \* L_E is the only loss"),
    ("model.beta", {"tasks": ["speaker"]}, r"L_c = \(1 - beta\) \* \(L_G \+ L_S\) is the only loss"),
    ("model.alpha", {"use_discriminator": False}, r"alpha \* L_rec is the only loss of the autoencoder optimizer"),
    ("model.alpha", {"use_decoder": False, "optimizer": "sgd"}, r"no decoder"),
])
def test_sweep_refuses_a_loss_weight_that_cannot_act(tmp_path, config, param, model, why) -> None:
    backend = FakeBackend(n_folds=1, resolved=model_config(**model))
    with pytest.raises(CVError, match=why):
        run_sweep(config, [param], [0.2, 0.8], str(tmp_path / "s"), folds=[0], repeats=1, backend=backend)
    assert backend.calls == [] and not (tmp_path / "s").exists()
    if model.get("optimizer", "adam") == "adam":
        with pytest.raises(CVError, match="use --model.optimizer sgd"):
            run_sweep(config, [param], [0.2], str(tmp_path / "s"), folds=[0], repeats=1, backend=backend)


def test_sweep_allows_the_same_weights_under_sgd_and_multi_task_beta_under_adam(tmp_path, config) -> None:
    sgd = FakeBackend(n_folds=1, resolved=model_config(optimizer="sgd", tasks=["emotion"], use_discriminator=False))
    record = run_sweep(config, ["model.beta"], [0.5], str(tmp_path / "a"), folds=[0], repeats=1, backend=sgd)
    assert "warnings" not in record and len(sgd.calls) == 2
    adam = FakeBackend(n_folds=1, resolved=model_config())
    record = run_sweep(config, ["model.beta"], [0.5], str(tmp_path / "b"), folds=[0], repeats=1, backend=adam)
    assert "warnings" not in record


def test_sweep_warns_for_alpha_with_a_discriminator_under_adam(tmp_path, config, capsys) -> None:
    backend = FakeBackend(n_folds=1, resolved=model_config())
    out = tmp_path / "s"
    record = run_sweep(config, ["model.alpha"], [0.2, 0.8], str(out), folds=[0], repeats=1, backend=backend)
    assert len(record["warnings"]) == 1 and "relative weight inside Adam's moment estimates" in record["warnings"][0]
    assert json.loads((out / "sweep.json").read_text())["warnings"] == record["warnings"]
    assert "[sweep] warning: model.alpha under model.optimizer adam" in capsys.readouterr().err
    assert len(backend.calls) == 4  # it still runs


def test_pretrain_string_is_kept_apart_from_the_training_arguments(monkeypatch) -> None:
    """`ser-mtl cv --config c.yaml --cv.pretrain "--config p.yaml --data.root /x" --cv.out o`: the quoted value
    (one argv token with blanks) belongs to --cv.pretrain, not to the training arguments; `=` works too."""
    import ser_mtl.runs.cv_command as command

    seen = {}
    monkeypatch.setattr(command, "run_cv", lambda args, **kwargs: seen.update(args=args, **kwargs))
    for form in (["--cv.pretrain", "--config p.yaml --data.root /x"], ["--cv.pretrain=--config p.yaml --data.root /x"]):
        seen.clear()
        command.cv_main(["--config", "c.yaml", *form, "--cv.out", "o", "--model.alpha", "0.3"])
        assert seen["args"] == ["--config", "c.yaml", "--model.alpha", "0.3"]
        assert seen["pretrain"] == ["--config", "p.yaml", "--data.root", "/x"]


def test_a_pretraining_locked_by_another_runner_is_left_to_it(tmp_path, config, pretrain) -> None:
    import fcntl

    out = tmp_path / "cv"
    (out / "pretrain_rep0").mkdir(parents=True)
    with open(out / "pretrain_rep0" / ".lock", "w") as held:  # another runner is pretraining repeat 0
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        backend = FakeBackend(n_folds=1)
        with pytest.raises(RunsFailed, match=r"1 of 2 runs failed \(fold0_rep0\)"):
            run_cv(config, [0], 2, str(out), backend=backend, pretrain=pretrain)
    assert [r for r, _ in pretrain_calls(backend)] == [1] and not (out / "pretrain_rep0" / "run.json").exists()
    rerun = FakeBackend(n_folds=1)
    run_cv(config, [0], 2, str(out), backend=rerun, pretrain=pretrain)
    assert [(s, n) for s, n, _ in rerun.calls] == [("pretrain", 0), ("fit", 0), ("test", 0)]
