"""LightningCLI wiring: argument links, the paper's callbacks, and what `test` writes.

Decisions (see DESIGN.md "Lessons already paid for"):

* ``data.num_classes`` / ``data.num_speakers`` / ``data.class_names`` are linked into the model
  on instantiation, so label spaces never drift from the data.
* ``auto_configure_optimizers=False``: the model's three SGD optimizers are never replaced by
  ``--optimizer``.
* Checkpoints go to ``<trainer.default_root_dir>/checkpoints/`` as ``best.ckpt`` (best
  ``val/ua``) and ``last.ckpt`` so that runs resume with ``--ckpt_path .../last.ckpt``.
* ``trainer.use_distributed_sampler=False``: the DataModule shards batches per rank itself.
* ``test`` prints the WA/UA table and writes ``test_metrics.json`` and ``predictions.csv`` into
  ``trainer.default_root_dir`` (the run's directory); ``predict`` writes the test split's
  utterance-level ``predict.csv`` there (for new audio files use ``ser-mtl classify``).
"""

from __future__ import annotations

import os

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from ser_mtl.callbacks import RestoreBestHalveLR
from ser_mtl.data.datamodule import SERDataModule
from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.run_outputs import write_predict_outputs, write_test_outputs
from ser_mtl.verification import run_speaker_verification


class SERCLI(LightningCLI):
    """LightningCLI for MultiTaskAAE + SERDataModule with the paper's schedule and checkpoints."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.num_emotions", apply_on="instantiate")
        parser.link_arguments("data.num_speakers", "model.num_speakers", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.input_size", "model.input_size", apply_on="instantiate")
        parser.add_lightning_class_args(RestoreBestHalveLR, "lr_schedule")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/ua", "checkpoint.mode": "max", "checkpoint.filename": "best",
            "checkpoint.save_last": True, "checkpoint.auto_insert_metric_name": False,
        })
        parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath",
                              compute_fn=lambda root: os.path.join(root or ".", "checkpoints"))
        parser.link_arguments("checkpoint.monitor", "lr_schedule.monitor")
        parser.link_arguments("checkpoint.mode", "lr_schedule.mode")

    def before_fit(self) -> None:
        print(self.datamodule.describe())

    def after_test(self) -> None:
        verification = run_speaker_verification(self.model, self.datamodule)
        if verification is not None:
            self.model.test_eer = verification["eer"]
            print(f"speaker verification: EER {100 * verification['eer']:.2f} % over {verification['n_trials']} "
                  f"trials ({verification['n_speakers']} enrolled speakers)")
        metrics = write_test_outputs(self.trainer, self.model, self.datamodule)
        if metrics is not None and self.trainer.is_global_zero:
            print(metrics["table"])


    def after_predict(self) -> None:
        out = write_predict_outputs(self.trainer, self.trainer.predict_loop.predictions, self.datamodule)
        if out is not None:
            print(f"utterance-level predictions of the test split -> {out}")


def run_lightning_cli(args: list[str], run: bool = True) -> SERCLI:
    os.environ.setdefault("WANDB_MODE", "offline")  # no account, no network; `wandb sync` later
    os.environ.setdefault("WANDB_SILENT", "true")
    import warnings

    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return SERCLI(
        MultiTaskAAE,
        SERDataModule,
        args=args,
        run=run,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"use_distributed_sampler": False, "log_every_n_steps": 10},
    )


def build_datamodule(config_args: list[str]) -> SERDataModule:
    """The DataModule of a config + overrides (``--config C --data.fold 2 ...``), nothing else."""
    cli = run_lightning_cli(config_args, run=False)
    return cli.datamodule
