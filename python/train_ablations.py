"""Train the stage-2 ablations of the evaluation table, each by the short ablation recipe.

    python python/train_ablations.py data --out runs/ablations [--threads 1] [--only fwd flat-2cam]

``data`` holds ``synthetic_train_{2..6}cam.h5`` (``metapose-geom make-dataset --out data
--train-frames 30000 --test-frames 0 --cameras 2 3 4 5 6``). Every ablation trains one stage for
``ABLATION_EPOCHS`` epochs of ``ABLATION_EXAMPLES`` examples (a third of the default recipe, so the
six runs take about as long as it does) into ``OUT/NAME/``, and its weights are copied to
``OUT/NAME.safetensors`` (+ ``.json``), where ``metapose-geom evaluate --stage2-ablations OUT``
reads them:

=============  ==============================================================================
fwd            the default losses and inputs (reprojection MSE against the 2D labels): the
               baseline the others compare with at the same budget
objective      self-supervised: the IR objective of the output, no labels; selected on the
               held-out objective
teacher        student of IR: pose, log-scale, shift and rotation against IR's solution from
               the same start, no labels; selected on the held-out objective
bones          the reference bone lengths as an input, and the bone-length term beside the
               reprojection loss (weight 0.001: the two terms about equal at the start)
flat-{C}cam    the non-equivariant flat MLP for C = 2, 3, 4 cameras (one model per count,
               trained on C-camera subsets of the files with C or more cameras)
=============  ==============================================================================

A finished ablation is not trained again (its weights file exists); an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from metapose_geom.cli import main as cli

ABLATION_EPOCHS = 8
ABLATION_EXAMPLES = 50_000
CAMERA_COUNTS = (2, 3, 4, 5, 6)

ABLATIONS: dict[str, list[str]] = {
    "fwd": [],
    "objective": ["--loss", "objective=1", "--select", "objective"],
    "teacher": ["--loss", "teacher=1", "--select", "objective"],
    "bones": ["--bone-input", "--loss", "fwd=1", "bone=0.001"],
    **{f"flat-{C}cam": ["--kind", "flat", "--num-cameras", str(C), "--spec", "512,512,512", "--cameras", str(C), str(C)]
       for C in (2, 3, 4)},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder of synthetic_train_{C}cam.h5")
    parser.add_argument("--out", required=True, help="folder for the ablations' weights")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=list(ABLATIONS), default=list(ABLATIONS), metavar="NAME",
                        help=f"ablations to train, from {' '.join(ABLATIONS)} (default: all)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    for name in args.only:
        target = out / f"{name}.safetensors"
        if target.exists():
            print(f"{name}: {target} exists, skipped")
            continue
        least = int(ABLATIONS[name][ABLATIONS[name].index("--num-cameras") + 1]) if "--num-cameras" in ABLATIONS[name] else 2
        files = [str(Path(args.data) / f"synthetic_train_{C}cam.h5") for C in CAMERA_COUNTS if C >= least]
        run = out / name
        code = cli(["train", *files, "--out", str(run), "--epochs", str(ABLATION_EPOCHS), "--examples-per-epoch",
                    str(ABLATION_EXAMPLES), "--stages", "1", "--threads", str(args.threads), "--seed", str(args.seed),
                    "--no-progress", *ABLATIONS[name]])
        if code != 0:
            return code
        for suffix in (".json", ".safetensors"):  # the .safetensors last: its presence marks a finished run
            shutil.copyfile(run / f"stage2{suffix}", out / f"{name}{suffix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
