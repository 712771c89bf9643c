"""Stage-2 training throughput on one process and under torchrun (DistributedDataParallel).

Trains the default model shape (spec ``256,256,ccat,256,256,ccat,256``, pose head 256, 128) for
one stage of ``--epochs`` epochs of ``--examples`` examples (global batch 256) on a synthetic
four-camera set, three ways, one after the other:

* ``1 process, 1 thread``: ``metapose-geom train ... --threads 1``;
* ``1 process, 2 threads``: ``--threads 2``;
* ``2 processes x 1 thread``: ``python -m torch.distributed.run --standalone --nproc_per_node=2
  -m metapose_geom.cli train ... --threads 1`` (gloo on loopback).

Examples per second is ``--examples`` over an epoch's ``seconds`` in log.csv (its training and the
validation of ``--val-frames`` held-out frames), the median over epochs; the wall time includes
start-up (imports, data loading, the first stage's standardisation). The load average (``uptime``)
is printed before and after each run: on a shared machine the absolute figures move with it.

Usage::

    python python/bench_ddp_training.py --out /tmp/ddp-bench [--frames 2000] [--examples 2048] [--epochs 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the data and the runs")
    parser.add_argument("--frames", type=int, default=2000, help="training frames (default 2000)")
    parser.add_argument("--examples", type=int, default=2048, help="examples per epoch (default 2048)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (default 2)")
    parser.add_argument("--val-frames", type=int, default=200, help="held-out frames (default 200)")
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args()
    out = Path(args.out)
    data = out / "data" / "synthetic_train_4cam.h5"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "metapose_geom.cli", "make-dataset", "--out", str(data.parent),
                        "--train-frames", str(args.frames), "--test-frames", "0", "--cameras", "4", "--no-progress"],
                       check=True)
    common = [str(data), "--epochs", str(args.epochs), "--examples-per-epoch", str(args.examples), "--stages", "1",
              "--batch-size", "256", "--val-frames", str(args.val_frames), "--cameras", "2", "4", "--no-progress",
              "--no-resume"]
    train = [sys.executable, "-m", "metapose_geom.cli", "train"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "metapose_geom.cli", "train"]
    runs = [("1 process, 1 thread", train, "1"), ("1 process, 2 threads", train, "2"),
            ("2 processes x 1 thread", torchrun, "1")]
    results = []
    for label, launcher, threads in runs:
        folder = out / label.replace(" ", "_").replace(",", "")
        before = uptime()
        started = time.perf_counter()
        subprocess.run([*launcher, *common, "--out", str(folder), "--threads", threads], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": threads})
        wall = time.perf_counter() - started
        after = uptime()
        with open(folder / "log.csv") as handle:
            seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
        rate = args.examples / statistics.median(seconds)
        results.append({"run": label, "examples_per_second": rate, "epoch_seconds": seconds, "wall_seconds": wall,
                        "uptime_before": before, "uptime_after": after})
        print(f"{label}: {rate:,.0f} examples/s (epochs {', '.join(f'{s:.1f}' for s in seconds)} s; wall "
              f"{wall:.1f} s)\n  before: {before}\n  after:  {after}", flush=True)
    base = results[0]["examples_per_second"]
    print("\n| run | examples / s | vs 1 process, 1 thread | wall s |\n|---|---:|---:|---:|")
    for result in results:
        print(f"| {result['run']} | {result['examples_per_second']:,.0f} | "
              f"{result['examples_per_second'] / base:.2f}x | {result['wall_seconds']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
