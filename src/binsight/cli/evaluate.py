"""``binsight evaluate CHECKPOINT``: test accuracy of a checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

from binsight.cli.parser import DEVICE_HELP, add_command


def add_parser(subparsers: Any) -> None:
    e = add_command(subparsers, "evaluate", "test accuracy of a checkpoint")
    e.add_argument("checkpoint", help="checkpoint: X, X.safetensors or X.json (the weights and their side file)")
    e.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    e.add_argument("--data-root", help="explicit path to the dataset's files")
    e.add_argument("--device", default="auto", help=DEVICE_HELP)
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Print a checkpoint's test accuracy."""
    from binsight.train import evaluate_checkpoint

    accuracy, n, meta = evaluate_checkpoint(args.checkpoint, args.dataset, args.data_root, args.device)
    print(f"{meta.get('architecture')} ({meta.get('precision')}) on {meta['dataset']} test ({n} images): "
          f"accuracy {accuracy:.2%}")
