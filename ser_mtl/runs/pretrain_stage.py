"""Two-stage cross-validation: one pretraining fit per repeat, shared by every fold of that repeat.

``ser-mtl cv ... --cv.pretrain "ARGS"`` (``ser_mtl.runs.cv``) first runs ``ser-mtl fit ARGS`` once
per repeat into ``DIR/pretrain_rep{r}/`` and then starts every fold fit of repeat r from its
``checkpoints/best.ckpt`` (``--model.init_from``), as paper 4.3 pretrains on LibriSpeech before
fine-tuning. A pretraining run is resumable like a fold run: a lock (``stages.run_lock``), resumption
from ``checkpoints/last.ckpt`` (or Lightning's SLURM ``hpc_ckpt_*.ckpt``), ``fit_done.json`` when it
finished (then it is skipped), and ``run.json`` with its repeat, seed and arguments.

Seeds: pretraining r gets ``derive_seed(base_seed, PRETRAIN_FOLD, r)``: the derivation of the fold
runs with the marker ``PRETRAIN_FOLD`` (10**6, more folds than any scheme has) in the fold's place,
so it never equals a fold run's seed and differs between repeats.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import traceback
from pathlib import Path

from ser_mtl.runs.stages import CVBackend, RunFailed, run_lock
from ser_mtl.analysis.summary import read_json, read_record
from ser_mtl.io_utils import atomic_write_json

PRETRAIN_FOLD = 10**6  # the marker standing in for the fold in derive_seed
# Set per pretraining by the runner (--data.fold is the pretraining config's own validation fold: allowed).
PRETRAIN_RESERVED = ("--seed_everything", "--trainer.default_root_dir", "--ckpt_path")


class PretrainError(ValueError):
    """A ``--cv.pretrain`` request that cannot run as asked; the message names the option."""


def parse_pretrain(value: str | list[str] | None) -> list[str] | None:
    """``--cv.pretrain``'s value as an argument list: a shell-quoted string split with ``shlex``
    (``"--config configs/librispeech_pretrain.yaml --data.root '/data/Libri Speech'"``) or a list."""
    if value is None:
        return None
    args = list(value) if isinstance(value, list) else shlex.split(value)
    if not args:
        raise PretrainError("--cv.pretrain is empty; give the pretraining's arguments, e.g. "
                            '"--config configs/librispeech_pretrain.yaml --data.root /data/LibriSpeech"')
    return [str(a) for a in args]


def check_pretrain_args(pretrain: list[str], config_args: list[str]) -> None:
    """Refuse what the runner sets itself, ``--cv.*`` inside the pretraining arguments, and a
    ``--model.init_from`` in the training arguments (the pretraining provides it)."""
    for arg in pretrain:
        name = arg.split("=", 1)[0]
        if name in PRETRAIN_RESERVED:
            raise PretrainError(f"--cv.pretrain: {name} is set by the cv runner for each pretraining")
        if name.startswith("--cv."):
            raise PretrainError(f"--cv.pretrain: {arg} is a runner option, not a pretraining argument")
    if any(a.split("=", 1)[0] == "--model.init_from" for a in config_args):
        raise PretrainError("--model.init_from and --cv.pretrain both say where the fine-tuning starts; give "
                            "one: --cv.pretrain to pretrain per repeat, or --model.init_from for one fixed checkpoint")


def pretrain_dir_name(repeat: int) -> str:
    return f"pretrain_rep{repeat}"


def _is_rank_zero() -> bool:
    return os.environ.get("SLURM_PROCID", "0") == "0"


def _newest_checkpoint(run_dir: Path) -> Path | None:
    from ser_mtl.runs.cv_run import newest_checkpoint

    return newest_checkpoint(run_dir)


def run_pretraining(backend: CVBackend, pretrain: list[str], out: Path, repeat: int, seed: int,
                    say=print) -> Path | None:
    """Fit pretraining ``repeat`` into ``out/pretrain_rep{repeat}`` unless it finished; its best.ckpt.

    None when another process holds its lock (that process is running it). ``RunFailed`` when the fit
    fails or leaves no best.ckpt; ``PretrainError`` when the folder records another seed or arguments.
    """
    run_dir = (out / pretrain_dir_name(repeat)).absolute()
    best = run_dir / "checkpoints" / "best.ckpt"
    done = run_dir / "fit_done.json"
    if done.exists() and best.is_file():
        return best
    run_dir.mkdir(parents=True, exist_ok=True)
    rank_zero = _is_rank_zero()
    with run_lock(run_dir) if rank_zero else contextlib.nullcontext(True) as acquired:
        if not acquired:
            say(f"pretraining of repeat {repeat}: running in another process ({run_dir / '.lock'}); left to it")
            return None
        if done.exists() and best.is_file():
            return best
        record = {"repeat": repeat, "seed": seed, "args": list(pretrain)}
        run_json = run_dir / "run.json"
        if run_json.exists():
            previous = read_json(run_json)
            if previous != record:
                raise PretrainError(f"{run_json} records {previous} but this pretraining is {record}; use another "
                                    "--cv.out")
        elif rank_zero:
            atomic_write_json(run_json, record)
        resume = _newest_checkpoint(run_dir)
        args = [*pretrain, "--seed_everything", str(seed), "--trainer.default_root_dir", str(run_dir)]
        say(f"pretraining of repeat {repeat} (seed {seed})" + (f", resuming from {resume.name}" if resume else "")
            + f"  [log {run_dir / 'fit.log'}]")
        backend.run_stage("fit", args + (["--ckpt_path", str(resume)] if resume else []), run_dir)
        if not best.is_file():
            raise RunFailed(f"pretraining finished but {best} is missing (the CLI must save best.ckpt)")
        if rank_zero:
            atomic_write_json(done, {"resumed_from": str(resume) if resume else None})
    return best


def pretrained_init(out: Path, repeat: int) -> Path | None:
    """The checkpoint fold runs of ``repeat`` start from: None when ``out/cv.json`` records no
    pretraining; ``RunFailed`` (the fold fails, a re-run retries it) when that pretraining has not finished."""
    record = read_record(out)
    if not record or not record.get("pretrain"):
        return None
    run_dir = (out / pretrain_dir_name(repeat)).absolute()
    best = run_dir / "checkpoints" / "best.ckpt"
    if not ((run_dir / "fit_done.json").exists() and best.is_file()):
        raise RunFailed(f"the pretraining of repeat {repeat} has not finished ({run_dir}; see its fit.log); "
                        "re-run the same command to retry it and this run")
    return best


def pretrain_seed(base_seed: int, repeat: int) -> int:
    """``derive_seed(base_seed, PRETRAIN_FOLD, repeat)`` (see the module docstring)."""
    from ser_mtl.runs.cv_run import derive_seed

    return derive_seed(base_seed, PRETRAIN_FOLD, repeat)


def pretrain_repeats(backend: CVBackend, pretrain: list[str], out: Path, repeats: list[int], base_seed: int,
                     fail_fast: bool = False, say=print) -> dict[int, Path]:
    """Run (or skip, when finished) the pretraining of each repeat: repeat -> best.ckpt of those that
    finished. A failed one is reported and the others still run; the folds of its repeat then fail
    (`pretrained_init`) pointing at its log. ``fail_fast`` re-raises the first failure instead."""
    from ser_mtl.runs.cv_record import CVError
    from ser_mtl.runs.stages import stop_requested

    finished: dict[int, Path] = {}
    for repeat in repeats:
        if stop_requested():
            break
        try:
            best = run_pretraining(backend, pretrain, out, repeat, pretrain_seed(base_seed, repeat), say=say)
        except Exception as err:
            if isinstance(err, (CVError, PretrainError)) or fail_fast:
                raise
            say(f"pretraining of repeat {repeat} FAILED: {err if isinstance(err, RunFailed) else traceback.format_exc()}")
            continue
        if best is not None:
            finished[repeat] = best
    return finished
