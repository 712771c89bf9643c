"""Memory caps and threads: the compiled core raises or carries on, it never aborts the interpreter.

A node with an address-space cap (``ulimit -v`` on SLURM and SGE) can refuse a thread its stack
or a thread its scratch. Before issue 13's fixes, such a refusal inside the core's parallel-for
ended the process (``terminate called``, exit 134): threads that could not be started left the
running ones joinable while the stack unwound, and a ``std::bad_alloc`` thrown on a worker thread
had nowhere to go. Now a thread that cannot be started is done without (the others take its
share), and an exception on any thread is raised on the calling one once all have stopped: a
``MemoryError`` that says what it was for. ``mixture_log_likelihood`` sums a large K a tile of
components at a time, so its scratch no longer grows with K (it took about 80 times the mixtures'
own size per call).

The capped cases run in a subprocess (an abort would take pytest with it, and the cap must not
bind pytest). The child builds its inputs, then caps its own address space at its current size
plus a headroom the case chooses, so that the cap binds the same way whatever the imports take on
the machine. Its thread stacks have a chosen size (RLIMIT_STACK, set before it starts, sizes them
in glibc): 64 MB where threads are to be refused (16 stacks, 1 GB, cannot fit; a few do, beside
room for the rest of the call), 8 MB where they are to start.
Linux only (``/proc/self/status``). Under AddressSanitizer (``.ci/sanitize`` preloads libasan,
which reserves terabytes of shadow memory) an address-space cap cannot work, so the capped cases
skip there, and only there.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from metapose_geom import geometry

import reference as ref
from conftest import SEED, assert_close, random_mixtures

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
capped = pytest.mark.skipif(
    UNDER_ASAN, reason="AddressSanitizer (LD_PRELOAD libasan) reserves terabytes: an address-space cap cannot work"
)

MB = 2**20

# The child's first lines: imports, and cap(headroom_mb) to cap its address space.
PRELUDE = '''
import resource

import numpy as np

import metapose_geom as mg
from metapose_geom import _core, geometry


def cap(headroom_mb):
    """Cap the address space at its current size plus headroom_mb."""
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (size + int(headroom_mb * 2**20), hard))


def fits(nbytes):
    """Whether nbytes of address space can still be had (the array is freed at once)."""
    try:
        np.empty(int(nbytes), np.uint8)
    except MemoryError:
        return False
    return True
'''


def run_capped(code: str, stack: int) -> list[str]:
    """Runs PRELUDE + code in a fresh interpreter whose threads get `stack` bytes of stack; it must
    exit 0. Returns its output lines.

    The stack limit is set by the shell that execs the interpreter, not by a preexec_fn: with one,
    subprocess runs the parent's at-fork hooks, and JAX's (imported by other tests) warns, which
    this suite's settings make an error."""
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    kilobytes = (stack if hard == resource.RLIM_INFINITY else min(stack, hard)) // 1024
    shell = f'ulimit -S -s {kilobytes} && exec "$0" -c "$1"'
    result = subprocess.run(
        ["/bin/sh", "-c", shell, sys.executable, PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"the child exited with {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout.splitlines()


@capped
class TestThreadsThatCannotStart:
    """16 threads asked for, room for the stacks of a few: the call runs on the threads it gets and
    gives the one-thread answer (before: exit 134, a thread refused while others ran)."""

    def test_rot6d_to_matrix(self):
        lines = run_capped(f"""
            rot6d = np.random.default_rng({SEED}).normal(size=(400_000, 6))
            mg.set_num_threads(1)
            expected = geometry.rot6d_to_matrix(rot6d)
            mg.set_num_threads(16)
            cap(expected.nbytes / 2**20 + 200)  # the output, and 64 MB stacks for three workers
            print("room for 16 stacks:", fits(16 * {64 * MB}))
            got = geometry.rot6d_to_matrix(rot6d)
            same = (np.array_equal(got[i : i + 1000], expected[i : i + 1000]) for i in range(0, len(got), 1000))
            print("equal:", all(same))  # in slices: no full-size temporary under the cap
        """, stack=64 * MB)
        assert lines == ["room for 16 stacks: False", "equal: True"]

    def test_solve_batch(self):
        lines = run_capped(f"""
            from metapose_geom import synth

            frames = [scene.views() for scene in synth.make_scenes(64, num_cameras=4, seed={SEED})]
            expected = mg.solve_batch(frames, progress=False, threads=1)
            mg.set_num_threads(16)
            cap(400)  # the rest of the call (< 100 MB), and 64 MB stacks for a few workers
            print("room for 16 stacks:", fits(16 * {64 * MB}))
            solutions = mg.solve_batch(frames, progress=False)
            print("equal:", all(np.array_equal(a.x, b.x) for a, b in zip(solutions, expected)))
        """, stack=64 * MB)
        assert lines == ["room for 16 stacks: False", "equal: True"]


@capped
class TestAllocationFailureOnAThread:
    """Each thread's refine scratch (a lane of prepared mixtures per frame of its widest group) does
    not fit under the cap: MemoryError naming it, on one thread as on two (before: MemoryError on
    one, exit 134 on two)."""

    @pytest.mark.parametrize("threads", [1, 2])
    def test_refine_scratch(self, threads):
        lines = run_capped(f"""
            rng = np.random.default_rng({SEED})
            B, C, J, K = 2, 2, 17, 40_000
            mixtures = np.empty((B, C, J, K, 4))
            mixtures[..., 0] = 1.0 / K
            mixtures[..., 1:3] = rng.uniform(0.3, 0.7, (B, C, J, K, 2))
            mixtures[..., 3] = 0.01
            x0 = np.zeros((B, 3 * J + 10 * C))
            x0[:, : 3 * J] = rng.normal(0, 0.1, 3 * J)
            x0[:, 3 * J : 3 * J + 6 * C : 6] = 1.0  # rot6d rows (1, 0, 0), (0, 1, 0)
            x0[:, 3 * J + 4 : 3 * J + 6 * C : 6] = 1.0
            bones = np.array([[0, 1]], dtype=np.int64)
            reference = np.ones((B, 1))
            mg.set_num_threads({threads})
            # the prepared mixtures (padded to 20 joints: 1.18 times the mixtures) and the outputs, not
            # beside them one lane of one frame's
            cap(1.2 * mixtures.nbytes / 2**20 + 16)
            print("room for one scratch:", fits(1.17 * mixtures.nbytes * (1 + 1 / B)))
            try:
                _core.refine(mixtures, x0, bones, reference, 0.0, 1, 1e-2, 0.9, 0.999, 1e-7, 0)
                print("no error")
            except MemoryError as error:
                print("MemoryError:", error)
        """, stack=8 * MB)  # a worker starts (before: it was joinable when the calling thread threw)
        assert lines[0] == "room for one scratch: False"
        expected = "MemoryError: not enough memory for refine's scratch of one thread at C = 2, J = 17, K = 40000: "
        assert lines[1].startswith(expected), lines[1]
        assert "set_num_threads" in lines[1]


@capped
def test_refine_one_frame_needs_one_lane_of_scratch():
    """One frame alone is refined in one lane: its thread's scratch holds one copy of the prepared
    mixtures, not the four a full lane group needs (before: MemoryError under this cap)."""
    lines = run_capped(f"""
        rng = np.random.default_rng({SEED})
        C, J, K = 2, 17, 20_000
        mixtures = np.empty((1, C, J, K, 4))
        mixtures[..., 0] = 1.0 / K
        mixtures[..., 1:3] = rng.uniform(0.3, 0.7, (1, C, J, K, 2))
        mixtures[..., 3] = 0.01
        x0 = np.zeros((1, 3 * J + 10 * C))
        x0[:, : 3 * J] = rng.normal(0, 0.1, 3 * J)
        x0[:, 3 * J : 3 * J + 6 * C : 6] = 1.0
        x0[:, 3 * J + 4 : 3 * J + 6 * C : 6] = 1.0
        bones = np.array([[0, 1]], dtype=np.int64)
        # the prepared mixtures (padded to 20 joints) twice, with room to spare; four lanes need 5 times
        cap(2.5 * mixtures.nbytes / 2**20 + 16)
        print("room for four lanes:", fits(4 * 1.25 * mixtures.nbytes))
        x, objective, _, _ = _core.refine(mixtures, x0, bones, np.ones((1, 1)), 0.0, 2, 1e-2, 0.9, 0.999, 1e-7, 0)
        print("finite:", bool(np.isfinite(x).all() and np.isfinite(objective).all()))
    """, stack=8 * MB)
    assert lines == ["room for four lanes: False", "finite: True"]


class TestMixtureMemory:
    """mixture_log_likelihood with a large K: the tiles give the reference's values and gradients,
    and the scratch stays small whatever K is."""

    @pytest.mark.parametrize("components", [7, 64, 65, 200, 1000])
    @pytest.mark.parametrize("batch", [(5,), (2, 3)])
    def test_values_and_gradients_against_reference(self, rng, batch, components):
        points = rng.normal(0.5, 0.3, size=batch + (2,))
        mixtures = random_mixtures(rng, batch, components)
        value, gradient = geometry.mixture_log_likelihood_with_gradient(points, mixtures)
        want_value, want_gradient = ref.mixture_log_likelihood_with_gradient(points, mixtures)
        assert_close(value, want_value)
        assert_close(gradient, want_gradient)
        assert_close(geometry.mixture_log_likelihood(points, mixtures), want_value)

    def test_a_first_tile_beyond_reach(self, rng):
        """The first 64 components so far away that their exponents are -inf, the rest near: the
        sums of the first tile are dropped, not NaN."""
        points = rng.normal(0.5, 0.3, size=(3, 2))
        mixtures = random_mixtures(rng, (3,), 200)
        mixtures[:, :64, 1] = 1e200
        value, gradient = geometry.mixture_log_likelihood_with_gradient(points, mixtures)
        with np.errstate(over="ignore"):  # the reference's squared distances of 1e400 are inf, as meant
            want_value, want_gradient = ref.mixture_log_likelihood_with_gradient(points, mixtures)
        assert np.isfinite(want_value).all() and np.isfinite(want_gradient).all()
        assert_close(value, want_value)
        assert_close(gradient, want_gradient)

    @capped
    def test_large_k_in_a_small_headroom(self):
        """K = 200,000 (25.6 MB of mixtures for 4 points) with 16 MB to spare (before: MemoryError,
        the scratch was 64 points x 5 K values per thread, 512 MB)."""
        lines = run_capped(f"""
            rng = np.random.default_rng({SEED})
            K = 200_000
            points = rng.normal(0.5, 0.3, (4, 2))
            mixtures = np.stack([rng.uniform(0.05, 1.0, (4, K)), rng.normal(0.5, 0.3, (4, K)),
                                 rng.normal(0.5, 0.3, (4, K)), rng.uniform(0.002, 0.05, (4, K))], axis=-1)
            # a plain log-sum-exp, before the cap
            terms = (np.log(mixtures[..., 0] + 1e-8) - np.log(2 * np.pi * mixtures[..., 3])
                     - ((points[:, None] - mixtures[..., 1:3]) ** 2).sum(-1) / (2 * mixtures[..., 3]))
            peak = terms.max(-1)
            expected = peak + np.log(np.exp(terms - peak[:, None]).sum(-1))
            del terms
            cap(16)
            print("room for the old scratch:", fits(64 * 5 * K * 8))
            value = geometry.mixture_log_likelihood(points, mixtures)
            with_gradient, gradient = geometry.mixture_log_likelihood_with_gradient(points, mixtures)
            print("close:", np.allclose(value, expected, rtol=1e-12, atol=0), np.array_equal(value, with_gradient))
            print("finite:", bool(np.isfinite(gradient).all()))
        """, stack=8 * MB)
        assert lines == ["room for the old scratch: False", "close: True True", "finite: True"]
