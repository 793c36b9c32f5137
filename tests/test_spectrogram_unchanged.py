"""The log-spectrogram path gives byte-identical results to the commit before front-ends were a part.

`fit` + `test` of the demo network on the synthetic corpus, once with this tree and once with the package
as it was at `REFERENCE` (extracted with ``git archive``, run in its own process), on one thread each:
``predictions.csv`` must be equal byte for byte, ``test_metrics.json``'s scores equal, and the stored
features the same bytes. Skipped with the reason where the repository's history is not there.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "142a0a4"  # the last commit with the spectrogram welded into the store, FrontEnd and model


def _package_at(commit: str, dest: Path) -> Path:
    archive = dest / "ref.tar"
    done = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), commit, "ser_mtl",
                           "configs"], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"git history with {commit} not available ({done.stderr.strip()[:120]})")
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "ref", filter="data")
    return dest / "ref"


def _fit_and_test(source: Path, corpus: Path, run: Path, cache: Path) -> None:
    args = ["--config", str(source / "configs" / "demo.yaml"),
            "--data.root", str(corpus / "IEMOCAP_full_release"), "--data.aux_root", str(corpus / "LibriSpeech"),
            "--data.cache_dir", str(cache), "--data.segment_frames", "64", "--data.segment_hop", "32",
            "--model.encoder_pools", "[[2, 2], [2, 2], [2, 2]]", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(run), "--data.verification_enrol", "3", "--seed_everything", "0"]
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for stage in (["fit", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4",
                   "--trainer.limit_val_batches", "3"],
                  ["test", "--ckpt_path", str(run / "checkpoints" / "best.ckpt")]):
        done = subprocess.run([sys.executable, "-c", "from ser_mtl.cli import main; main()", stage[0], *args,
                               *stage[1:]], check=False, cwd=source, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_fit_and_test_give_the_reference_commits_bytes(corpus, tmp_path):
    reference = _package_at(REFERENCE, tmp_path)
    _fit_and_test(reference, corpus, tmp_path / "ref_run", tmp_path / "ref_cache")
    _fit_and_test(REPO, corpus, tmp_path / "new_run", tmp_path / "new_cache")
    old, new = tmp_path / "ref_run", tmp_path / "new_run"
    assert (new / "predictions.csv").read_bytes() == (old / "predictions.csv").read_bytes()
    old_metrics = json.loads((old / "test_metrics.json").read_text())
    new_metrics = json.loads((new / "test_metrics.json").read_text())
    assert {k: new_metrics[k] for k in ("confmat", "n_utterances", "classes")} == \
        {k: old_metrics[k] for k in ("confmat", "n_utterances", "classes")}
    for key in ("wa", "ua"):  # float32 then, float64 now (one scoring function for every writer)
        assert new_metrics[key] == pytest.approx(old_metrics[key], abs=1e-7)
    # the same stored features, byte for byte (the folder names differ since the store stopped hashing labels)
    old_stores = sorted((tmp_path / "ref_cache").glob("*/features.f16"), key=lambda p: p.stat().st_size)
    new_stores = sorted((tmp_path / "new_cache").glob("*/features.f16"), key=lambda p: p.stat().st_size)
    assert len(old_stores) == len(new_stores) >= 2
    assert [p.read_bytes() for p in new_stores] == [p.read_bytes() for p in old_stores]
