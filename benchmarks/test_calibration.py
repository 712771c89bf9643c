"""Calibration from people (``metapose_geom.calibrate``) beside aniposelib's bundle adjustment on
the same keypoints: a synthetic fixed rig of 4 cameras (``synth.make_rig_sequence``, the drawn
intrinsics, noise, 3% of the views swapped and 5% empty) over 100 and 1000 frames.

* ``metapose-geom``: ``calibrate`` end to end (per-frame solves, rotation averaging, the static
  rig in the core, the perspective start, the bundle adjustment in stages, metric scale and floor);
* ``aniposelib``: ``CameraGroup.bundle_adjust_iter`` (its defaults: focal length and k1 adjusted,
  points resampled) from our perspective start, i.e. the same keypoints and the same start, its
  bundle adjustment alone (no start of its own: it needs one).

Everything on one thread (the core via ``conftest.py``, BLAS, numba, jax). Before timing, each
method's cameras are checked against the truth on the timed inputs (rotation error bound).
``report.py`` gives ms per frame and the ratio to aniposelib's.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
from metapose_geom.evaluation.calibration import anipose_points, compare_cameras  # noqa: E402

SEED = 7
CAMERAS = 4
#: largest camera rotation error (degrees) each method must reach on the timed inputs
BOUND_DEG = {"metapose-geom": 2.0, "aniposelib": 5.0}


@pytest.fixture(scope="module", params=[100, 1000], ids=lambda frames: f"{frames} frames")
def rig(request):
    sequence = mg.synth.make_rig_sequence(SEED, num_cameras=CAMERAS, frames=request.param, swap_rate=0.03,
                                          dropout_rate=0.05)
    return request.param, sequence, sequence.capture()


def _extra(benchmark, implementation: str, frames: int) -> None:
    benchmark.group = f"fixed rig, {frames} frames, C={CAMERAS}"
    benchmark.extra_info.update(kind="calibration", implementation=implementation, frames=frames, cameras=CAMERAS)


def _accuracy(benchmark, errors) -> None:
    benchmark.extra_info.update(rotation_error_max_deg=float(errors.rotation_deg.max()),
                                focal_error_max_percent=float(abs(errors.focal_percent).max()),
                                centre_error_max_mm=float(errors.centre.max()))


def test_metapose_geom(benchmark, rig) -> None:
    frames, sequence, capture = rig
    _extra(benchmark, "metapose-geom", frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        calibration = mg.calibrate(capture, subject_height=1.7, progress=False)
    errors = compare_cameras(calibration.cameras, sequence.cameras)
    assert errors.rotation_deg.max() < BOUND_DEG["metapose-geom"], errors
    _accuracy(benchmark, errors)
    benchmark.pedantic(mg.calibrate, args=(capture,), kwargs=dict(subject_height=1.7, progress=False),
                       rounds=3 if frames <= 100 else 1, iterations=1)


def test_aniposelib(benchmark, rig) -> None:
    pytest.importorskip("aniposelib", reason="the anipose extra is not installed")
    from metapose_geom.anipose import anipose_solve

    frames, sequence, capture = rig
    _extra(benchmark, "aniposelib", frames)
    start = mg.rig.fit_rig(capture, progress=False).start
    points = anipose_points(capture)
    result = anipose_solve(points, start, seed=SEED)
    errors = compare_cameras(result.cameras, sequence.cameras)
    assert errors.rotation_deg.max() < BOUND_DEG["aniposelib"], errors
    _accuracy(benchmark, errors)
    benchmark.pedantic(anipose_solve, args=(points, start), kwargs=dict(seed=SEED), rounds=1, iterations=1)
