"""MultiTaskAAE: which parameters each training phase moves, missing labels, switches, checkpoints, evaluation.

A subclass records the state dict (parameters and buffers) around every phase while a real Trainer
runs `training_step`, so the tests see the phases exactly as training runs them.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ser_mtl.models.aae import MultiTaskAAE, classification_loss

TINY = {"num_speakers": 5, "input_size": (32, 64), "encoder_channels": [4, 8, 8], "head_conv_channels": 8,
        "head_hidden": 16, "lr": 0.05}
PHASES = ("rec", "disc", "gen", "cls")


class Segments(Dataset):
    """n random (1, 32, 64) segments, two per utterance; per-task label lists override the defaults."""

    def __init__(self, n: int = 16, seed: int = 0, **labels: list[int]) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 32, 64, generator=g)
        self.utt = torch.arange(n) // 2
        self.labels = {"emotion": self.utt % 4, "gender": self.utt % 2, "speaker": self.utt % 5}
        self.labels.update({k: torch.tensor(v) for k, v in labels.items()})

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "utt": self.utt[i], **{k: v[i] for k, v in self.labels.items()}}


class Spy(MultiTaskAAE):
    """Records, per phase, which state-dict entries changed, the grads after it, and every logged value."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.record: list[dict] = []
        self.logged: dict[str, list[float]] = {}
        self.batch_idx = -1

    def log(self, name, value, *args, **kwargs):
        self.logged.setdefault(name, []).append(float(value.detach() if torch.is_tensor(value) else value))
        super().log(name, value, *args, **kwargs)

    def training_step(self, batch, batch_idx):
        self.batch_idx = batch_idx
        super().training_step(batch, batch_idx)

    def _watch(self, phase, fn, *args):
        before = {k: v.clone() for k, v in self.state_dict().items()}
        grads_before = {n: None if p.grad is None else p.grad.clone() for n, p in self.named_parameters()}
        fn(*args)
        after = self.state_dict()
        self.record.append({
            "phase": phase, "batch": self.batch_idx,
            "before": before,
            "changed": {k for k in before if not torch.equal(before[k], after[k])},
            "grads_before": grads_before,
            "grads": {n: None if p.grad is None else p.grad.clone() for n, p in self.named_parameters()},
        })

    def _reconstruction_phase(self, batch):
        self._watch("rec", super()._reconstruction_phase, batch)

    def _discriminator_step(self, z):
        self._watch("disc", super()._discriminator_step, z)

    def _generator_step(self, z):
        self._watch("gen", super()._generator_step, z)

    def _classification_phase(self, batch):
        self._watch("cls", super()._classification_phase, batch)


def trainer(tmp_path=None, max_epochs: int = 1, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, max_epochs=max_epochs, num_sanity_val_steps=0,
                      default_root_dir=tmp_path, **kwargs)


def loader(ds: Dataset, batch_size: int = 8) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False)


def names(model: torch.nn.Module, *prefixes: str, params_only: bool = False) -> set[str]:
    keys = dict(model.named_parameters()) if params_only else model.state_dict()
    return {k for k in keys if k.startswith(prefixes)}


def test_each_phase_moves_exactly_its_parameters():
    torch.manual_seed(0)
    model = Spy(**TINY)
    trainer(limit_train_batches=1).fit(model, loader(Segments(8)))
    assert [r["phase"] for r in model.record] == list(PHASES)  # the paper's order
    rec, disc, gen, cls = model.record
    # reconstruction: encoder + decoder, parameters and BN statistics; heads and discriminator untouched
    assert rec["changed"] == names(model, "encoder.", "decoder.")
    # discriminator step: only the discriminator (6 tensors: conv, dense, out; weights and biases)
    assert disc["changed"] == names(model, "discriminator.") and len(disc["changed"]) == 6
    # generator step: only the encoder's parameters (the codes were computed before, so no BN update)
    assert gen["changed"] == names(model, "encoder.", params_only=True)
    # ... and the frozen discriminator received no gradient: its grads are still the discriminator step's
    for n in names(model, "discriminator.", params_only=True):
        assert torch.equal(gen["grads"][n], gen["grads_before"][n])
    # the generator's loss does not reach the decoder: its grads were reset to None, so SGD skipped it
    assert all(gen["grads"][n] is None for n in names(model, "decoder.", params_only=True))
    # classification: encoder + the three heads; decoder and discriminator untouched
    assert cls["changed"] == names(model, "encoder.", "heads.")
    assert not cls["changed"] & names(model, "decoder.", "discriminator.")
    # unclipped, every first step is far larger than the 0.05 * 1e-3 of the grad_clip test below
    assert min(_first_steps(model).values()) > 20 * 0.05 * 1e-3


def test_missing_labels_give_no_gradient_and_finite_losses():
    torch.manual_seed(0)
    n = 24  # batch 0: all labels; batch 1: no emotion label; batch 2: no label at all
    emotion = [i // 2 % 4 for i in range(8)] + [-1] * 16
    gender = [i // 2 % 2 for i in range(16)] + [-1] * 8
    speaker = [i // 2 % 5 for i in range(16)] + [-1] * 8
    model = Spy(**TINY, beta=0.6)
    trainer().fit(model, loader(Segments(n, emotion=emotion, gender=gender, speaker=speaker)))
    cls = [r for r in model.record if r["phase"] == "cls"]
    assert [r["batch"] for r in cls] == [0, 1, 2]
    emotion_head = names(model, "heads.emotion.")
    # batch 1: the emotion head is not run: grads None, parameters unchanged although SGD has momentum
    assert not cls[1]["changed"] & emotion_head
    assert all(cls[1]["grads"][k] is None for k in names(model, "heads.emotion.", params_only=True))
    assert cls[1]["changed"] == names(model, "encoder.", "heads.gender.", "heads.speaker.")
    # batch 2: nothing to classify, the phase changes nothing
    assert cls[2]["changed"] == set()
    # the other phases still ran on the unlabelled batch
    assert [r["phase"] for r in model.record if r["batch"] == 2] == list(PHASES)
    # logged: emotion loss for batch 0 only, gender/speaker for batches 0 and 1, L_c for both; all finite
    logged = model.logged
    assert len(logged["train/loss_emotion"]) == 1 and len(logged["train/loss_gender"]) == 2
    assert len(logged["train/loss_cls"]) == 2 and len(logged["train/loss_rec"]) == 3
    assert all(torch.isfinite(torch.tensor(v)).all() for v in logged.values())
    # L_c = 0.6 L_E + 0.4 (L_G + L_S) on batch 0, 0.4 (L_G + L_S) on batch 1
    e, (g0, g1), (s0, s1) = logged["train/loss_emotion"][0], logged["train/loss_gender"], logged["train/loss_speaker"]
    assert logged["train/loss_cls"][0] == pytest.approx(0.6 * e + 0.4 * (g0 + s0), rel=1e-5)
    assert logged["train/loss_cls"][1] == pytest.approx(0.4 * (g1 + s1), rel=1e-5)


def test_classification_loss_combines_present_terms():
    t = torch.tensor
    assert float(classification_loss({"emotion": t(1.0), "gender": t(2.0), "speaker": t(3.0)}, 0.6)) == \
        pytest.approx(0.6 * 1 + 0.4 * 5)
    assert float(classification_loss({"gender": t(2.0), "speaker": t(3.0)}, 0.6)) == pytest.approx(2.0)
    assert float(classification_loss({"emotion": t(1.5)}, 0.6)) == pytest.approx(0.9)  # single task: beta L_E
    with pytest.raises(ValueError, match="no task loss"):
        classification_loss({}, 0.6)


@pytest.mark.parametrize(("switches", "opt_names", "phases", "has_decoder", "has_disc"), [
    ({"tasks": ["emotion"]}, ["autoencoder", "discriminator", "classification"], PHASES, True, True),
    ({"use_discriminator": False}, ["autoencoder", "classification"], ("rec", "cls"), True, False),
    ({"use_decoder": False}, ["autoencoder", "discriminator", "classification"], ("disc", "gen", "cls"),
     False, True),
    ({"tasks": ["emotion"], "use_decoder": False, "use_discriminator": False, "encoder_channels": [4, 8],
      "encoder_pools": [(4, 4), (2, 4)]}, ["classification"], ("cls",), False, False),
])
def test_switches_build_and_train_the_right_parts(tmp_path, switches, opt_names, phases, has_decoder, has_disc):
    torch.manual_seed(0)
    model = Spy(**{**TINY, **switches})
    assert (model.decoder is not None, model.discriminator is not None) == (has_decoder, has_disc)
    assert list(model.heads) == switches.get("tasks", ["emotion", "gender", "speaker"])
    assert model.optimizer_names == opt_names
    fit = trainer(limit_train_batches=1)
    fit.fit(model, loader(Segments(8)))
    assert tuple(r["phase"] for r in model.record) == phases
    assert fit.global_step == len(phases)  # one optimizer step per phase (the regularisation phase: two)
    opts = fit.optimizers
    assert len(opts) == len(opt_names)
    owned = {name: {id(p) for group in opt.param_groups for p in group["params"]} for name, opt in zip(opt_names, opts)}

    def ids(*prefixes: str) -> set[int]:
        return {id(p) for n, p in model.named_parameters() if n.startswith(prefixes)}

    assert owned["classification"] == ids("encoder.", "heads.")
    if "autoencoder" in owned:
        assert owned["autoencoder"] == ids("encoder.", "decoder.")  # encoder alone without a decoder
    if "discriminator" in owned:
        assert owned["discriminator"] == ids("discriminator.")
    path = tmp_path / "m.ckpt"
    fit.save_checkpoint(path)
    assert len(torch.load(path, weights_only=True)["optimizer_states"]) == len(opt_names)


def test_supervised_cnn_parameter_count():
    model = MultiTaskAAE(**{**TINY, "tasks": ["emotion"], "use_decoder": False, "use_discriminator": False,
                            "encoder_channels": [4, 8], "encoder_pools": [(4, 4), (2, 4)]})
    assert model.latent_shape == (8, 4, 4)
    # encoder: 1*4*9 + 2*4 (BN) + 4*8*9 + 2*8; head: 8*8*9 + 2*8, (8*2*2)*16 + 16, 16*4 + 4
    expected = (36 + 8 + 288 + 16) + (576 + 16 + 528 + 68)
    assert sum(p.numel() for p in model.parameters()) == expected == 1536


def test_checkpoint_holds_three_optimizers_and_resumes(tmp_path):
    torch.manual_seed(0)
    model = Spy(**TINY)
    first = trainer(max_epochs=1)
    first.fit(model, loader(Segments(16)))  # 2 batches
    assert first.global_step == 8  # 4 optimizer steps per batch
    path = tmp_path / "epoch1.ckpt"
    first.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert len(ckpt["optimizer_states"]) == 3
    # momentum buffers, one per tensor: encoder (3 blocks x conv, BN weight, BN bias = 9) + decoder
    # (2 x (conv, BN weight, BN bias) + last conv weight, bias = 8); discriminator (6);
    # encoder (9) + 3 heads x (conv, BN weight, BN bias, hidden weight, bias, out weight, bias = 7)
    assert [len(s["state"]) for s in ckpt["optimizer_states"]] == [9 + 8, 6, 9 + 3 * 7]

    torch.manual_seed(1)
    resumed = Spy(**TINY)
    second = trainer(max_epochs=2)
    second.fit(resumed, loader(Segments(16)), ckpt_path=str(path))
    assert second.current_epoch == 2
    assert sorted({r["batch"] for r in resumed.record}) == [0, 1] and len(resumed.record) == 8  # one epoch only
    assert second.global_step == 16
    # it started from the checkpoint's weights and optimizer states, not from its own initialisation
    state = ckpt["state_dict"]
    assert all(torch.equal(resumed.record[0]["before"][k], state[k]) for k in state)
    assert resumed.optimizers()[1].optimizer.state_dict()["state"].keys() == \
        ckpt["optimizer_states"][1]["state"].keys()


def _utterance_reference(model: MultiTaskAAE, ds: Segments) -> dict[str, float]:
    """WA/UA/CE/gender accuracy computed here, independently of the module's logging and the metric."""
    model.eval()
    with torch.no_grad():
        logits = model(ds.x)
    emo, gen = ds.labels["emotion"], ds.labels["gender"]
    keep = emo >= 0
    probs = logits["emotion"].softmax(-1)
    utts = ds.utt[keep].unique()
    pred = torch.stack([probs[ds.utt == u].mean(0).argmax() for u in utts])
    true = torch.stack([emo[ds.utt == u][0] for u in utts])
    recalls = [(pred[true == c] == c).float().mean() for c in true.unique()]
    return {
        "wa": float((pred == true).float().mean()), "ua": float(torch.stack(recalls).mean()),
        "loss_emotion": float(F.cross_entropy(logits["emotion"][keep], emo[keep])),
        "seg_acc": float((logits["emotion"][keep].argmax(-1) == emo[keep]).float().mean()),
        "gender_acc": float((logits["gender"].argmax(-1) == gen).float().mean()),
    }


def test_validation_and_test_score_utterances():
    torch.manual_seed(0)
    emotion = [u % 4 if u % 5 else -1 for u in torch.arange(30).div(2, rounding_mode="floor").tolist()]
    ds = Segments(30, seed=3, emotion=emotion)  # 15 utterances, 12 with an emotion label
    model = MultiTaskAAE(**TINY)
    fit = trainer(max_epochs=1)
    fit.fit(model, loader(Segments(16)), loader(ds, batch_size=7))  # batches split utterances
    ref = _utterance_reference(model, ds)
    got = {k: float(v) for k, v in fit.callback_metrics.items()}
    for key in ("wa", "ua", "loss_emotion", "seg_acc", "gender_acc"):
        assert got[f"val/{key}"] == pytest.approx(ref[key], abs=1e-5), key
    results = fit.test(model, loader(ds, batch_size=7), verbose=False)[0]
    assert results["test/wa"] == pytest.approx(ref["wa"], abs=1e-5)
    assert results["test/ua"] == pytest.approx(ref["ua"], abs=1e-5)
    # the test metric keeps its segments after the test, for the run-output callbacks
    utt, probs, _ = model.test_metric.utterance_table()
    assert utt.tolist() == [u for u in range(15) if u % 5]  # labelled utterances only
    assert probs.shape == (12, 4) and torch.allclose(probs.sum(1), torch.ones(12))
    confmat = model.test_metric.compute()["confmat"]
    assert int(confmat.sum()) == 12
    assert float(confmat.diagonal().sum()) / 12 == pytest.approx(ref["wa"])


def test_predict_and_embed_shapes():
    torch.manual_seed(0)
    model = MultiTaskAAE(**TINY).eval()
    ds = Segments(6)
    out = model.predict_step({"x": ds.x, "utt": ds.utt})
    assert out["probs"].shape == (6, 4) and torch.allclose(out["probs"].sum(1), torch.ones(6))
    assert torch.equal(out["utt"], ds.utt)
    assert model.embed(ds.x).shape == (6, 16)
    with pytest.raises(RuntimeError, match="speaker head"):
        MultiTaskAAE(**{**TINY, "tasks": ["emotion"]}).embed(ds.x)


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ValueError, match="subset of"):
        MultiTaskAAE(**{**TINY, "tasks": ["emotion", "arousal_typo"]})
    with pytest.raises(ValueError, match="'speaker' needs at least 2 classes"):
        MultiTaskAAE(**{**TINY, "num_speakers": 1})
    with pytest.raises(ValueError, match="class_names"):
        MultiTaskAAE(**TINY, class_names=["angry", "happy"])
    with pytest.raises(ValueError, match="divisible"):
        MultiTaskAAE(**{**TINY, "input_size": (30, 64)})
    model = MultiTaskAAE(**TINY)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 1, 32, 64\)"):
        model.encode(torch.randn(2, 1, 32, 60))
    with pytest.raises(ValueError, match=r"'gender' labels must be a \(B,\) int64 tensor, got torch.int32"):
        model._labels({"gender": torch.zeros(4, dtype=torch.int32)}, "gender")
    with pytest.raises(ValueError, match=r"the batch has no 'speaker' labels \(keys \['gender', 'x'\]\)"):
        model._labels({"gender": torch.zeros(4, dtype=torch.int64), "x": torch.zeros(4)}, "speaker")
    bad = Segments(8, speaker=[7] * 8)  # 5 speakers in the model
    with pytest.raises(ValueError, match=r"'speaker' labels must be -1 \(missing\) or in \[0, 5\)"):
        trainer(limit_train_batches=1).fit(model, loader(bad))


def _first_steps(model: Spy) -> dict[str, float]:
    """Norm of the parameter change made by each phase whose optimizer steps for the first time."""
    states = [r["before"] for r in model.record] + [model.state_dict()]
    params = dict(model.named_parameters())
    return {phase: float(torch.cat([(states[i + 1][k] - states[i][k]).flatten() for k in params]).norm())
            for i, phase in enumerate(PHASES) if phase != "gen"}  # gen: the autoencoder optimizer's 2nd step


def test_grad_clip_bounds_the_first_step_of_each_optimizer():
    torch.manual_seed(0)
    model = Spy(**TINY, grad_clip=1e-3)  # lr 0.05
    trainer(limit_train_batches=1).fit(model, loader(Segments(8)))
    # first SGD step with momentum: delta = -lr * grad, and the clipped gradient norm is 1e-3
    for phase, norm in _first_steps(model).items():
        assert norm == pytest.approx(0.05 * 1e-3, rel=1e-3), phase


DDP_SCRIPT = '''
import os, sys, torch, pytorch_lightning as pl
from torch.utils.data import DataLoader, Subset
sys.path.insert(0, sys.argv[2])
from test_aae_phases import TINY, Segments
from ser_mtl.models.aae import MultiTaskAAE

if __name__ == "__main__":
    out, rank = sys.argv[1], int(os.environ.get("LOCAL_RANK", 0))
    torch.manual_seed(0)
    model = MultiTaskAAE(**TINY)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    # each rank reads its own half: rank 0 labelled segments, rank 1 segments without any label
    missing = {t: [-1] * 8 for t in ("emotion", "gender", "speaker")}
    train = Segments(8, seed=rank) if rank == 0 else Segments(8, seed=rank, **missing)
    # utterance u: segment 2u on rank 0, 2u + 1 on rank 1; rank 1's have emotion labels only
    no_aux = {t: [v if i % 2 == 0 else -1 for i, v in enumerate(Segments(12).labels[t].tolist())]
              for t in ("gender", "speaker")}
    val = Subset(Segments(12, seed=3, **no_aux), range(rank, 12, 2))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_find_unused_parameters_true", max_epochs=1,
                         use_distributed_sampler=False, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(model, DataLoader(train, batch_size=4), DataLoader(val, batch_size=3))
    torch.save({"init": init, "state": model.state_dict(), "wa": float(trainer.callback_metrics["val/wa"])},
               f"{out}/rank{trainer.global_rank}.pt")
'''


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_rank_without_labels_stays_in_step(tmp_path):
    """Two CPU processes (gloo): rank 1 trains on no label at all and validates on emotion labels only,
    yet both ranks step together, keep identical parameters and log the same utterance WA."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    model = MultiTaskAAE(**TINY)
    params = [name for name, _ in model.named_parameters()]
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)  # its own process group, so that a hang kills both ranks
    try:
        _, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the 2-rank run hung: the ranks ran different collectives (backward passes or synced log keys)")
    assert proc.returncode == 0, err[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in params:  # BN running statistics are per rank (no SyncBatchNorm); parameters must agree
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name]), name
    # rank 0's gradients reached the heads on both ranks
    assert not torch.equal(ranks[1]["state"]["heads.emotion.out.weight"], ranks[1]["init"]["heads.emotion.out.weight"])
    # validation logged the same keys on both ranks (else the epoch-end sync would have hung) and the
    # utterance metric gathered both halves of every utterance: same WA as one process on the whole set
    model.load_state_dict(ranks[0]["state"])
    ref = _utterance_reference(model, Segments(12, seed=3))
    assert ranks[0]["wa"] == ranks[1]["wa"] == pytest.approx(ref["wa"], abs=1e-6)
