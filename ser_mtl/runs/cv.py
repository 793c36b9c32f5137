"""Cross-validation: folds x repeats of fit + test, each run resumable, one summary per folder.

``ser-mtl cv --config C [overrides] --cv.out DIR [--cv.folds 0-4 --cv.repeats 10 --cv.jobs N |
--cv.slurm true] [--cv.pretrain "ARGS"]``: ``plan_cv`` lists the runs, ``execute`` runs them here (or
``submit`` sends them to SLURM), ``finish`` writes ``DIR/summary.json``. Each run is
``lifecycle.run_folder``, adding ``--data.fold`` (and ``--model.init_from`` after a pretraining) to the
training arguments. ``DIR`` holds ``cv.json`` (``ser_mtl.runs.record``), ``pretrain_rep{r}/``,
``fold{k}_rep{r}/`` and ``summary.json``. Run (fold, repeat) is seeded ``derive_seed(base, fold,
repeat)``; ``data.seed`` is left alone: it fixes the split, so "fold 3" is the same test set in every repeat.
"""

from __future__ import annotations

import contextlib
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ser_mtl.analysis.summary import aggregate
from ser_mtl.runs import cluster
from ser_mtl.runs.errors import CVError, RunFailed, RunsFailed
from ser_mtl.runs.estimate import estimate
from ser_mtl.runs.layout import best_checkpoint, run_dir_name
from ser_mtl.runs.lifecycle import (
    PRETRAIN_FOLD,
    Run,
    RunResult,
    derive_seed,
    pretrain_dir_name,
    run_folder,
    say,
)
from ser_mtl.runs.local import JobsError, Slot, bind, plan_slots, run_in_slots
from ser_mtl.runs.record import check_config_args, check_pretrain_args, config_files, ensure_record
from ser_mtl.runs.stages import CLIBackend, CVBackend, signal_guard, stop_requested


@dataclass
class CVPlan:
    """One cv folder's runs: the pretrainings (may be empty) and the (fold, repeat) runs, repeat-major."""

    out: Path
    pretrainings: list[Run]
    runs: list[Run]


def plan_cv(config_args: list[str], folds: list[int] | None, repeats: int, out: str | Path, base_seed: int = 0,
            label: str | None = None, pretrain: list[str] | None = None,
            backend: CVBackend | None = None, write: bool = True) -> CVPlan:
    """Check the request, write ``out/cv.json`` and list the runs (nothing runs yet). ``folds`` None: every
    fold of ``data.scheme``; ``pretrain``: ``ser-mtl fit`` arguments of one pretraining per repeat; ``write``
    False (``--cv.plan``): nothing is written."""
    backend = backend or CLIBackend()
    if repeats < 1:
        raise CVError(f"--cv.repeats must be >= 1, got {repeats}")
    check_config_args(config_args)
    if pretrain is not None:
        check_pretrain_args(pretrain, config_args)
    out = Path(out).absolute()
    resolved = backend.resolve_config(config_args)  # an unknown option or a bad value: one line, nothing run
    # the data settings are built once before any run starts: a mistake there is one line now, not one per run
    available = backend.num_folds(config_args)
    folds = list(range(available)) if folds is None else folds
    if not folds or len(set(folds)) != len(folds) or min(folds) < 0:
        raise CVError(f"--cv.folds must be distinct non-negative integers, got {folds}")
    if beyond := [f for f in folds if f >= available]:
        raise CVError(f"--cv.folds {','.join(map(str, beyond))}: this data.scheme has {available} folds "
                      f"(0..{available - 1}); nothing was run or written")
    record = {"config_args": list(config_args), "base_seed": base_seed, "config_files": config_files(config_args),
              "label": label, "resolved": resolved}
    if pretrain is not None:
        record.update(pretrain=list(pretrain), pretrain_config_files=config_files(pretrain),
                      pretrain_resolved=backend.resolve_config(pretrain))
    if write:
        out.mkdir(parents=True, exist_ok=True)
        ensure_record(out, record, folds, repeats)
    pretrainings = [] if pretrain is None else [
        Run(out / pretrain_dir_name(r), tuple(pretrain),
            {"repeat": r, "seed": derive_seed(base_seed, PRETRAIN_FOLD, r), "args": list(pretrain)},
            f"pretraining of repeat {r}", test=False) for r in range(repeats)]
    runs = []
    for repeat in range(repeats):
        init = pretrainings[repeat].dir if pretrainings else None
        for fold in folds:
            record = {"fold": fold, "repeat": repeat, "seed": derive_seed(base_seed, fold, repeat)}
            if init is not None:
                record["init_from"] = str(best_checkpoint(init))
            runs.append(Run(out / run_dir_name(fold, repeat), (*config_args, "--data.fold", str(fold)), record,
                            f"fold {fold} repeat {repeat}", init_from=init))
    return CVPlan(out, pretrainings, runs)


def execute(plans: list[CVPlan], backend: CVBackend | None = None, jobs: int = 1, devices: Any = None,
            in_process: bool = False, fail_fast: bool = False) -> list[RunResult]:
    """Run the plans' pretrainings, then their runs, ``jobs`` at a time on this machine; the runs' results.

    A failed run is reported and the others still run (``fail_fast``: the first failure is raised once
    the running ones finished); the runs of a repeat whose pretraining failed fail, naming it.
    """
    if in_process and (jobs != 1 or devices is not None):
        raise CVError("--cv.jobs / --cv.devices run each stage in a child process with its own devices and "
                      "threads; they cannot be combined with --cv.in_process true")
    backend = backend or CLIBackend(in_process=in_process)
    pretrainings = [run for plan in plans for run in plan.pretrainings]
    runs = [run for plan in plans for run in plan.runs]
    try:
        slots = plan_slots(min(jobs, max(1, len(runs))), devices)
    except JobsError as err:
        raise CVError(str(err)) from err
    if len(slots) > 1 or slots[0].env:
        say(f"{len(slots)} run(s) at a time: " + "; ".join(f"job {s.index} on {s.describe()}" for s in slots))

    def one(run: Run, slot: Slot) -> RunResult:
        try:
            return run_folder(run, bind(backend, slot))
        except Exception as err:
            if isinstance(err, CVError) or fail_fast:
                raise
            detail = str(err) if isinstance(err, RunFailed) else "".join(traceback.format_exception(err))
            say(f"{run.name} FAILED: {detail}")
            return RunResult(run, "failed", error=detail)

    # in-process stages install Lightning's own handlers, which must find the signals unhandled
    with contextlib.nullcontext() if in_process else signal_guard():
        run_in_slots(pretrainings, one, slots)
        results = [] if stop_requested() else run_in_slots(runs, one, slots)
    if stop_requested():
        raise CVError("stopped by SIGTERM; re-run the same command to continue")
    return results


def finish(plan: CVPlan, results: list[RunResult]) -> dict:
    """``summary.json`` of the plan's folder; ``RunsFailed`` naming its failed runs (after summarising)."""
    mine = [r for r in results if r.run.dir.parent == plan.out]
    summary = aggregate(str(plan.out)) if any(r.metrics for r in mine) else {}
    busy = [r.run.dir.name for r in mine if r.status == "busy"]
    if busy:
        say(f"{len(busy)} run(s) are running in another process and are not summarised yet: {', '.join(busy)}; "
            f"`ser-mtl aggregate {plan.out}` when they finish")
    failed = [r.run.dir.name for r in mine if r.status == "failed"]
    if failed:
        raise RunsFailed(f"{len(failed)} of {len(mine)} runs failed ({', '.join(failed)}); see their fit.log/test.log. "
                         "Re-run the same command to retry them (finished runs are skipped).")
    return summary


def submit(plans: list[CVPlan], options: cluster.ClusterOptions, folder: Path, executor: Any = None) -> dict:
    """The plans' pretrainings and runs as SLURM job arrays (``ser_mtl.runs.cluster``)."""
    if options.gpus > 1 and not any(a.split("=", 1)[0] == "--trainer.devices" for a in plans[0].runs[0].args):
        say(f"warning: --cv.slurm_gpus {options.gpus} starts {options.gpus} ranks per task; set "
            f"--trainer.devices {options.gpus} so that Lightning uses them")
    return cluster.submit([r for p in plans for r in p.pretrainings], [r for p in plans for r in p.runs],
                          [p.out for p in plans], options, folder, executor)


def run_cv(config_args: list[str], folds: list[int] | None, repeats: int, out: str, base_seed: int = 0, *,
           label: str | None = None, pretrain: list[str] | None = None, backend: CVBackend | None = None,
           jobs: int = 1, devices: Any = None, in_process: bool = False, fail_fast: bool = False,
           slurm: bool = False, cluster_options: cluster.ClusterOptions | None = None, executor: Any = None,
           plan_only: bool = False) -> dict:
    """``plan_cv`` + ``execute`` (or ``submit`` with ``slurm``, or to a given submitit ``executor``) + ``finish``:
    the summary, or the submitted job ids (``plan_only``: ``estimate``, nothing trained). ``CVError``: conflicting folder or options; ``RunsFailed``."""
    if slurm and (jobs != 1 or devices is not None):
        raise CVError("--cv.jobs / --cv.devices apply to runs on this machine; with --cv.slurm true every "
                      "(fold, repeat) is its own array task and SLURM places it (--cv.slurm_gpus)")
    plan = plan_cv(config_args, folds, repeats, out, base_seed, label, pretrain, backend, write=not plan_only)
    if plan_only:
        return estimate([plan])
    if slurm or executor is not None:
        return submit([plan], cluster_options or cluster.ClusterOptions(), plan.out / "slurm", executor)
    return finish(plan, execute([plan], backend, jobs, devices, in_process, fail_fast))
