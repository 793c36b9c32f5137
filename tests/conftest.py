"""Shared fixtures: a tiny synthetic corpus in the real layouts, written once per test session."""

from pathlib import Path

import pytest

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
