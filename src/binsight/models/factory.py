"""A user's own classifier, built by the user's own code, made ready for binsight in one call.

:class:`ModelSpec` says how to get the model (an importable factory ``"package.module:function"`` or a
callable, its keyword arguments, a weights file) and what binsight cannot know by itself: the precision,
a name and group for the study's pairing, the GradCAM layer, the input normalisation the model expects,
and the image size. :func:`load_model` builds the model from a spec; :func:`model_from_module` prepares a
module the caller already holds (a notebook). Both return a :class:`Normalized` wrapper in eval mode.

The image contract: binsight's explainers and measures perturb pixels in [0, 1]. A model that expects
normalised input declares ``mean``/``std`` and is wrapped so that it sees ``(x - mean) / std``; a model
that takes [0, 1] pixels as they are (normalising inside, or not at all) declares
``normalize="inside"``. Nothing is guessed: a spec that declares neither is refused.

Weights: ``.safetensors`` files are read with safetensors; any other file as a ``state_dict`` with
``torch.load(weights_only=True)``, which refuses pickled objects other than tensors instead of running
them. Every failure raises :class:`FactoryError` with a one-line message naming what to fix.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import itertools
import math
import os
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from binsight.models.errors import ModelError
from binsight.models.kit import PRECISIONS
from binsight.models.registry import MAX_CHANNELS, MAX_CLASSES, check_input_pixels
from binsight.nn.foreign import dummy_images, sign_report, warn_if_no_gradient

INSIDE = "inside"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SHOWN = 3
"""How many key names an error lists before giving the count of the rest."""

SPEC_KEYS = ("factory", "kwargs", "weights", "precision", "name", "group", "gradcam_layer", "mean", "std",
             "normalize", "input_size", "num_classes")
"""The keys of a ``[[models.own]]`` table (and of :meth:`ModelSpec.from_dict`)."""


class FactoryError(ModelError):
    """A user's model that cannot be built, loaded or used as declared; the message says what to fix."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build a user's classifier and what binsight must know about it.

    factory: ``"package.module:function"`` (dotted attributes allowed after the colon) or a callable
        returning the ``nn.Module``; "" only for :func:`model_from_module`.
    kwargs: keyword arguments of the factory.
    weights: a ``.safetensors`` file or a ``state_dict`` file; "" = the weights as built.
    precision: ``"fp"`` or ``"bnn"``.
    name: the model's name in a study (``[A-Za-z0-9][A-Za-z0-9_.-]*``, at most 64 characters);
        "" = the factory's function name (other characters dropped; "model" if none is left).
    group: the seed or pairing label (models of one group are paired across precisions).
    gradcam_layer: module name inside the user's model (as in ``named_modules()``); "" = the model's own
        ``gradcam_layer`` attribute if it has one, else GradCAM is refused for this model.
    mean, std: per-channel normalisation the model expects (both or neither), applied by the wrapper.
    normalize: ``"inside"`` when the model takes [0, 1] pixels as they are (declare this or mean/std).
    input_size: (C, H, W) of the images the model takes; used for the checks on a dummy batch.
    num_classes: the number of classes the logits must have; None = not checked.
    """

    factory: str | Callable[..., nn.Module] = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weights: str = ""
    precision: str = "fp"
    name: str = ""
    group: str = "0"
    gradcam_layer: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalize: str = ""
    input_size: tuple[int, int, int] | None = None
    num_classes: int | None = None

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], *, base_dir: str | os.PathLike | None = None) -> "ModelSpec":
        """A spec from a TOML table (keys :data:`SPEC_KEYS`); a relative ``weights`` path is taken relative
        to ``base_dir`` (the configuration file's folder); an integer ``group`` is its decimal label. Unknown
        keys are refused, naming close ones."""
        unknown = [k for k in table if k not in SPEC_KEYS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], SPEC_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FactoryError(f"unknown key {unknown[0]!r} in a model table{hint}; "
                               f"the keys are {', '.join(SPEC_KEYS)}")
        values = dict(table)
        group = values.get("group")
        if isinstance(group, int) and not isinstance(group, bool):
            values["group"] = str(group)  # group = 0 in TOML is the label "0"
        for key in ("mean", "std", "input_size"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        weights = values.get("weights") or ""
        if weights and base_dir is not None and not Path(weights).is_absolute():
            values["weights"] = str(Path(base_dir) / weights)
        return cls(**values)

    def display_name(self) -> str:
        """``name``, or the factory's function name when no name is given."""
        if self.name:
            return self.name
        if callable(self.factory):
            derived = getattr(self.factory, "__name__", type(self.factory).__name__)
        else:
            derived = str(self.factory).rpartition(":")[2].rpartition(".")[2]
        return re.sub(r"[^A-Za-z0-9_.-]", "", derived).lstrip("_.-")[:64] or "model"


class Normalized(nn.Module):
    """[0, 1] pixels (N, C, H, W) -> ``model((x - mean) / std)``; with mean/std None the pixels pass as
    they are (the model normalises itself).

    Attributes: ``model`` (the user's module), ``spec`` (its :class:`ModelSpec`), ``input_size``
    (C, H, W), ``gradcam_layer`` (``"model." + the declared layer``; reading it raises
    :class:`FactoryError` when no layer was declared, so GradCAM never guesses one) and
    ``gradcam_binary_layer`` (None). ``mean``/``std`` are non-persistent buffers (1, C, 1, 1): the
    state_dict holds the user's weights only, under ``model.``; they are made on the device of the
    user's module.
    """

    def __init__(self, model: nn.Module, spec: ModelSpec, layer: str | None, input_size: tuple[int, int, int]):
        super().__init__()
        self.model = model
        self.spec = spec
        self.input_size = tuple(input_size)
        self._layer = layer
        self.gradcam_binary_layer = None
        device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
        for key in ("mean", "std"):
            values = getattr(spec, key)
            buffer = None
            if values is not None:
                buffer = torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)
            self.register_buffer(key, buffer, persistent=False)

    @property
    def gradcam_layer(self) -> str:
        if self._layer is None:
            raise FactoryError(f"model {self.spec.display_name()!r} declares no GradCAM layer; set gradcam_layer "
                               "to a module name of the model (e.g. its last convolutional block)")
        return f"model.{self._layer}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of pixels ``x`` (N, C, H, W) in [0, 1]; ``x`` is cast (differentiably) to the floating dtype
        of the user's model (its first floating parameter or buffer, e.g. float64 for a ``.double()`` model)."""
        if self.mean is not None:
            x = (x - self.mean) / self.std
        dtype = _floating_dtype(self.model)
        if dtype is not None and x.dtype != dtype:
            x = x.to(dtype)
        return self.model(x)

    def extra_repr(self) -> str:
        if self.mean is None:
            norm = f"normalize={INSIDE!r}"
        else:
            norm = f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
        return f"name={self.spec.display_name()!r}, precision={self.spec.precision!r}, {norm}"


def _floating_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of ``model``'s first floating-point parameter or buffer; None when it has none."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return next((t.dtype for t in tensors if t.is_floating_point()), None)


def declared_gradcam_layer(model: nn.Module) -> str | None:
    """The GradCAM layer a model declares (a :class:`Normalized` wrapper or a binsight model), or None."""
    if isinstance(model, Normalized):
        return None if model._layer is None else model.gradcam_layer
    layer = getattr(model, "gradcam_layer", None)
    return layer if isinstance(layer, str) and layer else None


def surrogate_label(model: Normalized) -> str:
    """The surrogate a study records for a loaded model: "" for an FP model; for a BNN the surrogate its
    backward pass uses (:func:`binsight.nn.foreign.sign_report`, e.g. "brevitas-ste"), or "own" when
    binsight cannot switch it (its own autograd Function: no surrogate robustness rows apply)."""
    if model.spec.precision == "fp":
        return ""
    report = sign_report(model)
    return report.surrogate if report.switchable or not report.surrogate else "own"


# -- the two entry points ------------------------------------------------------------------------------


def load_model(spec: ModelSpec, *, search_path: Sequence[str | os.PathLike] = ()) -> Normalized:
    """Build ``spec``'s model, load its weights, check it and wrap it: a :class:`Normalized` in eval mode.

    ``search_path``: folders tried first when importing the factory's module (the command line passes the
    working directory, the study the configuration file's folder).

    Checks, in order (each failure a :class:`FactoryError`): the spec itself; the factory imports and
    accepts ``kwargs``; the weights file reads and its keys and shapes fit the model (missing and
    unexpected keys named); one forward pass of two dummy images of ``input_size`` runs and returns
    logits (2, num_classes); the GradCAM layer exists and outputs feature maps (N, K, h, w). A model whose
    backward pass carries no gradient to its input (a BNN binarizing with ``torch.sign``) is loaded with a
    :class:`~binsight._utils.BinsightWarning` (:func:`binsight.nn.foreign.warn_if_no_gradient`).
    """
    check_spec(spec, need_factory=True)
    factory = resolve_factory(spec.factory, search_path=search_path)
    model = call_factory(factory, spec)
    return model_from_module(model, spec)


def model_from_module(module: nn.Module, spec: ModelSpec) -> Normalized:
    """Prepare a module the caller already holds: load ``spec.weights`` into it if given, check it as
    :func:`load_model` does, set it to eval mode and wrap it."""
    check_spec(spec, need_factory=False)
    if not isinstance(module, nn.Module):
        raise FactoryError(f"model {spec.display_name()!r} is a {type(module).__name__}, not a torch.nn.Module")
    if spec.weights:
        load_weights(module, spec.weights, what=spec.display_name())
    layer = spec.gradcam_layer or _own_layer(module)
    wrapped = Normalized(module, spec, layer or None, spec.input_size)
    wrapped.eval()
    check_forward(wrapped)
    warn_if_no_gradient(wrapped, name=f"model {spec.display_name()!r}")
    return wrapped


def _own_layer(module: nn.Module) -> str:
    layer = getattr(module, "gradcam_layer", None)
    return layer if isinstance(layer, str) else ""


# -- the spec ------------------------------------------------------------------------------------------


def check_spec(spec: ModelSpec, *, need_factory: bool) -> None:
    """Refuse a spec that cannot work, before anything is imported or built."""
    what = spec.display_name()
    for key in ("weights", "name", "group", "gradcam_layer", "normalize"):
        value = getattr(spec, key)
        if not isinstance(value, (str, os.PathLike) if key == "weights" else str):
            raise FactoryError(f"model {what!r}: {key} must be a string, got {type(value).__name__} {value!r}")
    if need_factory and not (callable(spec.factory) or (isinstance(spec.factory, str) and spec.factory)):
        raise FactoryError(f"model {what!r} has no factory; give factory = \"package.module:function\"")
    if spec.precision not in PRECISIONS:
        raise FactoryError(f"model {what!r}: precision must be one of {', '.join(PRECISIONS)}, got {spec.precision!r}")
    if not NAME_PATTERN.fullmatch(what):
        raise FactoryError(f"model name {what!r} is not allowed; use letters, digits, '_', '.', '-' "
                           "(starting with a letter or digit, at most 64 characters)")
    if not isinstance(spec.kwargs, Mapping):
        raise FactoryError(f"model {what!r}: kwargs must be a table of keyword arguments, "
                           f"got {type(spec.kwargs).__name__}")
    if not spec.group:
        raise FactoryError(f"model {what!r}: group must be a non-empty string (the seed or pairing label), "
                           f"got {spec.group!r}")
    _check_size(spec)
    _check_normalisation(spec)


def _check_size(spec: ModelSpec) -> None:
    size = spec.input_size
    if size is None:
        raise FactoryError(f"model {spec.display_name()!r} needs input_size = [C, H, W], the image size it takes")
    if (not isinstance(size, (tuple, list)) or len(size) != 3
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size)):
        raise FactoryError(f"model {spec.display_name()!r}: input_size must be three positive integers [C, H, W], "
                           f"got {size!r}")
    too_large = check_input_pixels(size[1], size[2])
    if size[0] > MAX_CHANNELS:
        too_large = f"input_size has {size[0]} channels, more than binsight takes ({MAX_CHANNELS:,})"
    if too_large:
        raise FactoryError(f"model {spec.display_name()!r}: {too_large}; give the [C, H, W] the model takes")
    n = spec.num_classes
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_CLASSES):
        raise FactoryError(f"model {spec.display_name()!r}: num_classes must be an integer >= 2 and at most "
                           f"{MAX_CLASSES:,}, got {n!r}")


def _check_normalisation(spec: ModelSpec) -> None:
    what = spec.display_name()
    has_stats = spec.mean is not None or spec.std is not None
    if spec.normalize not in ("", INSIDE):
        raise FactoryError(f"model {what!r}: normalize must be \"inside\" (or left out when mean and std are "
                           f"given), got {spec.normalize!r}")
    if has_stats and spec.normalize == INSIDE:
        raise FactoryError(f"model {what!r} declares both mean/std and normalize = \"inside\"; keep one")
    if not has_stats and spec.normalize != INSIDE:
        raise FactoryError(f"model {what!r} declares no input normalisation; give mean and std (one per channel) "
                           "or normalize = \"inside\" if the model takes [0, 1] pixels as they are")
    if has_stats:
        channels = spec.input_size[0]
        for key in ("mean", "std"):
            values = getattr(spec, key)
            if (not isinstance(values, (tuple, list)) or len(values) != channels
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
                raise FactoryError(f"model {what!r}: {key} must be {channels} finite numbers (one per channel of "
                                   f"input_size), got {values!r}")
        if any(v <= 0 for v in spec.std):
            raise FactoryError(f"model {what!r}: std must be positive for every channel, got {list(spec.std)}")


# -- the factory ---------------------------------------------------------------------------------------


def resolve_factory(factory: str | Callable[..., nn.Module], *,
                    search_path: Sequence[str | os.PathLike] = ()) -> Callable[..., nn.Module]:
    """The callable named by ``"package.module:function"`` (or ``factory`` itself if it is callable)."""
    if callable(factory):
        return factory
    module_name, colon, attr = str(factory).partition(":")
    if not colon or not module_name or not attr:
        raise FactoryError(f"factory {factory!r} must look like \"package.module:function\"")
    module = _import(module_name, factory, search_path)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise FactoryError(f"factory {factory!r}: {getattr(obj, '__name__', module_name)} has no attribute "
                               f"{part!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise FactoryError(f"factory {factory!r} is a {type(obj).__name__}, not a function or class")
    return obj


def _import(module_name: str, factory: str, search_path: Sequence[str | os.PathLike]) -> Any:
    with _prepended(search_path):
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
                raise FactoryError(
                    f"factory {factory!r}: cannot import module {module_name!r} (no module named {e.name!r}); "
                    "put the folder that holds it on PYTHONPATH or run from that folder, or install its package"
                ) from None
            raise FactoryError(f"factory {factory!r}: importing {module_name!r} failed: it needs module {e.name!r}; "
                               "install it into binsight's environment") from e
        except Exception as e:  # the user's module raised while importing
            raise FactoryError(f"factory {factory!r}: importing {module_name!r} failed: {_one_line(e)}") from e


@contextlib.contextmanager
def _prepended(folders: Sequence[str | os.PathLike]) -> Iterator[None]:
    """``folders`` first on ``sys.path`` inside the block (those not there already); removed on exit."""
    added = [str(Path(f)) for f in folders if str(Path(f)) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for f in added:
            if f in sys.path:
                sys.path.remove(f)


def call_factory(factory: Callable[..., nn.Module], spec: ModelSpec) -> nn.Module:
    """``factory(**spec.kwargs)``, checked to accept the arguments and to return an ``nn.Module``."""
    label = _factory_label(spec.factory)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**spec.kwargs)
        except TypeError as e:
            raise FactoryError(f"factory {label} cannot take kwargs {dict(spec.kwargs)} ({e}); "
                               f"its signature is {getattr(factory, '__name__', 'factory')}{signature}") from None
    try:
        model = factory(**spec.kwargs)
    except Exception as e:  # the user's code failed: say where, keep its traceback chained
        raise FactoryError(f"factory {label} failed with kwargs {dict(spec.kwargs)}: {_one_line(e)}") from e
    if not isinstance(model, nn.Module):
        raise FactoryError(f"factory {label} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _factory_label(factory: str | Callable[..., nn.Module]) -> str:
    if isinstance(factory, str):
        return repr(factory)
    return getattr(factory, "__qualname__", type(factory).__name__)


# -- weights -------------------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: safetensors for ``.safetensors``, else ``torch.load(weights_only=True)``
    (a pickled object other than tensors and plain containers is refused, never run)."""
    path = Path(path)
    if not path.is_file():
        raise FactoryError(f"weights file {path} not found; give the path of a .safetensors or state_dict file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise FactoryError(f"weights file {path} is not a readable safetensors file ({_one_line(e)})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise FactoryError(_refusal(path, str(e))) from None
    except Exception as e:  # not a torch file at all (a truncated zip, text, ...)
        raise FactoryError(f"weights file {path} is not a state_dict file torch can read ({_one_line(e)})") from None
    return _check_state(state, path)


def _refusal(path: Path, message: str) -> str:
    """The one-line message for a file ``torch.load(weights_only=True)`` refused to unpickle."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if found:
        return (f"weights file {path} holds pickled objects other than tensors (it asks for {found.group(1)}); "
                "refused unread: save model.state_dict() with safetensors.torch.save_file instead")
    detail = message.partition("WeightsUnpickler error:")[2].strip().splitlines()
    reason = detail[0] if detail else "not a torch.save file"
    return (f"weights file {path} is not a state_dict file torch can read safely ({reason}); save "
            "model.state_dict() with safetensors.torch.save_file")


def _check_state(state: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping):
        raise FactoryError(f"weights file {path} holds a {type(state).__name__}, not a state_dict; "
                           "save model.state_dict()")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise FactoryError(f"weights file {path} is a dict whose entries {_few(bad)} are not tensors; "
                           "save model.state_dict() itself, not a dict around it")
    return dict(state)


def load_weights(model: nn.Module, path: str | os.PathLike, *, what: str = "model") -> None:
    """Load the weights file ``path`` into ``model``; every name and shape must fit (none is skipped)."""
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if wrong:
        problems.append(f"shape mismatch {_few(wrong)}")
    if problems:
        raise FactoryError(f"weights file {path} does not fit model {what!r}: {'; '.join(problems)}"
                           f"{_prefix_hint(unexpected, expected)}; build the model with the kwargs it was saved with")
    model.load_state_dict(state, strict=True)


def _prefix_hint(unexpected: list[str], expected: Mapping[str, Any]) -> str:
    if unexpected and all(k.startswith("module.") for k in unexpected) and expected:
        return " (the file's keys start with 'module.', as saved from DataParallel: strip that prefix)"
    return ""


def _few(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown if len(names) <= SHOWN else f"{shown} (and {len(names) - SHOWN} more)"


# -- the checks on a dummy batch ----------------------------------------------------------------------


def check_forward(model: Normalized) -> None:
    """One forward pass of two uniform [0, 1] images of ``model.input_size`` (on the model's device): it
    must run and return floating-point logits (2, num_classes), and the declared GradCAM layer must exist and output
    feature maps (N, K, h, w)."""
    spec, what = model.spec, model.spec.display_name()
    batch = (2, *model.input_size)
    module = _gradcam_module(model) if model._layer is not None else None
    outputs: list[Any] = []
    handle = module.register_forward_hook(lambda _m, _a, out: outputs.append(out)) if module is not None else None
    try:
        with torch.no_grad():
            out = model(dummy_images(model, model.input_size))
    except Exception as e:  # the model rejects the size (or fails otherwise): say which size was tried
        raise FactoryError(f"model {what!r} fails on a batch of shape {batch} ({_one_line(e)}); set input_size "
                           "[C, H, W] to the image size the model takes") from e
    finally:
        if handle is not None:
            handle.remove()
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FactoryError(f"model {what!r} returned {shape} for a batch of shape {batch}; a classifier must return "
                           "logits (N, classes): make forward return only the logits")
    if not out.is_floating_point():
        raise FactoryError(f"model {what!r} returned logits of dtype {out.dtype}; binsight needs floating-point "
                           "logits (their gradient is what is explained): return the scores before any rounding, "
                           "argmax or cast")
    if spec.num_classes is not None and out.shape[1] != spec.num_classes:
        raise FactoryError(f"model {what!r} returned {out.shape[1]} logits per image, the data have "
                           f"{spec.num_classes} classes; build it with {spec.num_classes} outputs")
    if module is not None:
        _check_feature_maps(model, outputs)


def _gradcam_module(model: Normalized) -> nn.Module:
    names = {n: m for n, m in model.model.named_modules() if n}
    if model._layer in names:
        return names[model._layer]
    close = difflib.get_close_matches(model._layer, list(names), n=3, cutoff=0.5)
    hint = f"; close names: {', '.join(close)}" if close else f"; its modules include {', '.join(list(names)[-3:])}"
    raise FactoryError(f"model {model.spec.display_name()!r} has no layer {model._layer!r} for gradcam_layer{hint}")


def _check_feature_maps(model: Normalized, outputs: list[Any]) -> None:
    what, layer = model.spec.display_name(), model._layer
    if len(outputs) != 1:
        raise FactoryError(f"model {what!r}: gradcam_layer {layer!r} ran {len(outputs)} times in one forward pass; "
                           "choose a layer that runs exactly once")
    out = outputs[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FactoryError(f"model {what!r}: gradcam_layer {layer!r} outputs {shape}; GradCAM needs feature maps "
                           "(N, K, h, w): choose a convolutional block's layer")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
