"""The claim behind `ser_mtl.runs.loss_weights`, measured on MultiTaskAAE itself: under Adam
(eps -> 0, so only the scale invariance is left) alpha without a discriminator and single-task beta
leave the weights unchanged after a few real training steps, alpha with a discriminator does not."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from test_aae_phases import TINY, Segments
from torch.utils.data import DataLoader

from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.runs.loss_weights import LossWeightError, check_loss_weight_sweep


class NoEpsAdam(torch.optim.Adam):
    def __init__(self, params, **kwargs) -> None:
        super().__init__(params, **{**kwargs, "eps": 1e-30})


def encoder_after_steps(steps: int = 4, **model) -> tuple[torch.Tensor, torch.Tensor]:
    """(encoder weights before, after) ``steps`` batches of training, flattened (P,)."""
    pl.seed_everything(0, verbose=False)
    aae = MultiTaskAAE(**{**TINY, "lr": 1e-3, "optimizer": "adam", **model})
    flat = lambda: torch.cat([p.detach().flatten().clone() for p in aae.encoder.parameters()])
    start = flat()
    pl.Trainer(max_epochs=1, limit_train_batches=steps, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, accelerator="cpu").fit(
        aae, DataLoader(Segments(32), batch_size=8))
    return start, flat()


def relative_change(model_a: dict, model_b: dict) -> float:
    """|w_a - w_b| / |w_a - w_0|: how much the two settings' encoders differ, against how far they moved."""
    start, a = encoder_after_steps(**model_a)
    _, b = encoder_after_steps(**model_b)
    return float((a - b).norm() / (a - start).norm())


@pytest.fixture
def no_eps_adam(monkeypatch):
    monkeypatch.setattr(torch.optim, "Adam", NoEpsAdam)


@pytest.mark.parametrize(("swept", "fixed", "a", "b"), [
    ("alpha", {"use_discriminator": False}, 0.1, 1.0),
    ("beta", {"use_decoder": False, "use_discriminator": False, "tasks": ["emotion"]}, 0.2, 0.8),
])
def test_refused_weights_do_not_change_adams_training(no_eps_adam, swept, fixed, a, b) -> None:
    assert relative_change({**fixed, swept: a}, {**fixed, swept: b}) < 1e-5  # float rounding only
    with pytest.raises(LossWeightError):
        check_loss_weight_sweep([f"model.{swept}"], {"model": {"optimizer": "adam", "use_decoder": True,
                                                               "tasks": ["emotion"], **fixed}})


def test_alpha_with_a_discriminator_changes_adams_training(no_eps_adam) -> None:
    assert relative_change({"alpha": 0.1}, {"alpha": 1.0}) > 1e-3  # measured 0.39
    assert check_loss_weight_sweep(["model.alpha"], {"model": {"optimizer": "adam", "use_discriminator": True}})
