"""Stage 2 without torch: :class:`Stage2Network` (numpy) against the torch model, its equivariance,
its loading, and the registry method ``"metapose"`` through ``solve`` / ``solve_batch``.

* numpy == torch: random-weight models of every branch (ccat then dense, cn, a spec ending in
  ccat, dropped inputs, the bones input, the flat ablation), non-trivial normalisation buffers,
  non-zero output layers; to 1e-10 in float64 at C = 2, 3, 4, 8 with the same weights, and to
  1e-5 of the update in float32;
* equivariance (the e3nn-style helper below): permuting cameras 1..C-1, or all of them, permutes
  the camera parts of every stage's update and leaves the pose update unchanged;
* ``"metapose"``: a frame alone and in a batch give the same bits; the result is the network's
  output from the ``"s1"`` start; ``ir_steps`` equals the core refiner from that output;
  ``stages=0`` is ``"s1"``; the shipped-default path through importlib.resources; bad options
  and mismatched models are ValueErrors naming the field; torch is never needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import geometry, layout, synth
from metapose_geom._core_loader import core
from metapose_geom.skeletons import H36M_17
from metapose_geom.solver import MetaPoseOptions, RefineOptions
from metapose_geom.solver.methods import pad_components
from metapose_geom.stage2 import forward
from metapose_geom.stage2.config import ModelConfig
from metapose_geom.stage2.forward import SELU_ALPHA, SELU_SCALE, MissingWeightsError, Stage2Network, selu
from metapose_geom.stage2.weights import save_weights

from stage2_models import CONFIGS, FLAT, permute_cameras, random_tensors, random_torch_model, scene_inputs, tensors_of

torch = pytest.importorskip("torch")

J = 17
CAMERA_COUNTS = (2, 3, 4, 8)
FRAMES = 5
#: numpy vs torch in float64: same formulas, different summation order (the split products)
FLOAT64_ATOL = 1e-10
#: float32 dense layers vs the float64 torch model, relative to the largest update
FLOAT32_RTOL = 1e-5


@pytest.fixture(scope="module")
def inputs() -> dict[int, dict[str, np.ndarray]]:
    return {count: scene_inputs(count, FRAMES, seed=100 + count) for count in CAMERA_COUNTS}


@pytest.fixture(scope="module")
def models(inputs) -> dict[str, object]:
    """name -> float64 torch model, buffers fitted near the four-camera frames' input statistics."""
    built = {name: random_torch_model(config, inputs[4]) for name, config in CONFIGS.items()}
    built["flat"] = random_torch_model(FLAT, inputs[3])
    return built


def torch_forward(model, data: dict[str, np.ndarray], dtype=None) -> list[np.ndarray]:
    dtype = dtype or torch.float64
    model = model.to(dtype)
    try:
        with torch.no_grad():
            outputs = model(torch.as_tensor(data["mixtures"], dtype=dtype), torch.as_tensor(data["x0"], dtype=dtype),
                            torch.as_tensor(data["bones"], dtype=dtype))
    finally:
        model.double()
    return [output.double().numpy() for output in outputs]


def numpy_network(model) -> Stage2Network:
    return Stage2Network(model.config, tensors_of(model))


# --------------------------------------------------------------------------- numpy == torch


class TestAgainstTorch:
    @pytest.mark.parametrize("name", list(CONFIGS))
    @pytest.mark.parametrize("cameras", CAMERA_COUNTS)
    def test_float64_equals_torch(self, models, inputs, name, cameras):
        model, data = models[name], inputs[cameras]
        expected = torch_forward(model, data)
        got = numpy_network(model).forward(data["mixtures"], data["x0"], data["bones"])
        assert len(got) == len(expected) == model.config.num_stages
        previous = data["x0"]
        for stage, (a, e) in enumerate(zip(got, expected)):
            assert a.dtype == np.float64 and a.shape == e.shape
            # the test can fail: every stage moves every frame's pose and cameras
            update = e - previous
            assert np.abs(update[:, :3 * J]).max(axis=-1).min() > 1e-3, f"stage {stage}: no pose update"
            assert np.abs(update[:, 3 * J:]).max(axis=-1).min() > 1e-3, f"stage {stage}: no camera update"
            np.testing.assert_allclose(a, e, rtol=0, atol=FLOAT64_ATOL, err_msg=f"{name}, C={cameras}, stage {stage}")
            previous = e

    def test_flat_equals_torch(self, models, inputs):
        model, data = models["flat"], inputs[3]
        expected = torch_forward(model, data)
        got = numpy_network(model).forward(data["mixtures"], data["x0"])
        assert np.abs(expected[-1] - data["x0"]).max() > 1e-2
        for a, e in zip(got, expected):
            np.testing.assert_allclose(a, e, rtol=0, atol=FLOAT64_ATOL)

    @pytest.mark.parametrize("name", ["equivariant", "ccat-last", "bones"])
    @pytest.mark.parametrize("cameras", [2, 4, 8])
    def test_float32_is_within_1e5_of_the_update(self, models, inputs, name, cameras):
        model, data = models[name], inputs[cameras]
        exact = torch_forward(model, data)
        in_float32 = torch_forward(model, data, torch.float32)
        got = numpy_network(model).forward(data["mixtures"], data["x0"], data["bones"], dtype=np.float32)
        for stage, (a, e, t) in enumerate(zip(got, exact, in_float32)):
            assert a.dtype == np.float64
            size = np.abs(e - data["x0"]).max()  # what the network has moved x by so far
            np.testing.assert_allclose(a, e, rtol=0, atol=FLOAT32_RTOL * size, err_msg=f"stage {stage} vs float64")
            # torch in float32 (its geometry in float32 too) is as close to the exact answer, so the two
            # float32 answers are within the sum of their errors
            np.testing.assert_allclose(t, e, rtol=0, atol=FLOAT32_RTOL * size, err_msg=f"stage {stage}: torch32")
            np.testing.assert_allclose(a, t, rtol=0, atol=2 * FLOAT32_RTOL * size, err_msg=f"stage {stage} vs torch32")

    def test_the_default_config_equals_torch(self, inputs):
        data = inputs[4]
        model = random_torch_model(ModelConfig(), data)
        np.testing.assert_allclose(numpy_network(model).forward(data["mixtures"], data["x0"])[0],
                                   torch_forward(model, data)[0], rtol=0, atol=FLOAT64_ATOL)

    def test_stages_runs_the_first_n(self, models, inputs):
        model, data = models["ccat-last"], inputs[4]
        network = numpy_network(model)
        every = network.forward(data["mixtures"], data["x0"])
        for count in range(4):
            first = network.forward(data["mixtures"], data["x0"], stages=count)
            assert len(first) == count
            for a, e in zip(first, every):
                np.testing.assert_array_equal(a, e)

    def test_selu_is_torchs(self):
        values = np.concatenate([np.linspace(-30, 30, 2001), [-1e-300, 0.0, 1e-300, 700.0, -700.0]])
        expected = torch.selu(torch.as_tensor(values)).numpy()
        np.testing.assert_allclose(selu(values.copy()), expected, rtol=1e-15, atol=1e-300)
        selu_module = torch.nn.SELU()
        assert float(selu_module(torch.tensor([1.0], dtype=torch.float64))) == SELU_SCALE
        assert float(selu_module(torch.tensor([-800.0], dtype=torch.float64))) == pytest.approx(
            -SELU_ALPHA * SELU_SCALE, rel=1e-16)


# --------------------------------------------------------------------------- equivariance


def assert_equivariant(network: Stage2Network, data: dict[str, np.ndarray], order: np.ndarray) -> None:
    """Cameras taken in ``order``: every stage's output is the original's with its camera parts in
    that order, the pose part unchanged (to rounding: sums over cameras change order)."""
    C = data["mixtures"].shape[1]
    base = network.forward(data["mixtures"], data["x0"], data["bones"])
    permuted = network.forward(data["mixtures"][:, order], permute_cameras(data["x0"], order, C, J), data["bones"])
    for stage, (a, p) in enumerate(zip(base, permuted)):
        np.testing.assert_allclose(p, permute_cameras(a, order, C, J), rtol=0, atol=1e-12,
                                   err_msg=f"stage {stage}, order {order.tolist()}")


class TestEquivariance:
    @pytest.mark.parametrize("name", list(CONFIGS))
    @pytest.mark.parametrize("cameras", [3, 4, 8])
    def test_permuting_cameras_1_to_c(self, models, inputs, name, cameras):
        rng = np.random.default_rng(cameras)
        order = np.concatenate([[0], 1 + rng.permutation(cameras - 1)])
        if cameras == 3:
            order = np.array([0, 2, 1])
        assert_equivariant(numpy_network(models[name]), inputs[cameras], order)

    @pytest.mark.parametrize("name", list(CONFIGS))
    def test_a_full_permutation(self, models, inputs, name):
        order = np.array([3, 1, 0, 2])
        assert_equivariant(numpy_network(models[name]), inputs[4], order)

    def test_the_flat_ablation_is_not_equivariant(self, models, inputs):
        network, data = numpy_network(models["flat"]), inputs[3]
        order = np.array([0, 2, 1])
        base = network.forward(data["mixtures"], data["x0"])[-1]
        permuted = network.forward(data["mixtures"][:, order], permute_cameras(data["x0"], order, 3, J))[-1]
        assert np.abs(permuted[:, :3 * J] - base[:, :3 * J]).max() > 1e-3


# --------------------------------------------------------------------------- the network's arguments


class TestForwardArguments:
    @pytest.fixture(scope="class")
    def network(self, models):
        return numpy_network(models["bones"])

    def test_bad_arguments_are_value_errors_naming_them(self, network, inputs):
        data = inputs[4]
        mixtures, x0, bones = data["mixtures"], data["x0"], data["bones"]
        nan_mixtures = mixtures.copy()
        nan_mixtures[1, 2, 3, 0, 1] = np.nan
        zero_variance = mixtures.copy()
        zero_variance[0, 0, 0, 0, 3] = 0.0
        cases = [
            ((mixtures[..., :3, :], x0, bones), r"^mixtures: expected shape \(B, C, 17, 4, 4\)"),
            ((mixtures[:, :, :16], x0, bones), r"^mixtures: expected shape"),
            ((mixtures[:, :1], x0[:, :3 * J + 10], bones), r"^mixtures: at least two cameras"),
            ((nan_mixtures, x0, bones), r"^mixtures: holds NaN"),
            ((zero_variance, x0, bones), r"^mixtures: weights must be >= 0 and variances > 0"),
            ((mixtures, x0[:, :-1], bones), r"^x0: expected shape \(5, 91\)"),
            ((mixtures, x0[:3], bones), r"^x0: expected shape"),
            ((mixtures, np.where(np.arange(91) == 5, np.inf, x0), bones), r"^x0: holds NaN or infinite"),
            ((mixtures, x0, None), r"^bones: this model takes the reference bone lengths"),
            ((mixtures, x0, bones[:, :15]), r"^bones: expected shape \(5, 16\)"),
            ((mixtures, x0, -bones), r"^bones: expected finite non-negative"),
            ((mixtures.astype(complex), x0, bones), r"^mixtures: expected a real numeric array"),
        ]
        for arguments, message in cases:
            with pytest.raises(ValueError, match=message):
                network.forward(*arguments)
        with pytest.raises(ValueError, match=r"^stages: expected an integer in \[0, 2\], got 3"):
            network.forward(mixtures, x0, bones, stages=3)
        for dtype in (np.float16, "int32", None, "nonsense"):
            with pytest.raises(ValueError, match=r"^dtype: expected float64 or float32"):
                network.forward(mixtures, x0, bones, dtype=dtype)

    def test_a_flat_model_takes_its_own_camera_count(self, models, inputs):
        network = numpy_network(models["flat"])
        with pytest.raises(ValueError, match=r"^mixtures: this flat stage-2 model takes 3 cameras, got 4"):
            network.forward(inputs[4]["mixtures"], inputs[4]["x0"])

    def test_a_large_batch_on_threads_gives_each_frames_own_bits(self, models, inputs, restore_threads):
        network, data = numpy_network(models["bones"]), inputs[4]
        count = 3 * forward.FRAMES_PER_THREAD + 5  # three parts on three threads
        rng = np.random.default_rng(0)
        pick = rng.integers(0, FRAMES, size=count)
        mixtures, bones = data["mixtures"][pick], data["bones"][pick]
        x0 = data["x0"][pick] + rng.normal(0.0, 1e-3, size=(count, data["x0"].shape[1]))
        for dtype in (np.float64, np.float32):
            mg.set_num_threads(1)
            one = network.forward(mixtures, x0, bones, dtype=dtype)
            mg.set_num_threads(3)
            three = network.forward(mixtures, x0, bones, dtype=dtype)
            for a, b in zip(one, three):
                np.testing.assert_array_equal(a, b)
            for i in (0, forward.FRAMES_PER_THREAD, count - 1):
                alone = network.forward(mixtures[i:i + 1], x0[i:i + 1], bones[i:i + 1], dtype=dtype)
                np.testing.assert_array_equal(alone[-1][0], three[-1][i])

    def test_bones_are_ignored_by_a_model_without_them(self, models, inputs):
        network, data = numpy_network(models["equivariant"]), inputs[4]
        np.testing.assert_array_equal(network.forward(data["mixtures"], data["x0"])[-1],
                                      network.forward(data["mixtures"], data["x0"], data["bones"] * 7)[-1])

    def test_tensors_that_do_not_fit_are_refused(self, models):
        config = models["equivariant"].config
        tensors = tensors_of(models["equivariant"])
        with pytest.raises(ValueError, match="missing"):
            Stage2Network(config, {k: v for k, v in tensors.items() if "camera_head" not in k})
        with pytest.raises(ValueError, match="stages.0.trunk.0.weight"):
            Stage2Network(config, dict(tensors, **{"stages.0.trunk.0.weight": np.zeros((3, 3))}))
        with pytest.raises(ValueError, match="^config: expected a ModelConfig"):
            Stage2Network(config.to_dict(), tensors)


# --------------------------------------------------------------------------- loading


class TestLoad:
    def test_a_saved_model_loads_and_runs_as_built(self, models, inputs, tmp_path):
        model, data = models["equivariant"], inputs[4]
        path = save_weights(tmp_path / "model.safetensors", model.config, tensors_of(model))
        loaded = Stage2Network.load(path)
        assert loaded.config == model.config
        np.testing.assert_array_equal(loaded.forward(data["mixtures"], data["x0"])[-1],
                                      numpy_network(model).forward(data["mixtures"], data["x0"])[-1])

    def test_networks_are_cached_until_the_file_changes(self, models, tmp_path):
        path = save_weights(tmp_path / "model.safetensors", CONFIGS["equivariant"], random_tensors(CONFIGS["equivariant"]))
        first = Stage2Network.load(path)
        assert Stage2Network.load(str(path)) is first
        assert Stage2Network.load(tmp_path / "." / "model.safetensors") is first  # resolved
        save_weights(path, CONFIGS["equivariant"], random_tensors(CONFIGS["equivariant"], seed=2))
        os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
        second = Stage2Network.load(path)
        assert second is not first
        assert not np.array_equal(second._arrays[np.float64][0].camera_head.weight,
                                  first._arrays[np.float64][0].camera_head.weight)

    def test_missing_files_are_value_and_file_not_found_errors(self, tmp_path):
        with pytest.raises(MissingWeightsError, match=r"^weights: no weights file at .*absent.safetensors") as caught:
            Stage2Network.load(tmp_path / "absent.safetensors")
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, FileNotFoundError)
        with pytest.raises(ValueError, match=r"^weights: expected a path"):
            Stage2Network.load(3)

    def test_the_shipped_default_comes_through_importlib_resources(self, models, inputs, tmp_path, monkeypatch):
        package = tmp_path / "fake_shipped_weights"
        package.mkdir()
        (package / "__init__.py").write_text("")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(forward, "DEFAULT_WEIGHTS_PACKAGE", "fake_shipped_weights")
        with pytest.raises(MissingWeightsError, match=r"no stage-2 weights are shipped .*no default.safetensors"):
            Stage2Network.load()
        model, data = models["equivariant"], inputs[4]
        save_weights(package / "default.safetensors", model.config, tensors_of(model))
        assert (package / "default.json").is_file()
        default = Stage2Network.load()
        assert default.source == str((package / "default.safetensors").resolve())
        np.testing.assert_array_equal(default.forward(data["mixtures"], data["x0"])[-1],
                                      numpy_network(model).forward(data["mixtures"], data["x0"])[-1])
        # and through the solver with no weights option
        views = data["views"][0]
        np.testing.assert_array_equal(mg.solve(views, "metapose").x,
                                      mg.solve(views, "metapose", {"weights": str(package / "default.safetensors")}).x)

    def test_the_package_of_shipped_weights_exists(self):
        import importlib.resources

        folder = importlib.resources.files(forward.DEFAULT_WEIGHTS_PACKAGE)
        assert folder.is_dir()
        if not (folder / "default.safetensors").is_file():  # nothing shipped yet: the error says so
            with pytest.raises(MissingWeightsError, match=r"no default.safetensors in metapose_geom.weights"):
                Stage2Network.load()
        else:
            assert Stage2Network.load().config.skeleton == "h36m17"

    def test_without_shipped_weights_metapose_says_so(self, inputs, monkeypatch):
        monkeypatch.setattr(forward, "DEFAULT_WEIGHTS_PACKAGE", "metapose_geom_no_such_package")
        with pytest.raises(ValueError, match=r"^weights: no stage-2 weights are shipped .*pass options weights="):
            mg.solve(inputs[4]["views"][0], "metapose")


# --------------------------------------------------------------------------- the registry method


@pytest.fixture(scope="module")
def weights_path(models, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    model = models["equivariant"]
    return save_weights(folder / "equivariant.safetensors", model.config, tensors_of(model))


@pytest.fixture(scope="module")
def frames() -> list:
    return [scene.views() for scene in mg.synth.make_scenes(7, num_cameras=4, seed=5)]


def _stack(solutions, name):
    return np.stack([getattr(s, name) for s in solutions])


class TestMetaPoseMethod:
    def test_the_result_is_the_network_from_the_s1_start(self, frames, weights_path):
        network = Stage2Network.load(weights_path)
        for views in frames[:3]:
            s1 = mg.solve(views, "s1")
            solution = mg.solve(views, "metapose", {"weights": str(weights_path)})
            assert solution.method == "metapose" and not solution.diverged
            expected = network.forward(views.mixtures[None], s1.x[None])[-1][0]
            np.testing.assert_array_equal(solution.x, expected)
            assert np.abs(solution.x - s1.x).max() > 1e-3
            # the objective is the refiner's (no bone term) at the final x, the pose in camera 0's frame
            objective, _ = core.refiner_objective(views.mixtures[None], expected[None], np.array([[0, 7]]),
                                                  np.ones((1, 1)), 0.0)
            assert solution.objective == float(objective[0])
            frame = layout.in_camera0(expected, 4, J)
            np.testing.assert_allclose(solution.pose3d, frame.pose, rtol=0, atol=1e-15)
            np.testing.assert_allclose(solution.reprojection, mg.geometry.project_weak(
                frame.pose, frame.rotation, frame.scale, frame.shift), rtol=0, atol=1e-15)

    @pytest.mark.parametrize("options", [{}, {"ir_steps": 20}, {"dtype": "float32"}, {"stages": 1}])
    def test_a_frame_gives_the_same_bits_alone_and_in_a_batch(self, frames, weights_path, options, restore_threads):
        options = dict(options, weights=str(weights_path))
        alone = [mg.solve(views, "metapose", options) for views in frames]
        for threads, chunk_size in ((1, 256), (2, 3)):
            batch = mg.solve_batch(frames, "metapose", options, progress=False, chunk_size=chunk_size, threads=threads)
            for name in ("x", "pose3d", "reprojection", "reprojection_pixels", "objective"):
                np.testing.assert_array_equal(_stack(batch, name), _stack(alone, name), err_msg=name)
        stacked = mg.solve_arrays(np.stack([v.mixtures for v in frames]), np.stack([v.mono3d for v in frames]),
                                  method="metapose", options=options, progress=False)
        np.testing.assert_array_equal(stacked.x, _stack(alone, "x"))

    def test_ir_steps_continue_with_the_core_refiner(self, frames, weights_path):
        steps = 30
        options = MetaPoseOptions(weights=str(weights_path), ir_steps=steps, learning_rate=5e-3, beta1=0.8)
        network = mg.solve_batch(frames, "metapose", {"weights": str(weights_path)}, progress=False)
        refined = mg.solve_batch(frames, "metapose", options, progress=False)
        x_network = _stack(network, "x")
        mixtures = np.stack([v.mixtures for v in frames])
        bones = np.array(H36M_17.bones, dtype=np.int64)
        references = np.broadcast_to(H36M_17.bone_lengths(H36M_17.rest_pose()), (len(frames), len(bones))).copy()
        x, objective, _, _ = core.refine(mixtures, x_network, bones, references, 0.0, steps, 5e-3, 0.8, 0.999, 1e-7, 0)
        np.testing.assert_array_equal(_stack(refined, "x"), x)
        np.testing.assert_array_equal(_stack(refined, "objective"), objective)
        assert (objective < _stack(network, "objective")).all()
        # and "ir" from the same kind of start runs the same refiner: with the network at stages=0 it is "ir"
        ir = mg.solve_batch(frames, "ir", RefineOptions(steps=steps, learning_rate=5e-3, beta1=0.8), progress=False)
        zero = mg.solve_batch(frames, "metapose", dataclasses.replace(options, stages=0), progress=False)
        np.testing.assert_array_equal(_stack(zero, "x"), _stack(ir, "x"))

    def test_stages_0_is_s1(self, frames, weights_path):
        for init in ("auto", "factorization", "random"):
            s1 = mg.solve_batch(frames, "s1", {"init": init, "seed": 4}, progress=False)
            zero = mg.solve_batch(frames, "metapose", {"weights": str(weights_path), "stages": 0, "init": init,
                                                       "seed": 4}, progress=False)
            for name in ("x", "pose3d", "reprojection", "objective"):
                np.testing.assert_array_equal(_stack(zero, name), _stack(s1, name), err_msg=f"{init}: {name}")

    def test_float32_is_close_to_float64(self, frames, weights_path):
        exact = mg.solve(frames[0], "metapose", {"weights": str(weights_path)})
        fast = mg.solve(frames[0], "metapose", {"weights": str(weights_path), "dtype": "float32"})
        start = mg.solve(frames[0], "s1").x
        np.testing.assert_allclose(fast.x, exact.x, rtol=0, atol=FLOAT32_RTOL * np.abs(exact.x - start).max())

    def test_the_bones_input_takes_the_rest_pose_or_bone_reference(self, models, frames, tmp_path):
        model = models["bones"]
        path = save_weights(tmp_path / "bones.safetensors", model.config, tensors_of(model))
        network = Stage2Network.load(path)
        views = frames[0]
        x0 = mg.solve(views, "s1").x[None]
        rest = H36M_17.bone_lengths(H36M_17.rest_pose())[None]
        solution = mg.solve(views, "metapose", {"weights": str(path)})
        np.testing.assert_array_equal(solution.x, network.forward(views.mixtures[None], x0, rest)[-1][0])
        reference = tuple(float(v) for v in np.linspace(1.0, 2.0, 16))
        other = mg.solve(views, "metapose", {"weights": str(path), "bone_reference": reference})
        np.testing.assert_array_equal(other.x, network.forward(views.mixtures[None], x0, np.array([reference]))[-1][0])
        assert np.abs(other.x - solution.x).max() > 1e-6

    def test_bad_options_name_the_field(self, frames, weights_path):
        views, path = frames[0], str(weights_path)
        cases = [
            ({"weights": 3}, r"^weights: expected a path"),
            ({"weights": ""}, r"^weights: expected a path"),
            ({"weights": path, "stages": -1}, r"^stages: expected an integer >= 0"),
            ({"weights": path, "stages": 1.5}, r"^stages: expected an integer"),
            ({"weights": path, "stages": 3}, r"^stages: the model .* has 2 stage\(s\), got 3"),
            ({"weights": path, "ir_steps": -1}, r"^ir_steps: expected an integer >= 0"),
            ({"weights": path, "ir_steps": True}, r"^ir_steps: expected an integer"),
            ({"weights": path, "learning_rate": -1.0}, r"^learning_rate: expected a finite number"),
            ({"weights": path, "beta1": 1.0}, r"^beta1: expected a finite number"),
            ({"weights": path, "beta2": float("nan")}, r"^beta2: expected a finite number"),
            ({"weights": path, "epsilon": 0.0}, r"^epsilon: expected a finite number"),
            ({"weights": path, "init": "truth"}, r"^init: expected one of"),
            ({"weights": path, "seed": -2}, r"^seed: expected an integer >= 0"),
            ({"weights": path, "dtype": "float16"}, r"^dtype: expected one of \('float64', 'float32'\)"),
            ({"weights": path, "bone_reference": (1.0, float("inf"))}, r"^bone_reference: expected \(nB,\)"),
            ({"weights": path, "bone_reference": (1.0, 2.0)}, r"^bone_reference: expected 16 lengths"),
            ({"weights": path, "steps": 3}, r"unknown name\(s\) \['steps'\] for MetaPoseOptions"),
            ({"weights": path + ".absent"}, r"^weights: no weights file at"),
        ]
        for options, message in cases:
            with pytest.raises(ValueError, match=message):
                mg.solve(views, "metapose", options)
        with pytest.raises(ValueError, match="method 'metapose' takes MetaPoseOptions"):
            mg.solve(views, "metapose", RefineOptions())

    def test_options_are_typed_and_frozen(self, weights_path):
        options = MetaPoseOptions.from_mapping({"weights": Path(weights_path), "stages": np.int64(1), "seed": 3})
        assert options.weights == str(weights_path) and type(options.stages) is int
        assert options.refine_options == RefineOptions(steps=0, seed=3)
        assert mg.MetaPoseOptions is MetaPoseOptions
        with pytest.raises(AttributeError):
            options.stages = 2  # type: ignore[misc]

    def test_models_that_do_not_fit_the_views_are_refused(self, frames, tmp_path, models):
        views = frames[0]
        other = ModelConfig(num_stages=1, spec="16,ccat,8", skeleton="coco_17")
        path = save_weights(tmp_path / "coco.safetensors", other, random_tensors(other))
        with pytest.raises(ValueError, match=r"^weights: .*coco.safetensors is a model of skeleton 'coco_17'"):
            mg.solve(views, "metapose", {"weights": str(path)})
        three = ModelConfig(num_stages=1, spec="16,ccat,8", num_components=3)
        path = save_weights(tmp_path / "k3.safetensors", three, random_tensors(three))
        with pytest.raises(ValueError, match=r"^mixtures: the stage-2 network takes at most 3 components per joint, got 4"):
            mg.solve(views, "metapose", {"weights": str(path)})
        path = save_weights(tmp_path / "flat.safetensors", FLAT, tensors_of(models["flat"]))
        with pytest.raises(ValueError, match=r"^mixtures: this flat stage-2 model takes 3 cameras, got 4"):
            mg.solve(views, "metapose", {"weights": str(path)})

    def test_keypoint_views_with_fewer_components_get_zero_weight_ones(self, weights_path):
        scene = synth.make_scene(5, 3)
        views = mg.Views.from_keypoints(scene.pose2d, np.full(scene.pose2d.shape[:2], 0.9), mono3d=scene.mono3d,
                                        units="pixels")
        assert views.mixtures.shape[-2] == 2
        padded = pad_components(views.mixtures, 4)
        assert padded.shape[-2] == 4 and (padded[..., :2, :] == views.mixtures).all() and (padded[..., 2:, 0] == 0).all()
        points = views.mixtures[..., 0, 1:3] + 0.01
        assert np.allclose(geometry.mixture_log_likelihood(points, padded),
                           geometry.mixture_log_likelihood(points, views.mixtures), atol=1e-6)
        network = Stage2Network.load(weights_path)
        x0 = core.stage1(views.mono3d[None])
        expected = network.forward(padded[None], x0)[-1]
        solution = mg.solve(views, "metapose", {"weights": str(weights_path)})
        assert np.array_equal(solution.x, expected[0])

    def test_a_network_that_blows_up_names_the_frame(self, frames, tmp_path):
        config = CONFIGS["equivariant"]
        tensors = random_tensors(config)
        tensors["stages.1.camera_head.bias"] = np.full(10, 1e308)
        path = save_weights(tmp_path / "huge.safetensors", config, tensors)
        with pytest.raises(ValueError, match=r"^frames\[0\]: "):
            mg.solve_batch(frames, "metapose", {"weights": str(path)}, progress=False)
        with pytest.raises(ValueError, match=r"^dtype: .*huge.safetensors holds values beyond float32"):
            mg.solve(frames[0], "metapose", {"weights": str(path), "dtype": "float32"})


# --------------------------------------------------------------------------- no torch


def test_metapose_runs_with_torch_blocked(frames, weights_path):
    """A process where ``import torch`` fails imports metapose_geom and solves with "metapose"; its
    answer is this process's, bit for bit."""
    views = frames[0]
    expected = mg.solve(views, "metapose", {"weights": str(weights_path)}).x
    program = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        import json
        import metapose_geom as mg
        scene = mg.synth.make_scenes(7, num_cameras=4, seed=5)[0]
        solution = mg.solve(scene.views(), "metapose", {{"weights": {str(weights_path)!r}}})
        assert sys.modules["torch"] is None
        print(json.dumps([value.hex() for value in solution.x.tolist()]))
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    got = np.array([float.fromhex(value) for value in json.loads(result.stdout)])
    np.testing.assert_array_equal(got, expected)
