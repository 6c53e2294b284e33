"""Checkpoints: weights in ``X.safetensors`` and everything else in the side file ``X.json``.

The side file alone rebuilds the model (its ``spec`` holds the arguments of :func:`build_model`); the
weights are read with safetensors only, so nothing is ever unpickled.

The two files are one unit. :func:`save_checkpoint` writes both under temporary names, then renames the
weights and the side file last. The side file records the sha256 of the weights (``weights_sha256``) and
the weights' own header records the spec they were saved with, so a pair that does not belong together
(a save killed between the two renames, or one file replaced by hand) is refused by
:func:`load_checkpoint`, never loaded as the wrong model. Loading also refuses a side file whose
precision or architecture contradicts its spec or the weights, and compares the tensor names and shapes
the spec asks for with those the weights hold before any tensor of the model is allocated.
Checkpoints without a checksum (format version 1) still load, checked by names and shapes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from binsight import __version__
from binsight._io import atomic_path
from binsight.errors import BinsightError
from binsight.models.registry import build_from_spec
from binsight.nn import MIXED, surrogate_of

FORMAT = "binsight-checkpoint"
FORMAT_VERSION = 2
WEIGHTS_SUFFIX = ".safetensors"
SIDE_SUFFIX = ".json"
MAX_SIDE_FILE_BYTES = 8 * 2**20
"""Largest side file read (a side file holds a spec and metadata: kilobytes)."""

# Spec keys that do not change the weights: a side file may differ from the weights' record in these.
_FREE_SPEC_KEYS = ("surrogate", "input_size")


class CheckpointError(BinsightError):
    """A checkpoint that cannot be saved or loaded; the message names the file and the problem."""


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, side file) for ``path`` given as ``X``, ``X.safetensors`` or ``X.json``."""
    path = Path(path)
    if path.suffix == WEIGHTS_SUFFIX:
        weights = path
    elif path.suffix == SIDE_SUFFIX:
        weights = path.with_suffix(WEIGHTS_SUFFIX)
    else:
        weights = path.with_name(path.name + WEIGHTS_SUFFIX)
    return weights, weights.with_suffix(SIDE_SUFFIX)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and a JSON side file as one unit; return the weights' path.

    ``model`` must come from :func:`binsight.models.build_model` (it carries ``binsight_spec``). ``meta``
    (JSON-serialisable: dataset, class names, test accuracy, seed, epochs, ...) is stored in the side file
    next to the architecture, precision, surrogate, normalisation, binsight version and the weights' sha256.
    Both files get the usual permissions (0666 less the umask).
    """
    weights, side = checkpoint_paths(path)
    spec = _spec_to_save(model, weights)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save_safetensors(state, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION),
                                             "spec": json.dumps(spec, sort_keys=True)})
    side_data = {
        **dict(meta or {}),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "binsight_version": __version__,
        "architecture": spec["name"],
        "precision": spec["precision"],
        "surrogate": surrogate_of(model) if surrogate_of(model) != MIXED else None,
        "first_last_fp": spec["first_last_fp"],
        "normalisation": {"mean": spec["mean"], "std": spec["std"]},
        "spec": spec,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
    }
    try:
        side_text = json.dumps(side_data, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint metadata for {side} is not JSON-serialisable: {e}") from None
    # Exits run inner first: the weights are renamed into place, then the side file, last.
    with atomic_path(side) as side_tmp, atomic_path(weights) as weights_tmp:
        weights_tmp.write_bytes(data)
        side_tmp.write_text(side_text + "\n", encoding="utf-8")
    return weights


def _spec_to_save(model: nn.Module, weights: Path) -> dict[str, Any]:
    spec = getattr(model, "binsight_spec", None)
    if not isinstance(spec, dict):
        raise CheckpointError(
            f"cannot save {type(model).__name__} to {weights}: only models built by binsight.models.build_model "
            "can be saved as binsight checkpoints (they carry binsight_spec)"
        )
    spec = json.loads(json.dumps(spec))  # a copy, as the side file will hold it (tuples become lists)
    current = surrogate_of(model)
    if current not in (None, MIXED):
        spec["surrogate"] = current
    return spec


def read_side_file(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed side file of checkpoint ``path``, checked to hold a build spec that agrees with itself."""
    weights, side = checkpoint_paths(path)
    if not side.is_file():
        raise CheckpointError(
            f"checkpoint {weights}: its side file {side} is missing; it holds the architecture and must sit "
            "next to the weights with the same name"
        )
    if side.stat().st_size > MAX_SIDE_FILE_BYTES:
        raise CheckpointError(f"checkpoint side file {side} is {side.stat().st_size:,} bytes, more than a side file "
                              f"holds ({MAX_SIDE_FILE_BYTES:,}); it is not a binsight side file")
    try:
        meta = json.loads(side.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint side file {side} is not valid JSON: {_first_line(e)}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        raise CheckpointError(f"checkpoint side file {side} has no 'spec' (the model's build arguments)")
    _check_side_format(meta, side)
    return meta


# Side-file keys that binsight reads, and the types they must have where present.
_TYPED_KEYS = {"architecture": str, "precision": str, "dataset": str, "surrogate": (str, type(None)),
               "class_names": list}


def _check_side_format(meta: dict[str, Any], side: Path) -> None:
    for key, kind in _TYPED_KEYS.items():
        if key in meta and not isinstance(meta[key], kind):
            raise CheckpointError(f"checkpoint side file {side}: {key!r} is {type(meta[key]).__name__} "
                                  f"{str(meta[key])[:40]!r}, not the type binsight writes; restore the side file")
    if "class_names" in meta and not all(isinstance(n, str) for n in meta["class_names"]):
        raise CheckpointError(f"checkpoint side file {side}: 'class_names' must be a list of strings")
    for key in ("name", "precision"):
        if not isinstance(meta["spec"].get(key), str):
            raise CheckpointError(f"checkpoint side file {side}: its spec has no {key!r} (a string); "
                                  "the side file is damaged: restore it or save the checkpoint again")
    version = meta.get("format_version", 1)
    if version not in (1, FORMAT_VERSION):
        raise CheckpointError(f"checkpoint side file {side} has format version {version!r}; this binsight reads "
                              f"versions 1 and {FORMAT_VERSION}: upgrade binsight or save the checkpoint again")
    if version == FORMAT_VERSION and not isinstance(meta.get("weights_sha256"), str):
        raise CheckpointError(f"checkpoint side file {side} has no 'weights_sha256'; the side file is damaged: "
                              "restore it or save the checkpoint again")


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; anything else (a pickle, a truncated file) is refused."""
    weights, _ = checkpoint_paths(path)
    return _parse_weights(_read_weights_bytes(weights), weights)[0]


def _read_weights_bytes(weights: Path) -> bytes:
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {weights} not found; give the .safetensors file (or its name without "
                              "the suffix) of a checkpoint saved by binsight")
    try:
        return weights.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {weights}: {e.strerror or e}") from None


def _parse_weights(data: bytes, weights: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, header metadata) of safetensors bytes; the bytes are validated by safetensors first."""
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, OverflowError) as e:
        raise CheckpointError(
            f"checkpoint {weights} is not a complete safetensors file ({_first_line(e)}); binsight never loads "
            "pickles (torch.save files): re-save the weights with safetensors, or retrain"
        ) from None
    (length,) = struct.unpack("<Q", data[:8])  # valid: safetensors parsed the same header
    metadata = json.loads(data[8:8 + length]).get("__metadata__") or {}
    return tensors, metadata


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the side file, load the weights; return (model in eval mode, side-file dict).

    ``path``: ``X``, ``X.safetensors`` or ``X.json``. Refused (CheckpointError), in this order: a missing
    weights file; a missing or malformed side file; weights that are not safetensors; a spec that cannot be built, or
    whose tensor names, shapes or dtypes differ from the weights' (compared on a model without memory,
    before anything is allocated); weights whose sha256 is not the one the side file records; a side
    file that contradicts itself or the spec recorded in the weights.
    """
    weights, side = checkpoint_paths(path)
    data = _read_weights_bytes(weights)
    meta = read_side_file(weights)
    state, header = _parse_weights(data, weights)
    with torch.device("meta"):  # the spec's model without memory: a side file cannot ask for terabytes
        check_state_matches(_build(meta["spec"], side).state_dict(), state, weights)
    _check_checksum(meta, data, weights, side)
    _check_side_agrees(meta, side)
    _check_recorded_spec(meta, header, weights, side)
    model = _build(meta["spec"], side)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta


def _build(spec: dict[str, Any], side: Path) -> nn.Module:
    try:
        return build_from_spec(spec)
    except Exception as e:  # the spec is untrusted data: any failure to build it means a bad side file
        raise CheckpointError(f"checkpoint side file {side} describes a model that cannot be built: "
                              f"{_first_line(e)}") from None


def _check_checksum(meta: dict[str, Any], data: bytes, weights: Path, side: Path) -> None:
    recorded = meta.get("weights_sha256")
    if recorded is None:  # format version 1 (checked in read_side_file)
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise CheckpointError(
            f"checkpoint {weights} does not belong to its side file {side}: the weights' sha256 is {actual[:12]}..., "
            f"the side file records {str(recorded)[:12]}...; a save was interrupted or one file was replaced: "
            "save the checkpoint again, or restore both files together"
        )


def _check_side_agrees(meta: dict[str, Any], side: Path) -> None:
    """The side file's top-level architecture and precision must be those of its spec."""
    for top, key in (("architecture", "name"), ("precision", "precision")):
        if top in meta and meta[top] != meta["spec"][key]:
            raise CheckpointError(f"checkpoint side file {side} says {top} {meta[top]!r} but its spec says "
                                  f"{meta['spec'][key]!r}; the side file was edited: restore it or save the "
                                  "checkpoint again")


def _check_recorded_spec(meta: dict[str, Any], header: dict[str, str], weights: Path, side: Path) -> None:
    """The spec the weights were saved with (format 2) must match the side file's, but for display keys."""
    if "spec" not in header:
        if meta.get("format_version", 1) != 1:
            raise CheckpointError(f"checkpoint {weights} records no spec in its header; it was not saved by "
                                  f"this binsight with {side}: save the checkpoint again")
        return
    if meta.get("format_version", 1) == 1:
        raise CheckpointError(f"checkpoint {weights} was saved by a newer binsight than its side file {side} "
                              "(a save was interrupted or one file was replaced): save the checkpoint again")
    try:
        recorded = json.loads(header["spec"])
    except (json.JSONDecodeError, RecursionError):
        recorded = None
    if not isinstance(recorded, dict):
        raise CheckpointError(f"checkpoint {weights}: the spec in its header is not a JSON object; save it again")
    keys = sorted((set(recorded) | set(meta["spec"])) - set(_FREE_SPEC_KEYS))
    wrong = [f"{k}: side file {meta['spec'].get(k)!r}, weights {recorded.get(k)!r}"
             for k in keys if meta["spec"].get(k) != recorded.get(k)]
    if wrong:
        raise CheckpointError(f"checkpoint side file {side} contradicts the weights {weights.name} "
                              f"({_few(wrong)}); restore the side file or save the checkpoint again")


def check_state_matches(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], weights: Path) -> None:
    """Raise CheckpointError naming missing / unexpected tensors and shape or dtype mismatches."""
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
    dtypes = [f"{k}: side file says {v.dtype}, weights have {found[k].dtype}"
              for k, v in expected.items() if k in found and v.dtype != found[k].dtype]
    if dtypes:
        problems.append(f"dtype mismatch {_few(dtypes)}")
    if problems:
        raise CheckpointError(f"checkpoint {weights} does not match the model its side file describes: "
                              + "; ".join(problems))


def _few(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
