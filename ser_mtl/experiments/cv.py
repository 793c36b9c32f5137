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

    DIR/cv.json                 configuration record (args, config file text, resolved config, grid)
    DIR/fold{k}_rep{r}/         one run: run.json (fold, repeat, seed), fit.log, test.log,
                                checkpoints/{best,last}.ckpt, fit_done.json, test_metrics.json,
                                predictions.csv, metrics.json (written last: the run is finished)
    DIR/summary.json            see ``ser_mtl.experiments.summary``

Resumption: a run with ``metrics.json`` is skipped; a run whose fit did not finish restarts from
its newest checkpoint (``checkpoints/last.ckpt`` or Lightning's SLURM ``hpc_ckpt_*.ckpt``); a run
whose fit finished but whose test did not re-runs only the test. Every file is written through a
temporary file and ``os.replace``. Each fit and test runs in a child process, so a crash or kill of
one run leaves the runner and the other runs intact (``--cv.in_process true`` trades that for speed).

Seeds: run (fold, repeat) gets ``derive_seed(base_seed, fold, repeat)`` (recorded in run.json and
metrics.json) as ``--seed_everything``. The fold *split* is governed by ``data.seed`` and stays the
same across repeats, so "fold 3" is the same test set in every repeat and per-fold statistics mean
something; repeats differ in initialisation, auxiliary-batch order and dropout.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from ser_mtl.experiments.summary import METRICS_NAME, RECORD_NAME, aggregate, read_record, read_run_metrics
from ser_mtl.io_utils import atomic_write_json

# Arguments the runner sets per run; a user value would be silently overridden, so it is refused.
RESERVED_ARGS = ("--data.fold", "--seed_everything", "--trainer.default_root_dir", "--ckpt_path")


class CVError(RuntimeError):
    """The cross-validation cannot proceed as asked (conflicting folder, bad option, failed runs)."""


class RunsFailed(CVError):
    """Some runs failed (the others ran and were summarised); re-running retries them."""


class RunFailed(RuntimeError):
    """One stage (fit or test) of one run failed; the message points at its log."""


class RunInterrupted(RunFailed):
    """A stage was stopped by SIGTERM before it finished (Lightning exits 0 in that case)."""


# ---------------------------------------------------------------------------------------- backends
class CVBackend(Protocol):
    """What the runner needs from the training CLI; ``CLIBackend`` is the real one."""

    def run_stage(self, stage: str, args: list[str], run_dir: Path) -> None:
        """Run ``ser-mtl <stage> <args>`` (stage: fit | test) to completion, or raise ``RunFailed``."""

    def num_folds(self, config_args: list[str]) -> int:
        """Number of folds of the configuration's ``data.scheme``."""

    def resolve_config(self, config_args: list[str]) -> dict[str, Any] | None:
        """The fully resolved configuration (defaults filled in), for the record."""


@dataclass
class CLIBackend:
    """Runs stages through ``<cli_module>.main`` in a child process (default) or in this process."""

    in_process: bool = False
    cli_module: str = "ser_mtl.cli"
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)

    def run_stage(self, stage: str, args: list[str], run_dir: Path) -> None:
        log = run_dir / f"{stage}.log"
        if self.in_process:
            run_cli_stage(self.cli_module, [stage, *args])
            return
        cmd = [self.python, "-m", "ser_mtl.experiments.cv", "--cli", self.cli_module, stage, *args]
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
            handle.flush()
            proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        if proc.returncode != 0:
            kind = RunInterrupted if proc.returncode == EXIT_INTERRUPTED else RunFailed
            raise kind(f"{stage} exited with status {proc.returncode}; last lines of {log}:\n{_tail(log)}")

    def num_folds(self, config_args: list[str]) -> int:
        return int(_build_datamodule(config_args).num_folds)

    def resolve_config(self, config_args: list[str]) -> dict[str, Any] | None:
        import yaml

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), _plain_argv():
            try:
                importlib.import_module(self.cli_module).main(["fit", *config_args, "--print_config"])
            except SystemExit as exit_:
                if exit_.code not in (0, None):
                    raise CVError(f"the configuration does not parse ({' '.join(config_args)}):\n"
                                  f"{buffer.getvalue()}") from exit_
        return yaml.safe_load(buffer.getvalue())


def _build_datamodule(config_args: list[str]):
    cli = importlib.import_module("ser_mtl.cli")
    if not hasattr(cli, "build_datamodule"):  # it may live next to the LightningCLI subclass
        cli = importlib.import_module("ser_mtl.lightning_cli")
    with _plain_argv():
        return cli.build_datamodule(config_args)


@contextlib.contextmanager
def _plain_argv() -> Iterator[None]:
    """LightningCLI warns when given ``args`` while ``sys.argv`` has arguments too (``ser-mtl cv ...``)."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


EXIT_INTERRUPTED = 143  # 128 + SIGTERM, as a shell reports a process killed by SIGTERM


def run_cli_stage(cli_module: str, argv: list[str]) -> None:
    """``<cli_module>.main(argv)``, turning Lightning's SIGTERM exit into ``RunInterrupted``.

    Lightning stops a fit on SIGTERM by raising ``SIGTERMException`` (a ``SystemExit`` with code
    0): to a parent process that would look like a finished fit, so it must be told apart here.
    """
    try:
        importlib.import_module(cli_module).main(argv)
    except SystemExit as exit_:
        if type(exit_).__name__ == "SIGTERMException":
            raise RunInterrupted(f"{argv[0]} stopped by SIGTERM before it finished") from exit_
        if exit_.code not in (0, None):
            raise RunFailed(f"{argv[0]} exited with status {exit_.code}") from exit_


def _stage_main(argv: list[str]) -> int:
    """Child-process entry: ``python -m ser_mtl.experiments.cv --cli MODULE STAGE ARGS...``."""
    cli_module = "ser_mtl.cli"
    if argv[:1] == ["--cli"]:
        cli_module, argv = argv[1], argv[2:]
    try:
        run_cli_stage(cli_module, argv)
    except RunInterrupted as err:
        print(f"[cv] {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


# ------------------------------------------------------------------------------------ the protocol
def derive_seed(base_seed: int, fold: int, repeat: int) -> int:
    """A seed for run (fold, repeat): numpy's SeedSequence hash of the three numbers, in [0, 2**31).

    Deterministic across machines and numpy versions, and no two (base, fold, repeat) collide the
    way ``base + 1000 * repeat + fold`` would (base 0 repeat 1 == base 1000 repeat 0).
    """
    if min(base_seed, fold, repeat) < 0:
        raise ValueError(f"base seed, fold and repeat must be >= 0, got {base_seed}, {fold}, {repeat}")
    return int(np.random.SeedSequence([base_seed, fold, repeat]).generate_state(1)[0]) & 0x7FFFFFFF


def task_grid(folds: list[int], repeats: int) -> list[tuple[int, int]]:
    """(fold, repeat) of each task id, repeat-major: whole repeats finish first under a throttled array."""
    return [(fold, rep) for rep in range(repeats) for fold in folds]


def run_dir_name(fold: int, repeat: int) -> str:
    return f"fold{fold}_rep{repeat}"


def parse_int_list(text: str | int | list[int] | None) -> list[int] | None:
    """Folds as ``[0,2,5]``, ``0,2,5``, ``3`` or a range ``0-4`` (inclusive); None stays None."""
    if text is None or isinstance(text, list):
        return text
    if isinstance(text, int):
        return [text]
    raw = text.strip().strip("[]")
    values: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in raw.split(","))):
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                values += list(range(int(lo), int(hi) + 1))
            else:
                values.append(int(part))
    except ValueError as err:
        raise CVError(f"--cv.folds {text!r}: expected integers like [0,1,2], 0,1,2 or 0-9") from err
    return values


def config_files(config_args: list[str]) -> dict[str, str]:
    """Text of every ``--config FILE`` in the arguments (the record keeps what was actually run)."""
    files: dict[str, str] = {}
    for i, arg in enumerate(config_args):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else (
            config_args[i + 1] if arg == "--config" and i + 1 < len(config_args) else None)
        if path is not None:
            if not Path(path).is_file():
                raise CVError(f"--config {path}: no such file")
            files[path] = Path(path).read_text(encoding="utf-8")
    return files


def check_config_args(config_args: list[str]) -> None:
    for arg in config_args:
        name = arg.split("=", 1)[0]
        if name in RESERVED_ARGS:
            raise CVError(f"{name} is set by the cv runner for each run; use --cv.folds / --cv.base_seed / "
                          f"--cv.out instead")
        if name.startswith("--cv."):
            raise CVError(f"{arg}: --cv.* options belong to the runner, not to the training arguments")


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a resumed fit starts from: the newer of ``last.ckpt`` and Lightning's HPC one.

    Lightning's SLURM signal handler saves ``hpc_ckpt_N.ckpt`` in the run folder when the job is
    about to be preempted; it is newer than the epoch-end ``last.ckpt``. Passing it explicitly as
    ``--ckpt_path`` is needed because an explicit path disables Lightning's own HPC lookup.
    """
    candidates = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


def _is_rank_zero() -> bool:
    # Under `srun --ntasks-per-node=G` every rank runs this runner; only rank 0 writes run files.
    return os.environ.get("SLURM_PROCID", "0") == "0"


def _check_test_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunFailed(f"test finished but wrote no {path} (expected by the CLI contract)")
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("wa", "ua"):
        if not isinstance(data.get(key), (int, float)):
            raise RunFailed(f"{path}: expected a number under {key!r}, got {data.get(key)!r}")
    return data


@dataclass
class RunResult:
    fold: int
    repeat: int
    status: str  # "skipped" | "done" | "failed"
    metrics: dict[str, Any] | None = None
    error: str | None = None


def run_one(backend: CVBackend, config_args: list[str], out: Path, fold: int, repeat: int,
            base_seed: int) -> RunResult:
    """Fit + test one (fold, repeat) in ``out/fold{fold}_rep{repeat}``, resuming whatever is done."""
    run_dir = (out / run_dir_name(fold, repeat)).absolute()
    metrics_path = run_dir / METRICS_NAME
    if metrics_path.exists():
        return RunResult(fold, repeat, "skipped", read_run_metrics(metrics_path))
    seed = derive_seed(base_seed, fold, repeat)
    run_dir.mkdir(parents=True, exist_ok=True)
    rank_zero = _is_rank_zero()
    record = {"fold": fold, "repeat": repeat, "seed": seed}
    run_json = run_dir / "run.json"
    if run_json.exists():
        previous = read_record_file(run_json)
        if {k: previous.get(k) for k in record} != record:
            raise CVError(f"{run_json} records {previous} but this run is {record}; was --cv.base_seed "
                          "changed? Use another --cv.out")
    elif rank_zero:
        atomic_write_json(run_json, record)

    args = [*config_args, "--data.fold", str(fold), "--seed_everything", str(seed),
            "--trainer.default_root_dir", str(run_dir)]
    best = run_dir / "checkpoints" / "best.ckpt"
    if not (run_dir / "fit_done.json").exists():
        resume = newest_checkpoint(run_dir)
        _say(f"fold {fold} repeat {repeat} (seed {seed}): fit"
             + (f", resuming from {resume.name}" if resume else "") + f"  [log {run_dir / 'fit.log'}]")
        backend.run_stage("fit", args + (["--ckpt_path", str(resume)] if resume else []), run_dir)
        if not best.is_file():
            raise RunFailed(f"fit finished but {best} is missing (the CLI must save best.ckpt)")
        if rank_zero:
            atomic_write_json(run_dir / "fit_done.json", {"resumed_from": str(resume) if resume else None})

    test_metrics = run_dir / "test_metrics.json"
    if rank_zero and test_metrics.exists():
        test_metrics.unlink()  # a stale file from an interrupted test must not pass for this one
    _say(f"fold {fold} repeat {repeat}: test {best.name}")
    backend.run_stage("test", args + ["--ckpt_path", str(best)], run_dir)
    if not rank_zero:
        return RunResult(fold, repeat, "done")
    tested = _check_test_metrics(test_metrics)
    metrics = {**record, "wa": float(tested["wa"]), "ua": float(tested["ua"])}
    for key in ("eer", "n_utterances", "classes", "confmat"):
        if tested.get(key) is not None:
            metrics[key] = tested[key]
    atomic_write_json(metrics_path, metrics)
    _say(f"fold {fold} repeat {repeat}: WA {100 * metrics['wa']:.1f} %  UA {100 * metrics['ua']:.1f} %")
    return RunResult(fold, repeat, "done", metrics)


def read_record_file(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CVError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err


def _say(text: str) -> None:
    print(f"[cv] {text}", flush=True)


@contextlib.contextmanager
def _survive_sigusr1() -> Iterator[None]:
    """Keep the runner alive when SLURM sends SIGUSR1 (``--signal``) to every process of the task.

    The child fit gets the same signal and checkpoints + requeues (Lightning's SLURM plugin). A
    Python-level handler, unlike SIG_IGN, is reset in the child at exec, so Lightning still sees
    SIGUSR1 as unhandled and installs its own.
    """
    if not hasattr(signal, "SIGUSR1") or signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None):
        yield
        return
    previous = signal.signal(signal.SIGUSR1, lambda *_: _say("SIGUSR1: the running fit checkpoints and requeues"))
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _ensure_record(out: Path, record: dict[str, Any], folds: list[int], repeats: int, write: bool) -> None:
    """Refuse to mix two configurations in one folder; keep the union of requested grids."""
    path = out / RECORD_NAME
    previous = read_record(out)
    if previous is not None:
        for key in ("config_args", "base_seed", "config_files"):
            if previous.get(key) != record[key]:
                raise CVError(f"{path}: this folder holds runs of a different {key} "
                              f"({previous.get(key)!r} != {record[key]!r}); use another --cv.out, or "
                              f"delete {path} if the change is deliberate")
    if not write:
        return
    old_grid = (previous or {}).get("grid", {})
    grid = {"folds": sorted(set(old_grid.get("folds", [])) | set(folds)),
            "repeats": sorted(set(old_grid.get("repeats", [])) | set(range(repeats)))}
    merged = {**record, "resolved": record.get("resolved") or (previous or {}).get("resolved"), "grid": grid}
    if merged != previous:
        atomic_write_json(path, merged)


def run_cv(config_args: list[str], folds: list[int] | None, repeats: int, out: str, base_seed: int = 0,
           slurm: bool = False, *, only_task: int | None = None, in_process: bool = False,
           label: str | None = None, fail_fast: bool = False, slurm_options: Any = None,
           backend: CVBackend | None = None) -> dict:
    """Cross-validate one configuration: every (fold, repeat) fit + tested, then ``summary.json``.

    Args:
        config_args: training arguments (``--config FILE`` and overrides), without ``--cv.*``.
        folds: fold indices; None = every fold of ``data.scheme`` (asks the DataModule).
        repeats: complete cross-validations, each with fresh seeds (paper: 10).
        out: the cv folder (layout in the module docstring).
        base_seed: seeds are derived from it, the fold and the repeat (``derive_seed``).
        slurm: write a SLURM array + aggregation job (``ser_mtl.experiments.slurm``) instead of running.
        only_task: run only task id ``t`` of ``task_grid(folds, repeats)`` (one SLURM array task);
            no summary is written (the aggregation job does that).
        in_process: run fit/test in this process instead of a child process (faster, less isolated).
        label: the row name for reports (default: derived from the configuration).
        fail_fast: stop at the first failed run instead of running the others first.
        slurm_options: ``SlurmOptions`` for ``slurm=True``.
        backend: how stages run (tests inject one); default ``CLIBackend(in_process)``.

    Returns:
        The summary (``summary.json``'s content); with ``slurm`` the written script paths; with
        ``only_task`` the run's metrics.

    Raises:
        CVError: conflicting folder or options.
        RunsFailed: some runs failed (raised after the others ran and the finished ones were summarised).
    """
    if repeats < 1:
        raise CVError(f"--cv.repeats must be >= 1, got {repeats}")
    check_config_args(config_args)
    backend = backend or CLIBackend(in_process=in_process)
    out_path = Path(out)
    if folds is None:
        folds = list(range(backend.num_folds(config_args)))
    if not folds or len(set(folds)) != len(folds) or min(folds) < 0:
        raise CVError(f"--cv.folds must be distinct non-negative integers, got {folds}")
    grid = task_grid(folds, repeats)
    record = {"config_args": list(config_args), "base_seed": base_seed, "config_files": config_files(config_args),
              "label": label}
    if only_task is None:
        record["resolved"] = backend.resolve_config(config_args)
        out_path.mkdir(parents=True, exist_ok=True)
    elif not 0 <= only_task < len(grid):
        raise CVError(f"--cv.only_task {only_task} is outside 0..{len(grid) - 1} "
                      f"({len(folds)} folds x {repeats} repeats)")
    _ensure_record(out_path, record, folds, repeats, write=only_task is None)
    if slurm:
        from ser_mtl.experiments.slurm import SlurmOptions, write_cv_scripts

        return write_cv_scripts(config_args, folds, repeats, str(out_path), base_seed, label,
                                slurm_options or SlurmOptions())

    tasks = grid if only_task is None else [grid[only_task]]
    results: list[RunResult] = []
    guard = contextlib.nullcontext() if in_process else _survive_sigusr1()
    with guard:
        for fold, repeat in tasks:
            try:
                results.append(run_one(backend, config_args, out_path, fold, repeat, base_seed))
            except Exception as err:  # one failed run must not stop the others
                if isinstance(err, CVError) or fail_fast:
                    raise
                detail = str(err) if isinstance(err, RunFailed) else traceback.format_exc()
                _say(f"fold {fold} repeat {repeat} FAILED: {detail}")
                results.append(RunResult(fold, repeat, "failed", error=detail))
    failed = [r for r in results if r.status == "failed"]
    if only_task is not None:
        if failed:
            raise RunsFailed(f"task {only_task} (fold {failed[0].fold}, repeat {failed[0].repeat}) failed:\n"
                          f"{failed[0].error}")
        return results[0].metrics or {}
    summary = aggregate(str(out_path)) if any(r.status != "failed" for r in results) else {}
    if failed:
        names = ", ".join(run_dir_name(r.fold, r.repeat) for r in failed)
        raise RunsFailed(f"{len(failed)} of {len(results)} runs failed ({names}); see their fit.log/test.log. "
                      "Re-run the same command to retry them (finished runs are skipped).")
    return summary


# ------------------------------------------------------------------------------------------ CLI
def add_cv_arguments(parser) -> None:
    """The ``--cv.*`` options (shared by ``ser-mtl cv`` and ``ser-mtl sweep``)."""
    from ser_mtl.experiments.slurm import add_slurm_arguments

    parser.add_argument("--cv.out", type=str, required=True,
                        help="output folder: one subfolder per fold x repeat, cv.json, summary.json")
    parser.add_argument("--cv.folds", type=str | None, default=None,
                        help="fold indices: [0,1,2], 0,1,2 or 0-9; default every fold of data.scheme")
    parser.add_argument("--cv.repeats", type=int, default=1,
                        help="complete cross-validations with fresh seeds (the paper uses 10)")
    parser.add_argument("--cv.base_seed", type=int, default=0,
                        help="run (fold, repeat) is seeded with derive_seed(base_seed, fold, repeat)")
    parser.add_argument("--cv.label", type=str | None, default=None,
                        help="row name in reports (default: model and tasks from the configuration)")
    parser.add_argument("--cv.in_process", type=bool, default=False,
                        help="run fit/test in this process (faster start, but a crash ends the runner)")
    parser.add_argument("--cv.fail_fast", type=bool, default=False,
                        help="stop at the first failed run (default: run the others, then report)")
    parser.add_argument("--cv.only_task", type=int | None, default=None,
                        help="run only this task id of the fold x repeat grid (what a SLURM array task does)")
    add_slurm_arguments(parser)


def split_argv(argv: list[str], prefixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Split off ``--<prefix>.name value`` / ``--<prefix>.name=value`` (and -h/--help) from the rest."""
    mine: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            mine.append(arg)
        elif arg.startswith(prefixes):
            mine.append(arg)
            if "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                mine.append(argv[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return mine, rest


def make_cv_parser(prog: str = "ser-mtl cv"):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog=prog, description="Cross-validation: folds x repeats of fit + test, resumable. Every argument "
        "not starting with --cv. goes to `ser-mtl fit`/`test` (e.g. --config FILE --model.alpha 0.3).")
    add_cv_arguments(parser)
    return parser


def cv_kwargs(ns) -> dict[str, Any]:
    """``run_cv`` keyword arguments from a parsed ``--cv.*`` namespace."""
    from ser_mtl.experiments.slurm import slurm_options_from

    cv = ns.cv
    return {"folds": parse_int_list(cv.folds), "repeats": cv.repeats, "out": cv.out, "base_seed": cv.base_seed,
            "slurm": cv.slurm, "only_task": cv.only_task, "in_process": cv.in_process, "label": cv.label,
            "fail_fast": cv.fail_fast, "slurm_options": slurm_options_from(cv)}


def cv_main(argv: list[str]) -> None:
    """``ser-mtl cv``: parse ``--cv.*`` here and pass every other argument to fit/test."""
    mine, config_args = split_argv(argv, ("--cv.",))
    ns = make_cv_parser().parse_args(mine)
    try:
        run_cv(config_args, **cv_kwargs(ns))
    except (CVError, ValueError) as err:
        print(f"ser-mtl cv: {err}", file=sys.stderr)
        raise SystemExit(1) from err


if __name__ == "__main__":
    sys.exit(_stage_main(sys.argv[1:]))
