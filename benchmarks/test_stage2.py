"""Benchmarks of stage 2 (``method="metapose"``, numpy inference) next to the iterative refiner.

The model is the shipped one (``metapose_geom/weights/default.safetensors``, what
``method="metapose"`` runs without options); where none is shipped, a random-weight network of the
default :class:`~metapose_geom.stage2.ModelConfig` written to a temporary ``.safetensors`` file
(inference time does not depend on the weights' values). Frames are synthetic (``synth.make_scenes``, C = 4, J = 17, K = 4, with
monocular guesses, so both methods start from stage 1).

* group ``"stage2 one frame C=4"`` (core on 1 thread): ``solve(views, method=...)`` for
  ``"metapose"`` in float64 and float32 and ``"ir"`` (100 Adam steps), the whole public call;
* group ``"stage2 batch C=4 B=1000, 2 threads"``: ``solve_batch`` of 1000 frames with
  ``threads=2`` for the same three, and the same model's forward in torch (``Stage2Model``,
  float32 and float64, ``torch.set_num_threads(2)``) on the same frames from the same stage-1
  start (the network alone: no solutions are built). numpy's BLAS stays on one thread
  (``conftest.py``); ``"metapose"`` spreads the frames over the core's threads itself.

Before timing, each test checks what it times: ``"metapose"`` equals the network of
:class:`~metapose_geom.stage2.forward.Stage2Network` from the ``"s1"`` start (bits, and float32
within 1e-5 of the update), torch's forward equals numpy's (1e-10 in float64, 1e-5 of the update
in float32), ``"ir"`` lowers the objective of ``"s1"``. ``report.py`` gives ms per frame, frames per
second and the ratio to IR in the same session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
from metapose_geom import synth  # noqa: E402
from metapose_geom.stage2.config import ModelConfig  # noqa: E402
from metapose_geom.stage2.forward import Stage2Network  # noqa: E402
from metapose_geom.stage2.weights import expected_shapes, save_weights  # noqa: E402

SEED = 20240611
CAMERAS = 4
FRAMES = 1000
BATCH_THREADS = 2
ONE_GROUP = f"stage2 one frame C={CAMERAS}"
BATCH_GROUP = f"stage2 batch C={CAMERAS} B={FRAMES}, {BATCH_THREADS} threads"
FLOAT32_RTOL = 1e-5


def random_tensors(config: ModelConfig, seed: int = SEED) -> dict[str, np.ndarray]:
    """Weights of torch's default scale, normalisation buffers away from (0, 1), output layers
    non-zero (a random model's work is a trained one's)."""
    rng = np.random.default_rng(seed)
    shapes = expected_shapes(config)
    tensors = {}
    for name, shape in shapes.items():
        if name.endswith("_std"):
            tensors[name] = rng.uniform(0.5, 2.0, size=shape)
        elif name.endswith("_mean"):
            tensors[name] = rng.normal(0.0, 0.3, size=shape)
        else:
            fan_in = shapes[name.rsplit(".", 1)[0] + ".weight"][1]
            scale = 0.05 if "camera_head" in name or f"pose_head.{len(config.pose_head)}." in name else 1.0
            tensors[name] = scale * rng.uniform(-1.0, 1.0, size=shape) / np.sqrt(fan_in)
    return tensors


def raw_inputs(frames: list, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The default config's raw inputs at the start (stage 0), as ModelConfig's docstring lists
    them: shared (B, 3 J + 2) ``[pose | objective | step]`` and camera rows (B C, 10 + 4 J K + 2 J)."""
    from metapose_geom import layout
    from metapose_geom._core_loader import core

    mixtures = np.stack([v.mixtures for v in frames])
    B, C, J, K = mixtures.shape[:4]
    pose, rot6d, scale_raw, shift = layout.unpack(starts, C, J)
    objective, _ = core.refiner_objective(mixtures, starts, np.zeros((1, 2), dtype=np.int64), np.ones((B, 1)), 0.0)
    projections = mg.geometry.project_weak(pose, mg.geometry.rot6d_to_matrix(rot6d), layout.scale_from_raw(scale_raw),
                                           shift)
    features = np.concatenate([mixtures[..., :3], np.log(mixtures[..., 3:4])], axis=-1).reshape(B, C, -1)
    shared = np.concatenate([pose.reshape(B, -1), objective[:, None], np.zeros((B, 1))], axis=-1)
    camera = np.concatenate([rot6d, scale_raw[..., None], shift, features, projections.reshape(B, C, -1)], axis=-1)
    return shared, camera.reshape(B * C, -1)


@pytest.fixture(scope="module")
def model(tmp_path_factory, frames, starts) -> tuple[Path, ModelConfig, dict[str, np.ndarray]]:
    """The shipped model; without one, a random model whose normalisation buffers are set to the
    frames' input statistics (as training sets them), so every layer works in its usual range."""
    from metapose_geom.stage2.forward import MissingWeightsError
    from metapose_geom.stage2.weights import load_weights

    try:
        path = Path(Stage2Network.load().source)
    except MissingWeightsError:
        pass
    else:
        return (path, *load_weights(path))
    config = ModelConfig()
    tensors = random_tensors(config)
    for part, rows in zip(("shared", "camera"), raw_inputs(frames, starts)):
        tensors[f"stages.0.{part}_mean"] = rows.mean(axis=0)
        tensors[f"stages.0.{part}_std"] = np.maximum(rows.std(axis=0), 1e-6)  # as training floors them
    path = save_weights(tmp_path_factory.mktemp("stage2") / "default-shape.safetensors", config, tensors)
    return path, config, tensors


@pytest.fixture(scope="module")
def frames() -> list:
    return [scene.views() for scene in synth.make_scenes(FRAMES, num_cameras=CAMERAS, seed=SEED)]


@pytest.fixture(scope="module")
def starts(frames) -> np.ndarray:
    return np.stack([s.x for s in mg.solve_batch(frames, "s1", progress=False)])


def _options(path: Path, dtype: str) -> dict[str, Any]:
    return {"weights": str(path), "dtype": dtype}


def _extra(implementation: str, frames: int, threads: int, **more: Any) -> dict[str, Any]:
    return dict(kind="stage2", implementation=implementation, frames=frames, cameras=CAMERAS, joints=17,
                components=4, core_threads=threads, **more)


def _check_metapose(solutions: list, frames: list, starts: np.ndarray, path: Path, dtype: str) -> None:
    network = Stage2Network.load(path)
    mixtures = np.stack([v.mixtures for v in frames])
    exact = network.forward(mixtures, starts)[-1]
    x = np.stack([s.x for s in solutions])
    if dtype == "float64":
        np.testing.assert_array_equal(x, exact)
    else:
        np.testing.assert_allclose(x, exact, rtol=0, atol=FLOAT32_RTOL * np.abs(exact - starts).max())
    assert np.abs(exact - starts).max() > 1e-3  # the network moves the start


# --------------------------------------------------------------------------- one frame, one thread


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_frame_metapose(benchmark, model, frames, starts, dtype: str) -> None:
    path = model[0]
    options = _options(path, dtype)
    _check_metapose([mg.solve(frames[0], "metapose", options)], frames[:1], starts[:1], path, dtype)
    benchmark.group = ONE_GROUP
    benchmark.extra_info.update(_extra(f"metapose {dtype}", 1, 1, method="metapose", dtype=dtype))
    benchmark(mg.solve, frames[0], "metapose", options)


def test_one_frame_ir(benchmark, frames) -> None:
    assert mg.solve(frames[0], "ir").objective < mg.solve(frames[0], "s1").objective
    benchmark.group = ONE_GROUP
    benchmark.extra_info.update(_extra("ir", 1, 1, method="ir", steps=100))
    benchmark(mg.solve, frames[0], "ir")


# --------------------------------------------------------------------------- a batch, two threads


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batch_metapose(benchmark, model, frames, starts, dtype: str) -> None:
    path = model[0]
    options = _options(path, dtype)

    def run() -> list:
        return mg.solve_batch(frames, "metapose", options, progress=False, threads=BATCH_THREADS)

    _check_metapose(run(), frames, starts, path, dtype)
    benchmark.group = BATCH_GROUP
    benchmark.extra_info.update(_extra(f"metapose {dtype}", FRAMES, BATCH_THREADS, method="metapose", dtype=dtype))
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


def test_batch_ir(benchmark, frames) -> None:
    def run() -> list:
        return mg.solve_batch(frames, "ir", progress=False, threads=BATCH_THREADS)

    s1 = np.array([s.objective for s in mg.solve_batch(frames, "s1", progress=False)])
    assert np.mean([s.objective for s in run()] < s1) > 0.95
    benchmark.group = BATCH_GROUP
    benchmark.extra_info.update(_extra("ir", FRAMES, BATCH_THREADS, method="ir", steps=100))
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


@pytest.fixture
def torch_two_threads() -> Iterator[Any]:
    torch = pytest.importorskip("torch", reason="torch is needed for the torch forward")
    previous = torch.get_num_threads()
    torch.set_num_threads(BATCH_THREADS)
    try:
        yield torch
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_torch_forward(benchmark, model, frames, starts, torch_two_threads, dtype: str) -> None:
    torch = torch_two_threads
    from metapose_geom.nn.model import Stage2Model

    path, config, tensors = model
    torch_dtype = getattr(torch, dtype)
    network = Stage2Model(config).to(torch_dtype).eval()  # the dtype first: loading casts to it
    network.load_state_dict({name: torch.as_tensor(value) for name, value in tensors.items()})
    mixtures = torch.as_tensor(np.stack([v.mixtures for v in frames]), dtype=torch_dtype)
    x0 = torch.as_tensor(starts, dtype=torch_dtype)

    def run() -> Any:
        with torch.no_grad():
            return network(mixtures, x0)[-1]

    exact = Stage2Network.load(path).forward(np.stack([v.mixtures for v in frames]), starts)[-1]
    tolerance = 1e-10 if dtype == "float64" else FLOAT32_RTOL * np.abs(exact - starts).max()
    np.testing.assert_allclose(run().double().numpy(), exact, rtol=0, atol=tolerance)
    benchmark.group = BATCH_GROUP
    benchmark.extra_info.update(_extra(f"torch forward {dtype}", FRAMES, BATCH_THREADS, method="torch",
                                       dtype=dtype, torch_version=torch.__version__,
                                       torch_threads=torch.get_num_threads()))
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
