"""LightningCLI wiring: argument links and the callbacks that make a run.

Decisions (each one learnt the hard way on Lightning 2.6 / jsonargparse 4.53):

* ``data.num_classes`` / ``num_speakers`` / ``class_names`` / ``input_size`` / ``input_channels`` are linked into the model on
  instantiation, so label spaces never drift from the data.
* ``auto_configure_optimizers=False``: the model's three SGD optimizers are never replaced by ``--optimizer``.
* Checkpoints go to ``<trainer.default_root_dir>/checkpoints/`` as ``best.ckpt`` and ``last.ckpt`` (every
  epoch), so runs resume with ``--ckpt_path .../last.ckpt``; the monitor, shared with the schedule,
  defaults to ``auto`` (`ser_mtl.callbacks.resolve_monitor`).
* A user's mistake (`USER_ERRORS`) ends ``ser-mtl fit/...`` with one line and exit status 1
  (`one_line_mistakes`); a bug keeps its traceback (``SER_MTL_TRACEBACK=1`` shows a mistake's too).
* ``trainer.use_distributed_sampler=False``: the DataModule shards batches per rank itself.
* Every callback is its own config group; a Python caller gets the same run with
  ``Trainer(callbacks=run_callbacks(run_dir))``. Nothing is written by the CLI itself.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from ser_mtl.callbacks import AUTO, BestCheckpoint, FitRecord, MonitorError, RestoreBestHalveLR, StageTimed
from ser_mtl.checkpoint_io import CheckpointError, read_checkpoint
from ser_mtl.data.datamodule import SERDataModule
from ser_mtl.data.extractor import FeatureModelError
from ser_mtl.data.folds import FoldError
from ser_mtl.data.labels import LabelSchemeError
from ser_mtl.data.manifest import CorpusError
from ser_mtl.data.sampling import SamplingError
from ser_mtl.data.store import StoreNotBuiltError
from ser_mtl.io_utils import atomic_write_text
from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.init_from import read_state_dict
from ser_mtl.random_state import RandomStateCheckpoint
from ser_mtl.run_outputs import PredictionWriter, ResultWriter
from ser_mtl.stage_clock import LAUNCHED_VARIABLE, StageClock
from ser_mtl.tasks import TaskError
from ser_mtl.verification import SpeakerVerification

# The package's errors for a user's mistake (a path, a setting, a damaged file): one line, not a traceback.
USER_ERRORS = (CheckpointError, CorpusError, FeatureModelError, FoldError, LabelSchemeError, MonitorError, SamplingError,
               StoreNotBuiltError, TaskError)


def run_callbacks(run_dir: str | os.PathLike, monitor: str = AUTO, mode: str = AUTO, **schedule) -> list:
    """The callbacks ``ser-mtl fit/test/predict`` add, with their CLI defaults, for a ``Trainer`` built in
    Python (``schedule``: `RestoreBestHalveLR` arguments)."""
    checkpoints = os.path.join(run_dir, "checkpoints")
    return [BestCheckpoint(dirpath=checkpoints, filename="best", monitor=monitor, mode=mode,
                           auto_insert_metric_name=False, enable_version_counter=False),
            ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1, enable_version_counter=False),
            RestoreBestHalveLR(monitor=monitor, mode=mode, **schedule), RandomStateCheckpoint(), SpeakerVerification(),
            ResultWriter(), PredictionWriter(), FitRecord()]


class AtomicSaveConfig(SaveConfigCallback):
    """LightningCLI's config record, written atomically, only when changed, and per stage (``config.yaml``
    for fit, ``config_<stage>.yaml`` else), so testing in a run folder keeps the record of its training."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        log_dir = trainer.log_dir  # every rank: it broadcasts
        if trainer.is_global_zero:
            stage = str(getattr(stage, "value", stage))
            path = Path(log_dir) / (self.config_filename if stage == "fit" else f"config_{stage}.yaml")
            text = self.parser.dump(self.config, skip_none=False)
            if not (path.is_file() and path.read_text(encoding="utf-8") == text):  # a re-run writes nothing new
                atomic_write_text(path, text)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


class OneLineParser(LightningArgumentParser):
    """LightningCLI's parser with no prefix matching (``--trainer.max_epoch`` is not ``max_epochs``) and one line
    for a bad argument, naming the closest option, instead of the whole usage (argparse's ``error`` hook)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse trying alternatives (union types, subcommands): not final
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        text = " ".join(line.strip() for line in message.strip().splitlines()[:3]) or "invalid arguments"
        print(f"{prog}: error: {text}{closest_option(parser, text)} (see {prog} --help)", file=sys.stderr)
        self.exit(2)


def closest_option(parser: Any, message: str) -> str:
    """``; did you mean --model.alpha?`` for the first unrecognised ``--option`` of ``message``, else ``""``."""
    unknown = next((word for word in message.replace(",", " ").split() if word.startswith("--")), None)
    if unknown is None:
        return ""
    known = sorted(set(re.findall(r"--[\w.+-]+", parser.format_usage())))  # every option the usage lists
    close = difflib.get_close_matches(unknown.split("=", 1)[0], known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class SERCLI(LightningCLI):
    """LightningCLI for MultiTaskAAE + SERDataModule with the paper's schedule and checkpoints."""

    def add_arguments_to_parser(self, parser) -> None:
        for source, target in (("num_classes", "num_emotions"), ("num_speakers", "num_speakers"),
                               ("class_names", "class_names"), ("input_size", "input_size"),
                               ("input_channels", "input_channels")):
            parser.link_arguments(f"data.{source}", f"model.{target}", apply_on="instantiate")
        # the rule "auxiliary speech only where a task can use it", whatever the order of --config files
        parser.link_arguments("model.tasks", "data.model_tasks", apply_on="parse")
        # the paper's alpha/beta depend on the label task (paper 5.1), whatever the order of --config files
        parser.link_arguments("data.task", "model.label_task", apply_on="parse")
        parser.add_lightning_class_args(RestoreBestHalveLR, "lr_schedule")
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        # Lightning 2.6's save_last writes last.ckpt only when the monitor improved, leaving epochs without
        # a checkpoint to resume from: last.ckpt is its own callback, written every epoch. No version
        # counter: a re-run in the same folder overwrites, never leaves best-v1.ckpt beside a stale best.ckpt.
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({
            "checkpoint.filename": "best", "checkpoint.save_last": False, "checkpoint.auto_insert_metric_name": False,
            "checkpoint.enable_version_counter": False,
            "last_checkpoint.filename": "last", "last_checkpoint.monitor": None, "last_checkpoint.save_top_k": 1,
            "last_checkpoint.enable_version_counter": False,
        })
        for group in ("checkpoint", "last_checkpoint"):
            parser.link_arguments("trainer.default_root_dir", f"{group}.dirpath",
                                  compute_fn=lambda root: os.path.join(root or ".", "checkpoints"))
        parser.link_arguments("checkpoint.monitor", "lr_schedule.monitor")
        parser.link_arguments("checkpoint.mode", "lr_schedule.mode")
        # verification logs test/eer at the end of the test epoch; test_outputs writes it at the end of the test
        for cls, group in ((RandomStateCheckpoint, "random_state"), (SpeakerVerification, "verification"),
                           (ResultWriter, "test_outputs"), (PredictionWriter, "predict_outputs"),
                           (FitRecord, "fit_record")):
            parser.add_lightning_class_args(cls, group)

    def parse_arguments(self, parser, args) -> None:
        """Parse, then open ``--ckpt_path`` safely: LightningCLI reads its hyper-parameters right after this,
        before any other hook, so a missing, damaged or foreign checkpoint is one `CheckpointError` naming it."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt and ckpt not in ("last", "best", "hpc", "registry"):  # Lightning's own names
            read_checkpoint(ckpt)

    def before_instantiate_classes(self) -> None:
        """Set-up begins (`StageClock`); ``--model.init_from`` is applied when the fit starts: check the file
        before anything is built."""
        self.stage_clock = StageClock.start()
        config = self.config[self.subcommand] if self.subcommand else self.config
        if init_from := config.get("model.init_from"):
            read_state_dict(init_from)

    def _hand_clock(self) -> None:
        """The stage's seconds count from the start of set-up, not from the trainer's first hook."""
        for callback in self.trainer.callbacks:
            if isinstance(callback, StageTimed):
                callback.clock = self.stage_clock

    def before_fit(self) -> None:
        self._hand_clock()
        print(self.datamodule.describe())

    def before_test(self) -> None:
        self._hand_clock()


def run_lightning_cli(args: list[str], run: bool = True) -> SERCLI:
    os.environ.setdefault("WANDB_MODE", "offline")  # no account, no network; `wandb sync` later
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault(LAUNCHED_VARIABLE, repr(time.time()))  # no runner launched it: start-up is parsing
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return SERCLI(MultiTaskAAE, SERDataModule, args=args, run=run, auto_configure_optimizers=False,
                  parser_class=OneLineParser, parser_kwargs={"prog": "ser-mtl"},
                  save_config_callback=AtomicSaveConfig, save_config_kwargs={"overwrite": True},
                  trainer_defaults={"use_distributed_sampler": False, "log_every_n_steps": 10})


def user_mistake(err: BaseException) -> BaseException | None:
    """The `USER_ERRORS` exception that ``err`` is, or was raised from or while handling (LightningCLI and
    jsonargparse may wrap what a class raises), along the chain a traceback shows; None for a bug."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, USER_ERRORS):
            return err
        seen.add(id(err))
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return None


@contextlib.contextmanager
def one_line_mistakes(prog: str) -> Iterator[None]:
    """A user's mistake (`user_mistake`) becomes ``prog: message`` on stderr and exit status 1 (the error is
    the ``SystemExit``'s cause); any other exception passes."""
    try:
        yield
    except Exception as err:
        mistake = user_mistake(err)
        if mistake is None:
            raise
        print(f"{prog}: {mistake}", file=sys.stderr)
        raise SystemExit(1) from err


def build_datamodule(config_args: list[str]) -> SERDataModule:
    """The DataModule of a config + overrides (``--config C --data.fold 2 ...``), nothing else."""
    return run_lightning_cli(config_args, run=False).datamodule
