"""Processes and threads: a fork pool after heatmap fitting, heatmap fitting from several Python
threads, and frames pickled into other processes (spawn pools).

What could crash or hang the interpreter runs in a subprocess with a timeout, so a regression
fails the test instead of killing or stalling the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: seconds a subprocess may take; the work itself takes a few (numba's kernels come from its disk cache)
TIMEOUT = 240


def run_python(code: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; fail (not hang) when it does not end within ``timeout``."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout)
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
