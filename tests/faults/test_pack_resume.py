"""A pack interrupted at any moment resumes from its ``pack_state.pt`` and ends as if never interrupted.

`train_pack` writes one state file for the whole pack after every epoch and, when its ``interrupt``
says so (SIGUSR1 in the pack's child), after the batch in progress (``ser_mtl/models/packed_resume.py``).
Shown here: two in-process interruptions (mid-epoch, then at an epoch's first batch) and a real child
process stopped by SIGUSR1 and then SIGKILLed give best/last checkpoints bitwise equal to an
uninterrupted pack's; a damaged state file or another pack's state is refused with its path named.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_args import run_args
from subprocess_cli import REPO
from test_packed import SEEDS, make_batches, make_models

from ser_mtl.checkpoint_io import read_checkpoint
from ser_mtl.models.packed import PackedAAE
from ser_mtl.models.packed_resume import (
    STATE_NAME,
    load_pack_state,
    pack_state,
    read_pack_state,
    save_pack_state,
)
from ser_mtl.models.packed_schedule import PackedSchedule


def test_a_saved_pack_state_round_trips_and_bad_or_foreign_states_are_refused(tmp_path: Path) -> None:
    pack = PackedAAE(make_models({"optimizer": "adam"}), SEEDS)
    sched = PackedSchedule(pack, patience=1)
    batches = make_batches()
    pack.step(batches[0])
    sched.after_validation(0, [0.5, 0.25, 0.125])
    path = tmp_path / STATE_NAME
    save_pack_state(path, pack_state(pack, sched, {"pack": "a"}, 1, [0, 0, 0], [1, 1, 1]))
    saved = {n: t.clone() for n, t in pack.params.items()}
    lrs = list(pack.optimizers["autoencoder"].lrs)
    adam_steps = pack.optimizers["autoencoder"].state["encoder.blocks.0.0.weight"]["step"].clone()  # (K,)
    pack.step(batches[1])  # moves on ...
    sched.after_validation(1, [0.1, 0.1, 0.1])  # no improvement: restore and halve
    assert pack.optimizers["autoencoder"].lrs != lrs
    state = read_pack_state(path, {"pack": "a"})
    load_pack_state(pack, sched, state)  # ... and is put back
    assert all(torch.equal(pack.params[n], saved[n]) for n in saved)
    assert pack.optimizers["autoencoder"].lrs == lrs
    assert torch.equal(pack.optimizers["autoencoder"].state["encoder.blocks.0.0.weight"]["step"], adam_steps)
    assert [cb.best_score for cb in sched.callbacks] == [0.5, 0.25, 0.125] and [cb.wait for cb in sched.callbacks] == [0] * 3
    assert state["next_epoch"] == 1 and state["batches_done"] == [1, 1, 1]
    assert read_pack_state(tmp_path / "none.pt", {"pack": "a"}) is None
    with pytest.raises(ValueError, match=rf"{STATE_NAME}: written for another pack"):
        read_pack_state(path, {"pack": "b"})
    path.write_bytes(path.read_bytes()[:1000])  # torn, as by a disk that filled up under a non-atomic writer
    with pytest.raises(ValueError, match=rf"{STATE_NAME}: damaged pack state"):
        read_pack_state(path, {"pack": "a"})


def test_a_pack_child_with_a_damaged_state_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    runs = [{"fold": 0, "seed": 1, "run_dir": str(tmp_path / "fold0_rep0"), "args": []}]
    (tmp_path / "pack.json").write_text(json.dumps({"config_args": ["--config", "configs/demo.yaml"], "runs": runs}))
    (tmp_path / STATE_NAME).write_bytes(b"PK\x03\x04 torn")
    child = _pack_child(tmp_path / "pack.json")
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 1
    assert out.strip().splitlines()[-1].startswith(f"[pack] {tmp_path / STATE_NAME}: damaged pack state"), out
    assert "Traceback" not in out and not (tmp_path / "fold0_rep0").exists()


def _datamodule(corpus: Path, cache: Path):
    from ser_mtl.data.datamodule import SERDataModule

    return SERDataModule(corpus="iemocap", root=str(corpus / "IEMOCAP_full_release"), aux_root=str(corpus / "LibriSpeech"),
                         aux_speakers=None, aux_fraction=0.25, scheme="loso_session", fold=0, batch_size=8,
                         segment_frames=64, segment_hop=32, features={"n_bins": 64}, cache_dir=str(cache),
                         verification_enrol=3)


MODEL = {"encoder_channels": [4, 8, 8], "encoder_pools": [[2, 2], [2, 2], [2, 2]], "head_conv_channels": 8,
         "head_hidden": 16, "head_pool": "stats", "optimizer": "adam", "lr": 1e-3}


def _weights(run_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "checkpoints" / name)["state_dict"]


def _assert_same_fits(a: list[Path], b: list[Path]) -> None:
    for run_a, run_b in zip(a, b, strict=True):
        for name in ("best.ckpt", "last.ckpt"):
            wa, wb = _weights(run_a, name), _weights(run_b, name)
            assert all(torch.equal(wa[n], wb[n]) for n in wa), f"{run_b.name}/{name}"
        ra, rb = (json.loads((r / "packed_fit.json").read_text()) for r in (run_a, run_b))
        assert ra == rb


@pytest.mark.slow
def test_train_pack_interrupted_mid_epoch_and_at_an_epoch_start_ends_as_the_uninterrupted_pack(corpus, tmp_path):
    from ser_mtl.models.packed_training import PackInterrupted, RunSpec, train_pack

    schedule = {"patience": 1, "min_lr": 1e-5}  # restores happen within the 4 epochs
    seeds = (3, 4)

    def runs(name):
        return [tmp_path / name / f"run{k}" for k in range(len(seeds))]

    def fit(name, state=None, interrupt=None):
        specs = [RunSpec(seed, out, MODEL) for seed, out in zip(seeds, runs(name))]
        return train_pack(specs, [_datamodule(corpus, tmp_path / "cache") for _ in specs], 4, schedule,
                          state_path=state, identity=["same pack"], interrupt=interrupt)

    reference = fit("ref")
    per_epoch = len(_datamodule_loader(corpus, tmp_path))
    assert per_epoch >= 3
    polls = {"n": 0}

    def at(poll):  # True at the poll-th check (one per batch index), counted over this call
        polls["n"] = 0

        def interrupt():
            polls["n"] += 1
            return polls["n"] == poll
        return interrupt

    state = tmp_path / "resumed" / STATE_NAME
    with pytest.raises(PackInterrupted, match="interrupted in epoch 1"):
        fit("resumed", state, at(per_epoch + 2))  # before batch 1 of epoch 1
    saved = read_pack_state(state, ["same pack"])
    assert saved["next_epoch"] == 1 and saved["skip"] == [1, 1] and saved["batches_done"] == [per_epoch + 1] * 2
    with pytest.raises(PackInterrupted, match="interrupted in epoch 2"):
        fit("resumed", state, at(per_epoch))  # the rest of epoch 1, then before epoch 2's first batch
    assert read_pack_state(state, ["same pack"])["skip"] == [0, 0]
    assert fit("resumed", state) == reference
    _assert_same_fits(runs("ref"), runs("resumed"))


def _datamodule_loader(corpus: Path, tmp_path: Path):
    dm = _datamodule(corpus, tmp_path / "cache")
    dm.prepare_data()
    dm.setup("fit")
    return dm.train_dataloader()


def _pack_child(spec: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("SLURM_JOB_ID", None)
    env.pop("SLURM_ARRAY_JOB_ID", None)
    return subprocess.Popen([sys.executable, "-m", "ser_mtl.experiments.pack_runner", "pack_fit", str(spec)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _wait_for_epoch(child: subprocess.Popen, state: Path, epoch: int, timeout: float = 300) -> None:
    """Until ``state`` says the pack is past epoch ``epoch - 1`` (or fail if the child ends first)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if child.poll() is not None:
            raise AssertionError(f"the pack child ended (exit {child.returncode}) before epoch {epoch}:\n"
                                 f"{child.stdout.read()}")
        if state.exists() and read_checkpoint(state, require_lightning=False)["next_epoch"] >= epoch:
            return
        time.sleep(0.2)
    raise AssertionError(f"no state of epoch {epoch} within {timeout} s")


@pytest.mark.slow
def test_a_pack_child_stopped_by_sigusr1_then_sigkilled_resumes_to_the_uninterrupted_result(corpus, tmp_path):
    base = run_args(corpus, tmp_path / "unused")
    at = base.index("--trainer.default_root_dir")
    config = [*base[:at], *base[at + 2:], "--trainer.max_epochs", "4", "--trainer.enable_progress_bar", "false"]

    def spec(name):
        folder = tmp_path / name
        folder.mkdir()
        runs = [{"fold": fold, "seed": 10 + fold, "run_dir": str(folder / f"fold{fold}_rep0"), "args": []}
                for fold in (0, 1)]
        (folder / "pack.json").write_text(json.dumps({"config_args": config, "runs": runs}))
        return folder / "pack.json", [Path(r["run_dir"]) for r in runs]

    ref_spec, ref_runs = spec("ref")
    reference = _pack_child(ref_spec)
    assert reference.wait(timeout=600) == 0, reference.stdout.read()

    pack_spec, runs = spec("interrupted")
    state = pack_spec.parent / STATE_NAME
    child = _pack_child(pack_spec)
    _wait_for_epoch(child, state, 1)
    child.send_signal(signal.SIGUSR1)  # SLURM's warning: save after the batch in progress, exit
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 1 and "[pack] SIGUSR1: train_pack: interrupted in epoch" in out, out
    assert "not a SLURM job: re-run the same command to resume" in out
    assert not any((r / "fit_done.json").exists() for r in runs)

    child = _pack_child(pack_spec)
    _wait_for_epoch(child, state, 3)
    child.kill()  # SIGKILL: nothing of the child's own cleanup runs
    child.wait(timeout=60)
    assert read_checkpoint(state, require_lightning=False)["next_epoch"] == 3

    final = _pack_child(pack_spec)
    out, _ = final.communicate(timeout=600)
    assert final.returncode == 0 and "[pack] resumed from" in out, out
    assert not state.exists()  # removed once every run has fit_done.json
    assert all(json.loads((r / "fit_done.json").read_text())["resumed_from"] == str(state) for r in runs)
    _assert_same_fits(ref_runs, runs)


def test_a_slurm_pack_requeues_its_array_task_as_lightning_does(tmp_path: Path, monkeypatch) -> None:
    from ser_mtl.experiments.pack_runner import requeue_slurm_task

    fake = tmp_path / "bin" / "scontrol"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'calls'}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "901")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "900")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert requeue_slurm_task() == "requeued SLURM job 900_7"
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    assert requeue_slurm_task() == "requeued SLURM job 901"
    assert (tmp_path / "calls").read_text().splitlines() == ["requeue 900_7", "requeue 901"]
    monkeypatch.delenv("SLURM_JOB_ID")
    assert requeue_slurm_task().startswith("not a SLURM job")
