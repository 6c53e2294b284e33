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
    t.add_argument("--image-size", type=int, default=None,
                   help="image-folder: side of the square images in pixels; default: the reader's")
    t.add_argument("--channels", type=int, default=None, help="image-folder: 1 (grey) or 3 (RGB); default: the reader's")
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
    """Train (or reuse from the cache), save the checkpoint, print accuracy and path. Under torchrun with
    several processes: joins the process group and trains with DistributedDataParallel; rank 0 prints."""
    from binsight import distributed
    from binsight.train import TrainConfig, train_checkpoint

    config = TrainConfig(
        model=args.model, precision=args.precision, dataset=args.dataset, data_root=args.data_root,
        image_size=args.image_size, channels=args.channels,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, surrogate=args.surrogate,
        train_subset=args.train_subset, test_subset=args.test_subset, device=args.device,
    )
    with distributed.session(config.device):
        meta = train_checkpoint(config, args.out)
        if distributed.rank() == 0:
            ranks = f" on {meta['world_size']} processes" if meta.get("world_size", 1) > 1 else ""
            note = "found in the cache" if meta["from_cache"] else f"trained in {meta['train_seconds']:.0f} s{ranks}"
            print(f"{config.model} ({config.precision}) on {config.dataset}: test accuracy "
                  f"{meta['test_accuracy']:.2%} ({note})")
            print(f"checkpoint: {meta['checkpoint']}")
