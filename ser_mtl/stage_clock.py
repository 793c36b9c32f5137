"""How long one stage (``ser-mtl fit`` or ``test``) took, measured the same way for both, inside the stage.

* **start-up**: from the stage's launch to the start of its set-up: the interpreter, the imports and the
  parsing of the command line and config. The launch is ``SER_MTL_STAGE_LAUNCHED`` (wall-clock seconds) when a
  runner set it (``ser_mtl/runs/stages.py``: before it starts the child process, or calls the stage in its
  own process), else the moment the CLI was called (``ser_mtl/lightning_cli.py run_lightning_cli``).
* **the stage's seconds**: from the start of set-up (building the data, model and trainer, reading features,
  then every epoch with its validation, or the test) to the stage's end. ``FitRecord`` sums them over a fit's
  resumed pieces (``ser_mtl/callbacks.py``); ``ResultWriter`` writes the test's (``ser_mtl/run_outputs.py``).

``SERCLI`` starts a ``StageClock`` when set-up begins and hands it to those callbacks; a ``Trainer`` built in
Python without the CLI starts it at the callbacks' ``setup`` hook, with no start-up.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

LAUNCHED_VARIABLE = "SER_MTL_STAGE_LAUNCHED"  # wall-clock time.time() when the stage was launched


def launch_marker() -> dict[str, str]:
    """The environment a runner gives a stage it launches now."""
    return {LAUNCHED_VARIABLE: repr(time.time())}


@dataclass
class StageClock:
    """``started``: ``time.perf_counter()`` when set-up began (None: not started); ``startup_seconds``: launch to
    set-up (None: unknown)."""

    started: float | None = None
    startup_seconds: float | None = None

    @classmethod
    def start(cls, environ: dict[str, str] | None = None) -> StageClock:
        """Set-up begins now; the launch time is taken (and removed, so that a later stage in this process
        cannot reuse it) from ``environ`` (default ``os.environ``)."""
        environ = os.environ if environ is None else environ
        now, launched = time.time(), environ.pop(LAUNCHED_VARIABLE, None)
        try:
            startup = None if launched is None else max(0.0, now - float(launched))
        except ValueError:  # not a number: no start-up rather than a crash
            startup = None
        return cls(time.perf_counter(), startup)

    @property
    def running(self) -> bool:
        return self.started is not None

    def seconds(self) -> float:
        """Seconds since set-up began (0 when not started)."""
        return 0.0 if self.started is None else time.perf_counter() - self.started
