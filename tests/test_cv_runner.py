"""The cv runner and sweeps with a stand-in training CLI that follows the fit/test contract.

``FakeBackend`` does what ``ser-mtl fit``/``test`` promise (checkpoints in
``RUN/checkpoints/{best,last}.ckpt``, ``RUN/test_metrics.json``) with scores that are a known
function of (fold, seed), so every summary number can be recomputed here. The subprocess path is
exercised with a stand-in CLI *module* run by the real ``CLIBackend``; the end-to-end test with the
real CLI is marked slow.
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ser_mtl.runs.cv import run_cv
from ser_mtl.runs.cv_command import parse_int_list
from ser_mtl.runs.errors import CVError, RunsFailed
from ser_mtl.runs.lifecycle import derive_seed, newest_checkpoint
from ser_mtl.runs.stages import CLIBackend
from ser_mtl.runs.sweep import parse_list, run_sweep, setting_dirname, sweep_settings

CONFIG_TEXT = "model:\n  alpha: 0.4\n"
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"  # any working directory


def arg(args: list[str], name: str) -> str | None:
    """The last value of ``name`` (later arguments win, as in jsonargparse)."""
    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]
    return values[-1] if values else None


def score(fold: int, seed: int, alpha: float = 0.4) -> tuple[float, float]:
    wa = 0.5 + 0.02 * fold + (seed % 10) / 1000 + 0.1 * alpha
    return wa, wa - 0.05


class FakeBackend:
    """Stand-in for the training CLI; can fail once at a chosen (stage, fold, repeat)."""

    def __init__(self, n_folds: int = 3, fail: tuple[str, int, int] | None = None,
                 fail_pretrain: int | None = None, resolved: dict | None = None) -> None:
        self.n_folds = n_folds
        self.fail = fail
        self.fail_pretrain = fail_pretrain  # the repeat whose pretraining crashes once
        self.resolved = resolved
        self.calls: list[tuple[str, int, list[str]]] = []

    def num_folds(self, config_args: list[str]) -> int:
        return self.n_folds

    def resolve_config(self, config_args: list[str]) -> dict:
        if self.resolved is not None:
            return self.resolved
        return {"model": {"alpha": float(arg(config_args, "--model.alpha") or 0.4)}, "data": {"corpus": "iemocap"}}

    def run_stage(self, stage: str, args: list[str], run_dir: Path) -> None:
        if run_dir.name.startswith("pretrain_rep"):  # a --cv.pretrain fit: checkpoints only
            assert stage == "fit" and arg(args, "--trainer.default_root_dir") == str(run_dir)
            repeat = json.loads((run_dir / "run.json").read_text())["repeat"]
            self.calls.append(("pretrain", repeat, list(args)))
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run_dir / "checkpoints" / "last.ckpt").write_text("pretrain epoch 1")
            if self.fail_pretrain == repeat:
                self.fail_pretrain = None
                raise RuntimeError(f"simulated crash in the pretraining of repeat {repeat}")
            (run_dir / "checkpoints" / "best.ckpt").write_text("pretrained")
            return
        fold = int(arg(args, "--data.fold"))
        self.calls.append((stage, fold, list(args)))
        assert arg(args, "--trainer.default_root_dir") == str(run_dir)
        ckpts = run_dir / "checkpoints"
        if stage == "fit":
            ckpts.mkdir(parents=True, exist_ok=True)
            (ckpts / "last.ckpt").write_text(json.dumps({"seed": int(arg(args, "--seed_everything"))}))
        repeat = json.loads((run_dir / "run.json").read_text())["repeat"]
        if self.fail == (stage, fold, repeat):
            self.fail = None  # fail once: a crash, then a clean retry
            raise RuntimeError(f"simulated crash in {stage} of fold {fold}")
        if stage == "fit":
            (ckpts / "best.ckpt").write_text("best")
        else:
            assert arg(args, "--ckpt_path") == str(ckpts / "best.ckpt")
            wa, ua = score(fold, int(arg(args, "--seed_everything")), float(arg(args, "--model.alpha") or 0.4))
            (run_dir / "test_metrics.json").write_text(json.dumps(
                {"wa": wa, "ua": ua, "n_utterances": 10, "classes": ["a", "b"], "confmat": [[4, 1], [2, 3]],
                 "eer": 0.1 + 0.01 * fold}))

    def fits(self) -> list[int]:
        return [fold for stage, fold, _ in self.calls if stage == "fit"]


@pytest.fixture
def config(tmp_path: Path) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG_TEXT)
    return ["--config", str(path), "--trainer.max_epochs", "2"]


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_runs_every_fold_and_repeat_with_derived_seeds(tmp_path: Path, config: list[str]) -> None:
    backend = FakeBackend(n_folds=3)
    out = tmp_path / "cv"
    summary = run_cv(config, None, 2, str(out), base_seed=7, backend=backend)
    assert backend.fits() == [0, 1, 2, 0, 1, 2]  # folds from the backend, repeat-major
    fit_args = backend.calls[0][2]
    assert fit_args[:4] == config[:4]  # the user's arguments come first; the runner's win
    assert arg(fit_args, "--ckpt_path") is None  # a fresh run does not resume
    expected_wa = []
    for rep in range(2):
        per_fold = []
        for fold in range(3):
            metrics = json.loads((out / f"fold{fold}_rep{rep}" / "metrics.json").read_text())
            seed = derive_seed(7, fold, rep)
            assert metrics["seed"] == seed and (metrics["fold"], metrics["repeat"]) == (fold, rep)
            assert metrics["wa"] == pytest.approx(score(fold, seed)[0])
            assert metrics["eer"] == pytest.approx(0.1 + 0.01 * fold) and metrics["confmat"] == [[4, 1], [2, 3]]
            per_fold.append(score(fold, seed)[0])
        expected_wa.append(np.mean(per_fold))
    assert summary["wa_mean"] == pytest.approx(np.mean(expected_wa))
    assert summary["wa_std"] == pytest.approx(np.std(expected_wa, ddof=1))
    assert summary["eer_mean"] == pytest.approx(0.11)  # (0.10 + 0.11 + 0.12) / 3 in both repeats
    assert summary["config"]["config_files"] == {config[1]: CONFIG_TEXT}
    assert summary["config"]["resolved"]["model"]["alpha"] == 0.4
    assert summary["config"]["base_seed"] == 7 and summary["config"]["grid"] == {"folds": [0, 1, 2],
                                                                                 "repeats": [0, 1]}
    assert json.loads((out / "summary.json").read_text()) == summary
    assert not tmp_files(out)


def test_crash_then_rerun_skips_finished_runs_and_resumes(tmp_path: Path, config: list[str]) -> None:
    out = tmp_path / "cv"
    backend = FakeBackend(n_folds=2, fail=("fit", 1, 0))
    with pytest.raises(RunsFailed, match=r"1 of 4 runs failed \(fold1_rep0\)"):
        run_cv(config, [0, 1], 2, str(out), backend=backend)
    first = (out / "fold0_rep0" / "metrics.json").read_bytes()
    assert not (out / "fold1_rep0" / "metrics.json").exists()
    assert not (out / "fold1_rep0" / "fit_done.json").exists()
    assert json.loads((out / "summary.json").read_text())["missing"] == [{"fold": 1, "repeat": 0}]

    rerun = FakeBackend(n_folds=2)
    summary = run_cv(config, [0, 1], 2, str(out), backend=rerun)
    assert [(s, f) for s, f, _ in rerun.calls] == [("fit", 1), ("test", 1)]  # nothing else ran again
    resumed = rerun.calls[0][2]
    assert arg(resumed, "--ckpt_path") == str((out / "fold1_rep0" / "checkpoints" / "last.ckpt").absolute())
    assert (out / "fold0_rep0" / "metrics.json").read_bytes() == first
    assert summary["n_runs"] == 4 and summary["complete"] and not tmp_files(out)
    third = FakeBackend(n_folds=2)
    run_cv(config, [0, 1], 2, str(out), backend=third)
    assert third.calls == []


def test_fail_fast_stops_at_the_failed_run(tmp_path: Path, config: list[str]) -> None:
    backend = FakeBackend(fail=("fit", 1, 0))
    with pytest.raises(RuntimeError, match="simulated crash in fit of fold 1"):
        run_cv(config, [0, 1, 2], 1, str(tmp_path / "cv"), backend=backend, fail_fast=True)
    assert backend.fits() == [0, 1]


def test_failed_test_reruns_only_the_test_and_never_reuses_stale_metrics(tmp_path: Path,
                                                                          config: list[str]) -> None:
    out = tmp_path / "cv"
    stale = out / "fold0_rep0" / "test_metrics.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"wa": 0.99, "ua": 0.99}))
    with pytest.raises(RunsFailed):
        run_cv(config, [0], 1, str(out), backend=FakeBackend(fail=("test", 0, 0)))
    assert not stale.exists() and not (out / "fold0_rep0" / "metrics.json").exists()
    rerun = FakeBackend()
    summary = run_cv(config, [0], 1, str(out), backend=rerun)
    assert [s for s, _, _ in rerun.calls] == ["test"]  # fit_done.json: the fit is not repeated
    assert summary["wa_mean"] == pytest.approx(score(0, derive_seed(0, 0, 0))[0])


def test_an_empty_test_split_fails_the_run_with_a_clear_message(tmp_path: Path, config: list[str]) -> None:
    class NanTest(FakeBackend):
        def run_stage(self, stage, args, run_dir):
            super().run_stage(stage, args, run_dir)
            if stage == "test":
                (run_dir / "test_metrics.json").write_text('{"wa": NaN, "ua": NaN, "eer": NaN}')

    with pytest.raises(RunsFailed, match="fold0_rep0"):
        run_cv(config, [0], 1, str(tmp_path / "cv"), backend=NanTest())
    assert not (tmp_path / "cv" / "fold0_rep0" / "metrics.json").exists()


def test_newest_checkpoint_prefers_lightnings_hpc_checkpoint(tmp_path: Path) -> None:
    assert newest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    last, hpc = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "hpc_ckpt_1.ckpt"
    last.write_text("x")
    hpc.write_text("y")
    now = time.time()
    os.utime(last, (now - 100, now - 100))
    os.utime(hpc, (now, now))
    assert newest_checkpoint(tmp_path) == hpc
    os.utime(last, (now + 100, now + 100))
    assert newest_checkpoint(tmp_path) == last


def test_refuses_to_mix_configurations_and_reserved_arguments(tmp_path: Path, config: list[str]) -> None:
    out = str(tmp_path / "cv")
    run_cv(config, [0], 1, out, backend=FakeBackend())
    with pytest.raises(CVError, match=r"cv.json: this folder holds runs of a different config_args"):
        run_cv([*config, "--model.alpha", "0.9"], [0], 1, out, backend=FakeBackend())
    with pytest.raises(CVError, match="different base_seed"):
        run_cv(config, [0], 1, out, base_seed=1, backend=FakeBackend())
    Path(config[1]).write_text("model:\n  alpha: 0.5\n")  # the config file itself was edited
    with pytest.raises(CVError, match="different config_files"):
        run_cv(config, [0], 1, out, backend=FakeBackend())
    with pytest.raises(CVError, match="--data.fold is set by the cv runner"):
        run_cv([*config, "--data.fold", "2"], [0], 1, str(tmp_path / "x"), backend=FakeBackend())
    with pytest.raises(CVError, match="--cv.repeats must be >= 1"):
        run_cv(config, [0], 0, str(tmp_path / "x"), backend=FakeBackend())


def test_seeds_are_deterministic_and_distinct() -> None:
    seeds = {derive_seed(b, f, r) for b in (0, 1) for f in range(10) for r in range(10)}
    assert len(seeds) == 200 and all(0 <= s < 2**31 for s in seeds)
    assert derive_seed(0, 3, 2) == derive_seed(0, 3, 2) != derive_seed(0, 2, 3)


def test_the_cv_command_lists_its_options() -> None:
    import subprocess

    result = subprocess.run([sys.executable, "-m", "ser_mtl.cli", "cv", "--help"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0 and "--cv.out" in result.stdout and "--cv.slurm_partition" in result.stdout


def test_fold_lists() -> None:
    assert parse_int_list("[0, 2,5]") == [0, 2, 5]
    assert parse_int_list("0-3") == [0, 1, 2, 3]
    assert parse_int_list("1,4-5") == [1, 4, 5]
    assert parse_int_list("3") == [3] and parse_int_list(None) is None
    with pytest.raises(CVError, match="expected integers"):
        parse_int_list("a,b")


# ------------------------------------------------------------------------------------------ sweeps
def test_sweep_writes_one_cv_per_value(tmp_path: Path, config: list[str], capsys) -> None:
    out = tmp_path / "sweep"
    record = run_sweep(config, ["model.alpha"], parse_list("0.1,0.5,1.0"), str(out), folds=[0, 1], repeats=1,
                       backend=FakeBackend())
    # its whole cost, once (the fake CLI's fits record no cost: its tests' seconds only)
    assert re.search(rf"\[sweep\] {re.escape(str(out))}: 0 fits over 3 settings, \d\.\d{{3}} device-hours in all",
                     capsys.readouterr().out)
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "selected")  # selected/: test_selection.py
    assert dirs == ["model.alpha=0.1", "model.alpha=0.5", "model.alpha=1.0"]
    assert json.loads((out / "sweep.json").read_text()) == record
    assert [s["summary"] for s in record["settings"]] == [f"{d}/summary.json" for d in dirs]
    for alpha in (0.1, 0.5, 1.0):
        summary = json.loads((out / f"model.alpha={alpha}" / "summary.json").read_text())
        expected = np.mean([score(f, derive_seed(0, f, 0), alpha)[1] for f in (0, 1)])
        assert summary["ua_mean"] == pytest.approx(expected)  # the swept value reached the run
        assert summary["config"]["config_args"][-2:] == ["--model.alpha", str(alpha)]


def test_sweep_settings_zip_and_grid() -> None:
    assert sweep_settings(["a"], [1, 2]) == [{"a": 1}, {"a": 2}]
    assert sweep_settings(["a", "b"], [[1, 9], [2, 8]]) == [{"a": 1, "b": 9}, {"a": 2, "b": 8}]
    grid = sweep_settings(["a", "b"], [[1, 2], [8, 9, 10]], mode="grid")
    assert len(grid) == 6 and grid[0] == {"a": 1, "b": 8} and grid[-1] == {"a": 2, "b": 10}
    assert setting_dirname({"model.alpha": 0.3, "data.root": "/x/y"}) == "model.alpha=0.3,data.root=_x_y"
    assert parse_list("[0.1, 1e-3, true, abc]") == [0.1, 0.001, True, "abc"]
    assert parse_list("1e-4,2") == [0.0001, 2] and parse_list("[[a, 1e-2]]") == [["a", 0.01]]
    with pytest.raises(CVError, match="zip mode needs one value per parameter"):
        sweep_settings(["a", "b"], [[1, 2, 3]])
    with pytest.raises(CVError, match="grid with 2 parameters needs 2 non-empty value lists"):
        sweep_settings(["a", "b"], [[1, 2]], mode="grid")


# ------------------------------------------------------------------ subprocess path, stand-in CLI
STAND_IN_CLI = '''
"""A stand-in for ser_mtl.cli following the fit/test contract.

FAKE_CRASH=fit:1 stops fold 1's first fit the way Lightning does on SIGTERM (exit code 0!).
FAKE_BLOCK=1 makes a fit wait for the file `release` next to the run folders, or for SIGTERM.
"""
import json, os, signal, sys, time
from pathlib import Path


class SIGTERMException(SystemExit):  # what Lightning raises on SIGTERM
    pass


def block(root):
    got_term = []
    signal.signal(signal.SIGTERM, lambda *_: got_term.append(1))
    (root.parent / "started").write_text(str(os.getpid()))
    for _ in range(300):
        if got_term:
            raise SIGTERMException()
        if (root.parent / "release").exists():
            return
        time.sleep(0.05)


def num_folds(config_args):
    return 4


def main(args):
    stage, rest = args[0], args[1:]
    get = lambda name: [rest[i + 1] for i, a in enumerate(rest[:-1]) if a == name][-1:] or [None]
    root = Path(get("--trainer.default_root_dir")[0])
    fold = int(get("--data.fold")[0])
    log = root.parent / "calls.txt"
    with open(log, "a") as handle:
        handle.write(json.dumps([stage, fold, get("--ckpt_path")[0]]) + "\\n")
    if stage == "fit":
        (root / "checkpoints").mkdir(parents=True, exist_ok=True)
        (root / "checkpoints" / "last.ckpt").write_text("epoch 1")
        if os.environ.get("FAKE_BLOCK"):
            block(root)
        marker = root.parent / "crashed"
        if os.environ.get("FAKE_CRASH") == f"fit:{fold}" and not marker.exists():
            marker.write_text("")
            raise SIGTERMException()
        (root / "checkpoints" / "best.ckpt").write_text("best")
    else:
        (root / "test_metrics.json").write_text(json.dumps({"wa": 0.5 + fold / 10, "ua": 0.4 + fold / 10}))
'''


@pytest.mark.slow
def test_subprocess_backend_treats_sigterm_exit_as_unfinished(tmp_path: Path, config: list[str]) -> None:
    (tmp_path / "stand_in_cli.py").write_text(textwrap.dedent(STAND_IN_CLI))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "FAKE_CRASH": "fit:1"}
    backend = CLIBackend(cli_module="stand_in_cli", env=env)
    backend.resolve_config = lambda args: None  # the stand-in has no --print_config
    backend.num_folds = lambda args: 4  # nor num_folds (it is not importable in this process)
    out = tmp_path / "cv"
    with pytest.raises(RunsFailed, match=r"fold1_rep0"):
        run_cv(config, [0, 1], 1, str(out), backend=backend)
    fit_log = (out / "fold1_rep0" / "fit.log").read_text()
    assert "SIGTERM" in fit_log and not (out / "fold1_rep0" / "fit_done.json").exists()
    run_cv(config, [0, 1], 1, str(out), backend=backend)
    calls = [json.loads(line) for line in (out / "calls.txt").read_text().splitlines()]
    last = str((out / "fold1_rep0" / "checkpoints" / "last.ckpt").absolute())
    assert calls == [["fit", 0, None], ["test", 0, str((out / "fold0_rep0/checkpoints/best.ckpt").absolute())],
                     ["fit", 1, None], ["fit", 1, last],
                     ["test", 1, str((out / "fold1_rep0/checkpoints/best.ckpt").absolute())]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wa_mean"] == pytest.approx(0.55) and summary["ua_mean"] == pytest.approx(0.45)


RUNNER = """
import sys
from ser_mtl.runs.cv import run_cv
from ser_mtl.runs.stages import CLIBackend
backend = CLIBackend(cli_module="stand_in_cli")
backend.resolve_config = lambda args: None
backend.num_folds = lambda args: 4  # the stand-in is importable only in the children
run_cv(sys.argv[2:], [0], 1, sys.argv[1], backend=backend)
"""


def _start_runner(tmp_path: Path, config: list[str], out: Path):
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "FAKE_BLOCK": "1"}
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(out), *config], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for _ in range(400):
        if (out / "started").exists():
            return runner
        time.sleep(0.05)
    runner.kill()
    raise AssertionError(f"the stand-in fit never started:\n{runner.communicate()[0]}")


def _wait_gone(pid: int) -> None:
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return  # a zombie holds no files
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not end")


@pytest.mark.slow
def test_sigkill_of_the_runner_ends_its_fit_and_one_rerun_completes(tmp_path: Path, config: list[str]) -> None:
    """SIGKILL the runner mid-fit: its fit child dies with it (PR_SET_PDEATHSIG), the run's lock is free,
    and one re-run of the same command resumes that run from its last checkpoint and finishes it."""
    (tmp_path / "stand_in_cli.py").write_text(textwrap.dedent(STAND_IN_CLI))
    out = tmp_path / "cv"
    runner = _start_runner(tmp_path, config, out)
    child = int((out / "started").read_text())
    runner.kill()
    runner.wait()
    _wait_gone(child)  # no orphan keeps training
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    backend = CLIBackend(cli_module="stand_in_cli", env=env)
    backend.resolve_config = lambda args: None
    backend.num_folds = lambda args: 4  # the stand-in is importable only in the children
    summary = run_cv(config, [0], 1, str(out), backend=backend)
    calls = [json.loads(line) for line in (out / "calls.txt").read_text().splitlines()]
    assert calls[1] == ["fit", 0, str((out / "fold0_rep0" / "checkpoints" / "last.ckpt").absolute())]
    assert summary["n_runs"] == 1 and summary["ua_mean"] == pytest.approx(0.4) and not summary.get("missing")


@pytest.mark.slow
def test_sigterm_to_the_runner_stops_the_fit_and_the_runner(tmp_path: Path, config: list[str]) -> None:
    import signal

    (tmp_path / "stand_in_cli.py").write_text(textwrap.dedent(STAND_IN_CLI))
    out = tmp_path / "cv"
    runner = _start_runner(tmp_path, config, out)
    child = int((out / "started").read_text())
    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=60)
    _wait_gone(child)
    assert runner.returncode != 0 and "SIGTERM: waiting for the running stage to stop" in output
    assert "stopped by SIGTERM; re-run the same command to continue" in output
    assert "fit stopped by SIGTERM" in (out / "fold0_rep0" / "fit.log").read_text()
    assert not (out / "fold0_rep0" / "fit_done.json").exists() and not (out / "summary.json").exists()


def test_a_locked_run_is_left_to_its_owner(tmp_path: Path, config: list[str]) -> None:
    import fcntl

    out = tmp_path / "cv"
    (out / "fold1_rep0").mkdir(parents=True)
    with open(out / "fold1_rep0" / ".lock", "w") as held:  # another runner's lock (flock is per open file)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        backend = FakeBackend()
        summary = run_cv(config, [0, 1, 2], 1, str(out), backend=backend)
    assert backend.fits() == [0, 2] and summary["missing"] == [{"fold": 1, "repeat": 0}]
    rerun = FakeBackend()
    run_cv(config, [0, 1, 2], 1, str(out), backend=rerun)
    assert rerun.fits() == [1]


# ------------------------------------------------------------------------- end to end, real CLI
@pytest.mark.slow
def test_end_to_end_with_the_real_cli(tmp_path: Path) -> None:
    from ser_mtl.analysis.report import report
    from ser_mtl.data.synth import synth

    synth(str(tmp_path / "corpus"), iemocap_sessions=3, iemocap_dialogs=2, iemocap_utterances=16,
          librispeech_train_speakers=4, librispeech_train_utterances=4, librispeech_test_speakers=2,
          librispeech_test_utterances=4)
    config = ["--config", str(DEMO_CONFIG), "--data.root", str(tmp_path / "corpus/IEMOCAP_full_release"),
              "--data.aux_root", str(tmp_path / "corpus/LibriSpeech"), "--data.cache_dir", str(tmp_path / "cache"),
              "--trainer.max_epochs", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    out = tmp_path / "cv"
    summary = run_cv(config, [0, 1], 1, str(out))
    for fold in (0, 1):
        tested = json.loads((out / f"fold{fold}_rep0" / "test_metrics.json").read_text())
        metrics = json.loads((out / f"fold{fold}_rep0" / "metrics.json").read_text())
        assert metrics["wa"] == tested["wa"] and metrics["ua"] == tested["ua"]
        assert (out / f"fold{fold}_rep0" / "predictions.csv").is_file()
    assert summary["ua_mean"] == pytest.approx(np.mean([r["ua"] for r in summary["runs"]]))
    assert summary["config"]["resolved"]["data"]["scheme"] == "loso_session"
    logs = (out / "fold0_rep0" / "fit.log").read_text()
    run_cv(config, [0, 1], 1, str(out))  # everything finished: nothing runs again
    assert (out / "fold0_rep0" / "fit.log").read_text() == logs
    markdown = Path(report([str(out)], str(tmp_path / "report"))).read_text()
    assert f"{100 * summary['ua_mean']:.1f} ± –" in markdown  # one repeat: no spread
