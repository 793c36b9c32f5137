"""A part the config names (``{class_path, init_args}``) built outside the command line: from a checkpoint's
hyper-parameters, ``cv.json`` or Python. jsonargparse resolves it, exactly as LightningCLI does."""

from __future__ import annotations

from typing import Any


def build_part(spec: dict[str, Any], type_hint: Any) -> Any:
    """``spec`` (``{class_path, init_args}``) instantiated as an argument of type ``type_hint`` would be (a class,
    or a ``Callable[..., Class]`` for parts whose first arguments their owner gives)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--part", type=type_hint)
    return parser.instantiate(parser.parse_object({"part": spec})).part
