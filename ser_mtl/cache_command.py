"""``ser-mtl cache --config FILE [--data.* overrides]``: a config's feature stores, ahead of training."""

from __future__ import annotations

from typing import Any

from ser_mtl.command_line import ForwardingCommand


def _cache(_options: Any, config_args: list[str]) -> None:
    from ser_mtl.lightning_cli import build_datamodule

    datamodule = build_datamodule(config_args)
    datamodule.prepare_data()
    print(datamodule.describe())
    for name, store in datamodule.feature_stores().items():
        print(f"{name} store: {store.path} ({len(store)} utterances, complete={store.is_complete()})")


cache_main = ForwardingCommand(
    "ser-mtl cache", (), _cache,
    "Builds the manifests and feature stores (primary, auxiliary, cross-corpus target) of the configuration's "
    "data section, in parallel with data.num_workers processes, so that several training jobs (DDP ranks, "
    "SLURM array tasks) start from a complete cache.")
