"""Where a pretrained speech model's files are, what they hash to, and the frozen model they load into.

`resolve_model_folder` turns ``data.features.init_args.model`` (a folder, or a Hugging Face hub id from the
local cache, downloaded only when online) into a folder, or one line saying how to bring the model here;
`weights_sha256` is the hash the feature store's key and a checkpoint carry; `load_frozen_model` loads it
frozen (eval mode, no gradients), keeping only the transformer layers the chosen hidden states need.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ser_mtl.data.extractor import FeatureModelError

_HASHED_CONFIGS = ("config.json", "preprocessor_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_DOWNLOAD = ["*.json", "*.safetensors", "*.bin"]
_FILE_SHA: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256, once per process


def weights_sha256(folder: str | os.PathLike) -> str:
    """sha256 over the weight and config files of a model folder (sorted by name, names included), without
    loading the model; each file is hashed once per process per (path, size, mtime)."""
    files = sorted(p for p in Path(folder).iterdir()
                   if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name in _HASHED_CONFIGS))
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise FeatureModelError(f"{folder}: no *.safetensors or *.bin weights in the model folder")
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _FILE_SHA:
            sha = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 24), b""):  # 16 MiB at a time
                    sha.update(block)
            _FILE_SHA[key] = sha.hexdigest()
        digest.update(f"{path.name}\0{_FILE_SHA[key]}\n".encode())
    return digest.hexdigest()


def _not_here(model: str, why: str) -> FeatureModelError:
    folder = f"models/{model.rstrip('/').split('/')[-1]}"
    save = (f"from transformers import AutoModel, AutoFeatureExtractor; "
            f"[c.from_pretrained('{model}').save_pretrained('{folder}') for c in (AutoModel, AutoFeatureExtractor)]")
    return FeatureModelError(
        f"{model}: the model is not on this machine (no such folder, not in the Hugging Face cache; {why}); on a "
        f"machine with a network run `hf download {model} --local-dir {folder}` (or python -c \"{save}\"), copy "
        f"{folder} here and point --data.features.init_args.model {folder} (data.features.init_args.model in "
        f"the config) at it")


def resolve_model_folder(model: str) -> Path:
    """The local folder of ``model``: a folder as given, else a Hugging Face hub id from the local cache, else
    downloaded (unless offline); `FeatureModelError` with the way to bring it here otherwise."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1 or path.exists():
        raise FeatureModelError(f"{model}: no such model folder ({path.absolute()} is not a directory)")
    try:
        return Path(snapshot_download(model, allow_patterns=_DOWNLOAD, local_files_only=True))
    except HFValidationError:
        raise FeatureModelError(f"{model}: no such model folder, and not a Hugging Face model id") from None
    except LocalEntryNotFoundError as err:  # not cached, or cached by from_pretrained without every file
        partial = getattr(err, "snapshot_path", None)
        if partial and (Path(partial) / "config.json").is_file():
            return Path(partial)
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise _not_here(model, "HF_HUB_OFFLINE is set") from None
    try:
        return Path(snapshot_download(model, allow_patterns=_DOWNLOAD))
    except (HfHubHTTPError, LocalEntryNotFoundError, ConnectionError) as err:
        raise _not_here(model, f"download failed: {type(err).__name__}") from None


def load_frozen_model(folder: str | os.PathLike, whisper: bool, keep_layers: int,
                      device: torch.device) -> torch.nn.Module:
    """The model of ``folder`` (the encoder, for Whisper) in eval mode without gradients on ``device``, with
    only its first ``keep_layers`` transformer layers: ``hidden_states[i]`` for i < keep_layers is unchanged
    (the input of layer i), and the later layers are never run."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder, dtype=torch.float32)  # transformers 5: the default is "auto"
    if whisper and hasattr(model, "get_encoder"):
        model = model.get_encoder()
    layers = getattr(getattr(model, "encoder", model), "layers", None)
    if isinstance(layers, torch.nn.ModuleList) and keep_layers < len(layers):
        getattr(model, "encoder", model).layers = layers[:keep_layers]
    return model.eval().requires_grad_(False).to(device)
