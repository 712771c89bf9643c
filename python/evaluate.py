"""The evaluation tables and plots of a dataset file: the same as ``metapose-geom evaluate``.

    python python/evaluate.py data/synthetic_test_4cam.h5 --cameras 2 3 4 --out metapose-evaluation
"""

from __future__ import annotations

import sys

from metapose_geom.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
