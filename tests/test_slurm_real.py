"""Cluster failure paths against a real single-node SLURM (``tools/slurm_single_node.sh``, started by
``.ci/run``): a failed pretraining fails only its repeat and the summary still comes (nothing pending
forever), sbatch's refusal is one line with nothing queued, a CPU node refuses GPU tasks before submitting,
the cluster's own MaxArraySize is read, a resubmission queues nothing twice, and the time-limit signal
requeues a task that resumes until it is out of requeues, which the summary names. The tasks run a stand-in CLI (the fit/test contract, no training),
so what is tested is the scheduling; they skip, saying why, where ``sinfo`` does not answer."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from test_slurm import (
    STAND_IN_CLI,  # the fit/test contract without training; STAND_IN_PREEMPT=<run> fails a fit
)

from ser_mtl.runs.cluster import ClusterOptions, max_array_size
from ser_mtl.runs.cv import run_cv
from ser_mtl.runs.errors import CVError
from ser_mtl.runs.stages import CLIBackend

pytestmark = [pytest.mark.slurm, pytest.mark.slow]



def _sinfo() -> str | None:
    try:
        shown = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"sinfo did not answer ({err})"
    states = shown.stdout.split()
    if shown.returncode != 0 or not any(s in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"sinfo shows no usable node (exit {shown.returncode}: {shown.stdout.strip() or shown.stderr.strip()})"
    return None


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch) -> tuple[CLIBackend, list[str], str]:
    """The stand-in CLI importable here and in the tasks (PYTHONPATH reaches them: sbatch exports the
    environment), a config, and a job name of its own; skips without a running SLURM."""
    why = _sinfo()
    if why is not None:
        pytest.skip(f"no single-node SLURM here: {why}; start one with tools/slurm_single_node.sh (as .ci/run does)")
    (tmp_path / "stand_in_cli.py").write_text(textwrap.dedent(STAND_IN_CLI))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (tmp_path / "c.yaml").write_text("model:\n  alpha: 0.4\n")
    name = f"sertest-{uuid.uuid4().hex[:8]}"
    yield CLIBackend(in_process=True, cli_module="stand_in_cli"), ["--config", str(tmp_path / "c.yaml")], name
    for job in (name, f"{name}-summary"):  # never leave jobs behind
        subprocess.run(["scancel", "--name", job], capture_output=True, check=False)


def _queued(name: str) -> list[str]:
    shown = subprocess.run(["squeue", "-h", "-r", "--name", f"{name},{name}-summary", "-o", "%i %T %r"],
                           capture_output=True, text=True, check=False)  # -r: one line per array task
    return [line for line in shown.stdout.splitlines() if line.strip()]


def _wait_for(path: Path, name: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and not _queued(name):
            return
        time.sleep(2)
    raise AssertionError(f"{path} not written within {timeout_s} s; still queued: {_queued(name)}")


def _options(name: str, **kwargs) -> ClusterOptions:
    return ClusterOptions(gpus=0, cpus=1, mem="500M", time="10", job_name=name, cli_module="stand_in_cli", **kwargs)


def test_a_failed_pretraining_fails_only_its_repeat_and_nothing_waits_forever(cluster, tmp_path, monkeypatch):
    backend, config, name = cluster
    monkeypatch.setenv("STAND_IN_PREEMPT", "pretrain_rep1")  # repeat 1's pretraining dies
    out = tmp_path / "cv"
    ids = run_cv(config, [0, 1], 2, str(out), pretrain=config, slurm=True, cluster_options=_options(name),
                 backend=backend)
    assert set(ids) == {"pretrain", "runs", "summary"}
    _wait_for(out / "summary.json", name)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete_repeats"] == [0] and summary["n_runs"] == 2  # repeat 0 ran, repeat 1 did not
    assert {(m["fold"], m["repeat"]) for m in summary["missing"]} == {(0, 1), (1, 1)}
    logs = "".join(p.read_text(errors="replace") for p in (out / "slurm").rglob("*_log.out"))
    assert "its pretraining (pretrain_rep1) has not finished" in logs  # the failed repeat's runs say why


def test_an_sbatch_refusal_is_one_line_and_nothing_is_queued(cluster, tmp_path):
    backend, config, name = cluster
    out = tmp_path / "cv"
    with pytest.raises(CVError, match=r"^sbatch refused the submission: .*(gres|generic resource).*nothing is left "
                                      r"queued; fix the --cv.slurm_\* options and submit again$") as err:
        run_cv(config, [0, 1], 1, str(out), slurm=True, backend=backend,
               cluster_options=_options(name, extra={"gres": "gpu:1"}))  # a GPU this node does not have
    assert "\n" not in str(err.value)
    assert _queued(name) == [] and not list((out / "slurm").glob("*.pkl"))


def test_gpu_tasks_on_a_cpu_node_are_refused_before_submitting(cluster, tmp_path):
    backend, config, name = cluster
    with pytest.raises(CVError, match=r"--cv.slurm_gpus 1: the default partition has no GPUs .* pass "
                                      r"--cv.slurm_gpus 0 on a CPU cluster"):
        run_cv(config, [0], 1, str(tmp_path / "cv"), slurm=True, backend=backend,
               cluster_options=ClusterOptions(gpus=1, cpus=1, time="10", job_name=name, cli_module="stand_in_cli"))
    assert _queued(name) == []


def test_the_clusters_max_array_size_is_read(cluster):
    shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=False).stdout
    configured = int(re.search(r"MaxArraySize\s*=\s*(\d+)", shown).group(1))
    assert max_array_size() == configured > 0


def test_submitting_again_while_the_array_waits_queues_nothing_twice(cluster, tmp_path, capsys):
    backend, config, name = cluster
    out = tmp_path / "cv"
    hold = _options(name, extra={"begin": "now+1hour"})  # the tasks wait: as in a busy queue
    first = run_cv(config, [0, 1], 1, str(out), slurm=True, cluster_options=hold, backend=backend)
    assert len(first["runs"]) == 2 and len(_queued(name)) == 3  # two tasks and the summary job
    capsys.readouterr()
    assert run_cv(config, [0, 1], 1, str(out), slurm=True, cluster_options=hold, backend=backend) == {}
    assert "every unfinished run is already queued or running; nothing submitted" in capsys.readouterr().out
    assert len(_queued(name)) == 3  # still the first array's two tasks and its summary job, nothing twice


def _wait_for_fits(run_dir: Path, count: int, timeout_s: float = 180) -> list:
    """The stand-in's stage log once ``count`` fits have started in ``run_dir`` (the task is in its long epoch)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = run_dir / "stages.jsonl"
        fits = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
        fits = [f for f in fits if f[0] == "fit"]
        if len(fits) >= count:
            time.sleep(1)  # the stage has reached its sleep: submitit's handler runs inside it
            return fits
        time.sleep(1)
    raise AssertionError(f"fit {count} of {run_dir} did not start within {timeout_s} s")


def _start_now_once_requeued(task: str, timeout_s: float = 60) -> None:
    """SLURM holds a requeued job about two minutes (reason BeginTime); the test lets it start at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = subprocess.run(["squeue", "-h", "-j", task, "-o", "%T %r"], capture_output=True, text=True,
                               check=False).stdout.split()
        if shown[:2] == ["PENDING", "BeginTime"]:
            subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], check=True)
            return
        time.sleep(1)


def test_a_time_limit_requeue_resumes_and_a_run_out_of_requeues_is_named(cluster, tmp_path, monkeypatch):
    """SIGUSR2 is what SLURM sends before the time limit (submitit's --signal); under 10 minutes of
    --cv.slurm_time submitit counts every such signal as a timeout. With one requeue allowed, the first
    signal requeues the task, whose next attempt resumes from last.ckpt; the second finds it out of requeues,
    which the summary job names with the options to change."""
    from ser_mtl.runs.slurm_queue import read_queued

    backend, config, name = cluster
    monkeypatch.setenv("STAND_IN_SLOW", "fold0_rep0")  # a long epoch for the signals to land in
    out = tmp_path / "cv"
    run_cv(config, [0, 1], 1, str(out), slurm=True, cluster_options=_options(name, max_requeues=1), backend=backend)
    task = read_queued(out.absolute() / "slurm")[str(out.absolute() / "fold0_rep0")]
    run_dir = out / "fold0_rep0"
    _wait_for_fits(run_dir, 1)
    subprocess.run(["scancel", "--signal=USR2", task], check=True)
    _start_now_once_requeued(task)
    second = _wait_for_fits(run_dir, 2, timeout_s=240)[1]  # the requeued attempt
    assert "--ckpt_path" in second[1] and second[1][second[1].index("--ckpt_path") + 1].endswith("last.ckpt")
    subprocess.run(["scancel", "--signal=USR2", task], check=True)
    _wait_for(out / "summary.json", name)
    record = json.loads((run_dir / "unfinished.json").read_text())
    assert (record["reason"], record["attempt"], record["max_requeues"]) == ("out of requeues", 2, 1)
    assert json.loads((out / "summary.json").read_text())["n_runs"] == 1  # fold 1 finished
    logs = "".join(p.read_text(errors="replace") for p in (out / "slurm").rglob("*_log.out"))
    assert "fit interrupted: the task is requeued and its next attempt resumes from the run's last.ckpt" in logs
    assert "1 of 2 runs unfinished: 1 out of requeues (fold0_rep0): each attempt reached the time limit" in logs
