"""MultiTaskAAE with ``ema_decay``: the exponential moving average is the recursion it claims, evaluation
and `ser-mtl classify` use it, checkpoints carry it, and init_from rebuilds it from the loaded weights."""

from __future__ import annotations

import pytest
import torch
from test_aae_phases import TINY, Segments, loader, trainer

from ser_mtl.models.aae import MultiTaskAAE

DECAY = 0.3  # small enough that the cap is reached within the 4 steps


class Recorder(MultiTaskAAE):
    """Keeps a copy of the trained encoder + heads weights after every training batch."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.after_step: list[dict[str, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        super().training_step(batch, batch_idx)
        live = {**{f"encoder.{k}": v for k, v in self.encoder.state_dict().items()},
                **{f"heads.{k}": v for k, v in self.heads.state_dict().items()}}
        self.after_step.append({k: v.detach().clone() for k, v in live.items()})


def _average_of(model: MultiTaskAAE) -> dict[str, torch.Tensor]:
    return {**{f"encoder.{k}": v for k, v in model.ema_encoder.module.state_dict().items()},
            **{f"heads.{k}": v for k, v in model.ema_heads.module.state_dict().items()}}


def test_average_follows_the_ema_recursion_over_training_steps():
    """avg_1 = w_1, avg_n = d_n avg_(n-1) + (1 - d_n) w_n with d_n = min(decay, (1 + n - 1) / (10 + n - 1))."""
    torch.manual_seed(0)
    model = Recorder(**TINY, ema_decay=DECAY)
    trainer().fit(model, loader(Segments(32)))  # 4 batches
    assert len(model.after_step) == 4 and int(model.ema_encoder.n_averaged) == 4
    expected = dict(model.after_step[0])  # the first update copies
    for n, live in enumerate(model.after_step[1:], start=1):
        d = min(DECAY, (1 + n) / (10 + n))  # 2/11, 3/12, then the cap 0.3 (4/13 would exceed it)
        expected = {k: d * expected[k] + (1 - d) * live[k] if live[k].is_floating_point() else live[k]
                    for k in live}
    average = _average_of(model)
    floats = [k for k in expected if expected[k].is_floating_point()]
    assert len(floats) > 20
    for k in floats:  # parameters and BatchNorm running statistics alike
        torch.testing.assert_close(average[k], expected[k], atol=1e-5, rtol=1e-4)
    moved = [k for k in floats if not torch.allclose(average[k], model.after_step[-1][k])]
    assert "encoder.blocks.0.0.weight" in moved  # the average lags the last step
    assert not any(p.requires_grad for p in model.ema_encoder.parameters())


def test_evaluation_uses_the_average_and_training_the_trained_weights():
    torch.manual_seed(0)
    model = MultiTaskAAE(**TINY, ema_decay=DECAY)
    trainer().fit(model, loader(Segments(32)))
    x = Segments(4, seed=1).x  # (4, 1, 32, 64)
    model.eval()
    with torch.no_grad():
        logits = model(x)["emotion"]  # (4, 4)
        by_average = model.ema_heads.module["emotion"](model.ema_encoder.module(x))
        by_trained = model.heads["emotion"](model.encoder(x))
    torch.testing.assert_close(logits, by_average)
    assert not torch.allclose(logits, by_trained)
    model.train()
    assert model._evaluated()[0] is model.encoder


def test_checkpoint_and_classify_loader_carry_the_average(tmp_path):
    from ser_mtl.commands import load_trained_model

    torch.manual_seed(0)
    model = MultiTaskAAE(**TINY, ema_decay=DECAY)
    fit = trainer(tmp_path)
    fit.fit(model, loader(Segments(32)))
    path = tmp_path / "ema.ckpt"
    fit.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["SERDataModule"] = {"mean": [0.0], "std": [1.0]}  # what `ser-mtl fit` adds
    torch.save(checkpoint, path)
    loaded, _ = load_trained_model(str(path))
    x = Segments(4, seed=2).x
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["emotion"], model(x)["emotion"])
    assert loaded.hparams.ema_decay == DECAY


def test_init_from_rebuilds_the_average_from_the_loaded_weights(tmp_path):
    torch.manual_seed(0)
    source = MultiTaskAAE(**TINY)  # a checkpoint without averages
    path = tmp_path / "plain.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    model = Recorder(**TINY, ema_decay=DECAY, init_from=str(path))
    trainer(limit_train_batches=1).fit(model, loader(Segments(8)))
    report = model.init_report
    assert not [n for n in report.missing + report.unexpected if n.startswith("ema_")]
    assert not report.missing and not report.skipped_shape
    # one step after loading, the average is that step's weights (the first update copies)
    for k, v in _average_of(model).items():
        if v.is_floating_point():
            torch.testing.assert_close(v, model.after_step[0][k])


def test_bad_decay_is_refused():
    with pytest.raises(ValueError, match="ema_decay"):
        MultiTaskAAE(**TINY, ema_decay=1.0)
