"""``binsight explain IMAGE... (--model CKPT... | --factory MOD:FN ...) --method NAME``: overlays and raw maps.

The flags become plain arguments of :func:`binsight.explain.files.explain_files` (one model) or
:func:`~binsight.explain.files.explain_models` (several: one figure per image): ``--param`` items the
methods' keyword options (:func:`parse_params`), ``--target`` a class index per model
(:func:`resolve_target`), ``--factory`` and its flags a :class:`~binsight.models.factory.ModelSpec`
(:func:`own_model_options`, :func:`own_model_spec`). Paths and flags are checked before torch is imported
(:func:`check_paths`). Notices are printed as ``note: ...`` on stderr, each written file as one line on
stdout."""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from binsight.cli.parser import DEVICE_HELP, ArgumentError, add_command

FITS = ("pad", "crop", "stretch", "refuse")
"""``--fit`` choices: :data:`binsight.data.images.FITS`, spelled here so that building the parser imports no
torch (``tests/test_cli.py`` checks that both agree)."""

MAX_JSON_DEPTH = 32
"""How deep lists and objects may nest in a JSON value of ``--param`` or ``--kwargs``."""
_TOO_DEEP = object()

OWN_MODEL_FLAGS = ("kwargs", "weights", "precision", "gradcam_layer", "mean", "std", "normalize", "input_size",
                   "classes")
"""The options that describe a user's own model; they apply only with ``--factory``."""


def add_parser(subparsers: Any) -> None:
    x = add_command(subparsers, "explain",
                    "saliency maps for image files: a PNG overlay and the raw .npy per image and method; with "
                    "several models, one figure per image of every model's maps")
    x.add_argument("images", nargs="+", help="image files (png, jpg, tiff, bmp, gif, webp)")
    x.add_argument("--model", action="append", default=None,
                   help="checkpoint: X, X.safetensors or X.json (weights and side file); repeat it (and add "
                        "--factory) to draw several models' maps of each image in one figure, IMAGE.models.png")
    x.add_argument("--method", action="append", default=None,
                   help="method (repeat for several; default: gradient): <<methods>>")
    x.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a method option, e.g. n_samples=50, sliding_window_shapes=[1,3,3]; METHOD.NAME=VALUE for "
                        "one method only; values: int, float, true/false, none, JSON list or object, else text")
    x.add_argument("--target", default=None,
                   help="class to explain: an index, or a class name the model records (a checkpoint's, or "
                        "--classes); default: each model's predicted class")
    x.add_argument("--surrogate", default=None, help="sign surrogate for explaining a bnn: <<surrogates>>")
    x.add_argument("--signed", action="store_true", help="signed maps (methods that can), drawn diverging around 0")
    x.add_argument("--shared-scale", action="store_true",
                   help="one colour scale for the maps of one image by methods of one unit (input gradients: "
                        "gradient, smoothgrad, captum:Saliency; NeuroMask's masks); other methods keep their own")
    x.add_argument("--fit", choices=FITS, default="pad",
                   help="how an image of another size meets the model's: pad (keep the aspect ratio, black "
                        "borders), crop (centre), stretch, or refuse")
    x.add_argument("--out", default="explanations", help="output folder")
    x.add_argument("--device", default="auto", help=DEVICE_HELP)
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    own = x.add_argument_group("your own model (instead of or beside --model; see docs/own-models.md)")
    own.add_argument("--factory", help="MODULE:FUNCTION returning the nn.Module (the working directory is searched first)")
    own.add_argument("--kwargs", help="the factory's keyword arguments as JSON, e.g. '{\"width\": 16}'")
    own.add_argument("--weights", help=".safetensors or state_dict file; default: the weights as built")
    own.add_argument("--precision", choices=["fp", "bnn"], help="default: fp")
    own.add_argument("--gradcam-layer", help="module name for GradCAM, as in model.named_modules()")
    own.add_argument("--mean", help="per-channel mean the model expects, comma-separated (with --std)")
    own.add_argument("--std", help="per-channel std the model expects, comma-separated (with --mean)")
    own.add_argument("--normalize", choices=["inside"], help="inside: the model takes [0, 1] pixels as they are")
    own.add_argument("--input-size", help="C,H,W of the images the model takes, e.g. 1,28,28; default: the first "
                                          "image's channels and size")
    own.add_argument("--classes", help="the model's class names, comma-separated in the order of its outputs, e.g. "
                                       "cat,dog (then --target may name one)")
    x.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Load the model, explain every image with every method, print notices (``note: ...`` on stderr) and
    where the outputs went (stdout)."""
    check_paths(args)
    own = own_model_options(args) if args.factory else None  # read before torch is imported
    methods = list(dict.fromkeys(args.method or ["gradient"]))
    options = parse_params(args.param or [], methods)
    from binsight.distributed import resolve_device  # torch from here on
    from binsight.explain.files import class_label, explain_files, explain_models
    from binsight.metrics.baselines import degeneracy

    device = resolve_device(args.device or "auto")
    models = load_models_of(args, own, device)
    targets = [resolve_target(args.target, m.class_names) for m in models]
    out_dir = Path(args.out)
    common = dict(fit=args.fit, options=options, signed=args.signed, shared_scale=args.shared_scale,
                  degeneracy=degeneracy, progress=not args.quiet, notify=lambda line: print(f"note: {line}", file=sys.stderr))
    if len(models) > 1:
        done = explain_models(args.images, models, methods, out_dir, targets, args.surrogate, device, **common)
        for path in dict.fromkeys(p for p, _, _ in done):
            print(f"{path}: {len(models)} models x {len(methods)} methods -> {out_dir / f'{path.stem}.models.png'} "
                  f"(+ {path.stem}.MODEL.METHOD.npy)")
        return
    loaded = models[0]
    results = explain_files(args.images, loaded.model, loaded.meta, methods, out_dir, targets[0], args.surrogate,
                            device, loaded=loaded, **common)
    for path, explanation in results:
        label = class_label(int(explanation.targets[0]), loaded.class_names)
        extra = f", surrogate {explanation.surrogate}" if explanation.surrogate else ""
        tag = explanation.method.replace(":", "-")
        print(f"{path}: {explanation.method}: {label}{extra} -> {out_dir / f'{path.stem}.{tag}.png'} (+ .npy)")


# -- paths, checked before torch is imported -----------------------------------------------------------


def check_paths(args: argparse.Namespace) -> None:
    """The models named as :func:`check_models` says, every file the flags name there and ``--out`` not a
    file: checked before torch is imported, so that a mistyped path is reported at once."""
    check_models(args)
    for image in args.images:
        if not Path(image).is_file():
            raise _error(f"image not found: {image}")
    for model in args.model or []:
        if not checkpoint_weights(model).is_file():
            raise _error(f"checkpoint {checkpoint_weights(model)} not found; give the .safetensors file (or its "
                         "name without the suffix) of a checkpoint saved by binsight")
    stems = [checkpoint_weights(model).stem for model in args.model or []]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise _error(f"two checkpoints are named {twice[0]!r} (a checkpoint is named by its file); their outputs "
                     "would overwrite each other: copy one under another name")
    if args.weights and not Path(args.weights).is_file():
        raise _error(f"weights file {args.weights} not found; give the path of a .safetensors or state_dict file")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise _error(f"--out {args.out} is a file; give a folder (it is created if it does not exist)")


def checkpoint_weights(path: str) -> Path:
    """The weights file of checkpoint ``path`` (``X``, ``X.safetensors`` or ``X.json``): the rule of
    :func:`binsight.models.checkpoint.checkpoint_paths`, spelled here so that a missing checkpoint is found
    before torch is imported (``tests/cli/test_explain_command.py`` checks that both agree)."""
    given = Path(path)
    if given.suffix == ".safetensors":
        return given
    if given.suffix == ".json":
        return given.with_suffix(".safetensors")
    return given.with_name(given.name + ".safetensors")


# -- the model ----------------------------------------------------------------------------------------


def _error(message: str) -> Exception:
    """An :class:`~binsight.cli.parser.ArgumentError` with ``message`` (a flag that cannot be used as given;
    raised before torch is imported)."""
    return ArgumentError(message)


def load_models_of(args: argparse.Namespace, own: dict[str, Any] | None, device: str) -> list:
    """The :class:`~binsight.explain.files.LoadedModel` of each ``--model CHECKPOINT``, then the one
    ``--factory`` names with its flags ``own`` (:func:`own_model_options`), on ``device``."""
    from binsight.explain.files import load_checkpoint_model, load_own_model

    models = [load_checkpoint_model(path, device) for path in args.model or []]
    if own is not None:
        models.append(load_own_model(own_model_spec(args, own), device, class_names=own["classes"]))
    return models


def check_models(args: argparse.Namespace) -> None:
    """A model named (``--model``, repeatable, and / or ``--factory``); own-model flags only with ``--factory``."""
    given = [f for f in OWN_MODEL_FLAGS if getattr(args, f) is not None]
    if not args.model and not args.factory:
        raise _error("no model given: use --model CHECKPOINT (a binsight checkpoint) or --factory "
                     "MODULE:FUNCTION with its flags for your own model (see docs/own-models.md)")
    if given and not args.factory:
        flag = "--" + given[0].replace("_", "-")
        raise _error(f"{flag} describes your own model and applies only with --factory; a checkpoint records its own")


def own_model_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--factory``'s flags read and checked before torch is imported: ``kwargs``, ``mean``, ``std``,
    ``input_size`` (None when not given) and ``classes``."""
    return {"kwargs": json_value(args.kwargs, "--kwargs", "'{\"width\": 16}'") if args.kwargs else {},
            "mean": _floats(args.mean, "--mean"), "std": _floats(args.std, "--std"),
            "input_size": _input_size(args.input_size), "classes": _names(args.classes)}


def own_model_spec(args: argparse.Namespace, own: dict[str, Any]):
    """The :class:`~binsight.models.factory.ModelSpec` that ``--factory`` and its flags (``own``:
    :func:`own_model_options`) describe; without ``--input-size``, the first image's channels and size
    (:func:`binsight.explain.files.input_size_of`, printed as a ``note:``)."""
    from binsight.explain.files import input_size_of
    from binsight.models.factory import ModelSpec

    size = own["input_size"]
    if size is None:
        size, note = input_size_of(args.images[0])
        print(f"note: {note}", file=sys.stderr)
    return ModelSpec(factory=args.factory, kwargs=own["kwargs"], weights=args.weights or "",
                     precision=args.precision or "fp", gradcam_layer=args.gradcam_layer or "",
                     mean=own["mean"], std=own["std"], normalize=args.normalize or "", input_size=size)


def _names(text: str | None) -> list[str]:
    """``--classes``: the class names, comma-separated ([] when not given)."""
    if text is None:
        return []
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise _error(f"--classes {text!r} holds an empty name; give the names comma-separated, e.g. cat,dog")
    return names


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise _error(f"{flag} {text!r} must be comma-separated numbers, e.g. 0.2860 or 0.485,0.456,0.406") from None


def _input_size(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        size = tuple(int(v) for v in text.split(","))
    except ValueError:
        size = ()
    if len(size) != 3:
        raise _error(f"--input-size {text!r} must be C,H,W (three integers), e.g. 1,28,28")
    return size


# -- options and targets ------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A ``--param`` value: ``true``/``false``, ``none``, an int, a float, a JSON list (as a tuple, nested
    lists too) or object, else the string as given."""
    word = text.strip()
    if word.lower() in ("true", "false"):
        return word.lower() == "true"
    if word.lower() in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(word)
        except ValueError:
            pass
    if word.startswith(("[", "{")):
        return _tuples(json_value(word, "--param value", "[1,3,3] for a list, {\"key\": 1} for an object"))
    return text


def json_value(text: str, flag: str, example: str) -> Any:
    """``text`` read as JSON nested at most :data:`MAX_JSON_DEPTH` deep; a one-line error naming ``flag``
    and giving ``example`` otherwise."""
    shown = repr(text) if len(text) <= 60 else repr(text[:40]) + f" ({len(text):,} characters)"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise _error(f"{flag} {shown} is not valid JSON ({e.msg}); e.g. {example}") from None
    except RecursionError:
        value = _TOO_DEEP
    if value is _TOO_DEEP or _json_depth(value) > MAX_JSON_DEPTH:
        raise _error(f"{flag} {shown} is JSON nested more than {MAX_JSON_DEPTH} levels deep; give a flat value, "
                     f"e.g. {example}")
    return value


def _json_depth(value: Any) -> int:
    """How deep lists and objects nest in ``value`` (0 for a number or a string), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:
            children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def parse_params(items: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--param`` items ``KEY=VALUE`` (every method) or ``METHOD.KEY=VALUE`` (that method only) -> the
    keyword options of each method in ``methods``; values by :func:`parse_value`."""
    options: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for item in items:
        key, eq, text = item.partition("=")
        method, dot, name = key.strip().rpartition(".")
        if not eq or not name.isidentifier():
            raise _error(f"--param {item!r} is not NAME=VALUE (or METHOD.NAME=VALUE); e.g. --param n_samples=50")
        if dot and method not in options:
            raise _error(f"--param {item!r} names method {method!r}, which is not among --method "
                                 f"{', '.join(methods)}")
        for m in [method] if dot else methods:
            if name in options[m]:
                raise _error(f"--param {name} is given twice for {m}; give it once")
            options[m][name] = parse_value(text)
    return options


def resolve_target(text: str | None, class_names: Sequence[str]) -> int | None:
    """``--target``: None, a class index, or a class name known to the checkpoint (case-insensitive)."""
    if text is None:
        return None
    word = str(text).strip()
    if re.fullmatch(r"-?\d+", word):
        return int(word)
    if not class_names:
        raise _error(f"--target {word!r} is not a class index, and the model records no class names; "
                             "give the class index (0, 1, ...)")
    lower = [n.lower() for n in class_names]
    if word.lower() in lower:
        return lower.index(word.lower())
    close = difflib.get_close_matches(word.lower(), lower, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(class_names[lower.index(c)] for c in close)}?)" if close else ""
    raise _error(f"--target {word!r} is not a class of this model{hint}; its classes are "
                         f"{', '.join(class_names)}, or give an index")
