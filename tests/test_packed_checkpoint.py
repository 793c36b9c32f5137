"""A packed run's checkpoint is an ordinary MultiTaskAAE checkpoint: it loads and gives the packed outputs."""

from __future__ import annotations

import json

import pytest
import torch
from cli_args import run_args
from test_packed import LRS, SEEDS, make_batches, make_models

from ser_mtl.checkpoint_io import read_checkpoint
from ser_mtl.cli import main
from ser_mtl.data.datamodule import SERDataModule
from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.packed import PackedAAE
from ser_mtl.models.packed_checkpoint import save_run_checkpoint
from ser_mtl.models.packed_eval import evaluate_pack


def test_run_checkpoint_loads_as_multitask_aae(tmp_path):
    pack = PackedAAE(make_models({"optimizer": "sgd"}), SEEDS)
    batches = make_batches()
    for batch in batches:
        pack.step(batch)
    path = tmp_path / "run1" / "best.ckpt"
    save_run_checkpoint(path, pack, 1, epoch=0, global_step=12)
    ckpt = read_checkpoint(path)  # weights_only: tensors and plain values only
    assert ckpt["hyper_parameters"]["lr"] == LRS[1] and ckpt["global_step"] == 12
    assert len(ckpt["optimizer_states"]) == 3
    model = MultiTaskAAE.load_from_checkpoint(path, map_location="cpu").eval()
    x = batches[0]["x"]  # (K, B, 1, 32, 64)
    packed = pack.forward_eval(x)
    with torch.no_grad():
        for task, logits in model(x[1]).items():
            torch.testing.assert_close(logits, packed[task][1], atol=1e-5, rtol=1e-5)
    # and the other runs' outputs are really other networks
    assert not torch.allclose(packed["emotion"][0], packed["emotion"][1], atol=1e-3)


@pytest.mark.slow
def test_packed_best_ckpt_runs_in_ser_mtl_test(trained_run, corpus, tmp_path):
    """Two runs packed with the hyper-parameters of a CLI fit, trained a few steps on the fold's batches;
    run 1's checkpoint goes through `ser-mtl test` and reproduces the pack's own test WA/UA."""
    fit_ckpt = torch.load(trained_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    hp = {k: v for k, v in fit_ckpt["hyper_parameters"].items() if not k.startswith("_")}
    dm = SERDataModule.load_from_checkpoint(trained_run / "checkpoints" / "best.ckpt")
    dm.prepare_data()
    dm.setup("fit")
    models = []
    for seed in (3, 4):
        torch.manual_seed(seed)
        models.append(MultiTaskAAE(**hp))
    pack = PackedAAE(models, (3, 4))
    train = list(dm.train_dataloader())
    for i in range(2):
        pairs = [train[i % len(train)], train[(i + 1) % len(train)]]
        if pairs[0]["x"].shape != pairs[1]["x"].shape:
            continue
        pack.step({key: torch.stack([b[key] for b in pairs]) for key in ("x", "emotion", "gender", "speaker")})
    run = tmp_path / "packed_run"
    ckpt_path = run / "checkpoints" / "best.ckpt"
    save_run_checkpoint(ckpt_path, pack, 1, epoch=0, global_step=8, datamodule=dm)
    # the same top-level keys as a fit's checkpoint, except the fit loop's progress
    written = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert set(fit_ckpt) - set(written) == {"loops"} and set(written) <= set(fit_ckpt)
    assert list(written["state_dict"]) == list(fit_ckpt["state_dict"])

    dm.setup("test")
    packed = evaluate_pack(pack, [dm.test_dataloader(), dm.test_dataloader()], hp["num_emotions"])
    args = [a if a != str(trained_run) else str(run) for a in run_args(corpus, trained_run)]
    main(["test", *args, "--ckpt_path", str(ckpt_path)])
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["ua"] == pytest.approx(packed[1]["ua"], abs=1e-6)
    assert metrics["wa"] == pytest.approx(packed[1]["wa"], abs=1e-6)


def _datamodule(corpus, cache) -> SERDataModule:
    return SERDataModule(corpus="iemocap", root=str(corpus / "IEMOCAP_full_release"), aux_root=str(corpus / "LibriSpeech"),
                         aux_speakers=None, aux_fraction=0.25, scheme="loso_session", fold=0, batch_size=16,
                         segment_frames=64, segment_hop=32, features={"n_bins": 64}, cache_dir=str(cache),
                         verification_enrol=3)


@pytest.mark.slow
def test_train_pack_runs_are_independent_fits(corpus, tmp_path):
    """Two train_pack calls whose second run differs in seed: the first run's fit is the same bit for bit."""
    from ser_mtl.models.packed_training import RunSpec, train_pack

    model = {"encoder_channels": [4, 8, 8], "encoder_pools": [[2, 2], [2, 2], [2, 2]], "head_conv_channels": 8,
             "head_hidden": 16, "head_pool": "stats", "optimizer": "adam", "lr": 1e-3}
    results = {}
    for name, seeds in (("a", (0, 1)), ("b", (0, 2))):
        specs = [RunSpec(seed, tmp_path / name / f"run{k}", model) for k, seed in enumerate(seeds)]
        dms = [_datamodule(corpus, tmp_path / "cache") for _ in specs]
        results[name] = train_pack(specs, dms, max_epochs=2, schedule={"patience": 1, "min_lr": 1e-4})
    a0, b0 = results["a"][0], results["b"][0]
    assert a0 == b0 and a0["batches"] > 0 and 0 <= a0["best_score"] <= 1
    assert json.loads((tmp_path / "a" / "run0" / "packed_fit.json").read_text()) == a0
    sa = read_checkpoint(tmp_path / "a" / "run0" / "checkpoints" / "best.ckpt")["state_dict"]
    sb = read_checkpoint(tmp_path / "b" / "run0" / "checkpoints" / "best.ckpt")["state_dict"]
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    s1 = read_checkpoint(tmp_path / "b" / "run1" / "checkpoints" / "last.ckpt")["state_dict"]
    assert not torch.equal(sb["encoder.blocks.0.0.weight"], s1["encoder.blocks.0.0.weight"])
    loaded = MultiTaskAAE.load_from_checkpoint(tmp_path / "a" / "run1" / "checkpoints" / "best.ckpt")
    assert loaded.hparams.lr == 1e-3 and SERDataModule.load_from_checkpoint(
        tmp_path / "a" / "run1" / "checkpoints" / "best.ckpt").hparams.scheme == "loso_session"


@pytest.mark.slow
def test_fit_pack_builds_each_run_as_its_cli_fit(corpus, tmp_path, monkeypatch):
    """fit_pack on the demo config: each run starts from the very weights its unpacked CLI fit would, and
    leaves the files the cv runner's test stage reads."""
    from ser_mtl.experiments import pack_runner
    from ser_mtl.lightning_cli import run_lightning_cli

    initial = []
    real_train_pack = pack_runner.train_pack

    def recording_train_pack(specs, dms, epochs, schedule, device, models, **resume):
        initial.extend({n: v.clone() for n, v in m.state_dict().items()} for m in models)
        assert epochs == 1 and schedule["patience"] == 5 and schedule["restore_optimizer_state"] is True
        assert resume["state_path"] is None and resume["identity"]["runs"][1][:2] == [1, 8]
        return real_train_pack(specs, dms, epochs, schedule, device, models, **resume)

    monkeypatch.setattr(pack_runner, "train_pack", recording_train_pack)
    base = run_args(corpus, tmp_path / "unused")
    i = base.index("--trainer.default_root_dir")
    base = base[:i] + base[i + 2:] + ["--trainer.max_epochs", "1"]
    runs = [(0, 7, tmp_path / "fold0_rep0"), (1, 8, tmp_path / "fold1_rep0")]
    results = pack_runner.fit_pack(base, runs, device="cpu")
    assert [r["seed"] for r in results] == [7, 8]
    for fold, _, run_dir in runs:
        assert json.loads((run_dir / "fit_done.json").read_text())["packed"] is True
        ckpt = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
        assert ckpt["datamodule_hyper_parameters"]["fold"] == fold
    # run 1 started from its unpacked fit's initial weights (same config, fold and seed), not run 0's
    cli = run_lightning_cli([*base, "--data.fold", "1", "--seed_everything", "8",
                             "--trainer.default_root_dir", str(tmp_path / "ref")], run=False)
    reference = cli.model.state_dict()
    assert all(torch.equal(initial[1][n], reference[n]) for n in reference)
    assert not torch.equal(initial[0]["encoder.blocks.0.0.weight"], reference["encoder.blocks.0.0.weight"])
