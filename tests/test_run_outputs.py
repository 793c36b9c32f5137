"""A run is a Trainer with callbacks: `Trainer.test` from Python writes exactly what `ser-mtl test` writes."""

import json

import pytorch_lightning as pl

from ser_mtl.data.datamodule import SERDataModule
from ser_mtl.lightning_cli import run_callbacks
from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.run_outputs import ResultWriter
from ser_mtl.verification import SpeakerVerification


def test_trainer_test_from_python_writes_the_run_files(trained_run, tmp_path, capsys):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    model = MultiTaskAAE.load_from_checkpoint(ckpt)
    datamodule = SERDataModule.load_from_checkpoint(ckpt)  # its hyper-parameters and front-end
    callbacks = run_callbacks(tmp_path)
    trainer = pl.Trainer(callbacks=callbacks, default_root_dir=tmp_path, logger=False, accelerator="cpu",
                         enable_progress_bar=False)
    results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    assert (tmp_path / "predictions.csv").read_bytes() == (trained_run / "predictions.csv").read_bytes()
    metrics, by_cli = (json.loads((d / "test_metrics.json").read_text()) for d in (tmp_path, trained_run))
    timed, cli_timed = metrics.pop("cost"), by_cli.pop("cost")
    assert metrics == by_cli  # the same scores, bit for bit; only the seconds differ
    assert timed["test_seconds"] > 0 and timed["startup_seconds"] is None  # no CLI: no launch to measure from
    assert cli_timed["test_seconds"] > 0 and cli_timed["startup_seconds"] >= 0
    assert abs(metrics["ua"] - results["test/ua"]) < 1e-6 and abs(metrics["wa"] - results["test/wa"]) < 1e-6
    # the verification callback logged the EER and kept its trial counts; the table was printed
    verification = next(c for c in callbacks if isinstance(c, SpeakerVerification))
    assert metrics["eer"] == verification.result["eer"] and abs(results["test/eer"] - metrics["eer"]) < 1e-6
    assert verification.result["n_trials"] > 0
    assert next(c for c in callbacks if isinstance(c, ResultWriter)).metrics == {**metrics, "cost": timed}
    out = capsys.readouterr().out
    assert f"test utterances: {metrics['n_utterances']}" in out and f"UA {100 * metrics['ua']:6.2f} %" in out
    assert not hasattr(model, "test_table") and not hasattr(model, "test_eer")  # no result attributes


def test_without_callbacks_nothing_is_written(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, accelerator="cpu", enable_progress_bar=False,
                         enable_checkpointing=False)
    trainer.test(MultiTaskAAE.load_from_checkpoint(ckpt), datamodule=SERDataModule.load_from_checkpoint(ckpt),
                 verbose=False)
    assert not (tmp_path / "test_metrics.json").exists() and not (tmp_path / "predictions.csv").exists()
