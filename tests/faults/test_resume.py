"""SIGKILL at epoch boundaries, then resume from last.ckpt: the fit ends exactly as if never interrupted."""

import pytest
import torch
from cli_args import run_args
from subprocess_cli import ser_mtl

pytestmark = pytest.mark.slow


def _fit(corpus, run, *extra):
    return ser_mtl(["fit", *run_args(corpus, run), "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "4",
                    "--trainer.enable_progress_bar", "false", *extra])


def _kill_at(epoch: int) -> list[str]:
    return ["--trainer.callbacks+=killers.KillAt", "--trainer.callbacks.epoch", str(epoch)]


def test_two_sigkills_then_resume_gives_the_uninterrupted_fit(corpus, tmp_path):
    full, broken = tmp_path / "full", tmp_path / "broken"
    assert _fit(corpus, full).returncode == 0
    last = broken / "checkpoints" / "last.ckpt"
    first = _fit(corpus, broken, *_kill_at(1))
    assert first.returncode == -9 and torch.load(last, weights_only=True)["epoch"] == 0  # killed after epoch 0
    second = _fit(corpus, broken, "--ckpt_path", str(last), *_kill_at(2))
    assert second.returncode == -9 and torch.load(last, weights_only=True)["epoch"] == 1
    assert _fit(corpus, broken, "--ckpt_path", str(last)).returncode == 0

    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"]
    different = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert different == [], f"{len(different)} of {len(a['state_dict'])} tensors differ"
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert [g["lr"] for g in opt_a["param_groups"]] == [g["lr"] for g in opt_b["param_groups"]]
        for key, state in opt_a["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][key][name])), (key, name)
    schedule = next(k for k in a["callbacks"] if k.startswith("RestoreBestHalveLR"))
    for field in ("best_score", "best_epoch", "wait", "num_restores"):
        assert a["callbacks"][schedule][field] == b["callbacks"][schedule][field], field
    best_a, best_b = (torch.load(r / "checkpoints" / "best.ckpt", weights_only=True) for r in (full, broken))
    assert best_a["epoch"] == best_b["epoch"]
    assert all(torch.equal(best_a["state_dict"][k], best_b["state_dict"][k]) for k in best_a["state_dict"])


def test_a_mid_epoch_checkpoint_resumes_with_the_remaining_batches(corpus, tmp_path):
    """A checkpoint written before batch 2 of epoch 1 (as SLURM's hpc_ckpt is), then SIGKILL: the resumed fit
    runs batches 2 and 3 of epoch 1 (not the epoch's first two again) and ends equal to the uninterrupted fit."""
    log = ["--trainer.callbacks+=killers.BatchLog", "--data.batch_size", "8"]  # 4 batches an epoch
    full = _fit(corpus, tmp_path / "full", *log, "--trainer.max_epochs", "2")
    broken = tmp_path / "broken"
    killed = _fit(corpus, broken, *log, "--trainer.max_epochs", "2",
                  "--trainer.callbacks+=killers.SaveAndKillAt")  # its defaults: epoch 1, batch 2
    assert killed.returncode == -9
    resumed = _fit(corpus, broken, *log, "--trainer.max_epochs", "2", "--ckpt_path", str(broken / "hpc_ckpt_1.ckpt"))
    assert resumed.returncode == 0, resumed.stderr

    def batches(result):
        return [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("BATCH ")]

    assert batches(killed)[:6] + batches(resumed) == batches(full)  # (epoch, index, first utterance) each
    assert [b[:2] for b in batches(resumed)] == [["1", "2"], ["1", "3"]]
    by_epoch = [[b[2] for b in batches(full) if b[0] == e] for e in ("0", "1")]
    assert by_epoch[0] != by_epoch[1]  # every epoch has its own batch order (Lightning never set the epoch)
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
