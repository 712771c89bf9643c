"""The torch device path (``solve_batch`` / ``solve_arrays`` with ``device=``) against the compiled core.

* :func:`metapose_geom.nn.stage1.stage1` equals ``_core.stage1`` to :data:`STAGE1_TOL` on
  synthetic guesses, mirrored views, scales past the inverse softplus's cut-over, planar guesses,
  and on the degenerate inputs: M = 0 (the identity, as the core), collinear guesses (a family of
  optimal rotations: the same pose, scales and shifts, a rotation just as good), a guess with all
  joints at one point (``defined`` False; the core raises).
* ``device="cpu"`` (a string or a ``torch.device``) equals ``device=None`` (the core) to
  :data:`DEVICE_TOL` for "s1" and "ir", with and without monocular guesses, C = 2..5, K = 1 and 4,
  missing joints, boxes, the bone term, the history, the random start; the divergence flags and
  warning and the per-frame errors are the core path's; results do not depend on chunk_size.
* Bad devices, CUDA where there is none, methods without a device path, and torch missing are
  clear errors.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

import metapose_geom as mg
from metapose_geom import _core, layout, synth
from metapose_geom.mixtures import UNINFORMATIVE_VARIANCE
from metapose_geom.nn.stage1 import stage1
from metapose_geom.solver import DivergenceWarning

from conftest import random_rotations

#: torch stage 1 against the core's, relative to the largest value compared (same formulas,
#: different summation order and eigen-solver)
STAGE1_TOL = 1e-12
#: the device path against the core path, absolute on every field (box units, objective; pixels
#: divided by the box size): the largest difference over this file's cases is 7.2e-10 (C = 2, K = 1,
#: the frame with missing joints; most cases 1e-15 .. 1e-12), as 100 Adam steps that divide by
#: sqrt(v) + 1e-7 carry the rounding differences of the gradient forward; 2e-9 leaves a factor ~3
#: for the rounding of the core's other instruction-set levels (the goal was 1e-6)
DEVICE_TOL = 2e-9

#: the BatchSolution fields in box units (and the objective); reprojection_pixels is compared in
#: units of each view's box size
FIELDS = ("pose3d", "rotation", "scale", "shift", "reprojection", "objective", "x")


@pytest.fixture(scope="module", autouse=True)
def torch_one_thread():
    """torch on one thread: on this shared 2-core machine two threads make the small batches here
    several times slower. The device path itself leaves torch's thread count to the caller."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _arrays(scenes):
    frames = [scene.views() for scene in scenes]
    return (np.stack([f.mixtures for f in frames]), np.stack([f.mono3d for f in frames]),
            np.stack([f.boxes for f in frames]))


@pytest.fixture(scope="module")
def batches():
    """(C, K) -> mixtures (6, C, 17, K, 4), mono3d, boxes of synthetic frames, with two joints of
    frame 1 missing in one view (an uninformative mixture: one component of a box's variance)."""
    out = {}
    for cameras in (2, 3, 4, 5):
        for components in (1, 4):
            mixtures, mono3d, boxes = _arrays(synth.make_scenes(6, num_cameras=cameras, seed=cameras,
                                                                num_components=components))
            mixtures[1, cameras - 1, [3, 13]] = [0.0, 0.5, 0.5, UNINFORMATIVE_VARIANCE]
            mixtures[1, cameras - 1, [3, 13], 0, 0] = 1.0
            out[cameras, components] = mixtures, mono3d, boxes
    return out


def _difference(got, want, boxes=None) -> float:
    """The largest absolute disagreement over the BatchSolution fields and the history, in box
    units (pixels divided by the largest box side)."""
    worst = max(float(np.abs(getattr(got, name) - getattr(want, name)).max()) for name in FIELDS)
    size = 1.0 if boxes is None else float(boxes[..., 2:].max())
    worst = max(worst, float(np.abs(got.reprojection_pixels - want.reprojection_pixels).max()) / size)
    if want.history is not None:
        for name in ("objective", "pose3d", "rotation", "scale", "shift"):
            worst = max(worst, float(np.abs(getattr(got.history, name) - getattr(want.history, name)).max()))
        np.testing.assert_array_equal(got.history.steps, want.history.steps)
    return worst


def _assert_equal_to_core(mixtures, mono3d, boxes, method, options=None, device="cpu", **kwargs):
    want = mg.solve_arrays(mixtures, mono3d, boxes, method, options, progress=False, **kwargs)
    got = mg.solve_arrays(mixtures, mono3d, boxes, method, options, progress=False, device=device, **kwargs)
    assert type(got) is type(want) and got.method == want.method
    for name in FIELDS + ("reprojection_pixels",):
        assert getattr(got, name).dtype == np.float64 and getattr(got, name).shape == getattr(want, name).shape
    assert (got.history is None) == (want.history is None)
    np.testing.assert_array_equal(got.diverged, want.diverged)
    assert _difference(got, want, boxes) < DEVICE_TOL
    return got, want


# --------------------------------------------------------------------------- stage 1 in torch


def _core_frame(mono3d):
    C, J = mono3d.shape[-3:-1]
    return layout.in_camera0(_core.stage1(mono3d), C, J)


def _torch_frame(mono3d):
    result = stage1(torch.from_numpy(mono3d))
    assert bool(result.defined.all())
    C, J = mono3d.shape[-3:-1]
    return layout.in_camera0(result.x.numpy(), C, J)


def _relative(got, want) -> float:
    return max(float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-300)) for g, w in zip(got, want))


def _guesses(rng, shape, cameras, joints=17, mirror=False, scale=1.0):
    """Noisy rotated, scaled, shifted copies of one random pose per frame: (*shape, C, J, 3)."""
    pose = rng.normal(size=tuple(shape) + (1, joints, 3))
    rotations = random_rotations(rng, tuple(shape) + (cameras,))
    scales = scale * rng.uniform(0.5, 2.0, size=tuple(shape) + (cameras, 1, 1))
    guesses = scales * pose @ rotations + rng.normal(size=tuple(shape) + (cameras, 1, 3))
    guesses = guesses + 0.05 * rng.normal(size=guesses.shape)
    if mirror:
        guesses[..., 1, :, 2] *= -1.0  # view 1 depth-mirrored: the best rotation is no reflection
    return guesses


class TestStage1:
    @pytest.mark.parametrize("cameras", [2, 3, 4, 5])
    @pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
    def test_equals_the_core(self, rng, cameras, shape):
        mono3d = _guesses(rng, shape, cameras)
        x = stage1(torch.from_numpy(mono3d)).x.numpy()
        np.testing.assert_allclose(x, _core.stage1(mono3d), rtol=0, atol=STAGE1_TOL * np.abs(x).max())
        assert _relative(_torch_frame(mono3d), _core_frame(mono3d)) < STAGE1_TOL

    def test_synthetic_monocular_guesses(self, batches):
        mono3d = batches[4, 4][1]
        assert _relative(_torch_frame(mono3d), _core_frame(mono3d)) < STAGE1_TOL

    def test_mirrored_views_get_the_cores_proper_rotation(self, rng):
        mono3d = _guesses(rng, (8,), 3, mirror=True)
        frame = _torch_frame(mono3d)
        np.testing.assert_allclose(np.linalg.det(frame.rotation), 1.0, atol=1e-12)
        assert _relative(frame, _core_frame(mono3d)) < STAGE1_TOL

    def test_scales_past_the_inverse_softplus_cut_over(self, rng):
        mono3d = _guesses(rng, (4,), 3)
        mono3d[:, 1] *= 100.0  # s ~ 50 .. 400 > 30: log1p branch
        mono3d[:, 2] *= 1e-3
        frame = _torch_frame(mono3d)
        assert (frame.scale[:, 1] > 30).all()
        x = stage1(torch.from_numpy(mono3d)).x.numpy()
        np.testing.assert_allclose(x, _core.stage1(mono3d), rtol=STAGE1_TOL, atol=STAGE1_TOL)

    def test_planar_guesses(self, rng):
        mono3d = _guesses(rng, (4,), 3)
        mono3d[..., 2] = mono3d[..., 2].mean(axis=-1, keepdims=True)  # every view flat in depth: rank-2 M
        assert _relative(_torch_frame(mono3d), _core_frame(mono3d)) < STAGE1_TOL

    def test_orthogonal_guesses_give_the_identity_as_the_core(self):
        """A^T B = 0: every rotation is as good; the core's Jacobi solver keeps the identity."""
        a = np.array([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])
        b = np.array([[0.0, 0, 1], [0, 0, 1], [0, 0, -1], [0, 0, -1]])
        mono3d = np.stack([a, b])[None]
        assert np.abs(a.T @ b).max() == 0.0
        frame = _torch_frame(mono3d)
        np.testing.assert_array_equal(frame.rotation[0, 1], np.eye(3))
        assert _relative(frame, _core_frame(mono3d)) < STAGE1_TOL

    def test_collinear_guesses_give_an_equally_good_rotation(self, rng):
        """Guesses on a line: any rotation about it is optimal, and each solver picks its own; the
        pose, scales and shifts are the same, and so is how well the rotation fits (trace(R^T M))."""
        line = rng.normal(size=(17, 1)) * np.array([[1.0, 2.0, -0.5]])
        mono3d = np.stack([line, 1.5 * line[:, ::-1] + 3.0, -0.7 * line])[None]
        got, want = _torch_frame(mono3d), _core_frame(mono3d)
        for name in ("pose", "scale", "shift"):
            assert _relative([getattr(got, name)], [getattr(want, name)]) < 1e-10, name
        centred = mono3d[0] - mono3d[0].mean(axis=-2, keepdims=True)
        for k in (1, 2):
            M = centred[0].T @ centred[k]
            assert np.trace(got.rotation[0, k].T @ M) == pytest.approx(np.trace(want.rotation[0, k].T @ M),
                                                                          rel=1e-12)

    def test_a_view_at_one_point_is_not_defined(self, rng):
        mono3d = _guesses(rng, (3,), 3)
        mono3d[1, 2] = [0.5, -2.0, 4.0]  # exact mean over 17 joints
        result = stage1(torch.from_numpy(mono3d))
        np.testing.assert_array_equal(result.defined.numpy(), [True, False, True])
        assert not np.isfinite(result.x[1].numpy()).all()
        with pytest.raises(ValueError, match="one point"):
            _core.stage1(mono3d)

    def test_float32_and_shape_check(self, rng):
        mono3d = _guesses(rng, (4,), 3)
        x32 = stage1(torch.from_numpy(mono3d).float()).x
        assert x32.dtype == torch.float32
        np.testing.assert_allclose(x32.numpy(), _core.stage1(mono3d), atol=1e-4)
        with pytest.raises(ValueError, match=r"mono3d: expected shape \(\.\.\., C >= 2, J, 3\)"):
            stage1(torch.zeros(1, 17, 3, dtype=torch.float64))


# --------------------------------------------------------------------------- the device path equals the core


class TestEqualsTheCore:
    @pytest.mark.parametrize("cameras", [2, 3, 4, 5])
    @pytest.mark.parametrize("components", [1, 4])
    @pytest.mark.parametrize("method", ["s1", "ir"])
    def test_with_monocular_guesses(self, batches, cameras, components, method):
        mixtures, mono3d, boxes = batches[cameras, components]
        _assert_equal_to_core(mixtures, mono3d, boxes, method)

    @pytest.mark.parametrize("cameras", [3, 4])
    @pytest.mark.parametrize("method", ["s1", "ir"])
    def test_without_monocular_guesses_the_numpy_start_is_moved_there(self, batches, cameras, method):
        mixtures, _, boxes = batches[cameras, 4]
        _assert_equal_to_core(mixtures, None, boxes, method)

    def test_without_boxes(self, batches):
        mixtures, mono3d, _ = batches[4, 4]
        got, _ = _assert_equal_to_core(mixtures, mono3d, None, "ir")
        np.testing.assert_array_equal(got.reprojection_pixels, got.reprojection)

    def test_bone_term_history_and_random_start(self, batches):
        mixtures, mono3d, boxes = batches[4, 4]
        options = {"bone_weight": 0.1, "history_every": 10, "init": "random", "seed": 3, "steps": 60}
        got, _ = _assert_equal_to_core(mixtures, mono3d, boxes, "ir", options)
        assert got.history.steps.tolist() == list(range(0, 61, 10))
        _assert_equal_to_core(mixtures, mono3d, boxes, "ir", {"bone_weight": 0.5, "history_every": 7})
        _assert_equal_to_core(mixtures, mono3d, boxes, "s1", {"bone_weight": 0.5})

    def test_a_torch_device_equals_the_string(self, batches):
        mixtures, mono3d, boxes = batches[3, 4]
        by_name = mg.solve_arrays(mixtures, mono3d, boxes, device="cpu", progress=False)
        by_device = mg.solve_arrays(mixtures, mono3d, boxes, device=torch.device("cpu"), progress=False)
        for name in FIELDS + ("reprojection_pixels",):
            np.testing.assert_array_equal(getattr(by_device, name), getattr(by_name, name))

    def test_solve_batch_gives_the_same_solutions(self, batches):
        mixtures, mono3d, boxes = batches[4, 4]
        frames = [mg.Views(m, g, b) for m, g, b in zip(mixtures, mono3d, boxes)]
        listed = mg.solve_batch(frames, "ir", {"history_every": 50}, progress=False, device="cpu")
        stacked = mg.solve_arrays(mixtures, mono3d, boxes, "ir", {"history_every": 50}, progress=False,
                                  device="cpu")
        assert len(listed) == len(frames) and all(isinstance(s, mg.Solution) for s in listed)
        for i, solution in enumerate(listed):
            np.testing.assert_array_equal(solution.pose3d, stacked.pose3d[i])
            np.testing.assert_array_equal(solution.history.objective, stacked.history.objective[i])
        core = mg.solve_batch(frames, "ir", {"history_every": 50}, progress=False)
        assert max(float(np.abs(a.pose3d - b.pose3d).max()) for a, b in zip(listed, core)) < DEVICE_TOL

    def test_results_do_not_depend_on_chunk_size(self, batches):
        """Every torch operation treats frames alone; on one CPU thread a frame's bits are the same
        in any chunk (on a GPU or several threads, reductions may be ordered differently)."""
        mixtures, mono3d, boxes = (array[:4] for array in batches[4, 4])
        whole = mg.solve_arrays(mixtures, mono3d, boxes, "ir", progress=False, device="cpu")
        for chunk_size in (1, 3):
            chunked = mg.solve_arrays(mixtures, mono3d, boxes, "ir", progress=False, device="cpu",
                                      chunk_size=chunk_size)
            assert _difference(chunked, whole, boxes) == 0.0  # one torch thread: the same bits


# --------------------------------------------------------------------------- flags and errors as the core path's


class TestFlagsAndErrors:
    def test_divergence_flags_and_warning(self, batches):
        mixtures, mono3d, boxes = batches[4, 4]
        for device in (None, "cpu"):
            with pytest.warns(DivergenceWarning, match=r"6 of 6 frames.*learning_rate") as caught:
                batch = mg.solve_arrays(mixtures, mono3d, boxes, options={"learning_rate": 1.0}, chunk_size=4,
                                        progress=False, device=device)
            assert len(caught) == 1 and batch.diverged.all()

    def test_no_flags_at_the_default_options(self, batches):
        mixtures, mono3d, boxes = batches[4, 4]
        with warnings.catch_warnings():
            warnings.simplefilter("error", DivergenceWarning)
            batch = mg.solve_arrays(mixtures, mono3d, boxes, progress=False, device="cpu")
        assert not batch.diverged.any()

    def _messages(self, run):
        messages = []
        for device in (None, "cpu"):
            with pytest.raises(ValueError) as caught:
                run(device)
            messages.append(str(caught.value))
        return messages

    def test_a_point_guess_is_named_as_the_core_names_it(self, batches):
        mixtures, mono3d, boxes = batches[3, 4]
        mono3d = mono3d.copy()
        mono3d[4, 2] = 0.5
        core, device = self._messages(lambda d: mg.solve_arrays(mixtures, mono3d, boxes, "s1", progress=False,
                                                                chunk_size=3, device=d))
        assert device == core and core.startswith("mono3d: frame 4, camera 2's guess has all its joints at one point")

    def test_a_guess_that_overflows_is_named_as_the_core_names_it(self, batches):
        mixtures, mono3d, boxes = batches[3, 4]
        mono3d = mono3d.copy()
        mono3d[2, 1] *= 1e300
        mono3d[2, 1, 0] = 1e300  # the centred norm overflows: the scale is not finite
        core, device = self._messages(lambda d: mg.solve_arrays(mixtures, mono3d, boxes, "s1", progress=False,
                                                                device=d))
        assert device == core and core.startswith("frames[2]: mono3d: values too large")

    def test_stage1_without_guesses_is_the_cores_error(self, batches):
        mixtures, _, boxes = batches[3, 4]
        core, device = self._messages(lambda d: mg.solve_arrays(mixtures, None, boxes, "ir", {"init": "s1"},
                                                                progress=False, device=d))
        assert device == core and "stage 1 needs monocular 3D guesses" in core

    def test_a_refinement_that_leaves_float64_is_named(self, batches):
        mixtures, mono3d, boxes = batches[3, 4]
        core, device = self._messages(lambda d: mg.solve_arrays(mixtures[:3], mono3d[:3], boxes[:3], "ir",
                                                                {"learning_rate": 1e300, "steps": 5},
                                                                progress=False, device=d))
        assert device.startswith("frames[") and "refinement diverged" in device and "lower learning_rate" in device
        assert core.startswith("frames[") and "refinement diverged" in core


class TestDeviceArgument:
    @pytest.mark.parametrize("device", ["gpu", "cuda:x", 3, 1.5, "meta", b"cpu"])
    def test_bad_values(self, batches, device):
        mixtures, mono3d, boxes = batches[2, 1]
        with pytest.raises(ValueError, match="^device: "):
            mg.solve_arrays(mixtures, mono3d, boxes, device=device, progress=False)

    @pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
    @pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
    def test_cuda_where_there_is_none(self, batches, device):
        mixtures, mono3d, boxes = batches[2, 1]
        with pytest.raises(ValueError, match=r"^device: .*asked for CUDA.*torch.cuda.is_available\(\) is False"):
            mg.solve_arrays(mixtures, mono3d, boxes, device=device, progress=False)
        with pytest.raises(ValueError, match=r"^device: .*asked for CUDA"):
            mg.solve_batch([mg.Views(mixtures[0], mono3d[0], boxes[0])], device=device, progress=False)

    def test_methods_without_a_device_path(self, batches):
        mixtures, mono3d, boxes = batches[2, 4]
        with pytest.raises(ValueError, match=r"^device: method 'metapose' has no torch device path"):
            mg.solve_arrays(mixtures, mono3d, boxes, "metapose", device="cpu", progress=False)
        views = [mg.Views(mixtures[0], mono3d[0], boxes[0])]
        with pytest.raises(ValueError, match=r"^device: method 'anipose' has no torch device path"):
            mg.solve_batch(views, "anipose", cameras=[None], device="cpu", progress=False)  # type: ignore[list-item]

    def test_without_torch_the_error_names_the_train_extra(self, batches, monkeypatch):
        mixtures, mono3d, boxes = batches[2, 1]
        monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
        with pytest.raises(ImportError, match=r"device: .*needs torch.*metapose-geom\[train\]"):
            mg.solve_arrays(mixtures, mono3d, boxes, device="cpu", progress=False)
        # the core path needs no torch
        assert np.isfinite(mg.solve_arrays(mixtures, mono3d, boxes, "s1", progress=False).pose3d).all()
