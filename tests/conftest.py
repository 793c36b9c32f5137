"""Shared fixtures: a tiny synthetic corpus in the real layouts, written once per test session."""

from pathlib import Path

import pytest
from cli_args import run_args

from ser_mtl.cli import main


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """3 IEMOCAP sessions x 2 speakers x 16 utterances, 4 LibriSpeech training speakers x 4 utterances."""
    out = tmp_path_factory.mktemp("synth")
    main(["synth", "--out", str(out), "--iemocap_sessions", "3", "--iemocap_dialogs", "2",
          "--iemocap_utterances", "16", "--iemocap_seconds", "[1.0, 2.0]",
          "--librispeech_train_speakers", "4", "--librispeech_train_utterances", "4",
          "--librispeech_test_speakers", "2", "--librispeech_test_utterances", "4"])
    return out


@pytest.fixture(scope="session")
def trained_run(corpus, tmp_path_factory) -> Path:
    """One epoch of `ser-mtl fit` and its `ser-mtl test`: run/checkpoints/best.ckpt, test_metrics.json, ..."""
    run = tmp_path_factory.mktemp("trained") / "run"
    main(["fit", *run_args(corpus, run), "--trainer.max_epochs", "1"])
    main(["test", *run_args(corpus, run), "--ckpt_path", str(run / "checkpoints" / "best.ckpt")])
    return run
