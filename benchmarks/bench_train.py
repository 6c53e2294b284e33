"""Train the default architecture in both precisions on Fashion-MNIST; print accuracy and time vs targets.

Targets (issue 3): test accuracy FP >= 92.0 % and BNN >= 89.0 %, each trained in under 15 minutes on
2 CPU cores. Each precision uses its recipe (binsight.train.RECIPES) unless --epochs is given. The trained
models are saved in the model cache under the same key ``cached_model`` uses, so the study reuses them.

    nice .venv/bin/python benchmarks/bench_train.py            # both precisions, full data
    .venv/bin/python benchmarks/bench_train.py --precision bnn --epochs 2 --no-save
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from binsight._io import cache_dir
from binsight.train import TrainConfig, cache_key, checkpoint_meta, save_checkpoint, train

TARGET_ACCURACY = {"fp": 0.920, "bnn": 0.890}
TIME_LIMIT_S = 15 * 60


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small-cnn")
    p.add_argument("--precision", nargs="+", default=["fp", "bnn"], choices=["fp", "bnn"])
    p.add_argument("--epochs", type=int, default=None, help="default: each precision's recipe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is for 2 cores)")
    p.add_argument("--no-save", action="store_true", help="do not put the trained models in the cache")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    for precision in args.precision:
        config = TrainConfig(model=args.model, precision=precision, epochs=args.epochs, seed=args.seed)
        model, result = train(config)
        if not args.no_save:
            save_checkpoint(model, cache_dir("models") / cache_key(config), checkpoint_meta(result))
        rows.append((precision, result))
        print(f"{precision}: {result.test_accuracy:.2%} in {result.train_seconds:.0f} s", flush=True)
    print(f"\n{args.model} on Fashion-MNIST (60,000 train / 10,000 test), {args.threads} torch threads, "
          f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'precision':<10}{'epochs':>7}{'test acc':>10}{'target':>9}{'train time':>12}{'limit':>8}  verdict")
    for precision, r in rows:
        ok = r.test_accuracy >= TARGET_ACCURACY[precision] and r.train_seconds < TIME_LIMIT_S
        print(f"{precision:<10}{r.config['epochs']:>7}{r.test_accuracy:>10.2%}{TARGET_ACCURACY[precision]:>9.1%}"
              f"{r.train_seconds / 60:>10.1f} m{TIME_LIMIT_S / 60:>6.0f} m  {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
