"""RestoreBestHalveLR on a scripted validation metric, with manual optimisation and three optimizers."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ser_mtl.callbacks import RestoreBestHalveLR

# epoch 0 sets the best; 1-5 only equal it (restore epoch 0 at epoch 5); 6 improves (new best); 7-11 do
# not (restore epoch 6 at 11), then restores at 16 and 21. lr 1e-4 -> 5e-5 -> 2.5e-5 -> 1.25e-5 -> 6.25e-6
# < 1e-5: training stops after epoch 21, i.e. 22 epochs run. Counting the sanity check as a validation
# would move the first restore to epoch 4.
SCRIPT = [0.5] * 6 + [0.6] + [0.55] * 40
LR = 1e-4


class ThreeOptimizerModule(pl.LightningModule):
    """Three parts, each with its own SGD optimizer, stepped by hand as in the AAE's three phases."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.parts = nn.ModuleList(nn.Linear(3, 3) for _ in range(3))
        self.register_buffer("epoch_marker", torch.tensor(-1.0))  # set to the epoch by training

    def training_step(self, batch, batch_idx):
        (x,) = batch  # (B, 3)
        for part, opt in zip(self.parts, self.optimizers()):
            loss = (part(x) - 1.0).pow(2).mean()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        self.epoch_marker.fill_(float(self.current_epoch))

    def validation_step(self, batch, batch_idx):
        self.log("val/ua", SCRIPT[self.current_epoch])

    def configure_optimizers(self):
        return [torch.optim.SGD(part.parameters(), lr=LR, momentum=0.9) for part in self.parts]


class Recorder(pl.Callback):
    """Runs after RestoreBestHalveLR in the same hook: what the module and optimizers look like then."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.markers: list[float] = []
        self.lrs: list[list[float]] = []
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.momentum: dict[int, list[torch.Tensor]] = {}  # SGD momentum of each optimizer's first tensor

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self.epochs.append(trainer.current_epoch)
        self.markers.append(float(pl_module.epoch_marker))
        self.lrs.append([g["lr"] for opt in trainer.optimizers for g in opt.param_groups])
        self.weights[trainer.current_epoch] = {k: v.clone() for k, v in pl_module.parts.state_dict().items()}
        self.momentum[trainer.current_epoch] = [
            opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"].clone() for opt in trainer.optimizers]


def _fit(max_epochs: int, callbacks: list, model: ThreeOptimizerModule | None = None, ckpt_path=None,
         root: str | None = None) -> tuple[pl.Trainer, ThreeOptimizerModule]:
    pl.seed_everything(0, verbose=False)
    model = model or ThreeOptimizerModule()
    data = DataLoader(TensorDataset(torch.randn(4, 3)), batch_size=2)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=max_epochs, logger=False, callbacks=callbacks,
                         enable_checkpointing=root is not None, enable_progress_bar=False,
                         enable_model_summary=False, limit_train_batches=1, limit_val_batches=1,
                         num_sanity_val_steps=1, default_root_dir=root)
    trainer.fit(model, data, data, ckpt_path=ckpt_path)
    return trainer, model


def test_scripted_plateaus_restore_halve_and_stop():
    rec = Recorder()
    schedule = RestoreBestHalveLR(monitor="val/ua", patience=5, factor=0.5, min_lr=1e-5)
    trainer, _ = _fit(100, [schedule, rec])
    assert rec.epochs == list(range(22))
    assert trainer.current_epoch == 22
    restores = {5: 0, 11: 6, 16: 6, 21: 6}  # epoch of restore -> best epoch restored
    lr_after = {5: LR / 2, 11: LR / 4, 16: LR / 8, 21: LR / 16}
    lr = LR
    for epoch, marker, lrs in zip(rec.epochs, rec.markers, rec.lrs):
        lr = lr_after.get(epoch, lr)
        assert len(lrs) == 3 and all(v == pytest.approx(lr, rel=1e-12) for v in lrs), (epoch, lrs)
        assert marker == restores.get(epoch, epoch), epoch
    for epoch, best in restores.items():
        for name, value in rec.weights[epoch].items():
            assert torch.equal(value, rec.weights[best][name]), (epoch, name)
    assert not torch.equal(rec.weights[5]["0.weight"], rec.weights[4]["0.weight"])
    assert schedule.best_epoch == 6 and schedule.best_score == pytest.approx(0.6)
    assert schedule.num_restores == 4 and schedule.wait == 0
    assert LR / 16 < 1e-5 < LR / 8


def test_resume_from_checkpoint_continues_the_same_schedule(tmp_path):
    full = Recorder()
    _fit(100, [RestoreBestHalveLR(), full])

    first = Recorder()
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    _, model = _fit(10, [RestoreBestHalveLR(), first, ckpt], root=str(tmp_path))
    assert first.epochs == list(range(10))
    assert float(model.epoch_marker) == 6.0  # max_epochs reached: best weights loaded at train end

    second = Recorder()
    resumed_schedule = RestoreBestHalveLR()
    _fit(100, [resumed_schedule, second], ckpt_path=str(tmp_path / "last.ckpt"))
    assert second.epochs == list(range(10, 22))
    assert second.markers == full.markers[10:]
    assert second.lrs == full.lrs[10:]
    for name, value in second.weights[11].items():  # restored from the checkpointed best weights
        assert torch.equal(value, full.weights[6][name]), name
    assert resumed_schedule.best_epoch == 6 and resumed_schedule.num_restores == 4


@pytest.mark.parametrize("restore_optimizer_state", [False, True])
def test_optimizer_state_restored_only_on_request(restore_optimizer_state):
    rec = Recorder()
    _fit(7, [RestoreBestHalveLR(restore_optimizer_state=restore_optimizer_state), rec])
    same = [torch.equal(a, b) for a, b in zip(rec.momentum[5], rec.momentum[0])]  # restore at 5, best 0
    assert same == [restore_optimizer_state] * 3
    assert rec.lrs[5] == [LR / 2] * 3  # the lr is halved from the current value either way


def test_state_dict_round_trip_and_min_mode():
    cb = RestoreBestHalveLR(monitor="val/loss", mode="min")
    assert cb.best_score == math.inf
    cb.best_score, cb.best_epoch, cb.wait, cb.num_restores = 0.3, 4, 2, 1
    cb.best_state = {"w": torch.arange(3.0)}
    other = RestoreBestHalveLR(monitor="val/loss", mode="min")
    other.load_state_dict(cb.state_dict())
    assert (other.best_score, other.best_epoch, other.wait, other.num_restores) == (0.3, 4, 2, 1)
    assert torch.equal(other.best_state["w"], torch.arange(3.0))
    assert other._improved(0.29) and not other._improved(0.3)
    assert cb.state_key == "RestoreBestHalveLR{'monitor': 'val/loss', 'mode': 'min'}"


def test_missing_metric_and_bad_arguments():
    class NoMetric(ThreeOptimizerModule):
        def validation_step(self, batch, batch_idx):
            self.log("val/wa", 0.5)

    with pytest.raises(RuntimeError, match=r"'val/ua' was not logged during validation; logged: \['val/wa'\]"):
        _fit(2, [RestoreBestHalveLR()], model=NoMetric())
    with pytest.raises(ValueError, match="factor must be in"):
        RestoreBestHalveLR(factor=2.0)
    with pytest.raises(ValueError, match="mode must be"):
        RestoreBestHalveLR(mode="maximum")


# ------------------------------------------------------------------------------ the monitor: automatic or checked
class GenderOnlyModule(ThreeOptimizerModule):
    """Says what its validation logs, as `MultiTaskAAE` does, for a model whose only task is gender."""

    GENDER_ACC = (0.5, 0.75, 0.6)  # per epoch: the best is epoch 1

    def __init__(self) -> None:
        super().__init__()
        self.tasks = ["gender"]
        self.steps = 0

    def training_step(self, batch, batch_idx):
        self.steps += 1
        super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.log("val/gender_acc", self.GENDER_ACC[self.current_epoch])
        self.log("val/loss_gender", 1.0)

    def validation_metrics(self, labelled=None):
        return ["val/gender_acc", "val/loss_gender"]


def test_the_automatic_monitor_of_a_model_without_emotion_is_its_first_task(tmp_path):
    from ser_mtl.lightning_cli import run_callbacks

    callbacks = run_callbacks(tmp_path)  # monitor "auto"
    best, schedule = callbacks[0], callbacks[2]
    _fit(3, callbacks, model=GenderOnlyModule(), root=str(tmp_path))
    assert (best.monitor, schedule.monitor) == ("val/gender_acc", "val/gender_acc")
    assert best.best_model_path == str(tmp_path / "checkpoints" / "best.ckpt")
    assert float(best.best_model_score) == 0.75 and schedule.best_epoch == 1
    saved = torch.load(best.best_model_path, weights_only=False)
    assert saved["epoch"] == 1
    # the key a plain ModelCheckpoint had: runs checkpointed before BestCheckpoint resume their best score
    assert "ModelCheckpoint{'monitor': 'val/gender_acc', 'mode': 'max'," in " ".join(saved["callbacks"])


def test_a_monitor_the_model_never_logs_stops_the_fit_before_the_first_step(tmp_path):
    from ser_mtl.callbacks import BestCheckpoint, MonitorError

    model = GenderOnlyModule()
    with pytest.raises(MonitorError, match=r"^monitor 'val/ua' is never logged in validation of this model "
                                           r"\(tasks \['gender'\]\); it logs val/gender_acc, val/loss_gender: "):
        _fit(2, [BestCheckpoint(dirpath=tmp_path, monitor="val/ua")], model=model, root=str(tmp_path))
    assert model.steps == 0 and not list(tmp_path.iterdir())


def test_the_monitor_follows_the_tasks_and_the_labels_of_the_validation_data():
    from types import SimpleNamespace

    import numpy as np

    from ser_mtl.callbacks import MonitorError, resolve_monitor
    from ser_mtl.models.aae import MultiTaskAAE

    def trainer(speaker_labels):  # 2 validation utterances, both with an emotion and a gender label
        labels = SimpleNamespace(emotion=np.array([0, 3]), gender=np.array([1, 0]), speaker=np.array(speaker_labels))
        return SimpleNamespace(datamodule=SimpleNamespace(val_set=SimpleNamespace(labels=labels)))

    full = MultiTaskAAE(num_speakers=4)
    assert resolve_monitor("auto", trainer([-1, -1]), full, "fit") == "val/ua"
    speaker_first = MultiTaskAAE(num_speakers=4, tasks=["speaker", "gender"], use_decoder=False)
    assert resolve_monitor("auto", trainer([2, -1]), speaker_first, "fit") == "val/speaker_acc"
    assert resolve_monitor("auto", trainer([-1, -1]), speaker_first, "test") == "val/speaker_acc"  # not checked
    # speaker-independent validation: no validation speaker is a training speaker, so no val/speaker_acc
    with pytest.raises(MonitorError, match=r"'val/speaker_acc' is never logged .* \(tasks \['speaker', 'gender'\]; "
                                           r"no validation utterance has a speaker label\); it logs val/gender_acc, "
                                           r"val/loss_gender, val/loss_cls: "):
        resolve_monitor("auto", trainer([-1, -1]), speaker_first, "fit")
    assert resolve_monitor("val/loss_rec", trainer([-1, -1]), full, "fit") == "val/loss_rec"
