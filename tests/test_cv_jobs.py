"""``ser-mtl cv --cv.jobs N --cv.devices LIST``: several runs at once, the same results as one at a time.

In-process fakes (``SleepyBackend``) record when each stage starts and ends and the environment it
was given; the subprocess tests run the real ``CLIBackend`` on a stand-in CLI module, so child
processes, locks, PR_SET_PDEATHSIG and SIGTERM are the real ones; one test runs the real CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from cli_args import run_args
from test_cv_runner import FakeBackend, arg

from ser_mtl.runs import local as parallel_runs
from ser_mtl.runs.cv import run_cv
from ser_mtl.runs.cv_command import cv_kwargs, cv_main
from ser_mtl.runs.errors import CVError, RunsFailed
from ser_mtl.runs.local import JobsError, plan_slots
from ser_mtl.runs.stages import RUNNER_PID_VARIABLE, CLIBackend

STAGE_S = 0.25


class SleepyBackend(FakeBackend):
    """FakeBackend whose every stage takes STAGE_S seconds; records (stage, fold, repeat, start, end, env)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spans: list[tuple[str, int, int, float, float, dict]] = []

    def run_stage(self, stage: str, args: list[str], run_dir: Path, env: dict | None = None) -> None:
        start = time.monotonic()
        super().run_stage(stage, args, run_dir)  # a simulated crash raises before the sleep
        time.sleep(STAGE_S)
        repeat = json.loads((run_dir / "run.json").read_text())["repeat"]
        self.spans.append((stage, int(arg(args, "--data.fold")), repeat, start, time.monotonic(), dict(env or {})))

    def runs(self) -> dict[tuple[int, int], tuple[float, float]]:
        """(fold, repeat) -> (start of its fit, end of its test)."""
        starts = {(f, r): s for stage, f, r, s, _, _ in self.spans if stage == "fit"}
        return {(f, r): (starts[f, r], e) for stage, f, r, _, e, _ in self.spans if stage == "test"}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    open_, most = 0, 0
    for _, step in events:
        open_ += step
        most = max(most, open_)
    return most


@pytest.fixture
def config(tmp_path: Path) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  alpha: 0.4\n")
    return ["--config", str(path)]


@pytest.fixture
def eight_cores(monkeypatch) -> None:
    """A runner that sees 8 cores and two GPUs (physically 3 and 5) and sets no thread variables."""
    monkeypatch.setattr(parallel_runs.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)


def test_two_jobs_overlap_and_give_the_sequential_files(tmp_path: Path, config: list[str], eight_cores) -> None:
    outs, backends = {}, {}
    for jobs in (1, 2):
        backends[jobs], outs[jobs] = SleepyBackend(n_folds=3), tmp_path / f"jobs{jobs}"
        run_cv(config, None, 2, str(outs[jobs]), base_seed=4, backend=backends[jobs], jobs=jobs)
    sequential, parallel = backends[1].runs(), backends[2].runs()
    assert sorted(sequential) == sorted(parallel) == [(f, r) for f in range(3) for r in range(2)]
    assert max_overlap(list(sequential.values())) == 1
    assert max_overlap(list(parallel.values())) == 2  # two runs at a time, never three
    for fold in range(3):
        for rep in range(2):
            name = f"fold{fold}_rep{rep}/metrics.json"
            one, two = (json.loads((outs[j] / name).read_text()) for j in (1, 2))
            assert one.pop("cost").keys() == two.pop("cost").keys() and one == two  # wall seconds differ
    first, second = (json.loads((outs[j] / "summary.json").read_text()) for j in (1, 2))
    for summary in (first, second):
        summary.pop("cost", None)
        for run in summary["runs"]:
            run.pop("cost", None)
    assert first == second and first["n_runs"] == 6
    assert all(env == {} for *_, env in backends[1].spans)  # one job: the environment is left alone
    # 6 runs x 2 stages x 0.25 s: 3 s one at a time; two at a time must save at least a third
    span = max(e for _, e in parallel.values()) - min(s for s, _ in parallel.values())
    assert span < 2.0


def test_each_child_gets_its_device_and_a_share_of_the_cores(tmp_path: Path, config: list[str],
                                                             eight_cores) -> None:
    backend = SleepyBackend(n_folds=4)
    run_cv(config, None, 2, str(tmp_path / "cv"), backend=backend, jobs=4, devices="0,1")
    envs = {(stage, f, r): env for stage, f, r, _, _, env in backend.spans}
    assert len(envs) == 16
    for (stage, f, r), env in envs.items():
        # GPUs 0,1 of this process are 3,5 physically; 8 cores / 4 jobs = 2 threads each
        assert env in ({"CUDA_VISIBLE_DEVICES": "3", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
                       {"CUDA_VISIBLE_DEVICES": "5", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"})
        assert envs["test", f, r] == envs["fit", f, r]  # a run stays on its slot's device
    runs = backend.runs()
    for device in ("3", "5"):
        on_device = [span for key, span in runs.items() if envs[("fit", *key)]["CUDA_VISIBLE_DEVICES"] == device]
        assert max_overlap(on_device) == 2  # 4 jobs round-robin over 2 GPUs: two per GPU


def test_slots_round_robin_over_devices() -> None:
    slots = plan_slots(3, None, visible=["0", "1"], cores=16, environ={})
    assert [s.device for s in slots] == ["0", "1", "0"] and {s.threads for s in slots} == {5}  # 16 // 3
    assert [s.shared_by for s in slots] == [2, 1, 2]  # GPU 0 holds two slots, GPU 1 one
    assert slots[2].env == {"CUDA_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "5", "MKL_NUM_THREADS": "5"}
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan_slots(2, None, visible=[], cores=2, environ={})] == ["", ""]
    assert [s.device for s in plan_slots(2, "cpu", cores=1, environ={})] == ["", ""]
    assert plan_slots(2, "cpu", cores=1, environ={})[0].threads == 1  # never 0 threads
    assert [s.device for s in plan_slots(2, "[1]", visible=["GPU-a", "GPU-b"], cores=4, environ={})] == \
        ["GPU-b", "GPU-b"]  # a UUID-listed GPU is handed on by name
    kept = plan_slots(2, None, visible=["0"], cores=8, environ={"OMP_NUM_THREADS": "3"})
    assert kept[0].env == {"CUDA_VISIBLE_DEVICES": "0"}  # the user's own thread setting wins
    assert plan_slots(1, None, visible=["0", "1"], cores=8, environ={})[0].env == {}  # sequential default
    assert plan_slots(1, "1", visible=["0", "1"], cores=8, environ={})[0].env["CUDA_VISIBLE_DEVICES"] == "1"
    assert parallel_runs.visible_devices({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert parallel_runs.visible_devices({"CUDA_VISIBLE_DEVICES": "2, 7"}) == ["2", "7"]
    with pytest.raises(JobsError, match=r"there is no GPU 2; this process sees 2 visible GPU\(s\) \(0, 1\)"):
        plan_slots(2, "0,2", visible=["0", "1"], cores=8, environ={})
    with pytest.raises(JobsError, match="names a device twice"):
        plan_slots(2, "0,0", visible=["0", "1"], cores=8, environ={})
    with pytest.raises(JobsError, match="'x' is not a device number"):
        plan_slots(2, "x", visible=["0"], cores=8, environ={})
    with pytest.raises(JobsError, match="cpu cannot be mixed"):
        plan_slots(2, "0,cpu", visible=["0"], cores=8, environ={})
    with pytest.raises(JobsError, match="expected device numbers"):
        plan_slots(2, "0,,1", visible=["0", "1"], cores=8, environ={})


def test_a_failing_run_leaves_the_others_done(tmp_path: Path, config: list[str], eight_cores) -> None:
    out = tmp_path / "cv"
    backend = SleepyBackend(n_folds=3, fail=("fit", 1, 0))
    with pytest.raises(RunsFailed, match=r"1 of 6 runs failed \(fold1_rep0\)"):
        run_cv(config, None, 2, str(out), backend=backend, jobs=2)
    done = sorted(p.parent.name for p in out.glob("*/metrics.json"))
    assert done == ["fold0_rep0", "fold0_rep1", "fold1_rep1", "fold2_rep0", "fold2_rep1"]
    assert json.loads((out / "summary.json").read_text())["missing"] == [{"fold": 1, "repeat": 0}]
    rerun = SleepyBackend(n_folds=3)
    assert run_cv(config, None, 2, str(out), backend=rerun, jobs=2)["complete"]
    assert rerun.fits() == [1]


def test_fail_fast_with_two_jobs_starts_nothing_after_the_failure(tmp_path: Path, config: list[str],
                                                                  eight_cores) -> None:
    out = tmp_path / "cv"
    backend = SleepyBackend(n_folds=3, fail=("fit", 1, 0))
    with pytest.raises(RuntimeError, match="simulated crash in fit of fold 1"):
        run_cv(config, None, 2, str(out), backend=backend, jobs=2, fail_fast=True)
    # (0, 0) and (1, 0) started together; (1, 0) failed at once; (0, 0) was let finish; nothing else began
    assert sorted(backend.fits()) == [0, 1]
    assert [p.parent.name for p in out.glob("*/metrics.json")] == ["fold0_rep0"]


def test_jobs_are_refused_where_they_cannot_apply(tmp_path: Path, config: list[str], monkeypatch) -> None:
    with pytest.raises(CVError, match="cannot be combined with --cv.in_process true"):
        run_cv(config, [0, 1], 1, str(tmp_path / "a"), in_process=True, jobs=2, backend=FakeBackend())
    with pytest.raises(CVError, match="with --cv.slurm true every \\(fold, repeat\\) is its own array task"):
        run_cv(config, [0, 1], 1, str(tmp_path / "b"), slurm=True, jobs=2, backend=FakeBackend())
    with pytest.raises(CVError, match="--cv.jobs must be an integer >= 1, got 0"):
        run_cv(config, [0, 1], 1, str(tmp_path / "c"), jobs=0, backend=FakeBackend())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(CVError, match="--cv.devices '0': there is no GPU 0; this process sees no visible GPU"):
        run_cv(config, [0, 1], 1, str(tmp_path / "d"), jobs=2, devices="0", backend=FakeBackend())
    assert not (tmp_path / "d" / "fold0_rep0").exists()  # refused before any run started


def test_the_cv_command_takes_jobs_and_devices() -> None:
    options = cv_main.parser().parse_args(["--cv.out", "d", "--cv.jobs", "3", "--cv.devices", "0,1"])
    kwargs = cv_kwargs(options)
    assert (kwargs["jobs"], kwargs["devices"]) == (3, "0,1")
    assert (cv_kwargs(cv_main.parser().parse_args(["--cv.out", "d"]))["jobs"],
            cv_kwargs(cv_main.parser().parse_args(["--cv.out", "d"]))["devices"]) == (1, None)


# ------------------------------------------------------------- child processes (a stand-in CLI)
STAND_IN_CLI = '''
"""A stand-in for ser_mtl.cli following the fit/test contract; records what each child saw.

FAKE_SLEEP={"k": s, ...}: fold k's fit takes s seconds. FAKE_BLOCK=1: a fit writes started_fold{k}
(its pid) next to the run folders and waits for SIGTERM (or 15 s).
"""
import json, os, signal, sys, time
from pathlib import Path


class SIGTERMException(SystemExit):  # what Lightning raises on SIGTERM
    pass


def num_folds(config_args):
    return 4


def main(args):
    stage, rest = args[0], args[1:]
    get = lambda name: ([rest[i + 1] for i, a in enumerate(rest[:-1]) if a == name] or [None])[-1]
    root, fold = Path(get("--trainer.default_root_dir")), int(get("--data.fold"))
    seen = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                           "SER_MTL_CV_RUNNER_PID")}
    (root / f"{stage}_env.json").write_text(json.dumps({**seen, "start": time.time()}))
    with open(root.parent / "calls.txt", "a") as handle:
        handle.write(json.dumps([stage, fold, get("--ckpt_path")]) + "\\n")
    if stage == "fit":
        (root / "checkpoints").mkdir(parents=True, exist_ok=True)
        (root / "checkpoints" / "last.ckpt").write_text("epoch 1")
        if os.environ.get("FAKE_BLOCK"):
            got_term = []
            signal.signal(signal.SIGTERM, lambda *_: got_term.append(1))
            (root.parent / f"started_fold{fold}").write_text(str(os.getpid()))
            for _ in range(300):
                if got_term:
                    raise SIGTERMException()
                time.sleep(0.05)
        time.sleep(json.loads(os.environ.get("FAKE_SLEEP", "{}")).get(str(fold), 0))
        (root / "checkpoints" / "best.ckpt").write_text("best")
        (root / "fit_end.txt").write_text(str(time.time()))
    else:
        (root / "test_metrics.json").write_text(json.dumps({"wa": 0.5 + fold / 10, "ua": 0.4 + fold / 10}))
'''

RUNNER = """
import sys
from ser_mtl.runs.cv import run_cv
from ser_mtl.runs.stages import CLIBackend
backend = CLIBackend(cli_module="stand_in_cli")
backend.resolve_config = lambda args: None
backend.num_folds = lambda args: 4  # the stand-in is importable only in the children
run_cv(sys.argv[3:], [0, 1, 2], 1, sys.argv[1], backend=backend, jobs=int(sys.argv[2]))
"""


def stand_in(tmp_path: Path, **env: str) -> tuple[CLIBackend, dict[str, str]]:
    (tmp_path / "stand_in_cli.py").write_text(textwrap.dedent(STAND_IN_CLI))
    variables = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), **env}
    backend = CLIBackend(cli_module="stand_in_cli", env=variables)
    backend.resolve_config = lambda args: None  # the stand-in has no --print_config
    backend.num_folds = lambda args: 4  # the stand-in is importable only in the children
    return backend, variables


def test_child_processes_run_side_by_side_each_with_its_device(tmp_path: Path, config: list[str],
                                                               eight_cores) -> None:
    """Fits of 0.2, 2 and 0.2 s on two jobs: fold 0's worker goes on to fold 2 while fold 1's fit still
    runs; every run completes (no child is killed by a PR_SET_PDEATHSIG of a thread that ended) and
    each child saw its slot's environment."""
    backend, _ = stand_in(tmp_path, FAKE_SLEEP='{"0": 0.2, "1": 2.0, "2": 0.2}')
    out = tmp_path / "cv"
    summary = run_cv(config, [0, 1, 2], 1, str(out), backend=backend, jobs=2, devices="1")
    assert summary["n_runs"] == 3 and summary["ua_mean"] == pytest.approx(0.5)  # (0.4 + 0.5 + 0.6) / 3
    seen = {f: json.loads((out / f"fold{f}_rep0" / "fit_env.json").read_text()) for f in range(3)}
    for f in range(3):
        assert seen[f] == {**seen[f], "CUDA_VISIBLE_DEVICES": "5", "OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}
        assert seen[f]["SER_MTL_CV_RUNNER_PID"] is None  # consumed by the child entry, not seen by the CLI
    end = {f: float((out / f"fold{f}_rep0" / "fit_end.txt").read_text()) for f in range(3)}
    assert seen[1]["start"] < end[0] and seen[2]["start"] < end[1]  # they overlapped
    log = (out / "fold1_rep0" / "fit.log").read_text()
    assert "CUDA_VISIBLE_DEVICES=5 MKL_NUM_THREADS=4 OMP_NUM_THREADS=4" in log  # what the run was given


def test_pdeathsig_follows_the_thread_that_started_the_child(tmp_path: Path) -> None:
    """The Linux pitfall the worker threads avoid: a child armed by ``stages.die_with_runner`` is
    killed when the *thread* that started it ends, although the process lives on."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    armed = tmp_path / "armed"
    code = ("import pathlib, sys, time; from ser_mtl.runs.stages import die_with_runner; "
            f"die_with_runner(); pathlib.Path({str(armed)!r}).write_text('1'); time.sleep(20)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), RUNNER_PID_VARIABLE: str(os.getpid())}
    children = []

    def start_and_leave() -> None:
        children.append(subprocess.Popen([sys.executable, "-c", code], env=env))
        for _ in range(400):  # stay until the child is armed, then end without waiting for it
            if armed.exists():
                return
            time.sleep(0.05)

    thread = threading.Thread(target=start_and_leave)
    thread.start()
    thread.join()
    assert armed.exists()
    assert children[0].wait(timeout=10) == -signal.SIGKILL


def _start_runner(tmp_path: Path, config: list[str], out: Path, jobs: int, wait_for: list[int]):
    _, variables = stand_in(tmp_path, FAKE_BLOCK="1")
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(out), str(jobs), *config],
                              env={**os.environ, **variables}, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    for _ in range(400):
        if all((out / f"started_fold{f}").exists() for f in wait_for):
            return runner, [int((out / f"started_fold{f}").read_text()) for f in wait_for]
        time.sleep(0.05)
    runner.kill()
    raise AssertionError(f"the stand-in fits never started:\n{runner.communicate()[0]}")


def _gone(pid: int) -> bool:
    for _ in range(200):
        stat = Path(f"/proc/{pid}/stat")
        try:
            if stat.read_text().split(")")[-1].split()[0] == "Z":
                return True  # a zombie holds no files and runs nothing
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


def test_sigkill_of_a_two_job_runner_ends_every_fit_and_one_rerun_completes(tmp_path: Path,
                                                                              config: list[str]) -> None:
    out = tmp_path / "cv"
    runner, fits = _start_runner(tmp_path, config, out, jobs=2, wait_for=[0, 1])
    runner.kill()
    runner.wait()
    assert all(_gone(pid) for pid in fits)  # both fits, started from two worker threads, died with it
    backend, _ = stand_in(tmp_path)
    summary = run_cv(config, [0, 1, 2], 1, str(out), backend=backend, jobs=2)
    calls = [json.loads(line) for line in (out / "calls.txt").read_text().splitlines()]
    for fold in (0, 1):
        last = str((out / f"fold{fold}_rep0" / "checkpoints" / "last.ckpt").absolute())
        assert ["fit", fold, last] in calls  # resumed, not restarted
    assert summary["n_runs"] == 3 and not summary.get("missing")


def test_sigterm_to_a_two_job_runner_stops_both_fits_and_starts_no_other(tmp_path: Path,
                                                                         config: list[str]) -> None:
    out = tmp_path / "cv"
    runner, fits = _start_runner(tmp_path, config, out, jobs=2, wait_for=[0, 1])
    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=60)
    assert all(_gone(pid) for pid in fits)
    assert runner.returncode != 0 and "stopped by SIGTERM; re-run the same command to continue" in output
    for fold in (0, 1):
        assert "fit stopped by SIGTERM" in (out / f"fold{fold}_rep0" / "fit.log").read_text()
        assert not (out / f"fold{fold}_rep0" / "fit_done.json").exists()
    assert not (out / "fold2_rep0").exists() and not (out / "summary.json").exists()


# ------------------------------------------------------------------------------- the real CLI
@pytest.mark.slow
def test_real_cli_two_jobs_write_the_same_metrics_as_one(tmp_path: Path, corpus: Path, monkeypatch) -> None:
    # Equal bit for bit at equal threads per fit: a CPU reduction over 2 threads sums in another order than
    # over 1, which after a few steps moved one utterance's gender posterior across the decision (0.708 vs 0.75).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    args = run_args(corpus, tmp_path / "run")
    at = args.index("--trainer.default_root_dir")
    config = [*args[:at], *args[at + 2:], "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
              "--trainer.enable_progress_bar", "false"]
    for jobs in (1, 2):
        run_cv(config, [0, 1], 1, str(tmp_path / f"jobs{jobs}"), jobs=jobs)
    for fold in (0, 1):
        one, two = (json.loads((tmp_path / f"jobs{j}" / f"fold{fold}_rep0" / "metrics.json").read_text())
                    for j in (1, 2))
        costs = one.pop("cost"), two.pop("cost")
        assert costs[0].keys() == costs[1].keys()  # wall seconds differ between runs
        # both slots are on the one CPU: their device time is shared; a child's start-up (interpreter, torch,
        # parsing) is measured in the stage from its launch, apart from the stages' own seconds
        assert (costs[0]["shared_by"], costs[1]["shared_by"]) == (1, 2)
        assert all(c["startup_seconds"] > 0.5 and c["fit_seconds"] > c["epoch_seconds"] > 0 for c in costs)
        assert one == two and 0.0 <= one["ua"] <= 1.0
    assert "CUDA_VISIBLE_DEVICES= " in (tmp_path / "jobs2" / "fold0_rep0" / "fit.log").read_text()  # CPU slot
