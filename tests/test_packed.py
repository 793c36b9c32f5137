"""PackedAAE: K runs as one batched network equal, run by run, to K unpacked MultiTaskAAE fits.

The reference is the real thing: each run's `MultiTaskAAE` trained by a Lightning Trainer (its own
phase methods and optimizers), given the packed step's random draws (prior samples via
``torch.randn_like``, dropout masks via the heads' dropout modules).
"""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.packed import PackedAAE

TINY = {"num_speakers": 5, "input_size": (32, 64), "encoder_channels": [4, 8, 8], "head_conv_channels": 8,
        "head_hidden": 16}
K, B, STEPS = 3, 8, 3
LRS = (0.05, 0.02, 0.03)
SEEDS = (11, 12, 13)


def make_batches(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """STEPS packed batches: x (K, B, 1, 32, 64), labels (K, B). Step 1: run 1 has no emotion label and run 2
    some missing labels; step 2: run 2 has no label at all (its classification phase is skipped)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for step in range(STEPS):
        batch = {"x": torch.randn(K, B, 1, 32, 64, generator=g)}
        for task, n in (("emotion", 4), ("gender", 2), ("speaker", 5)):
            batch[task] = torch.randint(0, n, (K, B), generator=g)
        if step == 1:
            batch["emotion"][1] = -1
            batch["emotion"][2, :5] = -1
            batch["gender"][2, ::2] = -1
        if step == 2:
            for task in ("emotion", "gender", "speaker"):
                batch[task][2] = -1
        batches.append(batch)
    return batches


class RunBatches(Dataset):
    """Run k's samples of the packed batches, in order (a loader with batch size B replays them)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]], k: int) -> None:
        self.items = [{key: v[k, i] for key, v in b.items()} | {"utt": torch.tensor(i)}
                      for b in batches for i in range(B)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


class FixedDropout(nn.Module):
    """Multiplies by the given scaled mask (B, hidden) of the model's current step."""

    def __init__(self, model: Recorder, masks: list[torch.Tensor]) -> None:
        super().__init__()
        self.step_of, self.masks = lambda: model.step_idx, list(masks)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.masks[self.step_of()]


class Recorder(MultiTaskAAE):
    """Records every logged training value and which step it belongs to."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.logged: dict[str, dict[int, float]] = {}
        self.step_idx = -1

    def training_step(self, batch, batch_idx):
        self.step_idx = batch_idx
        super().training_step(batch, batch_idx)

    def log(self, name, value, *args, **kwargs):
        self.logged.setdefault(name, {})[self.step_idx] = float(value.detach() if torch.is_tensor(value) else value)
        super().log(name, value, *args, **kwargs)


def make_models(hp: dict, seeds=SEEDS, lrs=LRS) -> list[Recorder]:
    models = []
    for seed, lr in zip(seeds, lrs):
        torch.manual_seed(seed)
        models.append(Recorder(**TINY, **hp, lr=lr))
    return models


def fit_reference(model: Recorder, batches, k: int, noises, monkeypatch, precision=32) -> pl.Trainer:
    """Run k trained by a Trainer on its batches, with the packed step's draws."""
    for task, head in model.heads.items():
        head.dropout = FixedDropout(model, [n["dropout"][task][k] for n in noises])
    priors = [n["prior"][k] for n in noises]

    draw = torch.randn

    def randn(*size, **kwargs):  # the discriminator step's prior draw, torch.randn(z.shape, device=...)
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
        if tuple(shape) != tuple(priors[0].shape):
            return draw(*size, **kwargs)
        return priors[model.step_idx].clone()

    monkeypatch.setattr(torch, "randn", randn)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, max_epochs=1, num_sanity_val_steps=0, precision=precision)
    trainer.fit(model, DataLoader(RunBatches(batches, k), batch_size=B, shuffle=False))
    monkeypatch.undo()
    return trainer


# (hyper-parameters, the runs' lrs, dtype, tolerance). Adam divides each gradient by its running RMS, so
# float32 rounding differences of the grads (a grouped convolution sums in another order than K single
# ones) reach the weights as lr x relative rounding error: at the paper-like lr 1e-3 that is far under
# 1e-5; at lr 0.05 the same comparison in float64 shows the math is the same to 1e-9.
CONFIGS = {
    "sgd": ({"optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-3}, LRS, torch.float32, 1e-5),
    "sgd_clip": ({"optimizer": "sgd", "grad_clip": 0.5}, LRS, torch.float32, 1e-5),
    "adam_clip": ({"optimizer": "adam", "weight_decay": 1e-4, "grad_clip": 0.5}, (1e-3, 2e-3, 5e-4),
                  torch.float32, 1e-5),
    "adam_float64": ({"optimizer": "adam", "weight_decay": 1e-4}, LRS, torch.float64, 1e-9),
    # the demo network's heads (mean + std over time) and uneven pools
    "adam_stats_float64": ({"optimizer": "adam", "grad_clip": 5.0, "head_pool": "stats",
                            "encoder_pools": [[2, 2], [2, 4], [2, 2]]}, LRS, torch.float64, 1e-9),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_packed_steps_equal_unpacked_fits(config, monkeypatch):
    hp, lrs, dtype, tol = CONFIGS[config]
    models = [m.to(dtype) for m in make_models(hp, lrs=lrs)]
    pack = PackedAAE([copy.deepcopy(m) for m in models], SEEDS)
    batches = [{key: v.to(dtype) if v.is_floating_point() else v for key, v in b.items()} for b in make_batches()]
    noises = [pack.draw_noise(B) for _ in batches]
    assert noises[0]["prior"].dtype == dtype
    packed_logs = [pack.step(batch, noise) for batch, noise in zip(batches, noises)]

    for k, model in enumerate(models):
        trainer = fit_reference(model, batches, k, noises, monkeypatch, "64-true" if dtype == torch.float64 else 32)
        # weights and BatchNorm statistics
        packed_state = pack.run_state_dict(k)
        for name, want in model.state_dict().items():
            torch.testing.assert_close(packed_state[name], want, atol=tol, rtol=tol, msg=f"run {k} {name}")
        # optimizer states: the same parameters have state, with the same values
        for opt, got in zip(trainer.optimizers, pack.optimizer_state_dicts(k)):
            want = opt.state_dict()
            assert sorted(got["state"]) == sorted(want["state"]), f"run {k}: params with optimizer state"
            assert got["param_groups"][0]["lr"] == want["param_groups"][0]["lr"] == lrs[k]
            for i, entry in want["state"].items():
                for key, value in entry.items():
                    torch.testing.assert_close(got["state"][i][key].to(value.dtype), value, atol=tol, rtol=tol)
        # losses: every logged training value, step by step; nothing logged where the packed value is NaN
        for name, per_step in model.logged.items():
            packed = torch.tensor([float(log[name.removeprefix("train/")][k]) for log in packed_logs],
                                  dtype=torch.float64)
            assert not packed[list(per_step)].isnan().any()
            torch.testing.assert_close(packed[list(per_step)], torch.tensor(list(per_step.values()),
                                       dtype=torch.float64), atol=tol, rtol=tol, msg=f"run {k} {name}")
            assert packed[[s for s in range(STEPS) if s not in per_step]].isnan().all()
    # the batches did exercise the skips: run 1's emotion head took 2 of 3 steps, run 2's classification 2
    assert sorted(models[1].logged["train/loss_emotion"]) == [0, 2]
    assert sorted(models[2].logged["train/loss_cls"]) == [0, 1]


def test_each_run_draws_from_its_own_seed():
    hp = CONFIGS["sgd"][0]
    batches = make_batches()

    def train(seeds):
        pack = PackedAAE(make_models(hp, seeds), seeds)
        for batch in batches:
            pack.step(batch)
        return [pack.run_state_dict(k) for k in range(K)]

    base, again, changed = train((1, 2, 3)), train((1, 2, 3)), train((1, 5, 3))
    for k in range(K):
        assert all(torch.equal(base[k][n], again[k][n]) for n in base[k])  # deterministic
    for k in (0, 2):  # the other runs: bit for bit unchanged
        assert all(torch.equal(base[k][n], changed[k][n]) for n in base[k])
    assert not torch.allclose(base[1]["encoder.blocks.0.0.weight"], changed[1]["encoder.blocks.0.0.weight"])


def test_stopped_run_changes_nothing():
    pack = PackedAAE(make_models(CONFIGS["adam_clip"][0]), SEEDS)
    pack.active[1] = False  # as PackedSchedule.stop does
    before = pack.run_state_dict(1)
    for batch in make_batches():
        pack.step(batch)
    after = pack.run_state_dict(1)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all(not sd["state"] for sd in pack.optimizer_state_dicts(1))
    assert pack.optimizer_state_dicts(0)[0]["state"]  # the others trained


def test_non_finite_loss_marks_the_run_and_spares_the_others():
    pack = PackedAAE(make_models(CONFIGS["sgd"][0]), SEEDS)
    batch = make_batches()[0]
    batch["x"][2, 0, 0, 0, 0] = float("nan")
    before = pack.run_state_dict(2)
    pack.step(batch)
    assert pack.diverged.tolist() == [False, False, True]
    after = pack.run_state_dict(2)
    assert all(torch.equal(before[n], after[n]) for n in before if not n.endswith(("running_mean", "running_var",
                                                                                        "num_batches_tracked")))
    assert all(torch.isfinite(t).all() for t in pack.run_state_dict(0).values())


def test_mismatched_runs_and_batches_are_refused():
    a, b = make_models(CONFIGS["sgd"][0], seeds=(1, 2), lrs=(0.1, 0.1))
    b.hparams.dropout = 0.5
    with pytest.raises(ValueError, match=r"run 1 differs from run 0 in \['dropout'\]"):
        PackedAAE([a, b], (1, 2))
    pack = PackedAAE(make_models(CONFIGS["sgd"][0]), SEEDS)
    batch = make_batches()[0]
    with pytest.raises(ValueError, match=r"expected x of shape \(K=3"):
        pack.step({**batch, "x": batch["x"][:2]})
    with pytest.raises(ValueError, match="'gender' labels must be"):
        pack.step({**batch, "gender": batch["gender"][:, :4]})


def test_unequal_batches_are_split_by_size_and_leave_other_runs_alone():
    """train_pack's epoch: a run whose batches differ in size (or count) from the others' changes nothing of
    theirs (steps split by batch size; a run sitting a step out draws nothing from its generator)."""
    from ser_mtl.models.packed_training import _train_epoch

    keys = ["x", "emotion", "gender", "speaker"]
    full = make_batches()
    run = [[{key: b[key][k] for key in keys} for b in full] for k in range(K)]  # run -> its batches (B = 8)
    short = [dict(run[1][0]), {key: v[:5] for key, v in run[1][1].items()}]  # run 1: 8 then 5 segments, done

    def epoch(batches_of_run1):
        pack = PackedAAE(make_models(CONFIGS["sgd"][0]), SEEDS)
        done, interrupted = _train_epoch(pack, [iter(run[0]), iter(batches_of_run1), iter(run[2])], keys)
        assert not interrupted
        return pack, done

    same, done_same = epoch(run[1])
    other, done_other = epoch(short)
    assert done_same == [3, 3, 3] and done_other == [3, 2, 3]
    for k in (0, 2):
        a, b = same.run_state_dict(k), other.run_state_dict(k)
        assert all(torch.equal(a[n], b[n]) for n in a), f"run {k}"
    assert not torch.equal(same.run_state_dict(1)["encoder.blocks.0.0.weight"],
                           other.run_state_dict(1)["encoder.blocks.0.0.weight"])
    # and run 1 trained exactly as it would alone (a pack of one, its own seed), to float rounding
    alone = PackedAAE(make_models(CONFIGS["sgd"][0], seeds=SEEDS[1:2], lrs=LRS[1:2]), SEEDS[1:2])
    assert _train_epoch(alone, [iter(short)], keys) == ([2], False)
    for n, v in alone.run_state_dict(0).items():
        torch.testing.assert_close(other.run_state_dict(1)[n], v, atol=1e-5, rtol=1e-5)
