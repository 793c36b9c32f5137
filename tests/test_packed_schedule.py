"""PackedSchedule: each packed run halves, restores and stops as RestoreBestHalveLR does in its own fit."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from test_packed import SEEDS, make_batches, make_models

from ser_mtl.callbacks import RestoreBestHalveLR
from ser_mtl.models.packed import PackedAAE
from ser_mtl.models.packed_schedule import PackedSchedule

# val/ua per epoch and run; patience 2, factor 0.5, min_lr 0.008 (ties are no improvement)
SCRIPTS = [
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],  # always improves: lr 0.05 throughout, runs to the end
    [0.5, 0.4, 0.4, 0.6, 0.3, 0.3, 0.2, 0.1],  # restore at 2 (lr 0.01), at 5 (0.005 < min_lr): stops at 5
    [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],  # restore at 2 (0.015), at 4 (0.0075): stops at 4
]
LRS = (0.05, 0.02, 0.03)
KW = {"monitor": "val/ua", "mode": "max", "patience": 2, "factor": 0.5, "min_lr": 0.008,
      "restore_optimizer_state": True}


class Scripted(pl.LightningModule):
    """One linear layer; validation logs the scripted val/ua of the epoch."""

    def __init__(self, script: list[float], lr: float) -> None:
        super().__init__()
        self.script, self.lr = script, lr
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/ua", self.script[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class Record(pl.Callback):
    def __init__(self, schedule: RestoreBestHalveLR) -> None:
        self.schedule, self.rows = schedule, []

    def on_validation_end(self, trainer, pl_module):
        self.rows.append((trainer.current_epoch, trainer.optimizers[0].param_groups[0]["lr"],
                          self.schedule.num_restores, trainer.should_stop))


def single_run(script: list[float], lr: float) -> list[tuple]:
    """The unpacked reference: a Trainer fit with the callback, one row per validation."""
    schedule = RestoreBestHalveLR(**KW)
    record = Record(schedule)
    data = torch.utils.data.DataLoader(torch.ones(4, 2), batch_size=4)
    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=False, max_epochs=len(script), num_sanity_val_steps=0,
               callbacks=[schedule, record]).fit(Scripted(script, lr), data, data)
    return record.rows


def test_each_run_follows_its_script_as_a_single_fit_would():
    pack = PackedAAE(make_models({"optimizer": "sgd"}, lrs=LRS), SEEDS)
    schedule = PackedSchedule(pack, **KW)
    schedule.on_train_start()
    batch = make_batches()[0]
    rows: list[list[tuple]] = [[] for _ in range(3)]
    snapshots: list[dict[int, dict]] = [{} for _ in range(3)]  # run -> epoch -> weights validated then
    for epoch in range(len(SCRIPTS[0])):
        pack.step(batch)
        active = pack.active.tolist()
        for k in range(3):
            if active[k]:
                snapshots[k][epoch] = pack.run_state_dict(k)
        before_restores = [cb.num_restores for cb in schedule.callbacks]
        stopped = schedule.after_validation(epoch, [s[epoch] if a else None for s, a in zip(SCRIPTS, active)])
        for k in range(3):
            if active[k]:
                cb = schedule.callbacks[k]
                rows[k].append((epoch, schedule.lrs(k)[0], cb.num_restores, k in stopped))
                assert len(set(schedule.lrs(k))) == 1  # all three optimizers share the run's lr
                if cb.num_restores > before_restores[k]:  # restored: the best epoch's weights are back
                    best = snapshots[k][cb.best_epoch]
                    assert all(torch.equal(best[n], v) for n, v in pack.run_state_dict(k).items())

    for k in range(3):
        assert rows[k] == single_run(SCRIPTS[k], LRS[k]), f"run {k}"
    # the same, in numbers a reader can check against the scripts
    assert schedule.stop_epoch == [None, 5, 4]
    assert [cb.num_restores for cb in schedule.callbacks] == [0, 2, 2]
    assert [schedule.lrs(k)[0] for k in range(3)] == [0.05, 0.005, 0.0075]
    assert [cb.best_epoch for cb in schedule.callbacks] == [7, 3, 0]
    assert pack.active.tolist() == [True, False, False]
    # a stopped run keeps its best weights while run 0 goes on training
    frozen = pack.run_state_dict(2)
    pack.step(batch)
    assert all(torch.equal(frozen[n], v) for n, v in pack.run_state_dict(2).items())
    assert not torch.equal(snapshots[0][7]["encoder.blocks.0.0.weight"], pack.run_state_dict(0)["encoder.blocks.0.0.weight"])
    schedule.on_train_end()  # every run ends on its best weights
    assert all(torch.equal(snapshots[0][7][n], v) for n, v in pack.run_state_dict(0).items())


def test_restore_brings_back_the_best_epochs_optimizer_state():
    pack = PackedAAE(make_models({"optimizer": "sgd"}, lrs=LRS), SEEDS)
    schedule = PackedSchedule(pack, **{**KW, "patience": 1})
    batch = make_batches()[0]
    pack.step(batch)
    schedule.after_validation(0, [0.5, 0.5, 0.5])
    best_opt, first0 = pack.optimizer_state_dicts(1), pack.optimizer_state_dicts(0)
    pack.step(batch)
    schedule.after_validation(1, [0.6, 0.4, 0.6])  # run 1 did not improve: restored with patience 1
    restored = pack.optimizer_state_dicts(1)
    for got, want in zip(restored, best_opt):
        assert got["param_groups"][0]["lr"] == want["param_groups"][0]["lr"] * 0.5
        for i, entry in want["state"].items():
            assert torch.equal(got["state"][i]["momentum_buffer"], entry["momentum_buffer"])
    assert not torch.equal(pack.optimizer_state_dicts(0)[0]["state"][0]["momentum_buffer"],
                           first0[0]["state"][0]["momentum_buffer"])  # run 0 improved: not restored
    assert pack.optimizer_state_dicts(0)[0]["param_groups"][0]["lr"] == LRS[0]
