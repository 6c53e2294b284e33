"""Train the default architecture in both precisions on Fashion-MNIST; print accuracy and time vs targets.

Targets: test accuracy FP >= 92.0 % and BNN >= 89.0 %, trained in at most 1.5 min (FP) and 2 min (BNN)
on 2 CPU cores, so that the default study's 3 seeds per precision train in well under 18 min. Each
precision uses its recipe (binsight.train.RECIPES) unless --epochs is given. The table gives wall time and
the process's CPU time (which another job on a shared machine inflates less), and the load average
before and after, so that a run on a busy machine can be told apart. The trained models are saved in the
model cache under the key ``cached_model`` uses, so the study reuses them.

    nice .venv/bin/python benchmarks/bench_train.py            # both precisions, seed 0, full data
    nice .venv/bin/python benchmarks/bench_train.py --seeds 0 1 2
    .venv/bin/python benchmarks/bench_train.py --precision bnn --epochs 2 --no-save
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from binsight._io import cache_dir
from binsight.train import RECIPES, TrainConfig, cache_key, checkpoint_meta, save_checkpoint, train

TARGET_ACCURACY = {"fp": 0.920, "bnn": 0.890}
TARGET_SECONDS = {"fp": 90.0, "bnn": 120.0}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small-cnn")
    p.add_argument("--precision", nargs="+", default=["fp", "bnn"], choices=["fp", "bnn"])
    p.add_argument("--epochs", type=int, default=None, help="default: each precision's recipe")
    p.add_argument("--lr", type=float, default=None, help="default: each precision's recipe")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the targets are for 2 cores)")
    p.add_argument("--no-save", action="store_true", help="do not put the trained models in the cache")
    return p.parse_args()


def run_one(args: argparse.Namespace, precision: str, seed: int) -> dict:
    """Train one model; return its row of the table."""
    config = TrainConfig(model=args.model, precision=precision, epochs=args.epochs, lr=args.lr, seed=seed,
                         device="cpu")
    load, cpu = os.getloadavg()[0], time.process_time()
    model, result = train(config)
    if not args.no_save:
        save_checkpoint(model, cache_dir("models") / cache_key(config), checkpoint_meta(result))
    row = {"precision": precision, "seed": seed, "epochs": result.config["epochs"],
           "batch": result.config["batch_size"],
           "lr": result.config["lr"], "accuracy": result.test_accuracy, "wall": result.train_seconds,
           "cpu": time.process_time() - cpu, "load": (load, os.getloadavg()[0])}
    print(f"{precision} seed {seed}: {row['accuracy']:.2%} in {row['wall']:.0f} s (process CPU {row['cpu']:.0f} s, "
          f"load {row['load'][0]:.1f} -> {row['load'][1]:.1f})", flush=True)
    return row


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    rows = [run_one(args, precision, seed) for precision in args.precision for seed in args.seeds]
    print(f"\n{args.model} on Fashion-MNIST (60,000 train / 10,000 test), {args.threads} torch threads, "
          f"nice {os.nice(0)}, {time.strftime('%Y-%m-%d %H:%M')}")
    for precision in args.precision:
        print(f"recipe {precision}: {RECIPES[precision]}")
    print(f"{'precision':<10}{'seed':>5}{'epochs':>7}{'batch':>6}{'lr':>7}{'test acc':>10}{'target':>8}"
          f"{'wall':>8}{'cpu':>8}{'target':>8}{'load':>12}  verdict")
    for r in rows:
        p = r["precision"]
        acc_ok, time_ok = r["accuracy"] >= TARGET_ACCURACY[p], r["wall"] <= TARGET_SECONDS[p]
        verdict = "PASS" if acc_ok and time_ok else ("FAIL accuracy" if not acc_ok else "FAIL time")
        print(f"{p:<10}{r['seed']:>5}{r['epochs']:>7}{r['batch']:>6}{r['lr']:>7.3g}{r['accuracy']:>10.2%}{TARGET_ACCURACY[p]:>8.1%}"
              f"{r['wall']:>7.0f}s{r['cpu']:>7.0f}s{TARGET_SECONDS[p]:>7.0f}s{r['load'][0]:>6.1f}->{r['load'][1]:<5.1f}"
              f"  {verdict}")
    total = sum(r["wall"] for r in rows)
    print(f"total training wall time {total / 60:.1f} min for {len(rows)} models")


if __name__ == "__main__":
    main()
