"""Processes and threads: a fork pool after heatmap fitting, heatmap fitting from several Python
threads, and frames pickled into other processes (spawn pools).

What could crash or hang the interpreter runs in a subprocess with a timeout, so a regression
fails the test instead of killing or stalling the suite.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

import metapose_geom as mg

#: seconds a subprocess may take; the work itself takes a few (numba's kernels come from its disk cache)
TIMEOUT = 240


def run_python(code: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``code`` as a script in a fresh interpreter (a file: spawned children import its
    functions from it); fail, not hang, when it does not end within ``timeout``."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "script.py"
        script.write_text(textwrap.dedent(code))
        try:
            return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"the subprocess did not end within {timeout} s (a hang): {error.stderr!r}")


def assert_ran(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.stdout.strip().splitlines()[-1] == expected, result.stdout


# Frames of heatmaps every child below fits; the fit of the parent is the reference.
HEATMAPS = """
import numpy as np
import metapose_geom as mg
from metapose_geom import heatmaps

points = np.random.default_rng(0).uniform(0.2, 0.8, (3, 17, 2))
maps = heatmaps.render_heatmaps(points, size=32)

def fit(i):
    return mg.Views.from_heatmaps(maps * (1.0 + i), None).mixtures
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
class TestFork:
    def test_a_fork_pool_after_heatmap_fitting_fits_heatmaps_in_its_children(self):
        """Fork is Linux's default start method; numba's OpenMP layer kills every forked child of a
        process that ran a parallel loop, and Pool.map then waits for ever."""
        result = run_python(HEATMAPS + """
import multiprocessing

if __name__ == "__main__":
    expected = [fit(i) for i in range(4)]  # numba's parallel loops have run in the parent
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map_async(fit, range(4)).get(timeout=60)
    assert all(np.array_equal(a, b) for a, b in zip(children, expected))
    print("fitted", len(children))
""")
        assert_ran(result, "fitted 4")


class TestThreads:
    def test_heatmaps_are_fitted_from_several_python_threads_at_once(self):
        """Whatever numba's threading layer, concurrent fits give the serial results (a layer that
        is not thread-safe aborts the interpreter if two threads enter it at once)."""
        result = run_python(HEATMAPS + """
from concurrent.futures import ThreadPoolExecutor

serial = [fit(i) for i in range(16)]
with ThreadPoolExecutor(4) as pool:
    threaded = list(pool.map(fit, range(16)))
assert all(np.array_equal(a, b) for a, b in zip(serial, threaded))
print("threads ok")
""")
        assert_ran(result, "threads ok")


# --------------------------------------------------------------------------- pickled frames


def _same_solution(a, b) -> None:
    assert a.objective == b.objective and a.diverged == b.diverged
    for name in ("pose3d", "x", "reprojection", "reprojection_pixels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


class TestPickledViews:
    """A Views that went through pickle (a spawn pool, a file, a cache) solves as the original."""

    @pytest.fixture(scope="class")
    def frames(self):
        from metapose_geom import synth

        scenes = synth.make_scenes(3, num_cameras=4, seed=6)
        keypoints = [mg.Views.from_keypoints(s.pose2d, np.ones(s.pose2d.shape[:2]), mono3d=s.mono3d * 1700.0)
                     for s in scenes]
        return [scene.views() for scene in scenes] + keypoints

    @pytest.mark.parametrize("copy", [lambda v: pickle.loads(pickle.dumps(v)), copy.deepcopy, copy.copy],
                             ids=["pickle", "deepcopy", "copy"])
    def test_a_copied_views_solves_as_the_original(self, frames, copy):
        copies = [copy(views) for views in frames]
        for views, again in zip(frames, copies):
            for name in ("mixtures", "mono3d", "boxes", "mono3d_alignment", "swapped"):
                np.testing.assert_array_equal(getattr(again, name), getattr(views, name), err_msg=name)
                assert getattr(again, name) is None or not getattr(again, name).flags.writeable
            assert again.camera_names == views.camera_names and again.skeleton == views.skeleton
            for method in ("s1", "ir"):
                _same_solution(mg.solve(again, method), mg.solve(views, method))
        for part in (slice(0, 3), slice(3, 6)):  # K = 4 (scenes), K = 2 (keypoints with their mirror component)
            for got, want in zip(mg.solve_batch(copies[part], progress=False),
                                 mg.solve_batch(frames[part], progress=False)):
                _same_solution(got, want)

    def test_unpickled_arrays_solve_as_the_originals(self, frames):
        mixtures = np.stack([views.mixtures for views in frames[:3]])
        mono3d = np.stack([views.mono3d for views in frames[:3]])
        again = pickle.loads(pickle.dumps((mixtures, mono3d)))
        for got, want in zip(mg.solve_arrays(*again, progress=False), mg.solve_arrays(mixtures, mono3d, progress=False)):
            _same_solution(got, want)

    def test_frames_solve_in_a_spawn_pool(self):
        result = run_python("""
import multiprocessing
import numpy as np
import metapose_geom as mg
from metapose_geom import synth

def solve(views):
    return mg.solve(views, "ir")

if __name__ == "__main__":
    frames = [scene.views() for scene in synth.make_scenes(4, num_cameras=3, seed=8)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        solutions = pool.map_async(solve, frames).get(timeout=120)
    for got, views in zip(solutions, frames):
        want = mg.solve(views, "ir")
        assert got.objective == want.objective and np.array_equal(got.pose3d, want.pose3d)
    print("spawned", len(solutions))
""")
        assert_ran(result, "spawned 4")
