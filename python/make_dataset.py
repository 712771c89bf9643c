"""Build the synthetic HDF5 train and test sets (resumable): the same as ``metapose-geom make-dataset``.

    python python/make_dataset.py --out data --train-frames 4000 --test-frames 1000 --cameras 2 3 4
"""

from __future__ import annotations

import sys

from metapose_geom.cli import main

if __name__ == "__main__":
    sys.exit(main(["make-dataset", *sys.argv[1:]]))
