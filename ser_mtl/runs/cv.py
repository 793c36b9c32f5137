"""Cross-validation runner: folds x repeats of fit + test, each run resumable, one summary.

Runbook::

    # every fold of data.scheme, 10 repeats (the paper's protocol), locally
    ser-mtl cv --config configs/iemocap.yaml --cv.repeats 10 --cv.out runs/iemocap_10fold
    # two folds, one repeat, quick; re-running the same command skips what is done
    ser-mtl cv --config configs/demo.yaml --trainer.max_epochs 2 --cv.folds 0,1 --cv.out runs/demo
    # a SLURM job array instead (one task per fold x repeat) plus an aggregation job
    ser-mtl cv --config configs/iemocap.yaml --cv.repeats 10 --cv.out runs/iemocap --cv.slurm true \
        --cv.slurm_partition gpu --cv.slurm_time 12:00:00 && runs/iemocap/slurm/submit.sh

Every argument that does not start with ``--cv.`` is passed to ``ser-mtl fit``/``test`` unchanged
(``--config``, ``--model.alpha 0.3``, ``--data.scheme loso`` ...). The runner adds ``--data.fold``,
``--seed_everything``, ``--trainer.default_root_dir`` and ``--ckpt_path`` itself.

Layout of ``--cv.out DIR``::

    DIR/cv.json                 configuration record (args, config file text, resolved config, grid;
                                ``ser_mtl.runs.cv_record``)
    DIR/fold{k}_rep{r}/         one run: run.json (fold, repeat, seed), fit.log, test.log,
                                checkpoints/{best,last}.ckpt, fit_done.json, test_metrics.json,
                                predictions.csv, metrics.json (written last: the run is finished)
    DIR/summary.json            see ``ser_mtl.analysis.summary``

Resumption: a run with ``metrics.json`` is skipped; a run whose fit did not finish restarts from
its newest checkpoint (``checkpoints/last.ckpt`` or Lightning's SLURM ``hpc_ckpt_*.ckpt``); a run
whose fit finished but whose test did not re-runs only the test. Every file is written through a
temporary file and ``os.replace``. Each fit and test runs in a child process, so a crash or kill of
one run leaves the runner and the other runs intact (``--cv.in_process true`` trades that for speed);
a lock per run folder keeps two runners from training into the same run (``stages.run_lock``).

Two stages (paper 4.3: pretrain on LibriSpeech, then fine-tune)::

    ser-mtl cv --config configs/iemocap.yaml --data.aux_root /data/LibriSpeech --cv.out runs/proposed \
        --cv.pretrain "--config configs/librispeech_pretrain.yaml --data.root /data/LibriSpeech"

``--cv.pretrain`` takes the pretraining's ``ser-mtl fit`` arguments as one shell-quoted string. Each
repeat r first gets one pretraining fit in ``DIR/pretrain_rep{r}/``, and every fold fit of repeat r gets
``--model.init_from DIR/pretrain_rep{r}/checkpoints/best.ckpt`` (``ser_mtl.runs.pretrain_stage``;
``--cv.slurm``: a pretraining array, ``--cv.only_pretrain R``, that the fold array waits for).

Packed fits (``--cv.pack K``, ``ser_mtl.experiments.cv_pack``): the runs that still need a fit are
fitted K at a time as one packed network in one child process (``ser_mtl.experiments.pack_runner``),
then each is tested as above; composes with ``--cv.jobs`` (N packs at a time) and ``--cv.pretrain``;
``--cv.slurm``: one array task per pack (``--cv.only_pack I``). An interrupted pack resumes from its
``pack_state.pt`` (saved every epoch, and after the batch in progress on SIGUSR1).

Seeds: run (fold, repeat) gets ``derive_seed(base_seed, fold, repeat)`` (recorded in run.json and
metrics.json) as ``--seed_everything``. ``data.seed`` is left alone: it fixes the fold split, so "fold
3" is the same test set in every repeat and per-fold statistics mean something (it also fixes the
auxiliary speaker draw and the batch order, so repeats differ in initialisation and dropout).
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path
from typing import Any

from ser_mtl.experiments.cv_pack import (
    check_pack_options,
    num_packs,
    pack_slice,
    pack_stage_backend,
    plan_tasks,
    run_pack,
)
from ser_mtl.runs.cv_record import (  # noqa: F401 - re-exported
    RESERVED_ARGS,
    CVError,
    check_config_args,
    check_options,
    config_files,
    ensure_record,
)
from ser_mtl.runs.cv_run import (  # noqa: F401 - re-exported: the per-run steps live there
    RunResult,
    _is_rank_zero,
    _say,
    derive_seed,
    newest_checkpoint,
    run_dir_name,
    run_one,
    task_grid,
)
from ser_mtl.runs.parallel_runs import JobsError, Slot, bind, plan_slots, run_in_slots
from ser_mtl.runs.pretrain_stage import (
    PretrainError,
    pretrain_repeats,
)
from ser_mtl.runs.stages import (
    CLIBackend,
    CVBackend,
    RunFailed,
    signal_guard,
    stop_requested,
)
from ser_mtl.analysis.summary import (
    RECORD_NAME,
    aggregate,
    read_record,
)


class RunsFailed(CVError):
    """Some runs failed (the others ran and were summarised); re-running retries them."""


def run_cv(config_args: list[str], folds: list[int] | None, repeats: int, out: str, base_seed: int = 0,
           slurm: bool = False, *, only_task: int | None = None, in_process: bool = False,
           label: str | None = None, fail_fast: bool = False, slurm_options: Any = None,
           backend: CVBackend | None = None, jobs: int = 1, devices: str | list | None = None,
           pretrain: list[str] | None = None, only_pretrain: int | None = None, pack: int = 1,
           only_pack: int | None = None) -> dict:
    """Cross-validate one configuration: every (fold, repeat) fit + tested, then ``summary.json``.

    Args:
        config_args: training arguments (``--config FILE`` and overrides), without ``--cv.*``.
        folds: fold indices; None = every fold of ``data.scheme`` (asks the DataModule).
        repeats: complete cross-validations, each with fresh seeds (paper: 10).
        out: the cv folder (layout in the module docstring).
        base_seed: seeds are derived from it, the fold and the repeat (``derive_seed``).
        slurm: write a SLURM array + aggregation job (``ser_mtl.runs.slurm``) instead of running.
        only_task: run only task id ``t`` of ``task_grid(folds, repeats)`` (one SLURM array task);
            no summary is written (the aggregation job does that).
        in_process: run fit/test in this process instead of a child process (faster, less isolated).
        label: the row name for reports (default: derived from the configuration).
        fail_fast: stop at the first failed run instead of running the others first.
        slurm_options: ``SlurmOptions`` for ``slurm=True``.
        backend: how stages run (tests inject one); default ``CLIBackend(in_process)``.
        jobs: runs at a time, each in its own child processes (``ser_mtl.runs.parallel_runs``);
            the results do not depend on it. With ``fail_fast`` the runs already going finish first.
        devices: the GPUs the jobs are spread over, round-robin (``"0,1"``, ``"cpu"``); None: all visible.
        pretrain: ``ser-mtl fit`` arguments of a pretraining run once per repeat before its folds
            (module docstring, "Two stages"); None = no pretraining.
        only_pretrain: run only the pretraining of this repeat (one task of the SLURM pretraining array).
        pack: fit the runs that need a fit K at a time as one packed network in one child process
            (``ser_mtl.experiments.cv_pack``); 1 = every run its own ``ser-mtl fit``.
        only_pack: run only pack ``I`` (``grid[I*pack:(I+1)*pack]``; one task of a packed SLURM array).

    Returns:
        The summary (``summary.json``'s content); with ``slurm`` the written script paths; with
        ``only_task`` the run's metrics; with ``only_pack`` ``{run folder name: metrics}``.

    Raises:
        CVError: conflicting folder or options.
        RunsFailed: some runs failed (raised after the others ran and the finished ones were summarised).
    """
    check_options(config_args, repeats, jobs, in_process, devices, slurm, pretrain, only_pretrain)
    check_pack_options(pack, only_pack, only_task, slurm, slurm_options, rank_zero=_is_rank_zero())
    backend = backend or CLIBackend(in_process=in_process)
    out_path = Path(out)
    if folds is None:
        folds = list(range(backend.num_folds(config_args)))
    if not folds or len(set(folds)) != len(folds) or min(folds) < 0:
        raise CVError(f"--cv.folds must be distinct non-negative integers, got {folds}")
    grid = task_grid(folds, repeats)
    record = {"config_args": list(config_args), "base_seed": base_seed, "config_files": config_files(config_args),
              "label": label}
    if pretrain is not None:
        record.update(pretrain=list(pretrain), pretrain_config_files=config_files(pretrain))
    only = only_task is not None or only_pretrain is not None or only_pack is not None
    if not only:
        record["resolved"] = backend.resolve_config(config_args)
        if pretrain is not None:
            record["pretrain_resolved"] = backend.resolve_config(pretrain)
        out_path.mkdir(parents=True, exist_ok=True)
    elif only_task is not None and not 0 <= only_task < len(grid):
        raise CVError(f"--cv.only_task {only_task} is outside 0..{len(grid) - 1} "
                      f"({len(folds)} folds x {repeats} repeats)")
    elif only_pack is not None and not 0 <= only_pack < num_packs(len(grid), pack):
        raise CVError(f"--cv.only_pack {only_pack} is outside 0..{num_packs(len(grid), pack) - 1} "
                      f"({len(grid)} runs in packs of {pack})")
    ensure_record(out_path, record, folds, repeats, write=not only)
    if pretrain is not None and read_record(out_path) is None:  # the folds find their pretraining through it
        raise CVError(f"{out_path / RECORD_NAME} is missing: --cv.only_task/--cv.only_pretrain with --cv.pretrain "
                      "run inside a prepared cv folder; run the command once without them (or with --cv.slurm true)")
    if slurm:
        from ser_mtl.runs.slurm import SlurmOptions, write_cv_scripts

        return write_cv_scripts(config_args, folds, repeats, str(out_path), base_seed, label,
                                slurm_options or SlurmOptions(), pretrain=pretrain, pack=pack)
    runs = [grid[only_task]] if only_task is not None else (
        pack_slice(grid, pack, only_pack) if only_pack is not None else grid)
    if pretrain is not None:
        needed = [only_pretrain] if only_pretrain is not None else sorted({r for _, r in runs})
        with contextlib.nullcontext() if in_process else signal_guard():
            try:
                finished = pretrain_repeats(backend, pretrain, out_path, needed, base_seed, fail_fast, say=_say)
            except PretrainError as err:
                raise CVError(str(err)) from err
        if stop_requested():
            raise CVError("stopped by SIGTERM; re-run the same command to continue")
        if only_pretrain is not None:
            if only_pretrain not in finished:
                raise RunsFailed(f"the pretraining of repeat {only_pretrain} did not finish; see "
                                 f"{out_path / f'pretrain_rep{only_pretrain}' / 'fit.log'}")
            return {"pretrain": str(finished[only_pretrain])}

    tasks = [tuple(runs)] if only_pack is not None else plan_tasks(out_path, runs, pack) if pack > 1 else [
        (run,) for run in runs]
    try:
        slots = plan_slots(min(jobs, len(tasks)), devices)
    except JobsError as err:
        raise CVError(str(err)) from err
    if len(slots) > 1 or slots[0].env:
        _say(f"{len(slots)} run(s) at a time: " + "; ".join(f"job {s.index} on {s.describe()}" for s in slots))

    def failed_run(fold: int, repeat: int, err: Exception) -> RunResult:  # one failed run must not stop the others
        if isinstance(err, CVError) or fail_fast:
            raise err
        detail = str(err) if isinstance(err, RunFailed) else "".join(traceback.format_exception(err))
        _say(f"fold {fold} repeat {repeat} FAILED: {detail}")
        return RunResult(fold, repeat, "failed", error=detail)

    def one(task: tuple[tuple[int, int], ...], slot: Slot) -> list[RunResult]:
        if pack > 1:  # a pack, or one run that needs no fit in a pack (cv_pack.plan_tasks)
            return run_pack(bind(backend, slot), bind(pack_stage_backend(backend), slot), config_args, out_path,
                            task, base_seed, failed_run, _say)
        (fold, repeat), = task
        try:
            return [run_one(bind(backend, slot), config_args, out_path, fold, repeat, base_seed)]
        except Exception as err:  # noqa: BLE001 - handled by failed_run
            return [failed_run(fold, repeat, err)]

    # in-process stages install Lightning's own handlers, which must find the signals unhandled
    with contextlib.nullcontext() if in_process else signal_guard():
        done = run_in_slots(tasks, one, slots)  # task order, whichever finished first
    order = {run: i for i, run in enumerate(runs)}
    results = sorted((r for rs in done for r in rs), key=lambda r: order[r.fold, r.repeat])
    if stop_requested():
        raise CVError("stopped by SIGTERM; re-run the same command to continue")
    failed = [r for r in results if r.status == "failed"]
    if only_task is not None:
        if failed:
            raise RunsFailed(f"task {only_task} (fold {failed[0].fold}, repeat {failed[0].repeat}) failed:\n"
                             f"{failed[0].error}")
        return results[0].metrics or {}
    if only_pack is not None:
        if failed:
            raise RunsFailed(f"pack {only_pack}: {len(failed)} of {len(results)} runs failed:\n"
                             + "\n".join(f"fold {r.fold} repeat {r.repeat}: {r.error}" for r in failed))
        return {run_dir_name(r.fold, r.repeat): r.metrics for r in results}
    summary = aggregate(str(out_path)) if any(r.metrics for r in results) else {}
    busy = [run_dir_name(r.fold, r.repeat) for r in results if r.status == "busy"]
    if busy:
        _say(f"{len(busy)} run(s) are running in another process and are not summarised yet: {', '.join(busy)}; "
             f"`ser-mtl aggregate {out}` when they finish")
    if failed:
        names = ", ".join(run_dir_name(r.fold, r.repeat) for r in failed)
        raise RunsFailed(f"{len(failed)} of {len(results)} runs failed ({names}); see their fit.log/test.log. "
                         "Re-run the same command to retry them (finished runs are skipped).")
    return summary


if __name__ == "__main__":  # = `ser-mtl cv`; SLURM scripts call the module, whatever the dispatcher does
    from ser_mtl.runs.cv_command import cv_main

    cv_main(sys.argv[1:])
