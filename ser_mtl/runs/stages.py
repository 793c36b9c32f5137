"""How one stage (``ser-mtl fit`` or ``test``) of one run executes, safely.

* ``CLIBackend`` runs it in a child process (a crash or a hung CUDA context ends that run only), or
  in this process (a cluster task). The child exits 143 when Lightning stopped it on SIGTERM
  (``SIGTERMException`` is a ``SystemExit`` with code 0), so an interrupted fit never looks finished.
* A child dies with its runner (Linux ``PR_SET_PDEATHSIG``, armed by the child): no orphan fit
  survives a killed ``ser-mtl cv``. Linux sends it when the *thread* that started the child ends, so
  the thread that starts a child waits for it.
* ``run_lock``: an exclusive ``flock`` on ``RUN/.lock``, inherited by the child; the kernel drops a
  dead holder's lock. SIGTERM to the runner (``signal_guard``) reaches every child; nothing new starts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ser_mtl.runs.errors import RunFailed, RunInterrupted, RunMistake
from ser_mtl.runs.record import resolve_config
from ser_mtl.stage_clock import launch_marker

# submitit's signal handler ends a task it has just requeued with sys.exit(-1), from inside the running stage
SUBMITIT_REQUEUE_EXIT = -1
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM
RUNNER_PID_VARIABLE = "SER_MTL_CV_RUNNER_PID"  # tells a stage child whose death it must not outlive


class CVBackend(Protocol):
    """What the runner needs from the training CLI (``CLIBackend``; tests use stand-ins): run
    ``ser-mtl <stage> <args>`` to completion or raise ``RunFailed`` (``env``: the child's devices and
    threads), the number of folds of ``data.scheme`` and the resolved configuration for the record."""

    def run_stage(self, stage: str, args: list[str], run_dir: Path, env: dict[str, str] | None = None) -> None: ...

    def num_folds(self, config_args: list[str]) -> int: ...

    def resolve_config(self, config_args: list[str]) -> dict[str, Any] | None: ...


# "children": every running stage child (any thread); "stop": SIGTERM received
_state: dict[str, Any] = {"children": set(), "stop": False}
_thread = threading.local()  # lock_fds: the run lock(s) this thread holds


def stop_requested() -> bool:
    """True once the runner received SIGTERM: finish nothing new."""
    return bool(_state["stop"])


def request_stop() -> None:
    """SIGTERM: no new stage starts, every running child gets SIGTERM. Lock-free (a signal handler): the
    flag is set before the children are read and ``run_stage`` registers its child before reading it."""
    _state["stop"] = True
    for child in list(_state["children"]):
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)


@dataclass
class CLIBackend:
    """Runs stages through ``<cli_module>.main`` in a child process (default) or in this process;
    ``extra_args`` are appended to every stage's arguments (a cluster task's Lightning plugins)."""

    in_process: bool = False
    cli_module: str = "ser_mtl.cli"
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()

    def run_stage(self, stage: str, args: list[str], run_dir: Path, env: dict[str, str] | None = None) -> None:
        args = [*args, *self.extra_args]
        if self.in_process:
            if env:
                raise ValueError(f"a stage run in this process cannot get its own environment ({env}); "
                                 "drop --cv.in_process")
            os.environ.update(launch_marker())  # the stage's start-up counts from here (ser_mtl/stage_clock.py)
            run_cli_stage(self.cli_module, [stage, *args])
            return
        if stop_requested():
            raise RunInterrupted(f"{stage} not started: the runner received SIGTERM")
        log = run_dir / f"{stage}.log"
        cmd = [self.python, "-m", "ser_mtl.runs.stages", self.cli_module, stage, *args]
        fds = tuple(getattr(_thread, "lock_fds", ()))  # the run lock this thread holds: the child inherits it
        extra = {**self.env, **(env or {})}
        with open(log, "a", encoding="utf-8") as handle:
            shown = " ".join(f"{k}={v}" for k, v in sorted((env or {}).items()))
            handle.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {shown + ' ' if shown else ''}"
                         f"{' '.join(cmd)}\n")
            handle.flush()
            # close_fds (the default) keeps the other runs' lock descriptors out of this child
            child = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, pass_fds=fds,
                                     env={**os.environ, **extra, RUNNER_PID_VARIABLE: str(os.getpid()),
                                          **launch_marker()})
            _state["children"].add(child)
            try:
                if stop_requested():  # SIGTERM came while the child was starting (see request_stop)
                    child.send_signal(signal.SIGTERM)
                code = child.wait()  # this thread outlives its child: PR_SET_PDEATHSIG follows threads
            except BaseException:  # Ctrl-C: the child got SIGINT too; give it a moment, then end it
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=10)
                child.kill()
                child.wait()
                raise
            finally:
                _state["children"].discard(child)
        if code != 0:
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
            if code in (1, 2) and (mistake := stage_mistake(lines, stage)) is not None:
                raise RunMistake(f"{mistake} ({stage} of {run_dir.name}, log {log}; every run would fail the same way, "
                                 "so none was retried)")
            kind = RunInterrupted if code in (EXIT_INTERRUPTED, -signal.SIGTERM) else RunFailed
            tail = "\n".join(lines[-25:])
            raise kind(f"{stage} exited with status {code}; last lines of {log}:\n{tail}")

    def num_folds(self, config_args: list[str]) -> int:
        """The folds of the configuration's scheme: ``<cli_module>.num_folds``, which builds its data settings
        (a mistake in them raises here, before any run starts)."""
        return int(importlib.import_module(self.cli_module).num_folds(config_args))

    def resolve_config(self, config_args: list[str]) -> dict[str, Any] | None:
        return resolve_config(config_args, self.cli_module)


def stage_mistake(lines: list[str], stage: str) -> str | None:
    """The message of the one line a stage child printed for a user's mistake (``ser-mtl fit: MESSAGE``, see
    ``ser_mtl.lightning_cli.one_line_mistakes``) in its latest attempt's log ``lines``, else None."""
    start = max((i for i, line in enumerate(lines) if line.startswith("===== ")), default=-1)
    prefix = f"ser-mtl {stage}: "
    return next((line[len(prefix):] for line in reversed(lines[start + 1:]) if line.startswith(prefix)), None)


def die_with_runner() -> None:
    """First act of a stage child: the kernel sends it SIGKILL when its runner ends, however it ends (Linux).
    A child whose runner (``SER_MTL_CV_RUNNER_PID``) died before this call ends at once."""
    runner = os.environ.pop(RUNNER_PID_VARIABLE, None)  # popped: the CLI's own children must not inherit it
    if runner is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
        print(f"[cv] note: PR_SET_PDEATHSIG failed (errno {ctypes.get_errno()}); this stage may outlive "
              "a killed runner", file=sys.stderr)
    if os.getppid() != int(runner):  # the runner died before the call above
        os._exit(EXIT_INTERRUPTED)


def finish_wandb_run() -> None:
    """End the wandb run a stage left open in this process (its logger's ``wandb.init``): the next stage in the
    same process (a cluster task's test after its fit) must start a run of its own, not log into the fit's."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def run_cli_stage(cli_module: str, argv: list[str]) -> None:
    """``<cli_module>.main(argv)``; ``RunInterrupted`` when Lightning stopped it on SIGTERM. Any wandb run the
    stage opened is finished when it returns (`finish_wandb_run`)."""
    try:
        importlib.import_module(cli_module).main(argv)
    except SystemExit as exit_:
        if exit_.code == SUBMITIT_REQUEUE_EXIT:  # submitit requeued this cluster task (time limit, preemption)
            print(f"[cv] {argv[0]} interrupted: the task is requeued and its next attempt resumes from the run's "
                  "last.ckpt", flush=True)
            raise  # a SystemExit, not an error: submitit logs no "triggered an exception" for a requeue
        if type(exit_).__name__ == "SIGTERMException":
            raise RunInterrupted(f"{argv[0]} stopped by SIGTERM before it finished") from exit_
        if exit_.code == 1 and exit_.__cause__ is not None:  # one_line_mistakes: a user's mistake, already printed
            raise RunMistake(f"{exit_.__cause__} ({argv[0]}; every run would fail the same way)") from exit_
        if exit_.code not in (0, None):
            raise RunFailed(f"{argv[0]} exited with status {exit_.code}") from exit_
    finally:
        finish_wandb_run()


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[bool]:
    """Hold ``run_dir/.lock`` exclusively; yields False when another process holds it."""
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                yield False
                return
            print(f"[cv] note: {run_dir} is not locked (flock unsupported here: {err})", flush=True)
        held = getattr(_thread, "lock_fds", [])
        _thread.lock_fds = [*held, fd]
        try:
            yield True
        finally:
            _thread.lock_fds = held
    finally:
        os.close(fd)


@contextlib.contextmanager
def signal_guard() -> Iterator[None]:
    """While the runner waits on children: SIGTERM is forwarded to them (``request_stop``)."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous not in (signal.SIG_DFL, None):
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        request_stop()
        print("[cv] SIGTERM: waiting for the running stage to stop (every job's); no further runs start", flush=True)

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stage_main(argv: list[str]) -> int:
    """Child entry: ``python -m ser_mtl.runs.stages CLI_MODULE STAGE ARGS...``."""
    die_with_runner()
    try:
        run_cli_stage(argv[0], argv[1:])
    except RunInterrupted as err:
        print(f"[cv] {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(_stage_main(sys.argv[1:]))
