"""Real DDP through the real CLI: two CPU processes (gloo), three phases, utterance metrics over both ranks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ddp]
REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> None:
    env = dict(os.environ, PYTHONWARNINGS="ignore", WANDB_MODE="offline", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "ser_mtl.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_process_ddp_keeps_ranks_identical_and_metrics_global(corpus, tmp_path):
    run = tmp_path / "run"
    common = ["--config", "configs/demo.yaml", "--data.root", str(corpus / "IEMOCAP_full_release"),
              "--data.aux_root", str(corpus / "LibriSpeech"), "--data.cache_dir", str(tmp_path / "cache"),
              "--data.segment_frames", "64", "--data.segment_hop", "32",
              "--model.encoder_pools", "[[2, 2], [2, 2], [2, 2]]", "--trainer.logger", "false",
              "--trainer.default_root_dir", str(run), "--trainer.accelerator", "cpu",
              "--model.tasks", "[emotion, gender, speaker, valence]"]  # a value task's CCC gathered over ranks too
    ddp = ["--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.devices", "2"]
    _cli("fit", *common, *ddp, "--trainer.max_epochs", "2",
         "--trainer.callbacks+=ser_mtl.diagnostics.ParameterDigest")
    digests = [json.loads((run / f"param_digest_rank{r}.json").read_text()) for r in (0, 1)]
    assert digests[0]["world_size"] == 2 and digests[0]["n_params"] > 0
    assert digests[0]["sha256"] == digests[1]["sha256"]  # three manual optimizer steps kept replicas in sync

    best = str(run / "checkpoints" / "best.ckpt")
    _cli("test", *common, *ddp, "--ckpt_path", best)
    two = json.loads((run / "test_metrics.json").read_text())
    _cli("test", *common, "--trainer.devices", "1", "--ckpt_path", best)
    one = json.loads((run / "test_metrics.json").read_text())
    # every test utterance counted once, its segments averaged across both ranks
    assert two["n_utterances"] == one["n_utterances"] > 0
    assert two["wa"] == pytest.approx(one["wa"]) and two["ua"] == pytest.approx(one["ua"])
    assert two["confmat"] == one["confmat"]
    assert two["n_valence_utterances"] == one["n_valence_utterances"] > 0
    assert two["ccc_valence"] == pytest.approx(one["ccc_valence"], abs=1e-6)
