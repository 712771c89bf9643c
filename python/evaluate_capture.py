"""Every method on a real capture's raw detections, scored against its pseudo ground truth: the same
as ``metapose-geom evaluate-capture``.

    python python/evaluate_capture.py ../shared/data/pose2sim_single_person.npz --out docs/capture
"""

from __future__ import annotations

import sys

from metapose_geom.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate-capture", *sys.argv[1:]]))
