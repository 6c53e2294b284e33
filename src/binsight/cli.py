"""The ``binsight`` command line.

Each subcommand only parses its arguments here and calls one library function; the work lives in the
library so that everything the command line does can also be done from Python.

Errors: a :class:`~binsight.errors.BinsightError` (bad input, a file that cannot be read, a setting that
cannot work) is printed as one line, ``binsight COMMAND: error: MESSAGE``, with exit status 2. Any other
exception is a bug and propagates with its traceback. Warnings raised by binsight's own modules (an
option that does not apply, a degenerate map, a corrupt stored unit) are printed as one line,
``warning: MESSAGE``; other libraries' warnings keep Python's format.

Help: every option's default is shown, and the names the registries hold (datasets, models, methods,
surrogates) are listed. Those names are looked up only when a help text is printed, so that commands
that do not need torch (``binsight report --help``) do not import it to build the parser.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import warnings
from typing import Any, Iterator

from binsight import __version__
from binsight.errors import BinsightError

FITS = ("pad", "crop", "stretch", "refuse")
"""``explain --fit`` choices (the fits of :mod:`binsight.data.images`)."""
DEVICE_HELP = "auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or cuda:N"


def _cmd_data(args: argparse.Namespace) -> None:
    from binsight.data import describe

    print(describe(args.name, root=args.root, download=not args.no_download))


def _cmd_train(args: argparse.Namespace) -> None:
    from binsight.train import train_command

    train_command(args)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from binsight.train import evaluate_command

    evaluate_command(args)


def _cmd_explain(args: argparse.Namespace) -> None:
    from binsight.explain.command import explain_command
    from binsight.metrics.baselines import degeneracy

    explain_command(args, degeneracy=degeneracy)


def _report(out: Any, *, quiet: bool) -> None:
    from binsight.report import build_report, tqdm_progress

    bar = tqdm_progress(file=sys.stderr, disable=True if quiet else None, leave=False)
    print(f"report: {build_report(out, progress=bar)}")


def _cmd_study(args: argparse.Namespace) -> None:
    from binsight.study.command import study_command

    out = study_command(args)
    if out is not None:
        _report(out, quiet=args.quiet)


def _cmd_report(args: argparse.Namespace) -> None:
    _report(args.dir, quiet=args.quiet)


# -- help ---------------------------------------------------------------------------------------------

_LAZY = re.compile(r"<<(\w+)>>")


def registry_names(kind: str) -> str:
    """The names a registry holds, comma-separated: ``datasets``, ``models``, ``surrogates``, ``methods``."""
    if kind == "datasets":
        from binsight import data

        return ", ".join(data.available())
    if kind == "models":
        from binsight import models

        return ", ".join(models.available())
    if kind == "surrogates":
        from binsight import nn

        return ", ".join(nn.surrogates())
    if kind == "methods":
        from binsight import explain

        return ", ".join(explain.available() + [f"{family}:ClassName" for family in explain.families()])
    raise KeyError(kind)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (not None or False ones) and fills ``<<kind>>`` with
    :func:`registry_names` when, and only when, help is printed."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == [] or default == argparse.SUPPRESS or "default:" in text:
            return text
        return super()._get_help_string(action)

    def _expand_help(self, action: argparse.Action) -> str:
        return _LAZY.sub(lambda m: registry_names(m.group(1)), super()._expand_help(action))


def _sub(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)


def _add_data(sub: Any) -> None:
    d = _sub(sub, "data", "where a dataset comes from, its size, classes and checksum")
    d.add_argument("name", help="a dataset: <<datasets>>")
    d.add_argument("--root", help="explicit path to the dataset's files (or the image folder)")
    d.add_argument("--no-download", action="store_true", help="never download; fail if not found locally")
    d.set_defaults(func=_cmd_data)


def _add_train(sub: Any) -> None:
    t = _sub(sub, "train", "train a model (fp or bnn) and save a checkpoint")
    t.add_argument("--model", default="small-cnn", help="architecture: <<models>>")
    t.add_argument("--precision", choices=["fp", "bnn"], default="fp", help="full precision or binarized")
    t.add_argument("--dataset", default="fashion-mnist", help="<<datasets>>")
    t.add_argument("--data-root", help="explicit path to the dataset's files")
    t.add_argument("--epochs", type=int, default=None, help="default: the precision's own recipe")
    t.add_argument("--batch-size", type=int, default=None, help="default: the precision's own recipe")
    t.add_argument("--lr", type=float, default=None, help="default: the precision's own recipe")
    t.add_argument("--seed", type=int, default=0, help="seed (FP and BNN of one seed share no initialisation)")
    t.add_argument("--surrogate", default="ste", help="sign surrogate for a bnn: <<surrogates>>")
    t.add_argument("--train-subset", type=int, default=None,
                   help="train on this many images (deterministic by seed); default: all")
    t.add_argument("--test-subset", type=int, default=None, help="test on this many images; default: all")
    t.add_argument("--device", default="auto", help=DEVICE_HELP)
    t.add_argument("--out", help="checkpoint path (.safetensors); default: the cache, keyed by configuration")
    t.set_defaults(func=_cmd_train)


def _add_evaluate(sub: Any) -> None:
    e = _sub(sub, "evaluate", "test accuracy of a checkpoint")
    e.add_argument("checkpoint", help="checkpoint: X, X.safetensors or X.json (the weights and their side file)")
    e.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    e.add_argument("--data-root", help="explicit path to the dataset's files")
    e.add_argument("--device", default="auto", help=DEVICE_HELP)
    e.set_defaults(func=_cmd_evaluate)


def _add_explain(sub: Any) -> None:
    x = _sub(sub, "explain", "saliency maps for image files: a PNG overlay and the raw .npy per image and method")
    x.add_argument("images", nargs="+", help="image files (png, jpg, tiff, bmp, gif, webp)")
    x.add_argument("--model", help="checkpoint: X, X.safetensors or X.json (weights and side file)")
    x.add_argument("--method", action="append", default=None,
                   help="method (repeat for several; default: gradient): <<methods>>")
    x.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a method option, e.g. n_samples=50, sliding_window_shapes=[1,3,3]; METHOD.NAME=VALUE for "
                        "one method only; values: int, float, true/false, none, JSON list or object, else text")
    x.add_argument("--target", default=None,
                   help="class to explain: an index or a class name of the checkpoint; default: the predicted class")
    x.add_argument("--surrogate", default=None, help="sign surrogate for explaining a bnn: <<surrogates>>")
    x.add_argument("--signed", action="store_true", help="signed maps (methods that can), drawn diverging around 0")
    x.add_argument("--shared-scale", action="store_true", help="one colour scale for all maps of one image")
    x.add_argument("--fit", choices=FITS, default="pad",
                   help="how an image of another size meets the model's: pad (keep the aspect ratio, black "
                        "borders), crop (centre), stretch, or refuse")
    x.add_argument("--out", default="explanations", help="output folder")
    x.add_argument("--device", default="auto", help=DEVICE_HELP)
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    own = x.add_argument_group("your own model (instead of --model; see docs/own-models.md)")
    own.add_argument("--factory", help="MODULE:FUNCTION returning the nn.Module (the working directory is searched first)")
    own.add_argument("--kwargs", help="the factory's keyword arguments as JSON, e.g. '{\"width\": 16}'")
    own.add_argument("--weights", help=".safetensors or state_dict file; default: the weights as built")
    own.add_argument("--precision", choices=["fp", "bnn"], help="default: fp")
    own.add_argument("--gradcam-layer", help="module name for GradCAM, as in model.named_modules()")
    own.add_argument("--mean", help="per-channel mean the model expects, comma-separated (with --std)")
    own.add_argument("--std", help="per-channel std the model expects, comma-separated (with --mean)")
    own.add_argument("--normalize", choices=["inside"], help="inside: the model takes [0, 1] pixels as they are")
    own.add_argument("--input-size", help="C,H,W of the images the model takes, e.g. 1,28,28")
    x.set_defaults(func=_cmd_explain)


def _add_study(sub: Any) -> None:
    s = _sub(sub, "study", "the FP-vs-BNN explanation study, end to end, with an HTML report")
    s.add_argument("config", nargs="?", help="TOML configuration; default: the embedded default study")
    s.add_argument("--out", default=None, help="output folder (resumable); default: runs/study-HASH")
    s.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    s.add_argument("--quiet", action="store_true", help="no progress bar for the report")
    s.set_defaults(func=_cmd_study)


def _add_report(sub: Any) -> None:
    r = _sub(sub, "report", "rebuild report.html of a finished or partial study run")
    r.add_argument("dir", help="the run folder")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_report)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="binsight", formatter_class=HelpFormatter,
        description="Explain full-precision and binarized image classifiers, and measure how far the explanations can be trusted.",
    )
    p.add_argument("--version", action="version", version=f"binsight {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_data, _add_train, _add_evaluate, _add_explain, _add_study, _add_report):
        add(sub)
    return p


# -- running ------------------------------------------------------------------------------------------


def _show_warning(message, category, filename, lineno, file=None, line=None, *, _default=warnings.showwarning):
    """binsight's own warnings as ``warning: MESSAGE`` on stderr; others in Python's format."""
    if getattr(category, "__module__", "").split(".")[0] == "binsight":
        print(f"warning: {_one_line(str(message))}", file=file or sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def _binsight_warnings() -> Iterator[None]:
    """Inside: binsight's warnings printed by :func:`_show_warning`, each one every time it is raised;
    the warning filters and ``showwarning`` are restored on exit."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.filterwarnings("always", module=r"binsight(\.|$)")
        yield


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with _binsight_warnings():
            args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BinsightError as e:
        print(f"binsight {args.command}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    return 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
