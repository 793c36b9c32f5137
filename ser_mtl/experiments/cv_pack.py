"""``ser-mtl cv --cv.pack K``: the fits of K (fold, repeat) runs trained as one packed network.

The runs of the grid that still need a fit are grouped K at a time in grid order (``plan_tasks``);
each group is one task of the runner (``--cv.jobs N``: N packs at a time, one slot and device each).
A pack task (``run_pack``):

1. takes the lock of each of its runs (``stages.run_lock``); a run busy in another process is left
   out of the pack (status ``busy``), one finished meanwhile is skipped;
2. writes or checks each run's ``run.json`` as an unpacked run does (``cv.prepare_run``; with
   ``--cv.pretrain`` each run's ``init_from`` is its repeat's pretraining);
3. fits the runs that need it in ONE child process, ``python -m ser_mtl.experiments.stages
   ser_mtl.experiments.pack_runner pack_fit DIR/packs/<names>/pack.json`` (the backend's usual
   child: PR_SET_PDEATHSIG, SIGTERM forwarded, every run lock inherited), which calls
   ``ser_mtl.experiments.pack_runner.fit_pack`` on the slot's device (``cuda`` when the child sees a
   GPU and ``trainer.accelerator`` is not ``cpu``, else ``cpu``). Its log is
   ``DIR/packs/<names>/pack_fit.log``; each run's ``fit.log`` gets a line naming it, and each run
   folder gets ``pack.json`` (this run was started in a pack);
4. tests each run with the ordinary test stage (``cv._fit_and_test``: ``test.log``,
   ``test_metrics.json``, ``metrics.json``), so the summary is written by the existing code.

Resumption: a run with ``fit_done.json`` is not repacked (only tested); a run with an unpacked
checkpoint to resume from (``last.ckpt`` without ``pack.json``) is resumed unpacked, on its own. An
interrupted pack resumes: the next ``--cv.pack`` run groups the same unfinished runs into the same
pack (same folder, same ``pack.json``), whose child goes on from ``pack_state.pt``
(``ser_mtl/experiments/pack_runner.py``): a kill loses at most the epoch in progress, SIGUSR1 nothing.
A pack whose runs or arguments changed (a run finished or is busy elsewhere meanwhile, other options)
starts its runs afresh; an unpacked re-run fits them from scratch.
A run that the pack left without ``best.ckpt`` (it diverged before its first validation) fails and
is retried by the next run of the command.

SLURM (``--cv.only_pack I``, one array task per pack): pack I is the fixed slice
``grid[I*K:(I+1)*K]`` of the whole grid, whatever has finished, so that concurrent tasks never
share a run; finished runs inside it are skipped as above.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ser_mtl.experiments.cv_record import CVError
from ser_mtl.experiments.stages import CLIBackend, RunFailed, run_lock
from ser_mtl.experiments.summary import METRICS_NAME, read_run_metrics
from ser_mtl.io_utils import atomic_write_json
from ser_mtl.models.packed_resume import STATE_NAME

PACK_STAGE = "pack_fit"  # the stage name the backend gets (its log: DIR/packs/<names>/pack_fit.log)
PACK_MODULE = "ser_mtl.experiments.pack_runner"  # what the child runs instead of the training CLI
PACK_MARK = "pack.json"  # in a run folder: its fit was started in a pack (never resumed unpacked)
PACKS_DIR = "packs"

Run = tuple[int, int]  # (fold, repeat)


def check_pack_options(pack: Any, only_pack: int | None, only_task: int | None, slurm: bool,
                       slurm_options: Any, rank_zero: bool) -> None:
    """``--cv.pack`` / ``--cv.only_pack`` as the runner can honour them, else ``CVError`` naming the option."""
    if not isinstance(pack, int) or isinstance(pack, bool) or pack < 1:
        raise CVError(f"--cv.pack must be an integer >= 1 (runs per packed fit), got {pack!r}")
    if only_pack is not None and pack < 2:
        raise CVError("--cv.only_pack needs --cv.pack K >= 2 (with one run per task use --cv.only_task)")
    if only_pack is not None and only_task is not None:
        raise CVError("--cv.only_pack and --cv.only_task both pick the runs of this call; give one")
    if pack > 1 and only_task is not None:
        raise CVError("--cv.only_task runs one (fold, repeat) unpacked; with --cv.pack use --cv.only_pack I")
    if pack > 1 and slurm and getattr(slurm_options, "gpus", 1) > 1:
        raise CVError(f"--cv.pack trains a pack on one device; --cv.slurm_gpus {slurm_options.gpus} would start "
                      f"{slurm_options.gpus} ranks per task, each fitting the same pack: use --cv.slurm_gpus 1")
    if pack > 1 and not rank_zero:
        raise CVError("--cv.pack trains a pack on one device in one process; this is rank > 0 of a multi-task "
                      "SLURM step (SLURM_PROCID): run it with one task per pack")


def pack_slice(grid: Sequence[Run], pack: int, index: int) -> list[Run]:
    """Pack ``index`` of a SLURM array: ``grid[index*pack:(index+1)*pack]``."""
    return list(grid[index * pack:(index + 1) * pack])


def num_packs(n_runs: int, pack: int) -> int:
    return -(-n_runs // pack)


def _needs_pack(run_dir: Path) -> bool:
    """No metrics.json, no fit_done.json, and no unpacked checkpoint that an unpacked fit would resume."""
    from ser_mtl.experiments.cv_run import newest_checkpoint

    if (run_dir / METRICS_NAME).exists() or (run_dir / "fit_done.json").exists():
        return False
    return (run_dir / PACK_MARK).exists() or newest_checkpoint(run_dir) is None


def plan_tasks(out: Path, runs: Sequence[Run], pack: int) -> list[tuple[Run, ...]]:
    """The runner's tasks: the runs needing a fit in groups of ``pack`` (grid order), every other run alone
    (tested, resumed unpacked or skipped), ordered by each task's first run in ``runs``."""
    from ser_mtl.experiments.cv_run import run_dir_name

    packed = [run for run in runs if _needs_pack(out / run_dir_name(*run))]
    groups = [tuple(packed[i:i + pack]) for i in range(0, len(packed), pack)]
    singles = [(run,) for run in runs if run not in set(packed)]
    order = {run: i for i, run in enumerate(runs)}
    return sorted(groups + singles, key=lambda task: order[task[0]])


def pack_stage_backend(backend: Any) -> Any:
    """The backend that runs the pack's child: a ``CLIBackend`` whose module is ``pack_runner`` (other
    backends, e.g. the tests' fakes, get the ``pack_fit`` stage themselves)."""
    return dataclasses.replace(backend, cli_module=PACK_MODULE) if isinstance(backend, CLIBackend) else backend


def _note(run_dir: Path, text: str) -> None:
    with open(run_dir / "fit.log", "a", encoding="utf-8") as handle:
        handle.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")


def run_pack(backend: Any, fit_backend: Any, config_args: list[str], out: Path, group: Sequence[Run],
             base_seed: int, on_error: Callable[[int, int, Exception], Any], say: Callable[[str], None]) -> list[Any]:
    """Fit the runs of ``group`` that need it as one pack, then test each (module docstring, steps 1-4).

    ``fit_backend`` runs the ``pack_fit`` stage, ``backend`` the test stages (both bound to the slot);
    ``on_error(fold, repeat, err)`` turns one run's failure into its result (or raises: ``--cv.fail_fast``).
    Returns one ``cv.RunResult`` per run of ``group``, in its order.
    """
    from ser_mtl.experiments.cv_run import RunResult, _fit_and_test, _is_rank_zero, prepare_run, run_dir_name

    rank_zero = _is_rank_zero()
    results: dict[Run, Any] = {}
    to_fit: list[tuple[Run, Path, dict[str, Any], list[str]]] = []
    to_test: list[tuple[Run, Path]] = []
    with contextlib.ExitStack() as locks:
        for fold, repeat in group:
            run_dir = (out / run_dir_name(fold, repeat)).absolute()
            metrics_path = run_dir / METRICS_NAME
            if metrics_path.exists():
                results[fold, repeat] = RunResult(fold, repeat, "skipped", read_run_metrics(metrics_path))
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            if not locks.enter_context(run_lock(run_dir)):
                say(f"fold {fold} repeat {repeat}: running in another process ({run_dir / '.lock'}); left to it")
                results[fold, repeat] = RunResult(fold, repeat, "busy")
                continue
            if metrics_path.exists():  # finished by that other process just before we took the lock
                results[fold, repeat] = RunResult(fold, repeat, "skipped", read_run_metrics(metrics_path))
                continue
            if not _needs_pack(run_dir):  # fitted (only its test is left) or an unpacked fit to resume
                to_test.append(((fold, repeat), run_dir))
                continue
            try:
                record, args = prepare_run(config_args, run_dir, fold, repeat, base_seed, rank_zero)
            except RunFailed as err:  # e.g. its pretraining has not finished: this run only
                results[fold, repeat] = on_error(fold, repeat, err)
                continue
            to_fit.append(((fold, repeat), run_dir, record, args))
        if to_fit:
            fitted = _fit_pack_child(fit_backend, config_args, out, to_fit, rank_zero, say)
            for (fold, repeat), run_dir, _, _ in to_fit:
                err = fitted.get((fold, repeat))
                if err is None:
                    to_test.append(((fold, repeat), run_dir))
                else:
                    results[fold, repeat] = on_error(fold, repeat, err)
        for (fold, repeat), run_dir in sorted(to_test, key=lambda item: list(group).index(item[0])):
            try:
                results[fold, repeat] = _fit_and_test(backend, config_args, run_dir, fold, repeat, base_seed,
                                                      rank_zero)
            except Exception as err:  # noqa: BLE001 - one run's failure, handled like an unpacked run's
                results[fold, repeat] = on_error(fold, repeat, err)
    return [results[run] for run in group]


def _same_spec(path: Path, content: dict[str, Any]) -> bool:
    """``path`` (a pack's ``pack.json``) holds ``content``: the interrupted pack is this one."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(content))
    except (OSError, ValueError):
        return False


def _fit_pack_child(fit_backend: Any, config_args: list[str], out: Path,
                    to_fit: list[tuple[Run, Path, dict[str, Any], list[str]]], rank_zero: bool,
                    say: Callable[[str], None]) -> dict[Run, Exception | None]:
    """One ``pack_fit`` child for the runs of ``to_fit``; per run None (fitted) or the reason it failed."""
    names = [run_dir.name for _, run_dir, _, _ in to_fit]
    pack_dir = (out / PACKS_DIR / "+".join(names)).absolute()
    pack_dir.mkdir(parents=True, exist_ok=True)
    spec = pack_dir / "pack.json"
    runs = [{"fold": fold, "seed": record["seed"], "run_dir": str(run_dir),
             "args": ["--model.init_from", record["init_from"]] if record.get("init_from") else []}
            for (fold, _), run_dir, record, _ in to_fit]
    content = {"config_args": list(config_args), "runs": runs}
    state = pack_dir / STATE_NAME
    resume = state.exists() and _same_spec(spec, content)
    if rank_zero:
        if not resume:  # a new pack, or one whose runs or arguments changed: it starts afresh
            state.unlink(missing_ok=True)
            atomic_write_json(spec, content)
        for _, run_dir, _, _ in to_fit:
            if not resume:
                (run_dir / "fit_done.json").unlink(missing_ok=True)
                (run_dir / "checkpoints" / "last.ckpt").unlink(missing_ok=True)
            atomic_write_json(run_dir / PACK_MARK, {"pack": str(pack_dir), "runs": names})
            _note(run_dir, f"{'resumed' if resume else 'fitted'} in a pack of {len(names)} runs ({', '.join(names)}); "
                           f"log: {pack_dir / (PACK_STAGE + '.log')}")
    say(f"pack of {len(names)}: {', '.join(names)}: {'resume' if resume else 'fit'}  "
        f"[log {pack_dir / (PACK_STAGE + '.log')}]")
    try:
        fit_backend.run_stage(PACK_STAGE, [str(spec)], pack_dir)
    except Exception as err:  # noqa: BLE001 - the pack failed: each of its runs failed with it
        failed = err if isinstance(err, RunFailed) else RunFailed(f"pack {pack_dir.name} failed: {err}")
        return {run: failed for run, _, _, _ in to_fit}
    outcome: dict[Run, Exception | None] = {}
    for run, run_dir, _, _ in to_fit:
        best = run_dir / "checkpoints" / "best.ckpt"
        done = run_dir / "fit_done.json"
        if done.exists() and best.is_file():
            outcome[run] = None
            continue
        if rank_zero:
            done.unlink(missing_ok=True)  # retried by the next run of the command
        outcome[run] = RunFailed(f"the pack {pack_dir.name} finished but left {run_dir} without "
                                 f"{best.name if done.exists() else done.name} (diverged? see "
                                 f"{pack_dir / (PACK_STAGE + '.log')} and {run_dir / 'packed_fit.json'})")
    return outcome
