"""``ser-mtl cv --cv.pack K``: runs needing a fit grouped K at a time, one packed child per group, per-run tests.

``PackBackend`` stands in for the training CLI (``test_cv_runner.FakeBackend``) and for the pack child:
its ``pack_fit`` stage reads the pack spec the runner wrote and leaves what ``fit_pack`` leaves in each
run folder (checkpoints, ``fit_done.json``). The last tests run the real CLI and the real pack child.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from pathlib import Path

import pytest
from cli_args import run_args
from test_cv_jobs import eight_cores, max_overlap  # noqa: F401 - fixture
from test_cv_runner import FakeBackend, arg, score

from ser_mtl.experiments.cv import CVError, RunsFailed, derive_seed, run_cv
from ser_mtl.experiments.cv_command import cv_kwargs, cv_main
from ser_mtl.experiments.cv_pack import PACK_MARK, PACK_STAGE, plan_tasks
from ser_mtl.experiments.slurm import SlurmOptions
from ser_mtl.models.packed_resume import STATE_NAME


def locked_elsewhere(run_dir: Path) -> bool:
    """True when some open file description holds ``run_dir/.lock`` (flock is per description)."""
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError as err:
        assert err.errno in (errno.EAGAIN, errno.EACCES)
        return True
    finally:
        os.close(fd)


class PackBackend(FakeBackend):
    """FakeBackend plus the ``pack_fit`` stage; records each pack's runs and spec, and every stage's env."""

    def __init__(self, *args, fail_pack: bool = False, sleep_s: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.packs: list[list[str]] = []
        self.specs: list[dict] = []
        self.spans: list[tuple[str, float, float, dict]] = []
        self.fail_pack, self.sleep_s = fail_pack, sleep_s

    def run_stage(self, stage: str, args: list[str], run_dir: Path, env: dict | None = None) -> None:
        start = time.monotonic()
        if stage != PACK_STAGE:
            super().run_stage(stage, args, run_dir)
        else:
            spec = json.loads(Path(args[0]).read_text())
            self.specs.append(spec)
            runs = [Path(r["run_dir"]) for r in spec["runs"]]
            self.packs.append([r.name for r in runs])
            assert all(locked_elsewhere(r) for r in runs)  # every run lock is held while the pack trains
            assert all(json.loads((r / PACK_MARK).read_text())["runs"] == self.packs[-1] for r in runs)
            if self.fail_pack:
                self.fail_pack = False
                raise RuntimeError("simulated crash of the pack")
            for r, entry in zip(runs, spec["runs"]):
                assert json.loads((r / "run.json").read_text())["seed"] == entry["seed"]
                (r / "checkpoints").mkdir(parents=True, exist_ok=True)
                (r / "checkpoints" / "best.ckpt").write_text("best")
                (r / "checkpoints" / "last.ckpt").write_text("last")
                (r / "fit_done.json").write_text(json.dumps({"packed": True}))
        time.sleep(self.sleep_s)
        self.spans.append((stage, start, time.monotonic(), dict(env or {})))

    def tests(self) -> list[int]:
        return [fold for stage, fold, _ in self.calls if stage == "test"]


@pytest.fixture
def config(tmp_path: Path) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  alpha: 0.4\n")
    return ["--config", str(path)]


def names(*folds: int, rep: int = 0) -> list[str]:
    return [f"fold{f}_rep{rep}" for f in folds]


def test_seven_runs_in_packs_of_three_are_fitted_3_3_1_then_each_tested(tmp_path: Path, config) -> None:
    backend = PackBackend(n_folds=7)
    summary = run_cv(config, None, 1, str(tmp_path / "cv"), base_seed=5, pack=3, backend=backend)
    assert backend.packs == [names(0, 1, 2), names(3, 4, 5), names(6)]
    assert backend.fits() == [] and backend.tests() == list(range(7))  # no unpacked fit
    spec = backend.specs[0]
    assert spec["config_args"] == config
    assert [(r["fold"], r["seed"], r["args"]) for r in spec["runs"]] == [(f, derive_seed(5, f, 0), []) for f in (0, 1, 2)]
    for fold in range(7):
        metrics = json.loads((tmp_path / "cv" / f"fold{fold}_rep0" / "metrics.json").read_text())
        assert metrics["wa"] == pytest.approx(score(fold, derive_seed(5, fold, 0))[0])
    assert "packs/fold3_rep0+fold4_rep0+fold5_rep0/pack_fit.log" in (tmp_path / "cv" / "fold4_rep0" / "fit.log").read_text()
    assert summary["n_runs"] == 7 and summary["complete"]
    # the same numbers as the unpacked runner (the fake's scores depend on fold and seed only)
    unpacked = run_cv(config, None, 1, str(tmp_path / "plain"), base_seed=5, backend=FakeBackend(n_folds=7))
    assert summary["wa_mean"] == pytest.approx(unpacked["wa_mean"])
    # a second call finds everything finished: no stage runs at all
    again = PackBackend(n_folds=7)
    run_cv(config, None, 1, str(tmp_path / "cv"), base_seed=5, pack=3, backend=again)
    assert again.calls == [] and again.packs == []


def test_finished_fitted_and_resumable_runs_are_not_packed(tmp_path: Path, config) -> None:
    out = tmp_path / "cv"
    run_cv(config, [1, 4], 1, str(out), backend=FakeBackend(n_folds=7))  # folds 1 and 4 finished
    (out / "fold2_rep0").mkdir()
    (out / "fold2_rep0" / "checkpoints").mkdir()
    (out / "fold2_rep0" / "checkpoints" / "best.ckpt").write_text("best")
    (out / "fold2_rep0" / "fit_done.json").write_text("{}")  # fitted, its test not run
    (out / "fold5_rep0" / "checkpoints").mkdir(parents=True)
    (out / "fold5_rep0" / "checkpoints" / "last.ckpt").write_text("{}")  # an unpacked fit to resume
    assert plan_tasks(out, [(f, 0) for f in range(7)], 3) == [
        ((0, 0), (3, 0), (6, 0)), ((1, 0),), ((2, 0),), ((4, 0),), ((5, 0),)]
    backend = PackBackend(n_folds=7)
    run_cv(config, None, 1, str(out), pack=3, backend=backend)
    assert backend.packs == [names(0, 3, 6)]
    fits = [(fold, arg(a, "--ckpt_path")) for stage, fold, a in backend.calls if stage == "fit"]
    assert fits == [(5, str((out / "fold5_rep0" / "checkpoints" / "last.ckpt").absolute()))]  # resumed, alone
    assert sorted(backend.tests()) == [0, 2, 3, 5, 6]  # 1 and 4 were finished


def test_a_run_busy_elsewhere_is_left_out_of_its_pack(tmp_path: Path, config) -> None:
    out = tmp_path / "cv"
    (out / "fold1_rep0").mkdir(parents=True)
    fd = os.open(out / "fold1_rep0" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "another runner" trains fold 1
    try:
        backend = PackBackend(n_folds=4)
        summary = run_cv(config, None, 1, str(out), pack=2, backend=backend)
    finally:
        os.close(fd)
    assert backend.packs == [names(0), names(2, 3)]
    assert sorted(backend.tests()) == [0, 2, 3] and not (out / "fold1_rep0" / "metrics.json").exists()
    assert summary["n_runs"] == 3 and summary["missing"] == [{"fold": 1, "repeat": 0}]


def test_a_failed_pack_fails_its_runs_and_a_rerun_repacks_them_from_scratch(tmp_path: Path, config) -> None:
    out = tmp_path / "cv"
    backend = PackBackend(n_folds=4, fail_pack=True)
    with pytest.raises(RunsFailed, match=r"2 of 4 runs failed \(fold0_rep0, fold1_rep0\)"):
        run_cv(config, None, 1, str(out), pack=2, backend=backend)
    assert backend.packs == [names(0, 1), names(2, 3)] and sorted(backend.tests()) == [2, 3]
    (out / "fold0_rep0" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "fold0_rep0" / "checkpoints" / "last.ckpt").write_text("a packed epoch")  # what a killed pack leaves
    retry = PackBackend(n_folds=4)
    run_cv(config, None, 1, str(out), pack=2, backend=retry)
    assert retry.packs == [names(0, 1)] and retry.fits() == []  # repacked, not resumed unpacked
    assert all((out / n / "metrics.json").exists() for n in names(0, 1, 2, 3))


class KilledPackBackend(PackBackend):
    """Its first pack dies after an epoch: each run's last.ckpt and the pack's pack_state.pt are left."""

    def run_stage(self, stage: str, args: list[str], run_dir: Path, env: dict | None = None) -> None:
        if stage == PACK_STAGE and self.fail_pack:
            spec = json.loads(Path(args[0]).read_text())
            for entry in spec["runs"]:
                (Path(entry["run_dir"]) / "checkpoints").mkdir(parents=True, exist_ok=True)
                (Path(entry["run_dir"]) / "checkpoints" / "last.ckpt").write_text("epoch 0")
            (Path(args[0]).parent / STATE_NAME).write_text("the pack after epoch 0")
        super().run_stage(stage, args, run_dir, env)


def test_a_killed_pack_is_resumed_by_the_rerun_with_its_checkpoints_kept(tmp_path: Path, config) -> None:
    out = tmp_path / "cv"
    with pytest.raises(RunsFailed):
        run_cv(config, None, 1, str(out), pack=2, backend=KilledPackBackend(n_folds=2, fail_pack=True))
    pack_dir = out / "packs" / "fold0_rep0+fold1_rep0"
    spec_before = (pack_dir / "pack.json").read_text()
    seen: list[str] = []

    class Checking(PackBackend):
        def run_stage(self, stage, args, run_dir, env=None):
            if stage == PACK_STAGE:  # what the resuming child finds
                seen.extend((out / n / "checkpoints" / "last.ckpt").read_text() for n in names(0, 1))
                assert (pack_dir / STATE_NAME).exists() and (pack_dir / "pack.json").read_text() == spec_before
            super().run_stage(stage, args, run_dir, env)

    run_cv(config, None, 1, str(out), pack=2, backend=Checking(n_folds=2))
    assert seen == ["epoch 0", "epoch 0"]  # not deleted as for a fresh pack
    assert "resumed in a pack of 2 runs" in (out / "fold0_rep0" / "fit.log").read_text()
    assert all((out / n / "metrics.json").exists() for n in names(0, 1))


def test_a_pack_whose_runs_changed_starts_afresh_without_the_old_state(tmp_path: Path, config) -> None:
    out = tmp_path / "cv"
    with pytest.raises(RunsFailed):
        run_cv(config, None, 1, str(out), pack=2, backend=KilledPackBackend(n_folds=2, fail_pack=True))
    old = out / "packs" / "fold0_rep0+fold1_rep0"
    (old / "pack.json").write_text(json.dumps({"config_args": ["--other"], "runs": []}))  # another pack's spec
    backend = PackBackend(n_folds=2)
    run_cv(config, None, 1, str(out), pack=2, backend=backend)
    assert not (old / STATE_NAME).exists() and backend.specs[0]["config_args"] == config
    assert "fitted in a pack of 2 runs" in (out / "fold0_rep0" / "fit.log").read_text().split("=====")[-1]


def test_an_unfinished_packed_run_is_fitted_from_scratch_without_pack(tmp_path: Path, config) -> None:
    out = tmp_path / "cv"
    with pytest.raises(RunsFailed):
        run_cv(config, [0], 1, str(out), pack=2, backend=PackBackend(n_folds=2, fail_pack=True))
    (out / "fold0_rep0" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "fold0_rep0" / "checkpoints" / "last.ckpt").write_text("a packed epoch")
    plain = FakeBackend(n_folds=2)
    run_cv(config, [0], 1, str(out), backend=plain)
    assert [(stage, arg(a, "--ckpt_path")) for stage, _, a in plain.calls if stage == "fit"] == [("fit", None)]
    assert not (out / "fold0_rep0" / PACK_MARK).exists()


def test_two_jobs_run_two_packs_at_once_each_on_its_device(tmp_path: Path, config, eight_cores) -> None:  # noqa: F811
    backend = PackBackend(n_folds=4, sleep_s=1.0)
    run_cv(config, None, 1, str(tmp_path / "cv"), pack=2, jobs=2, backend=backend)
    packs = [(s, e, env) for stage, s, e, env in backend.spans if stage == PACK_STAGE]
    assert sorted(backend.packs) == [names(0, 1), names(2, 3)]
    assert max_overlap([(s, e) for s, e, _ in packs]) == 2
    assert sorted(env["CUDA_VISIBLE_DEVICES"] for _, _, env in packs) == ["3", "5"]
    assert {env["OMP_NUM_THREADS"] for _, _, env in packs} == {"4"}


def test_each_packed_run_starts_from_its_repeats_pretraining(tmp_path: Path, config) -> None:
    out = tmp_path / "cv"
    backend = PackBackend(n_folds=2)
    run_cv(config, None, 2, str(out), pack=4, backend=backend, pretrain=["--config", config[1]])
    assert backend.packs == [[*names(0, 1, rep=0), *names(0, 1, rep=1)]]
    inits = [r["args"] for r in backend.specs[0]["runs"]]
    assert inits == [["--model.init_from", str((out / f"pretrain_rep{r}" / "checkpoints" / "best.ckpt").absolute())]
                     for r in (0, 0, 1, 1)]
    tested = [arg(a, "--model.init_from") for stage, _, a in backend.calls if stage == "test"]
    assert tested == [i[1] for i in inits]


def test_slurm_writes_one_array_task_per_pack_and_only_pack_runs_its_slice(tmp_path: Path, config) -> None:
    out = tmp_path / "cv"
    written = run_cv(config, None, 1, str(out), pack=3, slurm=True, backend=PackBackend(n_folds=7))
    script = Path(written["array"]).read_text()
    assert written["n_tasks"] == 3 and "#SBATCH --array=0-2" in script
    assert "--cv.pack 3 --cv.only_pack \"$SLURM_ARRAY_TASK_ID\"" in script
    backend = PackBackend(n_folds=7)
    result = run_cv(config, None, 1, str(out), pack=3, only_pack=2, backend=backend)
    assert backend.packs == [names(6)] and list(result) == names(6) and result["fold6_rep0"]["fold"] == 6
    assert not (out / "summary.json").exists()
    with pytest.raises(CVError, match=r"--cv.only_pack 3 is outside 0..2"):
        run_cv(config, None, 1, str(out), pack=3, only_pack=3, backend=PackBackend(n_folds=7))


@pytest.mark.parametrize("kwargs, message", [
    ({"pack": 0}, "--cv.pack must be an integer >= 1"),
    ({"only_pack": 0}, "--cv.only_pack needs --cv.pack"),
    ({"pack": 2, "only_task": 0}, "with --cv.pack use --cv.only_pack"),
    ({"pack": 2, "slurm": True, "slurm_options": SlurmOptions(gpus=2)}, "--cv.slurm_gpus 1"),
])
def test_pack_options_that_cannot_apply_are_refused(tmp_path: Path, config, kwargs, message) -> None:
    with pytest.raises(CVError, match=message):
        run_cv(config, None, 1, str(tmp_path / "cv"), backend=PackBackend(n_folds=2), **kwargs)


def test_the_cv_command_takes_pack_and_only_pack() -> None:
    kwargs = cv_kwargs(cv_main.parser().parse_args(["--cv.out", "d", "--cv.pack", "4", "--cv.only_pack", "1"]))
    assert (kwargs["pack"], kwargs["only_pack"]) == (4, 1)
    assert cv_kwargs(cv_main.parser().parse_args(["--cv.out", "d"]))["pack"] == 1


def test_the_pack_child_runs_pack_runner_and_reads_its_spec(tmp_path: Path, monkeypatch) -> None:
    import torch

    from ser_mtl.experiments import pack_runner
    from ser_mtl.experiments.cv_pack import pack_stage_backend
    from ser_mtl.experiments.stages import CLIBackend

    child = pack_stage_backend(CLIBackend(in_process=True))
    assert (child.cli_module, child.in_process) == ("ser_mtl.experiments.pack_runner", True)
    fake = FakeBackend()
    assert pack_stage_backend(fake) is fake
    spec = tmp_path / "pack.json"
    spec.write_text(json.dumps({"config_args": ["--config", "c.yaml"], "runs": [
        {"fold": 2, "seed": 9, "run_dir": "/r/fold2_rep0", "args": ["--model.init_from", "/p/best.ckpt"]}]}))
    assert pack_runner.read_pack_spec(spec) == (["--config", "c.yaml"],
                                                [(2, 9, "/r/fold2_rep0", ["--model.init_from", "/p/best.ckpt"])])
    spec.write_text(json.dumps({"runs": []}))
    with pytest.raises(ValueError, match=r"pack.json: not a pack spec"):
        pack_runner.read_pack_spec(spec)
    with pytest.raises(SystemExit, match="usage"):
        pack_runner.main(["fit", str(spec)])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert (pack_runner.pack_device("cpu"), pack_runner.pack_device("auto")) == ("cpu", "cpu")
    with pytest.raises(ValueError, match="trainer.accelerator is gpu but this process sees no GPU"):
        pack_runner.pack_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert (pack_runner.pack_device("cpu"), pack_runner.pack_device("auto")) == ("cpu", "cuda")


FD_LISTER = """
import json, os, sys
from pathlib import Path


def main(args):
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor of the listing itself
            pass
    Path(args[1]).write_text(json.dumps(sorted(link for link in links if link.endswith(".lock"))))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists descriptors through /proc")
def test_a_child_started_under_k_run_locks_inherits_all_k(tmp_path: Path) -> None:
    from ser_mtl.experiments.stages import CLIBackend, run_lock

    (tmp_path / "fd_lister.py").write_text(FD_LISTER)
    backend = CLIBackend(cli_module="fd_lister", env={"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])})
    runs = [tmp_path / n for n in names(0, 1, 2)]
    with contextlib.ExitStack() as locks:
        for run in runs:
            run.mkdir()
            assert locks.enter_context(run_lock(run))
        backend.run_stage(PACK_STAGE, [str(tmp_path / "seen.json")], runs[0])
    assert json.loads((tmp_path / "seen.json").read_text()) == [str(run / ".lock") for run in runs]
    with run_lock(runs[1]):  # after the stack: only this one
        backend.run_stage(PACK_STAGE, [str(tmp_path / "seen.json")], runs[1])
    assert json.loads((tmp_path / "seen.json").read_text()) == [str(runs[1] / ".lock")]


@pytest.mark.slow
def test_real_cli_packed_cv_writes_each_runs_metrics_and_the_summary(tmp_path: Path, corpus: Path) -> None:
    args = run_args(corpus, tmp_path / "run")
    at = args.index("--trainer.default_root_dir")
    config = [*args[:at], *args[at + 2:], "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    summary = run_cv(config, [0, 1], 1, str(tmp_path / "cv"), pack=2)
    for fold in (0, 1):
        run_dir = tmp_path / "cv" / f"fold{fold}_rep0"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["fold"] == fold and 0.0 <= metrics["ua"] <= 1.0
        assert json.loads((run_dir / "fit_done.json").read_text())["packed"] is True
    pack_log = tmp_path / "cv" / "packs" / "fold0_rep0+fold1_rep0" / "pack_fit.log"
    assert "[pack] 2 runs on cpu" in pack_log.read_text()
    assert summary["n_runs"] == 2 and summary["complete"] and summary["folds"] == [0, 1]
