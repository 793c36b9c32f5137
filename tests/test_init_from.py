"""Initialising a fine-tuning model from a pretraining checkpoint: what is loaded, skipped and reported."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ser_mtl.checkpoint_io import CheckpointError
from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.init_from import load_matching_weights, read_state_dict

TINY = {"input_size": (32, 64), "encoder_channels": [4, 8, 8], "head_conv_channels": 8, "head_hidden": 16, "lr": 0.05}


def batches(n_speakers: int, emotion: bool = True) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    utt = torch.arange(8) // 2
    items = [{"x": torch.randn(1, 32, 64, generator=g), "utt": utt[i], "gender": utt[i] % 2,
              "speaker": utt[i] % n_speakers, "emotion": utt[i] % 4 if emotion else torch.tensor(-1)}
             for i in range(8)]
    return DataLoader(items, batch_size=8)


def trainer(max_epochs: int = 1, callbacks=None) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, max_epochs=max_epochs, callbacks=callbacks)


class StateAtTrainStart(pl.Callback):
    """The module's state dict as the first training step will see it (after init and any resume)."""

    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> dict:
    """A LibriSpeech-style pretraining run: gender + speaker (7 speakers), no emotion head; both file formats."""
    torch.manual_seed(0)
    model = MultiTaskAAE(**TINY, tasks=["gender", "speaker"], num_speakers=7)
    fit = trainer()
    fit.fit(model, batches(7, emotion=False))  # trained, so BN statistics differ from their defaults
    root = tmp_path_factory.mktemp("pretrain")
    fit.save_checkpoint(root / "lightning.ckpt")
    torch.save(model.state_dict(), root / "bare.pt")
    return {"lightning": root / "lightning.ckpt", "bare": root / "bare.pt", "state": model.state_dict()}


@pytest.mark.parametrize("fmt", ["lightning", "bare"])
def test_loads_matching_tensors_and_reports_the_rest(pretrained, fmt):
    torch.manual_seed(1)
    model = MultiTaskAAE(**TINY, num_speakers=5)  # fine-tuning: emotion head added, 5 speakers
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_matching_weights(model, pretrained[fmt])
    source, after = pretrained["state"], model.state_dict()

    emotion_head = sorted(k for k in after if k.startswith("heads.emotion."))
    assert len(emotion_head) == 10  # conv w, BN w/b/mean/var/count, hidden w/b, out w/b
    assert sorted(report.missing) == emotion_head
    assert report.skipped_shape == [("heads.speaker.out.weight", (7, 16), (5, 16)),
                                    ("heads.speaker.out.bias", (7,), (5,))]
    assert report.unexpected == []
    assert set(report.loaded) == set(after) - set(emotion_head) - {"heads.speaker.out.weight",
                                                                   "heads.speaker.out.bias"}
    assert len(report.loaded) == len(after) - 12
    for name in report.loaded:  # parameters and buffers (BN statistics) alike
        assert torch.equal(after[name], source[name]), name
    for name in [*emotion_head, "heads.speaker.out.weight", "heads.speaker.out.bias"]:
        assert torch.equal(after[name], before[name]), name
    text = str(report)
    assert f"loaded {len(after) - 12} tensors, skipped 2 (shape differs), 10 missing" in text
    assert "skipped heads.speaker.out.weight: checkpoint [7, 16] vs model [5, 16]" in text


def test_init_from_applies_at_fit_start(pretrained):
    torch.manual_seed(1)
    model = MultiTaskAAE(**TINY, num_speakers=5, init_from=str(pretrained["lightning"]))
    snap = StateAtTrainStart()
    trainer(callbacks=[snap]).fit(model, batches(5))
    assert [name for name, _, _ in model.init_report.skipped_shape] == ["heads.speaker.out.weight",
                                                                        "heads.speaker.out.bias"]
    assert all(torch.equal(snap.state[k], pretrained["state"][k]) for k in model.init_report.loaded)
    # and training then moved on from there
    assert not torch.equal(model.encoder.blocks[0][0].weight.detach(), pretrained["state"]["encoder.blocks.0.0.weight"])


def test_init_from_is_not_applied_when_resuming(pretrained, tmp_path):
    torch.manual_seed(2)
    first = MultiTaskAAE(**TINY, num_speakers=5)
    fit = trainer()
    fit.fit(first, batches(5))
    fit.save_checkpoint(tmp_path / "run.ckpt")
    run_state = {k: v.clone() for k, v in first.state_dict().items()}

    resumed = MultiTaskAAE(**TINY, num_speakers=5, init_from=str(pretrained["lightning"]))
    snap = StateAtTrainStart()
    trainer(max_epochs=2, callbacks=[snap]).fit(resumed, batches(5), ckpt_path=str(tmp_path / "run.ckpt"))
    assert resumed.init_report is None
    assert all(torch.equal(snap.state[k], run_state[k]) for k in run_state)  # the run's weights, not pretraining


def test_bad_checkpoints_are_named_and_never_executed(tmp_path):
    model = MultiTaskAAE(**TINY, num_speakers=5)
    with pytest.raises(CheckpointError, match="init_from: .*missing.ckpt: no such checkpoint file"):
        load_matching_weights(model, tmp_path / "missing.ckpt")

    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no tensor of .*other.pt matches the model"):
        load_matching_weights(model, tmp_path / "other.pt")

    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="list.pt: holds a list"):
        read_state_dict(tmp_path / "list.pt")

    marker = tmp_path / "executed"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "payload": _Payload(str(marker))}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="evil.ckpt: refused to load: the file holds pickled objects"):
        read_state_dict(tmp_path / "evil.ckpt")
    assert not marker.exists()


class _Payload:
    """Pickles as a call to open(path, "w"): loading it with weights_only=False would create the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))
