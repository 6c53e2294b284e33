"""Explain image files: ``NAME.METHOD.png`` overlays and ``NAME.METHOD.npy`` raw maps (``binsight explain``).

For each image file ``dir/NAME.ext`` and each method, :func:`explain_files` writes, in the output folder,
``NAME.METHOD.png`` (the map over the image, titled with the model, its precision and surrogate, the
predicted class and its probability and the class explained, with a colour bar of raw values:
:mod:`binsight.explain.overlay`) and ``NAME.METHOD.npy`` (the raw map, float32 (H, W) at the model's input
size); ``METHOD`` is the method name with ``:`` replaced by ``-``. :func:`explain_models` explains the images
by several models and writes, per image, one figure of every model's maps (``NAME.models.png``:
:mod:`binsight.explain.comparison`) and the raw maps as ``NAME.MODEL.METHOD.npy``. Files are written
atomically, after every map has been computed. The images of one size are explained in one call per method
(NeuroMask optimises all their masks at once).

Images are read by :mod:`binsight.data.images` (8/16-bit, palette, pixel limit), converted to the model's
channels and fitted to its input size (padded by default, keeping the aspect ratio); each conversion or
resize is reported through ``notify`` (the command line prints ``note: ...`` on stderr). A checkpoint is
loaded by :func:`load_checkpoint_model` (:mod:`binsight.models.checkpoint`: explaining never imports
training code); a user's own model by :func:`load_own_model` from a
:class:`~binsight.models.factory.ModelSpec`. The command line's flags are read in :mod:`binsight.cli.explain`.

Options that do not apply (a surrogate on a full-precision model, signed maps for a method that has
no sign) and maps that rank no pixel are reported as :class:`ExplainWarning` and the work goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from binsight._io import atomic_path
from binsight.data.images import MAX_PIXELS, load_image, read_image
from binsight.explain.base import ExplainerError, Explanation
from binsight.explain.colour_scale import Scale, plain_text, scale_of, shared_scale_note, unit_groups
from binsight.explain.comparison import Panel, Row, save_comparison
from binsight.explain.options import keyword_options
from binsight.explain.overlay import save_overlay, title_lines
from binsight.explain.registry import explainer_class, get_explainer
from binsight.models.checkpoint import checkpoint_paths, load_checkpoint
from binsight.models.factory import ModelSpec, load_model, surrogate_label
from binsight.nn import get_surrogate, sign_report, use_surrogate_foreign

__all__ = ["ExplainWarning", "LoadedModel", "as_target", "explain_files", "explain_models", "load_checkpoint_model",
           "load_input", "load_own_model"]

Degeneracy = Callable[[torch.Tensor], np.ndarray]
"""maps (N, 1, H, W) -> array (N,) of str: why each map ranks no pixel, "" for a usable map."""

class ExplainWarning(UserWarning):
    """An option that does not apply, or a map that ranks no pixel; explaining goes on."""


def _warn(message: str) -> None:
    warnings.warn(message, ExplainWarning, stacklevel=3)


# -- options ------------------------------------------------------------------------------------------


def option_names(method: str) -> list[str]:
    """The keyword options of ``method``'s explainer (:func:`binsight.explain.options.keyword_options`)."""
    return list(keyword_options(explainer_class(method)))


def build_explainer(method: str, model: nn.Module, options: dict[str, Any], *, several: bool = False):
    """``get_explainer(method, model, **options)`` with messages that speak of ``--param`` (and, with
    ``several`` methods, of options for one method only)."""
    try:
        return get_explainer(method, model, **options)
    except ExplainerError as e:
        text = str(e).replace("pass them as keywords to get_explainer", "give them with --param NAME=VALUE")
        if text.startswith("bad parameters"):
            text += f"; {method} takes {', '.join(option_names(method))} (give them with --param NAME=VALUE)"
        if several and ("takes no argument" in text or text.startswith("bad parameters")):
            text += f"; an option of one method only is given as --param {method}.NAME=VALUE"
        raise type(e)(text) from None


# -- the model ----------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model ready to explain and what the overlays say about it.

    meta: ``class_names`` and ``spec`` (``in_channels``, ``input_size``) as in a checkpoint's side file.
    own: a user's model (built from a :class:`ModelSpec`): its binarized activations are switched by
        :func:`binsight.nn.use_surrogate_foreign`.
    """

    model: nn.Module
    meta: dict[str, Any]
    name: str
    precision: str
    own: bool = False
    class_names: list[str] = field(default_factory=list)


def load_checkpoint_model(path: str | Path, device: str) -> LoadedModel:
    """The binsight checkpoint at ``path`` (``X``, ``X.safetensors`` or ``X.json``) on ``device``, named by
    its file's stem, with the precision and class names its side file records."""
    model, meta = load_checkpoint(path, device=device)
    precision = meta.get("precision") or (meta.get("spec") or {}).get("precision") or "fp"
    name = checkpoint_paths(path)[0].stem
    return LoadedModel(model, meta, name, precision, False, list(meta.get("class_names") or []))


def load_own_model(spec: ModelSpec, device: str, *, class_names: Sequence[str] = ()) -> LoadedModel:
    """A user's own model built from ``spec`` (its factory module searched for in the working directory
    first) on ``device``; ``spec.input_size`` (C, H, W) is what it takes; ``class_names`` its classes in the
    order of its outputs (checked against them when it first predicts)."""
    model = load_model(spec, search_path=[os.getcwd()]).to(device)
    channels, height, width = spec.input_size
    meta = {"spec": {"in_channels": channels, "input_size": [height, width]}, "class_names": list(class_names)}
    return LoadedModel(model, meta, spec.display_name(), spec.precision, True, list(class_names))


def input_size_of(path: str | os.PathLike) -> tuple[tuple[int, int, int], str]:
    """((C, H, W) of image file ``path``, a notice saying so): the input size of a user's model that does
    not give one (grayscale images 1 channel, any other 3)."""
    pixels, _ = read_image(path)
    height, width, channels = pixels.shape
    size = (channels, height, width)
    return size, (f"--input-size not given: {','.join(map(str, size))}, the channels and size of {Path(path).name}; "
                  "give --input-size C,H,W if the model takes another")


def surrogate_context(loaded: LoadedModel, surrogate: str | None) -> tuple[str | None, Any]:
    """(the surrogate the explainer switches, a context switching a user's model) for ``--surrogate``;
    a surrogate that does not apply is warned about and dropped."""
    if not surrogate:
        return None, contextlib.nullcontext()
    get_surrogate(surrogate)  # an unknown name is an error whatever the model
    if loaded.precision == "fp":
        _warn(f"--surrogate {surrogate} does not apply: {loaded.name} is a full-precision model (no binarized "
              "activations); ignored")
        return None, contextlib.nullcontext()
    if not loaded.own:
        return surrogate, contextlib.nullcontext()
    report = sign_report(loaded.model)
    if not report.switchable:
        _warn(f"--surrogate {surrogate} does not apply: {loaded.name}'s sign is {report.surrogate or 'not found'}, "
              "which binsight cannot switch; explained with the model's own backward pass")
        return None, contextlib.nullcontext()
    return None, use_surrogate_foreign(loaded.model, surrogate)


def surrogate_shown(loaded: LoadedModel, explanation: Explanation, switched: str | None) -> str | None:
    """The surrogate an overlay names: None for an FP model; for a user's BNN the one ``switched`` on, else
    what its sign uses (:func:`binsight.models.factory.surrogate_label`)."""
    if loaded.precision == "fp":
        return None
    if loaded.own:
        return switched or surrogate_label(loaded.model)
    return explanation.surrogate


# -- images -------------------------------------------------------------------------------------------


def load_input(path: str | Path, channels: int, size: tuple[int, int] | None, *, fit: str = "pad"
               ) -> tuple[torch.Tensor, list[str]]:
    """(float32 (1, channels, H, W) in [0, 1], notices) for image file ``path`` read by
    :func:`binsight.data.images.load_image`: converted to ``channels`` and fitted to ``size`` (None: kept)."""
    pixels, notices = load_image(path, channels=channels, size=size, fit=fit)
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0), notices


def as_target(target: Any) -> int | None:
    """``target`` (None, an int, a numpy integer, a 0-d or one-element integer array or tensor) as int or None."""
    if target is None:
        return None
    if isinstance(target, (bool, np.bool_)):
        raise ExplainerError(f"target must be a class index (an integer), not {target!r}")
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, (np.ndarray, torch.Tensor)) and tuple(target.shape) in ((), (1,)):
        value = target.reshape(()).item()
        if type(value) is int:
            return value
    raise ExplainerError(f"target must be one class index (an integer) for every image, or None; got {target!r}")


def model_input_shape(model: nn.Module, meta: dict[str, Any]) -> tuple[int, tuple[int, int] | None]:
    """(channels, (H, W) or None) the model takes: from its build spec (binsight models, checkpoint side
    file), else the first convolution's channels and the images' own size."""
    spec = {**(meta.get("spec") or {}), **getattr(model, "binsight_spec", {})}
    channels = spec.get("in_channels")
    if channels is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ExplainerError("cannot tell how many image channels the model takes (no in_channels in its meta)")
        channels = first.in_channels
    size = spec.get("input_size")
    if size is None:
        return int(channels), None
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size) or size[0] * size[1] > MAX_PIXELS:
        raise ExplainerError(f"the model's input size {spec.get('input_size')!r} is not (H, W) of at most "
                             f"{MAX_PIXELS:,} pixels; check the checkpoint's side file")
    return int(channels), size


# -- explaining ---------------------------------------------------------------------------------------


@dataclass
class _Map:
    """One computed map of one image, ready to draw."""

    path: Path
    method: str
    pixels: np.ndarray  # (H, W, C) in [0, 1]
    raw: np.ndarray  # float32 (H, W)
    explanation: Explanation
    signed: bool
    degenerate: str
    title: str  # the overlay's title, escaped (plain_text)
    model: str = ""
    precision: str = "fp"
    surrogate: str | None = None  # as the title names it
    predicted: str = ""  # "class 3 (Bag) (p = 0.41)"
    target: str = ""  # "class 8 (Bag)": the class explained


def class_label(index: int, names: Sequence[str]) -> str:
    """``class 3 (Bag)``, or ``class 3`` where the class has no name."""
    return f"class {index}" + (f" ({names[index]})" if 0 <= index < len(names) else "")


def _method_options(methods: Sequence[str], options: dict[str, dict[str, Any]] | None, *, signed: bool,
                    surrogate: str | None, progress: bool = False) -> dict[str, dict[str, Any]]:
    """Each method's keyword options: the user's, then --signed, the surrogate, and a progress bar of its
    own for a method that can show one (NeuroMask's optimisation steps)."""
    result = {m: dict((options or {}).get(m, {})) for m in methods}
    for method, opts in result.items():
        if progress and "show_progress" in option_names(method):
            opts.setdefault("show_progress", True)
        if signed and "signed" not in option_names(method):
            _warn(f"--signed does not apply to {method} (its maps carry no sign); drawn unsigned")
        elif signed:
            opts.setdefault("signed", True)
        if surrogate:
            opts.setdefault("surrogate", surrogate)
    return result


def _predictions(model: nn.Module, inputs: list[torch.Tensor], loaded: LoadedModel) -> list[tuple[int, float]]:
    """(predicted class, its softmax probability) per single-image batch (1, C, H, W); the model's class
    names, where given, must be one per logit."""
    out = []
    with torch.no_grad():
        for x in inputs:
            logits = model(x).float()
            if loaded.class_names and logits.shape[-1] != len(loaded.class_names):
                raise ExplainerError(f"{loaded.name} gives {logits.shape[-1]} class scores and {len(loaded.class_names)} "
                                     "class names are given; give one name per class, in the order of its outputs")
            probs = torch.softmax(logits, dim=1)[0]
            out.append((int(probs.argmax()), float(probs.max())))
    return out


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="explain", unit="map", file=sys.stderr, disable=None if enabled else True,
                leave=False)


def explain_files(
    images: list[str], model: nn.Module, meta: dict[str, Any], method: str | Sequence[str], out_dir: Path,
    target: Any = None, surrogate: str | None = None, device: str = "cpu", *, fit: str = "pad",
    notify: Callable[[str], None] | None = None, options: dict[str, dict[str, Any]] | None = None,
    signed: bool = False, shared_scale: bool = False, degeneracy: Degeneracy | None = None,
    progress: bool = False, loaded: LoadedModel | None = None,
) -> list[tuple[Path, Explanation]]:
    """Explain each image file with each method; write the outputs; return (image path, explanation) pairs,
    method by method.

    ``target``: None (the predicted class) or one class index for every image (an int, numpy integer or
    0-d tensor). ``fit``: how an image of another size meets the model's input (see
    :mod:`binsight.data.images`). ``notify`` receives one line per conversion or resize of an input.
    ``options``: keyword options per method name. ``signed``: ask every method that can for signed maps.
    ``shared_scale``: the maps of one image share one colour scale where their units agree
    (:func:`~binsight.explain.colour_scale.unit_groups`; ``notify`` is told where they do not).
    ``degeneracy`` (e.g. :func:`binsight.metrics.baselines.degeneracy`): maps it finds degenerate are warned
    about and drawn flat. ``progress``: a tqdm bar on stderr (when it is a terminal). ``loaded``: the
    model's name, precision and class names for the titles (default: from ``meta``).
    """
    methods = [method] if isinstance(method, str) else list(method)
    loaded = loaded or LoadedModel(model, meta, str(meta.get("architecture") or "model"),
                                   str(meta.get("precision") or "fp"), False, list(meta.get("class_names") or []))
    paths = image_paths(images)
    maps = model_maps(paths, loaded, methods, target, surrogate, device, fit=fit, notify=notify, options=options,
                      signed=signed, degeneracy=degeneracy, progress=progress)
    _write_all(out_dir, maps, shared_scale=shared_scale, notify=notify)  # all computed before any file is written
    return [(m.path, m.explanation) for m in maps]


def explain_models(
    images: list[str], models: Sequence[LoadedModel], method: str | Sequence[str], out_dir: Path,
    targets: Sequence[int | None] | None = None, surrogate: str | None = None, device: str = "cpu", *,
    fit: str = "pad", notify: Callable[[str], None] | None = None,
    options: dict[str, dict[str, Any]] | None = None, signed: bool = False, shared_scale: bool = False,
    degeneracy: Degeneracy | None = None, progress: bool = False,
) -> list[tuple[Path, str, Explanation]]:
    """Explain each image with each method by each model; write ``NAME.MODEL.METHOD.npy`` (the raw map) per
    map and one figure ``NAME.models.png`` per image (:mod:`binsight.explain.comparison`: rows = models,
    columns = methods, one colour scale per method shared by the models; with ``shared_scale`` also across
    methods of one unit). Return (image path, model name, explanation) triples, model by model.

    ``targets``: one per model (None: its predicted class), as the class names of each model may differ.
    The other arguments are :func:`explain_files`'s.
    """
    methods = [method] if isinstance(method, str) else list(method)
    names = [m.name for m in models]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ExplainerError(f"two models are named {twice[0]!r} (a checkpoint is named by its file); their "
                             "outputs would overwrite each other: copy one under another name")
    paths = image_paths(images)
    targets = list(targets) if targets is not None else [None] * len(models)
    maps = [m for loaded, target in zip(models, targets)
            for m in model_maps(paths, loaded, methods, target, surrogate, device, fit=fit, notify=notify,
                                options=options, signed=signed, degeneracy=degeneracy, progress=progress)]
    scales = _column_scales(maps, methods, shared_scale=shared_scale, notify=notify)
    for path in paths:  # every map computed before any file is written
        for m in (m for m in maps if m.path == path):
            _save_npy(out_dir / f"{path.stem}.{m.model}.{m.method.replace(':', '-')}.npy", m.raw)
        rows = [_comparison_row([m for m in maps if m.path == path and m.model == name]) for name in names]
        with atomic_path(out_dir / f"{path.stem}.models.png") as tmp:
            save_comparison(tmp, path.name, rows, methods, scales[path])
    return [(m.path, m.model, m.explanation) for m in maps]


def _column_scales(maps: list[_Map], methods: list[str], *, shared_scale: bool,
                   notify: Callable[[str], None] | None) -> dict[Path, dict[str, Scale]]:
    """Per image, each method's colour scale over every model's map; with ``shared_scale``, one per unit."""
    groups = [[m] for m in methods]
    if shared_scale:
        groups = unit_groups(methods, {m.method: m.explanation.params for m in maps})
        note = shared_scale_note(groups)
        if note and notify is not None:
            notify(note)
    scales: dict[Path, dict[str, Scale]] = {}
    for path in dict.fromkeys(m.path for m in maps):
        for group in groups:
            scale = common_scale([m for m in maps if m.path == path and m.method in group])
            scales.setdefault(path, {}).update({method: scale for method in group})
    return scales


def _comparison_row(maps: list[_Map]) -> Row:
    """One model's row of the comparison figure: its label (name, precision, surrogates, prediction, class
    explained) and a panel per method."""
    first = maps[0]
    surrogates = "/".join(dict.fromkeys(m.surrogate for m in maps if m.surrogate))
    kind = first.precision.upper() + (f", surrogate {surrogates}" if surrogates else "")
    label = f"{first.model} ({kind})\npredicted {first.predicted}\nexplains {first.target}"
    return Row(label, {m.method: Panel(m.pixels, m.raw, m.degenerate) for m in maps})


def image_paths(images: Sequence[str | os.PathLike]) -> list[Path]:
    """``images`` as paths; refused when two share a name (their outputs would overwrite each other)."""
    paths = [Path(p) for p in images]
    stems = [p.stem for p in paths]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ExplainerError(f"several images share the name {dupes[0]!r}; their outputs would overwrite each other")
    return paths


def model_maps(paths: list[Path], loaded: LoadedModel, methods: list[str], target: Any, surrogate: str | None,
               device: str, *, fit: str, notify: Callable[[str], None] | None,
               options: dict[str, dict[str, Any]] | None, signed: bool, degeneracy: Degeneracy | None,
               progress: bool) -> list[_Map]:
    """Every map of one model (each method, each image; method by method), ready to draw; nothing written.
    The arguments are :func:`explain_files`'s."""
    target = as_target(target)
    model = loaded.model
    channels, size = model_input_shape(model, loaded.meta)
    switched, context = surrogate_context(loaded, surrogate)
    per_method = _method_options(methods, options, signed=signed, surrogate=switched, progress=progress)
    several = len(methods) > 1
    explainers = {m: build_explainer(m, model, per_method[m], several=several) for m in methods}  # options first
    inputs = [x.to(device) for x in _read_inputs(paths, channels, size, fit=fit, notify=notify)]
    model.to(device)
    predictions = _predictions(model, inputs, loaded)
    with context:
        done = _explain_all(explainers, paths, inputs, predictions, target, progress=progress)
    foreign = surrogate if loaded.own and not isinstance(context, contextlib.nullcontext) else None
    return [_prepare(path, name, x, e, getattr(explainers[name], "signed", False), loaded, prediction, foreign,
                     degeneracy) for name, path, x, prediction, e in done]


def _read_inputs(paths: list[Path], channels: int, size: tuple[int, int] | None, *, fit: str,
                 notify: Callable[[str], None] | None) -> list[torch.Tensor]:
    """Every image read and fitted (all before any is explained); their notices passed to ``notify``."""
    loaded = [load_input(p, channels, size, fit=fit) for p in paths]
    for line in (line for _, notices in loaded for line in notices):
        if notify is not None:
            notify(line)
    return [x for x, _ in loaded]


def _explain_all(explainers: dict[str, Any], paths: list[Path], inputs: list[torch.Tensor],
                 predictions: list[tuple[int, float]], target: int | None, *, progress: bool
                 ) -> list[tuple[str, Path, torch.Tensor, tuple[int, float], Explanation]]:
    """(method, path, input, prediction, explanation) for each method and image, method by method. Images
    of one size are explained in one call per method (NeuroMask optimises all their masks at once)."""
    done = []
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(inputs):
        groups.setdefault(tuple(x.shape), []).append(i)
    with _progress(len(explainers) * len(paths), progress) as bar:
        for name, explainer in explainers.items():
            found: dict[int, Explanation] = {}
            for members in groups.values():
                batch = explainer.explain(torch.cat([inputs[i] for i in members]), target)
                found.update({i: _one_image(batch, k, len(members)) for k, i in enumerate(members)})
                bar.update(len(members))
            done += [(name, paths[i], inputs[i], predictions[i], found[i]) for i in range(len(paths))]
    return done


def _one_image(batch: Explanation, k: int, n: int) -> Explanation:
    """Image ``k``'s explanation of a batch of ``n``: maps, targets and the per-image extras (arrays and
    tensors of ``n`` rows) sliced to it; other extras kept whole."""
    def row(value: Any) -> Any:
        per_image = isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim >= 1 and value.shape[0] == n
        return value[k:k + 1] if per_image else value

    return dataclasses.replace(batch, maps=batch.maps[k:k + 1], targets=batch.targets[k:k + 1],
                               extras={key: row(v) for key, v in batch.extras.items()})


def _prepare(path: Path, method: str, x: torch.Tensor, explanation: Explanation, signed: bool,
             loaded: LoadedModel, prediction: tuple[int, float], foreign: str | None,
             degeneracy: Degeneracy | None) -> _Map:
    """One map as drawn: channels reduced to |.| max where a method kept them, degeneracy checked."""
    maps = explanation.maps[:1]
    if maps.shape[1] != 1:  # a method run without channel reduction
        maps = maps.abs().amax(1, keepdim=True)
    raw = maps[0, 0].detach().cpu().numpy().astype(np.float32)
    reason = str(degeneracy(maps.detach().cpu())[0]) if degeneracy is not None else ""
    if reason:
        _warn(f"{path.name}: the {method} map is degenerate ({reason}): it ranks no pixel; drawn flat")
    predicted, probability = prediction
    names = loaded.class_names
    surrogate = surrogate_shown(loaded, explanation, foreign)
    target = class_label(int(explanation.targets[0]), names)
    title = plain_text(title_lines(image=path.name, method=method, model=loaded.name, precision=loaded.precision,
                                   surrogate=surrogate, predicted=class_label(predicted, names),
                                   probability=probability, target=target))
    pixels = x[0].permute(1, 2, 0).detach().cpu().numpy()
    return _Map(path, method, pixels, raw, explanation, bool(signed) or bool(raw.min() < 0), reason, title,
                loaded.name, loaded.precision, surrogate, f"{class_label(predicted, names)} (p = {probability:.2f})",
                target)


def _write_all(out_dir: Path, maps: list[_Map], *, shared_scale: bool,
               notify: Callable[[str], None] | None = None) -> None:
    """Write every map's .npy and overlay; with ``shared_scale`` the maps of one image share one scale where
    their units agree (``notify`` is told where they do not)."""
    scales: dict[tuple[Path, str], Scale] = {}
    if shared_scale:
        groups = unit_groups(list(dict.fromkeys(m.method for m in maps)), {m.method: m.explanation.params for m in maps})
        note = shared_scale_note(groups)
        if note and notify is not None:
            notify(note)
        for path in dict.fromkeys(m.path for m in maps):
            for group in groups:
                members = [m for m in maps if m.path == path and m.method in group]
                scale = common_scale(members)
                scales.update({(m.path, m.method): scale for m in members})
    for m in maps:
        scale = scales.get((m.path, m.method)) or scale_of([m.raw], signed=m.signed)
        write_outputs(out_dir, m, scale)


def common_scale(maps: Sequence[_Map]) -> Scale:
    """One scale for ``maps`` (degenerate ones left out); signed when any of them is."""
    usable = [m.raw for m in maps if not m.degenerate] or [np.zeros(1)]
    return scale_of(usable, signed=any(m.signed for m in maps))


def write_outputs(out_dir: Path, m: _Map, scale: Scale) -> list[Path]:
    """Write ``stem.method.npy`` (raw (H, W) map) and ``stem.method.png`` (overlay); return both paths."""
    tag = m.method.replace(":", "-")
    npy, png = out_dir / f"{m.path.stem}.{tag}.npy", out_dir / f"{m.path.stem}.{tag}.png"
    _save_npy(npy, m.raw)
    with atomic_path(png) as tmp:
        save_overlay(tmp, m.pixels, m.raw, title=m.title, scale=scale, degenerate=m.degenerate)
    return [npy, png]


def _save_npy(path: Path, raw: np.ndarray) -> None:
    """Write ``raw`` to ``path`` (.npy) atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, raw)
