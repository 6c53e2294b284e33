"""The ``binsight`` command line.

Each subcommand only parses its arguments here and calls one library function; the work lives in the
library so that everything the command line does can also be done from Python.

Errors: a :class:`~binsight.errors.BinsightError` (bad input, a file that cannot be read, a setting that
cannot work) is printed as one line, ``binsight COMMAND: error: MESSAGE``, with exit status 2. Any other
exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import sys

from binsight import __version__
from binsight.errors import BinsightError


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

    explain_command(args)


def _cmd_study(args: argparse.Namespace) -> None:
    from binsight.report import build_report
    from binsight.study.command import study_command

    out = study_command(args)
    if out is not None:
        print(f"report: {build_report(out)}")


def _cmd_report(args: argparse.Namespace) -> None:
    from binsight.report import build_report

    path = build_report(args.dir)
    print(f"report: {path}")


def _choices() -> dict[str, str]:
    """The names each registry holds, for the help texts."""
    from binsight import data, explain, models, nn

    methods = explain.available() + [f"{family}:ClassName" for family in explain.families()]
    return {"datasets": ", ".join(data.available()), "models": ", ".join(models.available()),
            "surrogates": ", ".join(nn.surrogates()), "methods": ", ".join(methods)}


def build_parser() -> argparse.ArgumentParser:
    names = _choices()
    p = argparse.ArgumentParser(
        prog="binsight",
        description="Explain full-precision and binarized image classifiers, and measure how far the explanations can be trusted.",
    )
    p.add_argument("--version", action="version", version=f"binsight {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("data", help="where a dataset comes from, its size, classes and checksum")
    d.add_argument("name", help=names["datasets"])
    d.add_argument("--root", help="explicit path to the dataset's files (or the image folder)")
    d.add_argument("--no-download", action="store_true", help="never download; fail if not found locally")
    d.set_defaults(func=_cmd_data)

    t = sub.add_parser("train", help="train a model (fp or bnn) and save a checkpoint")
    t.add_argument("--model", default="small-cnn", help=names["models"])
    t.add_argument("--precision", choices=["fp", "bnn"], default="fp")
    t.add_argument("--dataset", default="fashion-mnist")
    t.add_argument("--data-root", help="explicit path to the dataset's files")
    t.add_argument("--epochs", type=int, default=None, help="default: the precision's own recipe")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=None, help="default: the precision's own recipe")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--surrogate", default="ste", help=f"sign surrogate for a bnn: {names['surrogates']}")
    t.add_argument("--train-subset", type=int, default=None, help="train on this many images (deterministic by seed)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--out", help="checkpoint path (.safetensors); default: the cache, keyed by configuration")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="test accuracy of a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    e.add_argument("--data-root")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=_cmd_evaluate)

    x = sub.add_parser("explain", help="saliency maps for image files: a PNG overlay and the raw .npy per image")
    x.add_argument("images", nargs="+", help="image files (png, jpg)")
    x.add_argument("--model", required=True, help="checkpoint (.safetensors with its .json side file)")
    x.add_argument("--method", default="gradient", help=names["methods"])
    x.add_argument("--target", type=int, default=None, help="class to explain; default: the predicted class")
    x.add_argument("--surrogate", default=None, help=f"sign surrogate for explaining a bnn: {names['surrogates']}")
    x.add_argument("--out", default="explanations", help="output folder")
    x.add_argument("--device", default="cpu")
    x.set_defaults(func=_cmd_explain)

    s = sub.add_parser("study", help="the FP-vs-BNN explanation study, end to end, with an HTML report")
    s.add_argument("config", nargs="?", help="TOML configuration; default: the embedded default study")
    s.add_argument("--out", default=None, help="output folder (resumable)")
    s.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    s.set_defaults(func=_cmd_study)

    r = sub.add_parser("report", help="rebuild report.html of a finished or partial study run")
    r.add_argument("dir")
    r.set_defaults(func=_cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
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
