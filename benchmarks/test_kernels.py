"""Benchmarks of the compiled geometry kernels against plain vectorised numpy.

Every kernel is timed twice per size, once through ``metapose_geom`` (one core thread) and once
through its numpy reference, in benchmark groups named ``"<kernel> n=<items>"`` so the ratio reads
off the pytest-benchmark table (and ``report.py`` turns the JSON into a Markdown table). Before
anything is timed, each test asserts that the compiled kernel and the numpy reference agree on the
very inputs about to be timed. A second family, ``"threads: <kernel> n=1e5"``, times the core on
1 and 2 threads.

What one *item* is, per kernel: a rotation (rotations), a pose seen by C=4 cameras with J=17 joints
(weak projection), a point (perspective projection, undistortion: 10 points per camera), a point
with a K=4 mixture (mixtures), a pair of J=17 poses (Procrustes and metrics).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
from metapose_geom import geometry, metrics  # noqa: E402

SEED = 20240601
CAMERAS = 4
JOINTS = 17
COMPONENTS = 4
POINTS_PER_CAMERA = 10

SIZES = {"1e3": 1_000, "1e5": 100_000}
# project_weak_with_jacobian returns 2,312 doubles per pose (18.5 kB): 1e5 poses would be 1.85 GB per
# call, twice over while the previous round's result is alive. Its large size is 1e4 poses.
JACOBIAN_SIZES = {"1e3": 1_000, "1e4": 10_000}
THREAD_SIZE = ("1e5", 100_000)


# --------------------------------------------------------------------------- inputs


def random_rotations(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3, 3) rotations, uniform on SO(3) (from normalised Gaussian quaternions)."""
    q = rng.normal(size=(count, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    ).reshape(count, 3, 3)


def random_rotvecs(rng: np.random.Generator, count: int) -> np.ndarray:
    axis = rng.normal(size=(count, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return axis * rng.uniform(0.0, np.pi, size=(count, 1))


def random_poses_mm(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, J, 3) human-sized point sets in mm (spread ~300 mm around a random centre)."""
    return rng.normal(scale=300.0, size=(count, JOINTS, 3)) + rng.normal(scale=1000.0, size=(count, 1, 3))


def inputs_rot6d(rng: np.random.Generator, n: int) -> tuple:
    return (rng.normal(size=(n, 6)),)


def inputs_rotation(rng: np.random.Generator, n: int) -> tuple:
    return (random_rotations(rng, n),)


def inputs_rotvec(rng: np.random.Generator, n: int) -> tuple:
    return (random_rotvecs(rng, n),)


def inputs_weak(rng: np.random.Generator, n: int) -> tuple:
    pose = rng.normal(scale=0.25, size=(n, JOINTS, 3))
    rotation = random_rotations(rng, n * CAMERAS).reshape(n, CAMERAS, 3, 3)
    scale = rng.uniform(0.5, 2.0, size=(n, CAMERAS))
    shift = rng.normal(size=(n, CAMERAS, 3))
    return pose, rotation, scale, shift


def _cameras_and_points(rng: np.random.Generator, n: int) -> tuple:
    """n points, POINTS_PER_CAMERA per camera, 1-7 m in front of H36M-like distorted cameras."""
    if n % POINTS_PER_CAMERA:
        raise ValueError(f"n={n} is not a multiple of {POINTS_PER_CAMERA}")
    batch = n // POINTS_PER_CAMERA
    rotation = random_rotations(rng, batch)
    translation = rng.normal(scale=2.0, size=(batch, 3))
    depth = rng.uniform(1.0, 7.0, size=(batch, POINTS_PER_CAMERA, 1))
    in_camera = np.concatenate([rng.uniform(-0.45, 0.45, size=(batch, POINTS_PER_CAMERA, 2)), np.ones_like(depth)], -1)
    in_camera *= depth
    points = np.einsum("bji,bnj->bni", rotation, in_camera - translation[:, None, :])  # R^T (X_c - t)
    intrinsics = np.stack(
        [rng.uniform(1100, 1160, batch), rng.uniform(1100, 1160, batch), rng.uniform(480, 520, batch), rng.uniform(480, 520, batch)],
        axis=-1,
    )
    distortion = np.array([-0.2, 0.2, -1e-3, 1e-3, -0.01]) * rng.uniform(0.5, 1.5, size=(batch, 5))
    return points, rotation, translation, intrinsics, distortion


def inputs_perspective(rng: np.random.Generator, n: int) -> tuple:
    return _cameras_and_points(rng, n)


def inputs_undistort(rng: np.random.Generator, n: int) -> tuple:
    points, rotation, translation, intrinsics, distortion = _cameras_and_points(rng, n)
    in_camera = np.einsum("bij,bnj->bni", rotation, points) + translation[:, None, :]
    x, y = in_camera[..., 0] / in_camera[..., 2], in_camera[..., 1] / in_camera[..., 2]
    k1, k2, p1, p2, k3 = (distortion[:, i, None] for i in range(5))
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    pixels = np.stack([intrinsics[:, 0, None] * xd + intrinsics[:, 2, None], intrinsics[:, 1, None] * yd + intrinsics[:, 3, None]], -1)
    return pixels, intrinsics, distortion


def inputs_mixture(rng: np.random.Generator, n: int) -> tuple:
    """Points in box units, mixtures fitted around them (some components far off, as heatmaps give)."""
    points = rng.uniform(0.0, 1.0, size=(n, 2))
    weight = rng.uniform(0.0, 1.0, size=(n, COMPONENTS))
    weight /= weight.sum(axis=-1, keepdims=True)
    mean = points[:, None, :] + rng.normal(scale=0.05, size=(n, COMPONENTS, 2))
    mean[:, -1] = rng.uniform(0.0, 1.0, size=(n, 2))  # one component anywhere in the box
    variance = rng.uniform(1e-4, 4e-3, size=(n, COMPONENTS))
    return points, np.concatenate([weight[..., None], mean, variance[..., None]], axis=-1)


def inputs_pose_pairs_similar(rng: np.random.Generator, n: int) -> tuple:
    """(prediction, ground truth) in mm: gt is a similarity of the prediction plus 40 mm noise."""
    ground_truth = random_poses_mm(rng, n)
    rotation = random_rotations(rng, n)
    scale = rng.uniform(0.5, 2.0, size=(n, 1, 1))
    prediction = scale * (ground_truth + rng.normal(scale=40.0, size=ground_truth.shape)) @ rotation
    prediction += rng.normal(scale=500.0, size=(n, 1, 3))
    return prediction, ground_truth


def inputs_pose_pairs_camera(rng: np.random.Generator, n: int) -> tuple:
    """(prediction, ground truth) in mm in one camera frame: prediction = scaled noisy gt (PCK ~ 0.5-0.9)."""
    ground_truth = random_poses_mm(rng, n) + np.array([0.0, 0.0, 4000.0])
    scale = rng.uniform(0.5, 2.0, size=(n, 1, 1))
    prediction = scale * (ground_truth + rng.normal(scale=60.0, size=ground_truth.shape))
    return prediction, ground_truth


# --------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class Kernel:
    name: str
    core: Callable
    make_inputs: Callable[[np.random.Generator, int], tuple]
    sizes: dict[str, int] = field(default_factory=lambda: dict(SIZES))
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: agreement required before timing: rtol, and atol relative to max(1, max |numpy output|)
    rtol: float = 1e-9
    atol: float = 1e-10


KERNELS = {
    k.name: k
    for k in [
        Kernel("rot6d_to_matrix", geometry.rot6d_to_matrix, inputs_rot6d),
        Kernel("rot6d_to_matrix_with_jacobian", geometry.rot6d_to_matrix_with_jacobian, inputs_rot6d),
        Kernel("matrix_to_rot6d", geometry.matrix_to_rot6d, inputs_rotation),
        Kernel("rodrigues_to_matrix", geometry.rodrigues_to_matrix, inputs_rotvec),
        Kernel("matrix_to_rodrigues", geometry.matrix_to_rodrigues, inputs_rotation, atol=1e-9),
        Kernel("project_weak", geometry.project_weak, inputs_weak),
        Kernel("project_weak_with_jacobian", geometry.project_weak_with_jacobian, inputs_weak, sizes=dict(JACOBIAN_SIZES)),
        Kernel("project_perspective", geometry.project_perspective, inputs_perspective),
        Kernel("undistort_points", geometry.undistort_points, inputs_undistort, atol=1e-12),
        Kernel("mixture_log_likelihood", geometry.mixture_log_likelihood, inputs_mixture),
        Kernel("mixture_log_likelihood_with_gradient", geometry.mixture_log_likelihood_with_gradient, inputs_mixture),
        Kernel("procrustes", geometry.procrustes, inputs_pose_pairs_similar, kwargs={"scale": "umeyama"}, atol=1e-9),
        Kernel("pmpjpe", metrics.pmpjpe, inputs_pose_pairs_similar, kwargs={"scale": "norm_ratio"}),
        Kernel("nmpjpe", metrics.nmpjpe, inputs_pose_pairs_camera, kwargs={"mirror_fix": False}),
        Kernel("pck", metrics.pck, inputs_pose_pairs_camera, kwargs={"threshold": 150.0}),
    ]
}

THREAD_KERNELS = (
    "rot6d_to_matrix",
    "project_weak",
    "undistort_points",
    "mixture_log_likelihood_with_gradient",
    "procrustes",
    "pmpjpe",
)


def make_inputs(kernel: Kernel, items: int) -> tuple:
    """The same inputs for the core and the numpy run of one (kernel, size)."""
    rng = np.random.default_rng([SEED, items, sorted(KERNELS).index(kernel.name)])
    return kernel.make_inputs(rng, items)


def as_arrays(output: Any) -> tuple[np.ndarray, ...]:
    """One array, or a tuple/NamedTuple of arrays -> tuple of arrays."""
    if isinstance(output, tuple):
        return tuple(np.asarray(part) for part in output)
    return (np.asarray(output),)


def assert_agree(kernel: Kernel, args: tuple, numpy_function: Callable, source: str) -> None:
    """Run the core and the numpy reference once on ``args`` and require equal results."""
    actual = as_arrays(kernel.core(*args, **kernel.kwargs))
    expected = as_arrays(numpy_function(*args, **kernel.kwargs))
    assert len(actual) == len(expected), f"{kernel.name}: core gives {len(actual)} outputs, {source} {len(expected)}"
    for index, (a, e) in enumerate(zip(actual, expected)):
        message = f"{kernel.name} output {index}: core vs {source}"
        assert a.shape == e.shape, f"{message}: shapes {a.shape} vs {e.shape}"
        scale = max(1.0, float(np.max(np.abs(e))))
        np.testing.assert_allclose(a, e, rtol=kernel.rtol, atol=kernel.atol * scale, err_msg=message)


def _cpu_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(autouse=True)
def other_work(benchmark) -> Iterator[None]:
    """Record how much CPU other processes used while this test ran, in cores (0 = machine to ourselves).

    Machine-wide busy CPU time minus this process's own CPU time (all its threads), over the wall
    time of the test (input generation, agreement check, warm-up and rounds). Stored as
    ``extra_info["other_cpu_cores"]``; ``report.py`` shows it, so noisy rows can be told apart.
    """
    wall, busy, own = time.perf_counter(), _cpu_busy_seconds(), sum(os.times()[:2])
    yield
    busy_end = _cpu_busy_seconds()
    if busy is not None and busy_end is not None:
        elapsed = time.perf_counter() - wall
        other = (busy_end - busy) - (sum(os.times()[:2]) - own)
        benchmark.extra_info["other_cpu_cores"] = round(max(0.0, other) / elapsed, 3)


def _kernel_cases() -> list:
    return [
        pytest.param(name, label, items, implementation, id=f"{name}-{label}-{implementation}")
        for name, kernel in KERNELS.items()
        for label, items in kernel.sizes.items()
        for implementation in ("numpy", "core")
    ]


# --------------------------------------------------------------------------- benchmarks


# The thread group runs first: it is the most sensitive to other work on the machine, and the
# run is started on an idle machine (see README.md).


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", THREAD_KERNELS)
def test_threads(benchmark, numpy_kernels, name: str, threads: int) -> None:
    kernel = KERNELS[name]
    label, items = THREAD_SIZE
    numpy_function, source = numpy_kernels[name]
    mg.set_num_threads(threads)  # the autouse single_thread fixture restores the count afterwards
    assert mg.get_num_threads() == threads
    args = make_inputs(kernel, items)
    assert_agree(kernel, args, numpy_function, source)

    benchmark.group = f"threads: {name} n={label}"
    benchmark.extra_info.update(
        kind="threads",
        kernel=name,
        items=items,
        implementation="core",
        core_threads=threads,
        load_average_1min_at_start=os.getloadavg()[0],
    )
    benchmark(kernel.core, *args, **kernel.kwargs)


@pytest.mark.parametrize(("name", "label", "items", "implementation"), _kernel_cases())
def test_kernel(benchmark, numpy_kernels, name: str, label: str, items: int, implementation: str) -> None:
    kernel = KERNELS[name]
    numpy_function, source = numpy_kernels[name]
    args = make_inputs(kernel, items)
    assert_agree(kernel, args, numpy_function, source)  # also the first (untimed) call of each

    benchmark.group = f"{name} n={label}"
    benchmark.extra_info.update(
        kind="kernel",
        kernel=name,
        items=items,
        implementation=implementation,
        core_threads=mg.get_num_threads(),
        numpy_reference=source,
        load_average_1min_at_start=os.getloadavg()[0],
    )
    function = kernel.core if implementation == "core" else numpy_function
    benchmark(function, *args, **kernel.kwargs)
