"""``ser-mtl cache`` (feature stores ahead of training) and ``ser-mtl classify`` (a trained model on new audio)."""

from __future__ import annotations

import csv
import inspect
import io
import json
from pathlib import Path

import numpy as np
import torch

from ser_mtl.io_utils import atomic_write_text

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def cache_main(argv: list[str]) -> None:
    """``ser-mtl cache --config FILE [--data.* overrides]``: build every feature store the config uses."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ser-mtl cache --config FILE [--data.root DIR --data.aux_root DIR ...]\n\n"
              "Builds the manifests and feature stores (primary, auxiliary, cross-corpus target) of the\n"
              "configuration's data section, in parallel with data.num_workers processes, so that several\n"
              "training jobs (DDP ranks, SLURM array tasks) start from a complete cache.")
        return
    from ser_mtl.lightning_cli import build_datamodule

    datamodule = build_datamodule(argv)
    datamodule.prepare_data()
    print(datamodule.describe())
    for name, store in datamodule._stores().items():
        print(f"{name} store: {store.path} ({len(store)} utterances, complete={store.is_complete()})")


def _collect_inputs(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                            and not p.name.startswith("._"))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{item}: no such audio file or folder")
    return files


def load_trained_model(ckpt: str, device: str = "cpu"):
    """Model + preprocessing state from a checkpoint, loaded without executing pickled code."""
    from ser_mtl.models.aae import MultiTaskAAE

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = checkpoint.get("SERDataModule")
    if not state or state.get("mean") is None:
        raise ValueError(f"{ckpt}: no preprocessing state (SERDataModule) in the checkpoint; was it written by "
                         "`ser-mtl fit`?")
    accepted = inspect.signature(MultiTaskAAE.__init__).parameters
    # LightningCLI also records `_instantiator`/`_class_path`; keep the model's own arguments only
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in accepted}
    hparams["init_from"] = None  # the checkpoint's own weights are loaded below
    model = MultiTaskAAE(**hparams)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval(), state


def classify(inputs: list[str], ckpt: str, out: str = "predictions.csv", device: str = "cpu",
             batch_size: int = 64) -> None:
    """Emotion probabilities for audio files with a trained model, preprocessed exactly as in training.

    Args:
        inputs: audio files and/or folders (searched recursively for .wav/.flac/.ogg/...).
        ckpt: a checkpoint written by ``ser-mtl fit`` (it carries the feature settings, the
            normalisation statistics and the class names).
        out: output file; ``.json`` writes JSON, anything else CSV (``path,pred,p_<class>...``).
        device: torch device for features and the network (``cpu``, ``cuda``, ``cuda:1``).
        batch_size: segments per forward pass.
    """
    from ser_mtl.data.audio import load_audio
    from ser_mtl.data.features import FeatureConfig, compute_features
    from ser_mtl.data.manifest import CorpusError
    from ser_mtl.data.segments import cut_segment, segment_index

    model, state = load_trained_model(ckpt, device)
    cfg = FeatureConfig(**state["features"])
    mean = torch.tensor(state["mean"], dtype=torch.float32, device=device)[:, None]  # (F, 1)
    std = torch.tensor(state["std"], dtype=torch.float32, device=device).clamp_min(1e-5)[:, None]  # (F, 1)
    classes, seg_frames, hop = state["classes"], state["segment_frames"], state["segment_hop"]
    results, skipped = [], []
    for path in _collect_inputs(inputs):
        try:
            wave = load_audio(path, cfg.sample_rate).to(device)  # (T,)
            # the store keeps float16 frames: round the same way so new audio sees training's numbers
            feats = compute_features(wave, cfg).half().float()  # (F, frames)
            if state.get("utterance_norm", "none") == "mean" and feats.shape[1]:
                feats = feats - feats.mean(dim=1, keepdim=True)  # the utterance's own per-row mean, as in training
            feats = ((feats - mean) / std).cpu().numpy()
        except CorpusError as err:
            skipped.append(f"{path}: {err}")
            continue
        if feats.shape[1] == 0:
            skipped.append(f"{path}: no speech left after silence removal")
            continue
        index = segment_index(np.array([feats.shape[1]]), seg_frames, hop)  # (S, 2)
        segs = np.stack([cut_segment(feats, int(off), seg_frames) for _, off in index])  # (S, F, T_seg)
        probs = []
        with torch.no_grad():
            for start in range(0, len(segs), batch_size):
                x = torch.from_numpy(segs[start:start + batch_size]).float().unsqueeze(1).to(device)  # (b, 1, F, T)
                probs.append(model.predict_step({"x": x, "utt": torch.zeros(len(x), dtype=torch.long)})["probs"])
        p = torch.cat(probs).mean(0).cpu().numpy()  # (C,) utterance posterior
        results.append({"path": str(path), "pred": classes[int(p.argmax())],
                        **{f"p_{c}": round(float(v), 6) for c, v in zip(classes, p)}})
    for line in skipped:
        print(f"skipped {line}")
    if out.endswith(".json"):
        atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["path", "pred"] + [f"p_{c}" for c in classes],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(results)
        atomic_write_text(out, buffer.getvalue())
    print(f"classified {len(results)} file(s), skipped {len(skipped)} -> {out}")
