"""Cross-validations and sweeps on SLURM through submitit (``--cv.slurm true``; logs in ``DIR/slurm/``).

``submit`` sends the pretrainings as one job array, every run as one array (``--cv.slurm_max_parallel``
at a time) that starts when they have ended (``afterany``: the runs of a repeat whose pretraining failed fail
at once, naming it; the other repeats run), and a small job that writes each ``summary.json`` when
the runs have ended (``afterany``). A task is `RunTask`: ``lifecycle.run_folder`` in its own process,
exactly what a local run does. Requeueing has one owner, submitit: on SIGUSR2 (time limit near, or
preemption) it calls `RunTask.checkpoint`, which resubmits the same run, and requeues the task (at most
``--cv.slurm_max_requeues`` timeouts); the task resumes from the run's ``last.ckpt`` (every epoch).
Lightning's own SLURM requeueing (SIGUSR1) is switched off in the tasks.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from ser_mtl.analysis.selection import select_on_validation
from ser_mtl.analysis.summary import SWEEP_NAME, aggregate
from ser_mtl.io_utils import atomic_write_text
from ser_mtl.runs.errors import CVError, RunFailed, RunMistake
from ser_mtl.runs.layout import MISTAKE, UNFINISHED
from ser_mtl.runs.lifecycle import Run, run_folder
from ser_mtl.runs.slurm_queue import check_partition, live_jobs, max_array_size, read_queued, record_queued
from ser_mtl.runs.stages import CLIBackend
from ser_mtl.runs.task_end import OUT_OF_REQUEUES, record_unfinished, unfinished_line

# A cluster task's stages run in its own process, without Lightning's SIGUSR1 requeueing (submitit owns it).
NO_LIGHTNING_REQUEUE = ("--trainer.plugins", ('{"class_path": "pytorch_lightning.plugins.environments.'
                        'SLURMEnvironment", "init_args": {"auto_requeue": false}}'))


SIGNAL_DELAY_S = 90  # submitit's default: SIGUSR2 this long before the time limit
MIN_TASK_MINUTES = 5  # the signal margin plus a start-up and at least one epoch's checkpoint
# sbatch options the summary job keeps from --cv.slurm_extra: who pays and where, never the runs' resources
SUMMARY_OPTIONS = ("account", "qos", "reservation", "partition", "clusters")


@dataclass
class ClusterOptions:
    """Resources of each array task (``--cv.slurm_*``); None leaves the cluster's default."""

    partition: str | None = None
    account: str | None = None
    gpus: int = 1
    cpus: int = 8
    mem: str = "32G"
    time: str = "24:00:00"
    job_name: str = "ser-mtl"
    max_parallel: int | None = None
    max_requeues: int = 3
    setup: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    python: str = sys.executable
    cli_module: str = "ser_mtl.cli"  # what the tasks' stages run (tests: a stand-in)

    def minutes(self) -> int:
        """``--cv.slurm_time`` in minutes, as submitit takes it (sbatch's M, M:S, H:M:S, D-H, D-H:M, D-H:M:S)."""
        match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", self.time.strip())
        if not match:
            raise CVError(f"--cv.slurm_time {self.time!r}: expected D-HH:MM:SS, HH:MM:SS or minutes")
        days, parts = int(match.group(1) or 0), [int(x) for x in match.groups()[1:] if x is not None]
        if match.group(1) is not None:
            hours, mins, secs = (*parts, 0, 0)[:3]
        else:
            hours, mins, secs = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
        return max(1, days * 1440 + hours * 60 + mins + (secs > 0))

    def check(self) -> ClusterOptions:
        """``self`` if every option can be honoured, else `CVError` naming the option (before submitting)."""
        for name, value, low in (("gpus", self.gpus, 0), ("cpus", self.cpus, 1), ("max_requeues", self.max_requeues, 0),
                                 ("max_parallel", self.max_parallel, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise CVError(f"--cv.slurm_{name} {value!r}: expected an integer >= {low}")
        if self.minutes() < MIN_TASK_MINUTES:
            raise CVError(f"--cv.slurm_time {self.time!r}: submitit signals a task {SIGNAL_DELAY_S} s before its "
                          f"time limit to checkpoint and requeue it; give at least {MIN_TASK_MINUTES} minutes, or "
                          "every attempt ends before its first epoch's checkpoint")
        return self

    def parameters(self) -> dict[str, Any]:
        """submitit's ``SlurmExecutor.update_parameters`` arguments of one array task."""
        self.check()
        extra = dict(self.extra)
        if self.account:
            extra["account"] = self.account
        return {"partition": self.partition, "time": self.minutes(), "nodes": 1,
                "ntasks_per_node": max(1, self.gpus), "gpus_per_node": self.gpus or None, "cpus_per_task": self.cpus,
                "mem": self.mem, "job_name": self.job_name, "setup": list(self.setup),
                "array_parallelism": self.max_parallel or 256, "stderr_to_stdout": True,
                "additional_parameters": extra}


@dataclass
class RunTask(submitit.helpers.Checkpointable):
    """One array task: one run folder brought to its done state; returns its metrics (None: a pretraining).

    ``checkpoint`` (inherited) resubmits the same call on timeout or preemption: the run's newest
    checkpoint is what the requeued task resumes from.
    """

    cli_module: str = "ser_mtl.cli"
    time_limit: str | None = None  # --cv.slurm_time and --cv.slurm_max_requeues, for unfinished.json
    max_requeues: int | None = None

    def __call__(self, run: Run) -> dict[str, Any] | None:
        backend = CLIBackend(in_process=True, cli_module=self.cli_module,
                             extra_args=NO_LIGHTNING_REQUEUE if _on_slurm() else ())
        (run.dir / UNFINISHED).unlink(missing_ok=True)  # this attempt decides anew
        try:
            result = run_folder(run, backend)
        except RunMistake as err:  # the first task to meet it stops the array: every task would fail alike
            atomic_write_text(run.dir.parent / MISTAKE, f"{run.name}: {err}\n")
            record_unfinished(run.dir, err, self.time_limit, self.max_requeues)  # failed, not "never started"
            array = os.environ.get("SLURM_ARRAY_JOB_ID")
            print(f"[cv] {run.name}: {err}; cancelling the rest of array {array}" if array else f"[cv] {err}",
                  flush=True)
            if array:
                subprocess.run(["scancel", array], capture_output=True, check=False)
            raise
        except Exception as err:  # out of requeues (submitit's UncompletedJobError) or failed: the summary says
            if run.dir.is_dir():
                record = record_unfinished(run.dir, err, self.time_limit, self.max_requeues)
                if record["reason"] == OUT_OF_REQUEUES:
                    print(f"[cv] {run.name}: out of requeues after {record['attempt']} attempt(s) of "
                          f"--cv.slurm_time {self.time_limit}; it resumes from last.ckpt when submitted again",
                          flush=True)
            raise
        if result.status == "busy":
            raise RunFailed(f"{run.name} is held by another process ({run.dir / '.lock'}); not run here")
        return result.metrics


def _on_slurm() -> bool:
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def summarise(cv_dirs: list[str]) -> dict[str, dict]:
    """The summary job: ``summary.json`` of every cv folder that has finished runs (and a sweep's selection),
    and, in its log, which runs of the requested grid did not finish (failed, out of requeues, cancelled) and
    how to resume them."""
    summaries = {}
    for directory in cv_dirs:
        try:
            summaries[directory] = aggregate(directory)
        except Exception as err:  # noqa: BLE001 - one folder without finished runs must not hide the others
            print(f"[cv] {directory}: no summary ({err})", flush=True)
        if (mistake := Path(directory) / MISTAKE).is_file():
            print(f"[cv] {directory}: stopped by a configuration mistake: {mistake.read_text().strip()}; fix it and "
                  "submit again", flush=True)
        if line := unfinished_line(Path(directory)):
            print(line, flush=True)
    for sweep in {Path(d).parent for d in cv_dirs if (Path(d).parent / SWEEP_NAME).is_file()}:
        select_on_validation(sweep)  # a sweep: its selected/ folder, chosen on validation
    return summaries


def slurm_executor(folder: Path, options: ClusterOptions) -> submitit.SlurmExecutor:
    try:
        executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=options.max_requeues,
                                          python=options.python)
    except RuntimeError as err:  # no srun on PATH
        raise CVError(f"--cv.slurm true: {err}") from err
    executor.update_parameters(**options.parameters())
    return executor


def _array_id(jobs: list[Any]) -> str:
    return str(jobs[0].job_id).split("_")[0]


def _chunks(items: list[Any], size: int | None) -> list[list[Any]]:
    """``items`` in consecutive arrays of at most ``size`` tasks (one array without a size)."""
    size = size or len(items) or 1
    return [items[i:i + size] for i in range(0, len(items), size)]


def _after(executor: Any, jobs: list[Any], condition: str, extra: dict[str, Any]) -> None:
    """The next submission waits for ``jobs`` (of one or several arrays): a SLURM dependency, or (local and
    debug executors) here."""
    if isinstance(executor, submitit.SlurmExecutor):
        ids = ":".join(dict.fromkeys(_array_id([job]) for job in jobs))
        executor.update_parameters(additional_parameters={**extra, "dependency": f"{condition}:{ids}"})
    else:
        for job in jobs:
            job.exception()  # waits (a debug executor runs the job only now); a failure stays in the job


def submit(pretrainings: list[Run], runs: list[Run], cv_dirs: list[Path], options: ClusterOptions,
           folder: Path, executor: Any = None) -> dict[str, Any]:
    """`submit_jobs`, all or nothing: when ``sbatch`` refuses a submission (an account, partition or resource
    the cluster does not have), the arrays it already accepted are cancelled and the task files it left are
    removed, and `CVError` gives sbatch's reason in one line."""
    accepted: list[str] = []
    refusal = io.StringIO()
    try:
        with contextlib.redirect_stderr(refusal):  # submitit prints sbatch's error itself: said once, below
            return submit_jobs(pretrainings, runs, cv_dirs, options, folder, executor, accepted)
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as err:
        reason = " ".join(str(err).split()) or " ".join(refusal.getvalue().split()) or type(err).__name__
        for leftover in [*folder.glob("*.pkl"), *folder.glob(".submission_file_*.sh")]:
            leftover.unlink(missing_ok=True)
        cancelled = _cancel(accepted)
        raise CVError(f"sbatch refused the submission: {reason}; "
                      + (f"cancelled the job(s) already accepted ({cancelled}), so " if accepted else "")
                      + "nothing is left queued; fix the --cv.slurm_* options and submit again") from None


def _cancel(job_ids: list[str]) -> str:
    """``scancel`` the arrays ``job_ids``; their ids, with a note when scancel did not answer."""
    if not job_ids:
        return ""
    done = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, check=False)
    return ", ".join(job_ids) + ("" if done.returncode == 0 else f": scancel failed ({done.stderr.strip()}), "
                                 "cancel them by hand")


def _map_arrays(executor: Any, options: ClusterOptions, runs: list[Run], limit: int | None,
                accepted: list[str], folder: Path) -> list[Any]:
    """``runs`` as arrays of at most ``limit`` tasks, each array's id appended to ``accepted`` once sbatch took it
    (and, under SLURM, each run's task id recorded in the submission folder: `_not_queued`)."""
    jobs = []
    for chunk in _chunks(runs, limit):
        array = executor.map_array(RunTask(options.cli_module, options.time, options.max_requeues), chunk)
        accepted.append(_array_id(array))
        if isinstance(executor, submitit.SlurmExecutor):
            record_queued(folder, {str(r.dir): job.job_id for r, job in zip(chunk, array)})
        jobs += array
    return jobs


def _not_queued(folder: Path, runs: list[Run]) -> list[Run]:
    """``runs`` without those whose task of an earlier submission is still pending or running (``squeue``):
    submitting the same command again while an array waits must not run them twice."""
    queued = read_queued(folder)
    live = live_jobs({queued[str(r.dir)] for r in runs if str(r.dir) in queued})
    waiting = [r for r in runs if queued.get(str(r.dir)) in live]
    if waiting:
        print(f"[cv] {len(waiting)} run(s) still queued or running from an earlier submission (job "
              f"{', '.join(sorted({queued[str(r.dir)].split('_')[0] for r in waiting}))}): not submitted again",
              flush=True)
    return [r for r in runs if r not in waiting]


def _array_ids(jobs: list[Any]) -> str:
    return ", ".join(dict.fromkeys(_array_id([job]) for job in jobs))


def submit_jobs(pretrainings: list[Run], runs: list[Run], cv_dirs: list[Path], options: ClusterOptions,
                folder: Path, executor: Any = None, accepted: list[str] | None = None) -> dict[str, Any]:
    """The pretraining array, the run array after it and the summary job (unfinished runs only); their job
    ids, each also appended to ``accepted`` once sbatch took it. ``executor``: any submitit executor (tests:
    local or debug; they wait instead of depending)."""
    accepted = [] if accepted is None else accepted
    executor = executor or slurm_executor(folder, options)
    for cv_dir in cv_dirs:  # a mistake an earlier submission met is fixed now, or will be met again
        (Path(cv_dir) / MISTAKE).unlink(missing_ok=True)
    slurm = isinstance(executor, submitit.SlurmExecutor)
    extra = dict(executor.parameters.get("additional_parameters") or {}) if hasattr(executor, "parameters") else {}
    submitted: dict[str, Any] = {}
    pending = [run for run in runs if not run.done()]
    todo_pretrain = [run for run in pretrainings if not run.done()]
    if slurm:
        check_partition(options)
        pending, todo_pretrain = _not_queued(folder, pending), _not_queued(folder, todo_pretrain)
        if not pending and not todo_pretrain:
            print("[cv] every unfinished run is already queued or running; nothing submitted", flush=True)
            return submitted
    limit = max_array_size() if slurm else None
    if todo_pretrain:
        jobs = _map_arrays(executor, options, todo_pretrain, limit, accepted, folder)
        submitted["pretrain"] = [job.job_id for job in jobs]
        print(f"[cv] submitted {len(jobs)} pretraining(s): job {_array_ids(jobs)}", flush=True)
        # afterany, not afterok: a failed pretraining must not leave every run (and the summary) pending forever
        # (DependencyNeverSatisfied); the runs of its repeat fail at once naming it, the other repeats run
        _after(executor, jobs, "afterany", extra)
    if pending:
        jobs = _map_arrays(executor, options, pending, limit, accepted, folder)
        submitted["runs"] = [job.job_id for job in jobs]
        split = f" in {len(_chunks(pending, limit))} arrays of at most {limit} (MaxArraySize)" \
            if limit and len(pending) > limit else ""
        print(f"[cv] submitted {len(jobs)} run(s) ({len(runs) - len(pending)} already finished){split}: "
              f"job {_array_ids(jobs)}", flush=True)
        _after(executor, jobs, "afterany", extra)
    if slurm:  # its own resources: no GPU, one CPU, and none of the runs' --gres/--exclusive/--constraint
        own = {k: v for k, v in executor.parameters.get("additional_parameters", {}).items()
               if k in (*SUMMARY_OPTIONS, "dependency")}
        executor.update_parameters(gpus_per_node=None, ntasks_per_node=1, cpus_per_task=1, mem="4G", time=30,
                                   job_name=f"{options.job_name}-summary", additional_parameters=own)
    job = executor.submit(summarise, [str(d) for d in cv_dirs])
    submitted["summary"] = job.job_id
    if not slurm:
        job.exception()  # without SLURM this call returns once summary.json is written
    print(f"[cv] submitted the summary job {job.job_id} (runs after the array); logs in {folder}", flush=True)
    return submitted
