"""What can stop a run or a cross-validation, as exceptions the commands print as one line."""


class CVError(RuntimeError):
    """A cross-validation or sweep cannot proceed as asked (conflicting folder, bad option)."""


class RunMistake(CVError):
    """A stage ended with a user's mistake (``ser-mtl fit: <one line>``, exit status 1): a configuration or input
    that every run shares, so the whole command stops with that line and the run's log; retrying cannot help."""


class RunsFailed(CVError):
    """Some runs failed (the others ran and were summarised); re-running the same command retries them."""


class RunFailed(RuntimeError):
    """One stage (fit or test) of one run failed; the message points at its log."""


class RunInterrupted(RunFailed):
    """A stage was stopped by SIGTERM before it finished."""
