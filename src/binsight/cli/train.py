"""``binsight train``: train a model (fp or bnn) and save a checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

from binsight.cli.parser import DEVICE_HELP, add_command


def add_parser(subparsers: Any) -> None:
    t = add_command(subparsers, "train", "train a model (fp or bnn) and save a checkpoint")
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
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    # train.train_command still reads the Namespace itself (train.py is another helper's: see the
    # coordination notes); it is to become a plain-argument function whose result this command prints
    from binsight.train import train_command

    train_command(args)
