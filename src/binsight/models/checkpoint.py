"""Checkpoints: weights in ``X.safetensors`` and everything else in the side file ``X.json``.

The side file alone rebuilds the model (its ``spec`` holds the arguments of :func:`build_model`); the
weights are read with safetensors only, so nothing is ever unpickled. Both files are written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from binsight import __version__
from binsight._io import atomic_path, atomic_write_text
from binsight.models.registry import ModelError, build_from_spec
from binsight.nn import MIXED, surrogate_of

FORMAT = "binsight-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be saved or loaded; the message names the file and the problem."""


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, side file) for ``path`` given with or without the ``.safetensors`` suffix."""
    path = Path(path)
    weights = path if path.suffix == WEIGHTS_SUFFIX else path.with_name(path.name + WEIGHTS_SUFFIX)
    return weights, weights.with_suffix(".json")


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and a JSON side file; return the weights' path.

    ``model`` must come from :func:`binsight.models.build_model` (it carries ``binsight_spec``). ``meta``
    (JSON-serialisable: dataset, class names, test accuracy, seed, epochs, ...) is stored in the side file
    next to the architecture, precision, surrogate, normalisation and binsight version.
    """
    weights, side = checkpoint_paths(path)
    spec = getattr(model, "binsight_spec", None)
    if not isinstance(spec, dict):
        raise CheckpointError(
            f"cannot save {type(model).__name__} to {weights}: only models built by binsight.models.build_model "
            "can be saved as binsight checkpoints (they carry binsight_spec)"
        )
    spec = dict(spec)
    current = surrogate_of(model)
    if current not in (None, MIXED):
        spec["surrogate"] = current
    side_data = {
        **dict(meta or {}),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "binsight_version": __version__,
        "architecture": spec["name"],
        "precision": spec["precision"],
        "surrogate": current,
        "first_last_fp": spec["first_last_fp"],
        "normalisation": {"mean": spec["mean"], "std": spec["std"]},
        "spec": spec,
    }
    try:
        side_text = json.dumps(side_data, indent=2, sort_keys=True)
    except TypeError as e:
        raise CheckpointError(f"checkpoint metadata for {side} is not JSON-serialisable: {e}") from None
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    atomic_write_text(side, side_text + "\n")
    return weights


def read_side_file(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed side file of checkpoint ``path``, checked to hold a build spec."""
    weights, side = checkpoint_paths(path)
    if not side.is_file():
        raise CheckpointError(
            f"checkpoint {weights}: its side file {side} is missing; it holds the architecture and must sit "
            "next to the weights with the same name"
        )
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint side file {side} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        raise CheckpointError(f"checkpoint side file {side} has no 'spec' (the model's build arguments)")
    return meta


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; anything else (a pickle, a truncated file) is refused."""
    weights, _ = checkpoint_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} not found")
    try:
        with safe_open(str(weights), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as e:
        raise CheckpointError(
            f"checkpoint {weights} is not a complete safetensors file ({e}); binsight never loads pickles "
            "(torch.save files): re-save the weights with safetensors, or retrain"
        ) from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the side file, load the weights; return (model in eval mode, side-file dict)."""
    weights, side = checkpoint_paths(path)
    meta = read_side_file(weights)
    try:
        model = build_from_spec(meta["spec"])
    except (ModelError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint side file {side} describes a model that cannot be built: {e}") from None
    state = read_weights(weights)
    check_state_matches(model.state_dict(), state, weights)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta


def check_state_matches(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], weights: Path) -> None:
    """Raise CheckpointError naming missing / unexpected tensors and shape mismatches."""
    problems = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing:
        problems.append(f"missing tensors {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_few(unexpected)}")
    shapes = [
        f"{k}: side file says {tuple(v.shape)}, weights have {tuple(found[k].shape)}"
        for k, v in expected.items()
        if k in found and v.shape != found[k].shape
    ]
    if shapes:
        problems.append(f"shape mismatch {_few(shapes)}")
    if problems:
        raise CheckpointError(f"checkpoint {weights} does not match the model its side file describes: "
                              + "; ".join(problems))


def _few(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more
