"""One frame's ``solve`` and the core call behind it: ``_core.solve_weak`` (the start's objective, the
refiner, camera 0's frame, the reprojection and its pixels in one call) against the separate core
calls and numpy, and ``solve`` against ``solve_batch`` bit for bit across methods and inputs."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import _core, geometry, layout, synth
from metapose_geom.views import box_to_pixels

ADAM = (40, 1e-2, 0.9, 0.999, 1e-7)  # steps, learning rate, beta1, beta2, epsilon


@pytest.fixture(scope="module")
def batch():
    """Five four-camera frames' arrays and their stage-1 starts."""
    views = [scene.views() for scene in synth.make_scenes(5, num_cameras=4, seed=11)]
    mixtures = np.stack([v.mixtures for v in views])
    x0 = _core.stage1(np.stack([v.mono3d for v in views]))
    boxes = np.stack([v.boxes for v in views])
    bones = np.array(mg.H36M_17.bones, dtype=np.int64)
    rng = np.random.default_rng(3)
    reference = rng.uniform(0.5, 1.5, size=(5, len(bones)))  # per-frame references, to see they stay apart
    return mixtures, x0, boxes, bones, reference


def _bytes_equal(got, want, name):
    assert got.shape == want.shape and got.dtype == want.dtype, name
    assert got.tobytes() == want.tobytes(), name


class TestFusedCoreCall:
    @pytest.mark.parametrize("refine", [True, False])
    def test_equals_the_separate_core_calls(self, batch, refine):
        mixtures, x0, boxes, bones, reference = batch
        (x, objective, start, history_x, history_objective, pose, rotation, scale, shift, reprojection, pixels,
         problem) = _core.solve_weak(mixtures, x0, bones, reference, 0.3, *ADAM, 10, refine, boxes)
        assert problem is None
        want_start, _ = _core.refiner_objective(mixtures, x0, bones, reference, 0.3)
        _bytes_equal(start, want_start, "start objective")
        if refine:
            want = _core.refine(mixtures, x0, bones, reference, 0.3, *ADAM, 10)
            for got, expected, name in zip((x, objective, history_x, history_objective), want,
                                           ("x", "objective", "history_x", "history_objective")):
                _bytes_equal(got, expected, name)
        else:
            _bytes_equal(x, x0, "x")
            _bytes_equal(objective, want_start, "objective")
            assert history_x.shape == (5, 0, x0.shape[1]) and history_objective.shape == (5, 0)
        # camera 0's frame: numpy's layout.in_camera0 to rounding (its bits where BLAS sums 3 terms by FMA in order)
        expected = layout.in_camera0(x, 4, 17)
        for got, want, name in zip((pose, rotation, scale, shift), expected, ("pose", "rotation", "scale", "shift")):
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(rotation[:, 0], np.broadcast_to(np.eye(3), (5, 3, 3)), rtol=0, atol=1e-15)
        np.testing.assert_array_equal(scale[:, 0], 1.0)
        # the reprojection and pixels are those of the core's projection and of box_to_pixels, bit for bit
        _bytes_equal(reprojection, _core.project_weak(pose, rotation, scale, shift), "reprojection")
        for b in range(5):
            _bytes_equal(pixels[b], box_to_pixels(reprojection[b], boxes[b]), f"pixels of frame {b}")

    def test_without_boxes_the_pixels_are_box_units(self, batch):
        mixtures, x0, _, bones, reference = batch
        result = _core.solve_weak(mixtures, x0, bones, reference, 0.0, *ADAM, 0, True, None)
        _bytes_equal(result[10], result[9], "pixels")
        assert result[10] is not result[9]

    def test_a_frame_alone_gives_its_bits_in_the_batch(self, batch):
        mixtures, x0, boxes, bones, reference = batch
        together = _core.solve_weak(mixtures, x0, bones, reference, 0.1, *ADAM, 10, True, boxes)
        alone = _core.solve_weak(mixtures[3:4], x0[3:4], bones, reference[3:4], 0.1, *ADAM, 10, True, boxes[3:4])
        for i, (a, b) in enumerate(zip(alone[:-1], together[:-1])):
            _bytes_equal(a[0], b[3], f"output {i}")

    def test_arguments_are_checked(self, batch):
        mixtures, x0, boxes, bones, reference = batch
        with pytest.raises(ValueError, match="^refine: expected a bool"):
            _core.solve_weak(mixtures, x0, bones, reference, 0.0, *ADAM, 0, 1, boxes)
        with pytest.raises(ValueError, match=r"^boxes: C = 3 does not match mixtures' C = 4"):
            _core.solve_weak(mixtures, x0, bones, reference, 0.0, *ADAM, 0, True, boxes[:, :3])
        with pytest.raises(ValueError, match=r"^boxes: leading \(batch\) shape"):
            _core.solve_weak(mixtures, x0, bones, reference, 0.0, *ADAM, 0, True, boxes[:2])
        with pytest.raises(ValueError, match="^history_every"):
            _core.solve_weak(mixtures, x0, bones, reference, 0.0, *ADAM, -1, True, boxes)

    def test_a_relative_scale_beyond_float64_is_reported_not_raised(self, batch):
        """Finite x whose camera-1 scale is softplus(-1e3) = 0: the frame is reported as kind 1
        (lowest kind first, then lowest frame) and the others are still expressed."""
        mixtures, x0, boxes, bones, reference = batch
        x = x0.copy()
        x[1, layout.Layout.of(4, 17).scale_raw.start + 1] = -1e3
        x[4, layout.Layout.of(4, 17).scale_raw.start + 2] = -1e3
        result = _core.solve_weak(mixtures, x, bones, reference, 0.0, *ADAM, 0, False, boxes)
        assert result[-1] == (1, 1, 0)
        np.testing.assert_allclose(result[5][0], layout.in_camera0(x[:1], 4, 17).pose[0], rtol=1e-14, atol=1e-15)


def _frames(kind: str) -> list[mg.Views]:
    """Three frames of one kind of input: with boxes and guesses, without boxes, without guesses."""
    views = [scene.views() for scene in synth.make_scenes(3, num_cameras=3, seed=5)]
    if kind == "no boxes":
        views = [dataclasses.replace(v, boxes=None) for v in views]
    elif kind == "no mono3d":
        views = [dataclasses.replace(v, mono3d=None) for v in views]
    return views


def _assert_bytes_equal(a: mg.Solution, b: mg.Solution) -> None:
    assert (a.method, a.objective, a.diverged) == (b.method, b.objective, b.diverged)
    for name in ("x", "pose3d", "reprojection", "reprojection_pixels"):
        _bytes_equal(getattr(a, name), getattr(b, name), name)
    for name in ("rotation", "scale", "shift"):
        _bytes_equal(getattr(a.cameras, name), getattr(b.cameras, name), f"cameras.{name}")
    assert (a.history is None) == (b.history is None)
    if a.history is not None:
        for name in ("steps", "objective", "pose3d", "rotation", "scale", "shift"):
            _bytes_equal(getattr(a.history, name), getattr(b.history, name), f"history.{name}")


class TestSolveEqualsSolveBatch:
    # a frame's flag and warning are its own alone or in a batch (diverged is compared below)
    @pytest.mark.filterwarnings("ignore::metapose_geom.solver.DivergenceWarning")
    @pytest.mark.parametrize("kind", ["boxes", "no boxes", "no mono3d"])
    @pytest.mark.parametrize("method, options", [
        ("s1", None), ("ir", None), ("ir", {"history_every": 7, "bone_weight": 0.2, "steps": 30}),
        ("metapose", None), ("metapose", {"ir_steps": 5}),
    ], ids=["s1", "ir", "ir-history-bones", "metapose", "metapose-ir"])
    def test_bit_for_bit(self, kind, method, options):
        frames = _frames(kind)
        together = mg.solve_batch(frames, method, options, progress=False, chunk_size=2)
        for views, solution in zip(frames, together):
            alone = mg.solve(views, method, options)
            _assert_bytes_equal(alone, solution)
            assert isinstance(alone.cameras, mg.WeakCameras) and alone.x.flags.owndata

    def test_mixed_boxes_keep_box_units_for_the_frames_without(self):
        frames = _frames("boxes")
        frames[1] = dataclasses.replace(frames[1], boxes=None)
        together = mg.solve_batch(frames, "ir", progress=False)
        for views, solution in zip(frames, together):
            _assert_bytes_equal(mg.solve(views, "ir"), solution)
        _bytes_equal(together[1].reprojection_pixels, together[1].reprojection, "pixels of the frame without boxes")


def test_a_lazy_name_is_kept_after_its_first_use():
    """``mg.solve`` in a loop is a plain attribute read once the solver is loaded."""
    solver = importlib.import_module("metapose_geom.solver")
    assert mg.solve is solver.solve
    assert vars(mg)["solve"] is solver.solve
