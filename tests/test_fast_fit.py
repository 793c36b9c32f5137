"""The fast single fit of issue 9: channels-last layout, bf16-mixed autocast, no per-step device reads.

Phase semantics are checked with the recorder of ``tests/test_aae_phases.py`` (imported, unchanged).
"""

from __future__ import annotations

import csv
from collections import Counter

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.precision import MixedPrecision
from test_aae_phases import PHASES, TINY, Segments, Spy, loader, names, trainer

from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.losses import LABELLED


def _pair() -> tuple[MultiTaskAAE, MultiTaskAAE]:
    """A channels-last model and a contiguous one with the same weights."""
    torch.manual_seed(0)
    fast = MultiTaskAAE(**TINY)  # channels_last defaults to True
    plain = MultiTaskAAE(**TINY, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def test_channels_last_layout_and_outputs_equal_the_contiguous_model():
    fast, plain = _pair()
    conv = fast.encoder.blocks[1][0].weight  # (32, 16, 3, 3)-like: 8 x 4 x 3 x 3 here
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert plain.encoder.blocks[1][0].weight.is_contiguous()
    x = torch.randn(6, 1, 32, 64)
    fast.eval(), plain.eval()  # (a training-mode pass would move one model's BN statistics only)
    with torch.no_grad():
        assert fast.encode(x).is_contiguous(memory_format=torch.channels_last)
        got, want = fast(x), plain(x)
        assert torch.allclose(fast.encode(x), plain.encode(x), atol=1e-5)
        assert torch.allclose(fast.decoder(fast.encode(x)), plain.decoder(plain.encode(x)), atol=1e-5)
    for task in want:
        assert torch.allclose(got[task], want[task], atol=1e-5), task


def test_channels_last_training_matches_contiguous_training(tmp_path):
    """Two batches under a Trainer, same seed: same weights within float rounding, and the layout survives."""
    fast, plain = _pair()
    for model in (fast, plain):
        torch.manual_seed(1)  # same dropout masks and prior samples
        trainer(max_epochs=1).fit(model, loader(Segments(16)))
    plain_state = plain.state_dict()
    moved = 0
    for key, value in fast.state_dict().items():
        assert torch.allclose(value.float(), plain_state[key].float(), atol=1e-4, rtol=1e-4), key
        moved += not torch.equal(value, _pair()[1].state_dict()[key])
    assert moved > 40  # training changed the weights (the comparison is not between two initial states)
    assert fast.heads["speaker"].features[0].weight.is_contiguous(memory_format=torch.channels_last)
    # checkpoints load either way: channels-last weights into a contiguous model and back
    path = tmp_path / "fast.ckpt"
    torch.save({"state_dict": fast.state_dict()}, path)
    loaded = MultiTaskAAE(**TINY, channels_last=False)
    loaded.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    assert loaded.encoder.blocks[1][0].weight.is_contiguous()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in fast.state_dict().items())
    again = MultiTaskAAE(**TINY)
    again.load_state_dict(plain.state_dict())
    assert again.encoder.blocks[1][0].weight.is_contiguous(memory_format=torch.channels_last)


class Precision(Spy):
    """Also records, per optimizer step, the loss dtype and whether autocast was on, and the code's dtype."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps: list[tuple[torch.dtype, bool]] = []
        self.code_dtypes: list[torch.dtype] = []

    def encode(self, x):
        z = super().encode(x)
        self.code_dtypes.append(z.dtype)
        return z

    def _optimise(self, opt, loss):
        self.steps.append((loss.dtype, torch.is_autocast_enabled("cpu")))
        super()._optimise(opt, loss)


def test_bf16_mixed_fit_autocasts_the_phases_with_fp32_losses_and_weights():
    torch.manual_seed(0)
    model = Precision(**TINY)
    fit = trainer(limit_train_batches=1, precision="bf16-mixed")
    fit.fit(model, loader(Segments(8)), loader(Segments(8, seed=1)))
    # four optimizer steps, each under autocast, each on an fp32 loss; the codes themselves are bf16
    assert model.steps == [(torch.float32, True)] * 4
    assert set(model.code_dtypes) == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # master weights stay fp32
    assert {b.dtype for n, b in model.named_buffers() if "running" in n} == {torch.float32}
    # the phases move exactly the parameters they move in fp32
    assert [r["phase"] for r in model.record] == list(PHASES)
    rec, disc, gen, cls = model.record
    assert rec["changed"] == names(model, "encoder.", "decoder.")
    assert disc["changed"] == names(model, "discriminator.")
    assert gen["changed"] == names(model, "encoder.", params_only=True)
    assert cls["changed"] == names(model, "encoder.", "heads.")
    metrics = fit.callback_metrics
    for key in ("train/loss_rec", "train/loss_cls", "val/loss_cls", "val/loss_rec", "val/wa", "val/ua"):
        assert metrics[key].dtype == torch.float32 and torch.isfinite(metrics[key]), key
    # test under autocast too: the utterance metric accumulated fp32 posteriors of fp32 logits
    results = fit.test(model, loader(Segments(8, seed=1)), verbose=False)[0]
    assert 0.0 <= results["test/ua"] <= 1.0
    assert model.code_dtypes[-1] == torch.bfloat16  # the test step ran under autocast
    segment_probs = torch.cat(model.test_metric.probs)  # (8, 4)
    assert segment_probs.dtype == torch.float32 and segment_probs.shape == (8, 4)
    assert torch.allclose(segment_probs.sum(1), torch.ones(8), atol=1e-6)


@pytest.mark.parametrize("precision", ["16-mixed", "16-true", "bf16-true"])
def test_fp16_and_half_weights_are_refused_with_the_option_named(precision):
    # on a CPU, Lightning turns precision="16-mixed" into bf16; the plugin keeps fp16 with its GradScaler
    plugins = [MixedPrecision("16-mixed", "cpu")] if precision == "16-mixed" else []
    kwargs = {"plugins": plugins} if plugins else {"precision": precision}
    model = MultiTaskAAE(**TINY)
    with pytest.raises(ValueError, match=rf"trainer.precision '{precision}' is not supported.*bf16-mixed"):
        trainer(limit_train_batches=1, **kwargs).fit(model, loader(Segments(8)))


def test_host_batch_is_checked_and_indexed_before_transfer():
    model = MultiTaskAAE(**TINY)
    batch = {"x": torch.zeros(4, 1, 32, 64), "emotion": torch.tensor([2, -1, 0, -1]),
             "gender": torch.tensor([-1, -1, -1, -1]), "speaker": torch.tensor([4, 3, 2, 1])}
    out = model.on_before_batch_transfer(batch, 0)
    assert out[LABELLED]["emotion"].tolist() == [0, 2]
    assert out[LABELLED]["gender"].tolist() == []
    assert out[LABELLED]["speaker"].tolist() == [0, 1, 2, 3]
    assert model._labels(out, "emotion")[1] == 2 and model._labels(out, "gender")[1] == 0
    with pytest.raises(ValueError, match=r"'emotion' labels must be -1 \(missing\) or in \[0, 4\), got values "
                                         r"from 0 to 4"):
        model.on_before_batch_transfer({**batch, "emotion": torch.tensor([4, 0, 0, 0])}, 0)
    # predict batches carry no labels: nothing to check, nothing added but the empty index
    assert model.on_before_batch_transfer({"x": batch["x"], "utt": torch.arange(4)}, 0)[LABELLED] == {}


def test_labels_with_a_host_index_read_nothing_from_the_device():
    """Labels on the meta device have no values: any read (.tolist, bool, masking) would raise."""
    model = MultiTaskAAE(**TINY)
    labels = torch.empty(8, dtype=torch.int64, device="meta")
    index = torch.empty(3, dtype=torch.int64, device="meta")
    got, n = model._labels({"speaker": labels, LABELLED: {"speaker": index}}, "speaker")
    assert got is labels and n == 3
    with pytest.raises(NotImplementedError):  # without the host index the values must be read
        model._labels({"speaker": labels}, "speaker")


class DeferredChecks(Spy):
    """Checks losses as on a GPU: at the end of the batch, not in every phase."""

    def _defers_checks(self, t):
        return True


def test_non_finite_loss_raises_in_the_phase_on_cpu_and_at_batch_end_when_deferred():
    bad = Segments(8)
    bad.x[3, 0, 5, 7] = float("nan")
    immediate = Spy(**TINY)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss \(nan\) at epoch 0"):
        trainer(limit_train_batches=1).fit(immediate, loader(bad))
    assert immediate.record == []  # the reconstruction phase raised before stepping
    deferred = DeferredChecks(**TINY)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss in batch 0 \(its steps already ran\)"):
        trainer(limit_train_batches=1).fit(deferred, loader(bad))
    assert [r["phase"] for r in deferred.record] == list(PHASES)
    assert deferred._nonfinite is None  # cleared, so a later fit starts clean


def test_training_logs_every_batch_and_the_logger_writes_every_n_steps(tmp_path, monkeypatch):
    """Every training-step value goes through the public ``LightningModule.log`` (bench/RESULTS.md: under 1 % of a
    CPU step); the logger writes every ``log_every_n_steps`` batches and the epoch ends with the last batch's values."""
    reached = []
    original = pl.LightningModule.log

    def counting(self, name, *args, **kwargs):
        reached.append(name)
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", counting)
    torch.manual_seed(0)
    model = Spy(**TINY)
    fit = pl.Trainer(accelerator="cpu", max_epochs=1, log_every_n_steps=3, logger=CSVLogger(tmp_path, name="csv"),
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    fit.fit(model, loader(Segments(40)))  # 5 batches: the logger writes after batch 3; 5 is the last
    assert len(model.logged["train/loss_rec"]) == 5
    assert Counter(reached)["train/loss_rec"] == 5 and Counter(reached)["train/loss_cls"] == 5
    with open(fit.logger.log_dir + "/metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("train/loss_rec")]
    assert [int(row["step"]) for row in rows] == [2]  # batch 3 only
    for row in rows:  # the values of batch 3, exactly what the module computed then
        for key, values in model.logged.items():
            assert float(row[key]) == pytest.approx(values[int(row["step"])], rel=1e-6), key
    for key, values in model.logged.items():  # the epoch ends with the last batch's values
        assert float(fit.callback_metrics[key]) == pytest.approx(values[-1], rel=1e-6), key
