"""Train stage 2 from dataset files: the same as ``metapose-geom train``.

    python python/train_stage2.py /work/data/synthetic_train_{2,3,4,5,6}cam.h5 --out runs/stage2
"""

from __future__ import annotations

import sys

from metapose_geom.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
