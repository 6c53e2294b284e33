"""``binsight data NAME``: where a dataset comes from, its size, classes and checksum; with ``--export DIR``,
its first images as PNG files for ``binsight explain``."""

from __future__ import annotations

import argparse
from typing import Any

from binsight.cli.parser import add_command


def add_parser(subparsers: Any) -> None:
    d = add_command(subparsers, "data", "where a dataset comes from, its size, classes and checksum; "
                                        "--export writes images as PNG files")
    d.add_argument("name", help="a dataset: <<datasets>>")
    d.add_argument("--root", help="explicit path to the dataset's files (or the image folder)")
    d.add_argument("--no-download", action="store_true", help="never download; fail if not found locally")
    d.add_argument("--export", metavar="DIR",
                   help="write the split's first --n images into DIR as INDEX-CLASS.png (e.g. 00000-Ankle_boot.png)")
    d.add_argument("--n", type=int, default=10, help="how many images --export writes")
    d.add_argument("--split", default="test", help="the split --export reads")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from binsight.data import describe, load_dataset

    if args.export is None:
        print(describe(args.name, root=args.root, download=not args.no_download))
        return
    from binsight.data.export import export_pngs

    dataset = load_dataset(args.name, split=args.split, root=args.root, download=not args.no_download)
    written = export_pngs(dataset, args.export, args.n)
    print(f"{len(written)} images of {dataset.name} ({dataset.split}) -> {args.export}: "
          f"{written[0].name} ... {written[-1].name}" if written else f"no images in {dataset.name} ({dataset.split})")
