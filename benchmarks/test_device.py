"""Benchmarks of the torch device path (``solve_arrays(..., device="cpu")``) against the compiled core.

The same synthetic frames (``synth.make_scenes``: C = 4 cameras, J = 17 joints, K = 4 mixture
components, monocular guesses and boxes) go through the public call ``mg.solve_arrays`` with
``device=None`` (the compiled core, on one thread: the autouse ``single_thread`` fixture) and with
``device="cpu"`` (stage 1 and the Keras-form Adam refiner batched in float64 torch,
``torch.set_num_threads(1)``), so both times include stage 1, the objective at the start, 100 Adam
steps and the post-processing (camera 0's frame, projection, pixels).

* groups ``"device ir C=4 B=<B>"``, B = 1, 64, 1024: ``method="ir"`` (100 steps), one chunk per call
  (``chunk_size=B``);
* group ``"device s1 C=4 B=1024"``: ``method="s1"``, stage 1 and the objective alone.

Before timing, each test checks that the torch path equals the core on the very frames about to be
timed (every field within 1e-6, the goal of issue 15; ``tests/test_solve_device.py`` holds 2e-9).
``report.py`` gives ms per frame and the ratio to the core in the same session (above 1: slower
than the core). No GPU on this machine: the CUDA device is not measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
torch = pytest.importorskip("torch", reason="the device path needs torch (the train extra)")
from metapose_geom import synth  # noqa: E402

SEED = 20240615
CAMERAS = 4
COMPONENTS = 4
STEPS = 100
SIZES = (1, 64, 1024)
#: the device path against the core on the timed frames, every field (absolute, box units)
TOLERANCE = 1e-6
#: rounds per benchmark: the torch path takes ~0.3 s (B = 1) to several seconds (B = 1024) a call
ROUNDS = {"core": 20, "torch": 3}
FIELDS = ("pose3d", "rotation", "scale", "shift", "reprojection", "objective", "x")


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    """The largest batch's arrays; smaller batches are its first frames."""
    views = [scene.views() for scene in synth.make_scenes(max(SIZES), num_cameras=CAMERAS, seed=SEED,
                                                          num_components=COMPONENTS)]
    return {"mixtures": np.stack([v.mixtures for v in views]), "mono3d": np.stack([v.mono3d for v in views]),
            "boxes": np.stack([v.boxes for v in views])}


@pytest.fixture
def torch_single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _solver(frames: dict[str, np.ndarray], count: int, method: str, device: str | None) -> Callable[[], Any]:
    arrays = {name: array[:count] for name, array in frames.items()}
    options = {"steps": STEPS}

    def solve() -> Any:
        return mg.solve_arrays(arrays["mixtures"], arrays["mono3d"], arrays["boxes"], method, options,
                               progress=False, chunk_size=count, device=device)

    return solve


def _run(benchmark, frames, count: int, method: str, implementation: str) -> None:
    core = _solver(frames, count, method, None)
    device = _solver(frames, count, method, "cpu")
    want, got = core(), device()
    for name in FIELDS:
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=0, atol=TOLERANCE,
                                   err_msg=f"{name}: the torch path against the core, B = {count}")
    benchmark.group = f"device {method} C={CAMERAS} B={count}"
    benchmark.extra_info.update(kind="device", implementation=implementation, frames=count, cameras=CAMERAS,
                                joints=17, components=COMPONENTS, steps=STEPS if method == "ir" else 0,
                                core_threads=mg.get_num_threads(), torch_threads=torch.get_num_threads(),
                                torch_version=torch.__version__)
    timed = core if implementation == "core" else device
    benchmark.pedantic(timed, rounds=ROUNDS[implementation.split(",")[0]], iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("count", SIZES, ids=[f"B{count}" for count in SIZES])
@pytest.mark.parametrize("implementation", ["core", "torch"])
def test_device_ir(benchmark, frames, torch_single_thread, count: int, implementation: str) -> None:
    _run(benchmark, frames, count, "ir", "core" if implementation == "core" else "torch, cpu, 1 thread")


@pytest.mark.parametrize("implementation", ["core", "torch"])
def test_device_s1(benchmark, frames, torch_single_thread, implementation: str) -> None:
    _run(benchmark, frames, max(SIZES), "s1", "core" if implementation == "core" else "torch, cpu, 1 thread")
