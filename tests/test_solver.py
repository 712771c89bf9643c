"""solve / solve_batch: stage 1 and the iterative refiner end to end on synthetic scenes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import geometry, layout, metrics, synth
from metapose_geom.solver import DivergenceWarning, RefineOptions, methods, solution_size
from metapose_geom.views import box_to_pixels


@pytest.fixture(scope="module")
def scenes():
    return synth.make_scenes(24, num_cameras=4, seed=11)


def _pmpjpe(solutions, scenes):
    return metrics.pmpjpe(np.stack([s.pose3d for s in solutions]), np.stack([s.pose3d for s in scenes]))


class TestOracle:
    @pytest.mark.parametrize("cameras", [3, 4, 8])
    def test_ground_truth_init_mixtures_and_weak_labels_give_sub_millimetre_error(self, cameras):
        """With perfect guesses, perfect evidence and a weak camera model that holds exactly, the
        solver must add no error: under 1 mm on a 1.5-1.95 m body. (Two weak views leave a
        one-parameter depth ambiguity that the mixtures cannot see, so there the refiner may drift
        along it: see test_two_cameras_keep_the_reprojection_exact.)"""
        for index, scene in enumerate(synth.make_scenes(4, num_cameras=cameras, seed=3)):
            views = scene.ablated_views(gt_init=True, gt_mixtures=True, weak_labels=True)
            for method in ("s1", "ir"):
                solution = mg.solve(views, method)
                error = float(metrics.pmpjpe(solution.pose3d, scene.pose3d))
                assert error < 1.0, f"scene {index}, {method}: {error:.3f} mm"

    def test_two_cameras_keep_the_reprojection_exact(self):
        scene = synth.make_scene(8, num_cameras=2)
        views = scene.ablated_views(gt_init=True, gt_mixtures=True, weak_labels=True)
        solution = mg.solve(views, "ir")
        assert float(metrics.pmpjpe(mg.solve(views, "s1").pose3d, scene.pose3d)) < 1e-6
        np.testing.assert_allclose(solution.reprojection, scene.weak_labels(), atol=2e-3)  # ~1 px in 500

    def test_stage1_from_ground_truth_guesses_recovers_the_weak_cameras(self):
        scene = synth.make_scene(5)
        views = scene.ablated_views(gt_init=True)
        solution = mg.solve(views, "s1")
        rotation, scale, _ = scene.weak_cameras()
        # Camera c's rotation relative to camera 0 is what a reference-free solver can recover.
        for c in range(1, scene.num_cameras):
            relative = rotation[0].T @ rotation[c]
            np.testing.assert_allclose(solution.cameras.rotation[c], relative, atol=1e-9)
            np.testing.assert_allclose(solution.cameras.scale[c], scale[c] / scale[0], rtol=1e-9)


class TestRefinement:
    def test_ir_lowers_the_objective_of_s1_on_every_frame(self, scenes):
        frames = [scene.views() for scene in scenes]
        s1 = mg.solve_batch(frames, "s1", progress=False)
        ir = mg.solve_batch(frames, "ir", progress=False)
        for a, b in zip(s1, ir):
            assert b.objective < a.objective

    def test_ir_lowers_the_pmpjpe_of_s1(self, scenes):
        frames = [scene.views() for scene in scenes]
        s1 = _pmpjpe(mg.solve_batch(frames, "s1", progress=False), scenes)
        ir = _pmpjpe(mg.solve_batch(frames, "ir", progress=False), scenes)
        assert ir.mean() < 0.8 * s1.mean()
        assert np.median(ir) < np.median(s1)

    def test_objective_matches_the_core_objective_at_the_solution(self, scenes):
        views = scenes[0].views()
        solution = mg.solve(views, "ir")
        bones = np.array(views.skeleton.bones, dtype=np.int64)
        reference = views.skeleton.bone_lengths(views.skeleton.rest_pose())[None]
        value, _ = mg.geometry._core.refiner_objective(views.mixtures[None], solution.x[None], bones, reference, 0.0)
        assert solution.objective == pytest.approx(float(value[0]), rel=1e-12)

    def test_reprojection_is_the_weak_projection_of_the_pose(self, scenes):
        views = scenes[1].views()
        solution = mg.solve(views, "ir")
        expected = geometry.project_weak(solution.pose3d, solution.cameras.rotation, solution.cameras.scale,
                                         solution.cameras.shift)
        np.testing.assert_allclose(solution.reprojection, expected, rtol=1e-12)
        size = views.boxes[:, 2:].max(axis=1)[:, None, None]
        np.testing.assert_allclose(solution.reprojection_pixels, expected * size + views.boxes[:, None, :2], rtol=1e-12)
        assert solution.cameras.rotation.shape == (4, 3, 3)
        np.testing.assert_allclose(solution.cameras.rotation[0], np.eye(3), atol=1e-14)
        assert solution.cameras.scale[0] == pytest.approx(1.0, rel=1e-14)

    def test_random_initialisation_converges_to_a_lower_objective(self, scenes):
        views = scenes[2].views()
        options = RefineOptions(init="random", steps=300, history_every=300, seed=4)
        solution = mg.solve(views, "ir", options)
        assert np.isfinite(solution.pose3d).all()
        assert solution.history.objective[-1] < solution.history.objective[0]

    def test_bone_term_pulls_bone_proportions_towards_the_reference(self, scenes):
        skeleton = mg.H36M_17
        reference = skeleton.bone_lengths(scenes[3].pose3d)
        errors = []
        for weight in (0.0, 1.0):
            options = RefineOptions(bone_weight=weight, bone_reference=tuple(reference))
            pose = mg.solve(scenes[3].views(), "ir", options).pose3d
            lengths = skeleton.bone_lengths(pose)
            errors.append(np.linalg.norm(lengths / lengths.mean() - reference / reference.mean()))
        assert errors[1] < errors[0]


class TestHistory:
    def test_history_starts_at_stage1_and_ends_at_the_solution(self, scenes):
        views = scenes[4].views()
        solution = mg.solve(views, "ir", {"history_every": 10})
        s1 = mg.solve(views, "s1")
        history = solution.history
        assert history.objective.shape == (11,)
        assert history.pose3d.shape == (11, 17, 3)
        assert history.rotation.shape == (11, 4, 3, 3)
        np.testing.assert_array_equal(history.steps, np.arange(0, 101, 10))
        assert history.objective[0] == pytest.approx(s1.objective, rel=1e-12)
        np.testing.assert_allclose(history.pose3d[0], s1.pose3d, rtol=0, atol=1e-14)
        assert history.objective[-1] == pytest.approx(solution.objective, rel=1e-12)
        np.testing.assert_allclose(history.pose3d[-1], solution.pose3d, rtol=0, atol=1e-14)

    def test_no_history_by_default(self, scenes):
        assert mg.solve(scenes[0].views(), "ir").history is None


class TestInvariance:
    def test_reordering_non_reference_cameras_leaves_the_pose_unchanged(self, scenes):
        views = scenes[5].views()
        order = [0, 3, 1, 2]
        for method in ("s1", "ir"):
            base = mg.solve(views, method)
            permuted = mg.solve(views.subset(order), method)
            scale = np.abs(base.pose3d).max()
            np.testing.assert_allclose(permuted.pose3d, base.pose3d, atol=1e-8 * scale)
            np.testing.assert_allclose(permuted.cameras.rotation, base.cameras.rotation[order], atol=1e-8)
            assert float(metrics.pmpjpe(permuted.pose3d, base.pose3d)) < 1e-8 * scale

    def test_changing_the_reference_camera_changes_the_pose_only_by_a_similarity(self, scenes):
        views = scenes[6].ablated_views(gt_init=True, gt_mixtures=True, weak_labels=True)
        base = mg.solve(views, "ir").pose3d
        other = mg.solve(views.subset([2, 0, 1, 3]), "ir").pose3d
        assert float(metrics.pmpjpe(other, base)) < 1e-3 * np.abs(base).max()


def _assert_same_solution(a, b):
    """Every array of two Solutions bit for bit."""
    assert a.method == b.method and a.objective == b.objective and a.diverged == b.diverged
    for name in ("x", "pose3d", "reprojection", "reprojection_pixels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("rotation", "scale", "shift"):
        np.testing.assert_array_equal(getattr(a.cameras, name), getattr(b.cameras, name), err_msg=f"cameras.{name}")
    assert (a.history is None) == (b.history is None)
    if a.history is not None:
        for name in ("steps", "objective", "pose3d", "rotation", "scale", "shift"):
            np.testing.assert_array_equal(getattr(a.history, name), getattr(b.history, name), err_msg=f"history.{name}")


class TestBatch:
    @pytest.mark.parametrize("method", ["s1", "ir"])
    @pytest.mark.parametrize("threads", [1, 2])
    def test_solve_batch_equals_solve(self, scenes, method, threads):
        frames = [scene.views() for scene in scenes[:7]]
        previous = mg.get_num_threads()
        mg.set_num_threads(threads)
        try:
            batch = mg.solve_batch(frames, method, {"history_every": 25}, progress=False, chunk_size=3)
        finally:
            mg.set_num_threads(previous)
        for views, together in zip(frames, batch):
            alone = mg.solve(views, method, {"history_every": 25})
            _assert_same_solution(together, alone)

    def test_frames_with_and_without_boxes_mix_in_a_batch(self, scenes):
        frames = [scene.views() for scene in scenes[:4]]
        frames[1] = dataclasses.replace(frames[1], boxes=None)  # pixels are box units for this one
        batch = mg.solve_batch(frames, "ir", progress=False)
        for views, together in zip(frames, batch):
            _assert_same_solution(together, mg.solve(views, "ir"))
        np.testing.assert_array_equal(batch[1].reprojection_pixels, batch[1].reprojection)
        expected = box_to_pixels(batch[2].reprojection, frames[2].boxes)
        np.testing.assert_array_equal(batch[2].reprojection_pixels, expected)

    def test_solve_batch_with_random_init_equals_solve(self, scenes):
        frames = [scene.views() for scene in scenes[:3]]
        options = {"init": "random", "steps": 20}
        for views, together in zip(frames, mg.solve_batch(frames, "ir", options, progress=False)):
            np.testing.assert_array_equal(together.x, mg.solve(views, "ir", options).x)

    def test_frames_must_share_shapes(self, scenes):
        frames = [scenes[0].views(), scenes[1].views().subset([0, 1, 2])]
        with pytest.raises(ValueError, match="frames\\[1\\]"):
            mg.solve_batch(frames, progress=False)
        with pytest.raises(ValueError, match="frames"):
            mg.solve_batch([], progress=False)
        with pytest.raises(ValueError, match="chunk_size"):
            mg.solve_batch(frames[:1], chunk_size=0, progress=False)


class TestOptions:
    def test_defaults_are_the_originals(self):
        options = RefineOptions()
        assert (options.steps, options.learning_rate, options.beta1, options.beta2, options.epsilon) == (
            100, 1e-2, 0.9, 0.999, 1e-7)

    def test_unknown_names_are_rejected(self, scenes):
        with pytest.raises(ValueError, match="unknown name.*'step'"):
            RefineOptions.from_mapping({"step": 10})
        with pytest.raises(ValueError, match="unknown"):
            mg.solve(scenes[0].views(), "ir", {"lr": 0.1})

    @pytest.mark.parametrize(
        "name, value",
        [("steps", -1), ("steps", 1.5), ("learning_rate", -1.0), ("learning_rate", float("nan")), ("beta1", 1.0),
         ("beta2", 1.5), ("epsilon", 0.0), ("bone_weight", -0.1), ("history_every", -2), ("init", "zeros"),
         ("bone_reference", (1.0, float("nan")))],
    )
    def test_bad_values_are_rejected(self, name, value):
        with pytest.raises(ValueError, match=name):
            RefineOptions(**{name: value})

    def test_options_are_frozen(self):
        with pytest.raises(dataclasses.FrozenInstanceError):
            RefineOptions().steps = 3  # type: ignore[misc]

    def test_bone_reference_must_match_the_skeleton(self, scenes):
        with pytest.raises(ValueError, match="bone_reference"):
            mg.solve(scenes[0].views(), "ir", {"bone_weight": 1.0, "bone_reference": (1.0, 2.0)})


class TestBadInput:
    def test_method_is_checked(self, scenes):
        with pytest.raises(ValueError, match="method"):
            mg.solve(scenes[0].views(), "bundle")

    def test_views_must_be_views(self):
        with pytest.raises(ValueError, match="views"):
            mg.solve(np.zeros((4, 17, 4, 4)))  # type: ignore[arg-type]

    def test_stage1_needs_monocular_guesses(self, scenes):
        views = scenes[0].views()
        bare = mg.Views(views.mixtures, None, views.boxes)
        for method in ("s1", "ir"):
            with pytest.raises(ValueError, match="mono3d: stage 1 needs.*'factorization'"):
                mg.solve(bare, method, {"init": "s1"})
        assert np.isfinite(mg.solve(bare, "ir", {"init": "random"}).pose3d).all()
        # without guesses the default start is the factorisation of the 2D evidence
        assert np.isfinite(mg.solve(bare, "s1").pose3d).all() and np.isfinite(mg.solve(bare, "ir").pose3d).all()

    def test_degenerate_guess_is_reported(self, scenes):
        views = scenes[0].views()
        mono3d = views.mono3d.copy()
        mono3d[2] = 0.5
        with pytest.raises(ValueError, match="mono3d.*one point"):
            mg.solve(mg.Views(views.mixtures, mono3d, views.boxes), "s1")

    def test_diverging_refinement_is_an_error_not_nan(self, scenes):
        with pytest.raises(ValueError, match="diverged|overflow|too large"):
            mg.solve(scenes[0].views(), "ir", {"learning_rate": 1e300, "steps": 5})

    def test_core_rejects_wrong_solution_size(self, scenes):
        views = scenes[0].views()
        bones = np.array(views.skeleton.bones, dtype=np.int64)
        reference = np.ones((1, len(bones)))
        x = np.zeros((1, solution_size(4, 17) - 1))
        with pytest.raises(ValueError, match="x: expected P"):
            mg.geometry._core.refine(views.mixtures[None], x, bones, reference, 0.0, 10, 1e-2, 0.9, 0.999, 1e-7, 0)
        with pytest.raises(ValueError, match="bones"):
            mg.geometry._core.refiner_objective(views.mixtures[None], np.zeros((1, 91)), bones + 100, reference, 0.0)


class TestDivergence:
    """A refinement that ends above its own start's objective is flagged per frame, with one
    warning per call; Adam's noise around a minimum (a start at the truth) is not."""

    @staticmethod
    def _arrays(scenes, count=20):
        frames = [scene.views() for scene in scenes[:count]]
        return np.stack([f.mixtures for f in frames]), np.stack([f.mono3d for f in frames])

    def test_a_learning_rate_of_one_flags_every_frame_with_one_warning(self, scenes):
        mixtures, mono3d = self._arrays(scenes)
        with pytest.warns(DivergenceWarning, match=r"20 of 20 frames.*learning_rate") as caught:
            batch = mg.solve_arrays(mixtures, mono3d, options={"learning_rate": 1.0}, chunk_size=3, progress=False)
        assert len(caught) == 1  # one warning for the call, not one per chunk or frame
        start = mg.solve_arrays(mixtures, mono3d, method="s1", progress=False)
        assert batch.diverged.dtype == bool and batch.diverged.shape == (20,)
        assert batch.diverged.all() and (batch.objective > start.objective).all()

    def test_the_flag_is_the_objective_above_the_start_s(self, scenes):
        mixtures, mono3d = self._arrays(scenes)
        with pytest.warns(DivergenceWarning, match=r"(\d+) of 20 frames"):
            batch = mg.solve_arrays(mixtures, mono3d, options={"learning_rate": 0.3}, progress=False)
        start = mg.solve_arrays(mixtures, mono3d, method="s1", progress=False)
        rise = batch.objective - start.objective
        np.testing.assert_array_equal(batch.diverged, rise > methods.DIVERGENCE_TOLERANCE)
        assert 0 < batch.diverged.sum() < 20  # some frames but not all: the flag is per frame

    def test_solve_and_solve_batch_carry_the_flag(self, scenes):
        frames = [scene.views() for scene in scenes[:4]]
        with pytest.warns(DivergenceWarning, match="1 of 1 frame"):
            alone = mg.solve(frames[2], "ir", {"learning_rate": 1.0})
        assert alone.diverged is True
        with pytest.warns(DivergenceWarning, match="4 of 4 frames"):
            listed = mg.solve_batch(frames, "ir", {"learning_rate": 1.0}, chunk_size=2, progress=False)
        assert [solution.diverged for solution in listed] == [True] * 4
        _assert_same_solution(listed[2], alone)
        stacked = mg.BatchSolution.from_solutions(listed)
        assert stacked.diverged.all() and stacked[1:3].diverged.shape == (2,)

    def test_default_refinements_and_oracle_starts_are_not_flagged(self, scenes):
        mixtures, mono3d = self._arrays(scenes)
        batch = mg.solve_arrays(mixtures, mono3d, progress=False)  # warnings are errors here
        assert not batch.diverged.any()
        oracle = [scene.ablated_views(gt_init=True, gt_mixtures=True, weak_labels=True) for scene in scenes]
        assert not any(solution.diverged for solution in mg.solve_batch(oracle, "ir", progress=False))
        assert mg.solve(scenes[0].views(), "s1").diverged is False


class TestErrorsNameWhere:
    """An error about one frame names it by its place in the call (not in the core's chunk), and
    the camera and joint where they are known."""

    @staticmethod
    def _arrays(scenes, count=8):
        frames = [scene.views() for scene in scenes[:count]]
        return np.stack([f.mixtures for f in frames]), np.stack([f.mono3d for f in frames])

    @pytest.mark.parametrize("column, value, match", [
        (3, 1e-310,
         r"variances must be > 0 \(at least 1e-300.*\), got 1e-310 at frame 5, camera 2, joint 3 \(r_ankle\)"),
        (0, -1.0, r"weights must be >= 0 at frame 5, camera 2, joint 3 \(r_ankle\)"),
        (1, np.nan, r"contains NaN or inf at frame 5, camera 2, joint 3 \(r_ankle\)"),
    ], ids=["subnormal-variance", "negative-weight", "nan"])
    def test_a_bad_mixture_is_named_by_frame_camera_and_joint(self, scenes, column, value, match):
        mixtures, mono3d = self._arrays(scenes)
        mixtures[5, 2, 3, 1, column] = value
        with pytest.raises(ValueError, match="mixtures: " + match):
            mg.solve_arrays(mixtures, mono3d, chunk_size=2, progress=False)
        with pytest.raises(ValueError, match="mixtures: " + match.replace("frame 5, ", "")):
            mg.Views(mixtures[5], mono3d[5])

    def test_a_frame_that_fails_in_the_core_is_named_by_its_place_in_the_call(self, scenes):
        """At a learning rate of 1e100 the core refuses most frames (a rotation becomes undefined);
        a batch of frames it does not refuse, then one it does at place 5, names frames[5] whatever
        the chunk size (the core sees its place in the chunk only)."""
        options = {"learning_rate": 1e100}
        bones = np.array(mg.H36M_17.bones, dtype=np.int64)
        kept, refused = [], []
        for scene in scenes:
            views = scene.views()
            try:
                geometry._core.refine(views.mixtures[None], geometry._core.stage1(views.mono3d[None]), bones,
                                      np.ones((1, len(bones))), 0.0, 100, 1e100, 0.9, 0.999, 1e-7, 0)
                kept.append(views)
            except ValueError:
                refused.append(views)
        assert kept and refused, "the test needs frames of both kinds"
        frames = [kept[i % len(kept)] for i in range(5)] + [refused[0]] + kept[:1]
        for chunk_size in (2, 3, 7):
            with pytest.raises(ValueError, match=r"^frames\[5\]: refinement diverged.*lower learning_rate"):
                mg.solve_batch(frames, "ir", options, chunk_size=chunk_size, progress=False)
        with pytest.raises(ValueError, match=r"^frames\[0\]: refinement diverged.*lower learning_rate$"):
            mg.solve(refused[0], "ir", options)  # no "index (0,)"

    def test_a_camera_whose_scale_leaves_float64_is_named(self, scenes):
        """At 1e50 the refiner ends with finite numbers but a camera scale of 0 (softplus of -1e50):
        relative to it the other cameras are infinitely large."""
        frames = [scene.views() for scene in scenes[:3]]
        with pytest.raises(ValueError, match=r"^frames\[0\]: refinement diverged: camera \d's scale became"):
            mg.solve_batch(frames, "ir", {"learning_rate": 1e50}, chunk_size=1, progress=False)


class TestRefinerLanes:
    """The core refines frames in groups of vector lanes; no lane may see another's values."""

    @staticmethod
    def _inputs(scenes, count):
        views = [scene.views() for scene in scenes[:count]]
        mixtures = np.stack([v.mixtures for v in views])
        x0 = geometry._core.stage1(np.stack([v.mono3d for v in views]))
        bones = np.array(mg.H36M_17.bones, dtype=np.int64)
        reference = np.random.default_rng(3).uniform(0.5, 1.5, (count, len(bones)))  # a different one per frame
        return mixtures, x0, bones, reference

    @staticmethod
    def _refine(mixtures, x0, bones, reference, steps=30):
        return geometry._core.refine(mixtures, x0, bones, reference, 0.1, steps, 1e-2, 0.9, 0.999, 1e-7, 10)

    @pytest.mark.parametrize("threads", [1, 2])
    def test_a_frame_gives_the_same_bits_alone_in_any_group_and_any_order(self, scenes, threads):
        # 19 frames: on 1 thread, groups of 4, 4, 4, 4 and 3 (in 4 lanes); on 2 threads the chunks
        # of 10 and 9 frames end in groups of 2 and 1 lanes. Alone, a frame runs in 1 lane; a pair in 2.
        mixtures, x0, bones, reference = self._inputs(scenes, 19)
        order = np.random.default_rng(0).permutation(19)
        previous = mg.get_num_threads()
        mg.set_num_threads(threads)
        try:
            together = self._refine(mixtures, x0, bones, reference)
            shuffled = self._refine(mixtures[order], x0[order], bones, reference[order])
        finally:
            mg.set_num_threads(previous)
        names = ["x", "objective", "history_x", "history_objective"]
        for name, batch, permuted in zip(names, together, shuffled):
            np.testing.assert_array_equal(permuted, batch[order], err_msg=name)
        for frames in ([0], [7], [18], [5, 6], [16, 17, 18]):
            part = self._refine(mixtures[frames], x0[frames], bones, reference[frames])
            for name, batch, single in zip(names, together, part):
                np.testing.assert_array_equal(single, batch[frames], err_msg=f"{name} of frames {frames}")

    @pytest.mark.parametrize("frame", [0, 5, 9, 10])
    def test_an_undefined_rotation_is_reported_for_its_own_frame(self, scenes, frame):
        mixtures, x0, bones, reference = self._inputs(scenes, 11)
        rot6d = layout.unpack(x0, 4, 17).rot6d  # a view into x0
        rot6d[frame, 1, 3:] = rot6d[frame, 1, :3]  # camera 1's two rows parallel: no rotation
        with pytest.raises(ValueError, match=rf"diverged.* at index \({frame},\)"):
            self._refine(mixtures, x0, bones, reference, steps=3)

    def test_lane_neighbours_of_a_far_frame_are_unaffected(self, scenes):
        """A frame whose objective values are extreme does not change its group's other frames."""
        mixtures, x0, bones, reference = self._inputs(scenes, 8)
        far = x0.copy()
        layout.unpack(far, 4, 17).pose[3] *= 1e6  # a pose a million times too large: every point far out in the tails
        baseline = self._refine(mixtures, x0, bones, reference)
        moved = self._refine(mixtures, far, bones, reference)
        keep = [0, 1, 2, 4, 5, 6, 7]
        for name, a, b in zip(["x", "objective", "history_x", "history_objective"], baseline, moved):
            np.testing.assert_array_equal(b[keep], a[keep], err_msg=name)
        assert not np.array_equal(moved[0][3], baseline[0][3])


class TestAnyComponentCount:
    """The refiner has unrolled kernels for common K and a general one for the rest."""

    @pytest.mark.parametrize("components", [1, 3, 4, 7, 10])
    def test_objective_and_refinement_equal_torch(self, rng, components):
        torch = pytest.importorskip("torch")
        from metapose_geom.nn import objective as torch_objective

        B, C, J = 2, 3, 17
        mixtures = np.empty((B, C, J, components, 4))
        mixtures[..., 0] = rng.uniform(0, 1, mixtures.shape[:-1])
        mixtures[..., 1:3] = rng.uniform(0, 1, mixtures.shape[:-1] + (2,))
        mixtures[..., 3] = rng.uniform(1e-4, 1e-2, mixtures.shape[:-1])
        x0 = rng.normal(scale=0.3, size=(B, solution_size(C, J)))
        bones = np.array(mg.H36M_17.bones, dtype=np.int64)
        reference = np.ones((B, len(bones)))
        value, gradient = mg.geometry._core.refiner_objective(mixtures, x0, bones, reference, 0.0)
        x = torch.tensor(x0, requires_grad=True)
        expected = torch_objective.refiner_objective(torch.tensor(mixtures), x)
        (expected_gradient,) = torch.autograd.grad(expected.sum(), x)
        np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(gradient, expected_gradient.numpy(), rtol=1e-9, atol=1e-12)
        final, _, _, _ = mg.geometry._core.refine(mixtures, x0, bones, reference, 0.0, 20, 1e-2, 0.9, 0.999, 1e-7, 0)
        loop = torch_objective.keras_adam_refine(torch.tensor(mixtures), torch.tensor(x0), steps=20)
        np.testing.assert_allclose(final, loop["x"].numpy(), atol=1e-6)


# --------------------------------------------------------------------------- the method registry


@dataclasses.dataclass(frozen=True)
class _TagOptions:
    """A test method's own options type."""

    tag: str = "none"


def _threads_seen(frames, options, call):
    """A test method: stage 1, and the core thread count it ran with in the method's name."""
    batch = methods.stage1(frames, mg.RefineOptions(), call)
    return dataclasses.replace(batch, method=f"{call.method}:{mg.get_num_threads()}:{options.tag}")


def _listed(frames, options, call):
    """A test method that gives a list of Solutions (as perspective-camera methods do)."""
    return [dataclasses.replace(s, method=call.method) for s in methods.refine(frames, options, call).solutions()]


@pytest.fixture
def added_methods():
    """Two methods registered for one test, then unregistered: adding a method is one entry."""
    entries = [
        methods.register(methods.RegisteredMethod("test-threads", _TagOptions, _threads_seen)),
        methods.register(methods.RegisteredMethod("test-listed", RefineOptions, _listed, stacked=False)),
    ]
    try:
        yield entries
    finally:
        for entry in entries:
            methods.unregister(entry.name)


class TestRegistry:
    def test_the_methods_of_today(self):
        assert methods.method_names()[:4] == ("s1", "ir", "anipose", "metapose")
        assert methods.lookup("metapose").options_type is mg.MetaPoseOptions
        assert methods.lookup("ir").options_type is RefineOptions
        assert methods.lookup("anipose").options_type is mg.AniPoseOptions and methods.lookup("anipose").takes_cameras

    def test_an_added_method_serves_every_entry_point(self, scenes, added_methods):
        frames = [scene.views() for scene in scenes[:5]]
        s1 = mg.solve_batch(frames, "s1", progress=False)
        alone = mg.solve(frames[0], "test-threads", {"tag": "a"})
        assert alone.method.startswith("test-threads:") and alone.method.endswith(":a")
        np.testing.assert_array_equal(alone.x, s1[0].x)
        listed = mg.solve_batch(frames, "test-listed", {"steps": 10}, progress=False)
        expected = mg.solve_batch(frames, "ir", {"steps": 10}, progress=False)
        assert [s.method for s in listed] == ["test-listed"] * 5
        for got, want in zip(listed, expected):
            np.testing.assert_array_equal(got.pose3d, want.pose3d)
        batch = mg.solve_arrays(np.stack([f.mixtures for f in frames]), np.stack([f.mono3d for f in frames]),
                                method="test-threads", options=_TagOptions("b"), progress=False)
        np.testing.assert_array_equal(batch.x, np.stack([s.x for s in s1]))
        # its options type is its own: unknown names and other types are rejected as for the built-ins
        with pytest.raises(ValueError, match=r"unknown name\(s\) \['steps'\] for _TagOptions"):
            mg.solve(frames[0], "test-threads", {"steps": 3})
        with pytest.raises(ValueError, match="method 'test-threads' takes _TagOptions"):
            mg.solve(frames[0], "test-threads", RefineOptions())
        with pytest.raises(ValueError, match="'test-listed' does not give weak cameras to stack"):
            mg.solve_arrays(batch.x[:, None], method="test-listed")
        with pytest.raises(ValueError, match=r"only method='anipose' takes start cameras; 's1', 'ir', 'metapose', "
                                             r"'test-threads' and 'test-listed' find the cameras"):
            mg.solve(frames[0], "test-threads", cameras=object())
        assert "test-listed" in methods.method_names()

    def test_unregistered_methods_are_gone(self, scenes, added_methods):
        for entry in list(added_methods):
            methods.unregister(entry.name)
            with pytest.raises(ValueError, match=rf"method: expected one of \('s1', 'ir', 'anipose'.*'{entry.name}'"):
                mg.solve(scenes[0].views(), entry.name)
            methods.register(entry)  # for the fixture to remove

    def test_a_name_is_registered_once(self):
        with pytest.raises(ValueError, match="'ir' is registered already"):
            methods.register(methods.RegisteredMethod("ir", RefineOptions, methods.refine))
        with pytest.raises(ValueError, match="expected a RegisteredMethod"):
            methods.register("ir")  # type: ignore[arg-type]
        for fields, match in [(("", RefineOptions, methods.refine), "name"),
                              (("x", dict, methods.refine), "options_type"), (("x", RefineOptions, None), "function")]:
            with pytest.raises(ValueError, match=match):
                methods.RegisteredMethod(*fields)
        with pytest.raises(ValueError, match="stacked: expected True or False"):
            methods.RegisteredMethod("x", RefineOptions, methods.refine, stacked=1)
        with pytest.raises(ValueError, match="method: expected one of"):
            methods.unregister("nothing")
        with pytest.raises(ValueError, match="method: expected one of"):
            methods.lookup(["ir"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- stacked results


def _stacked(frames):
    return (np.stack([f.mixtures for f in frames]), np.stack([f.mono3d for f in frames]),
            np.stack([f.boxes for f in frames]))


class TestBatchSolution:
    @pytest.mark.parametrize("method, options", [("s1", None), ("ir", {"history_every": 25}),
                                                 ("ir", {"init": "random", "steps": 30, "bone_weight": 0.1})])
    def test_solve_arrays_equals_solve_batch_frame_for_frame(self, scenes, method, options):
        frames = [scene.views() for scene in scenes[:9]]
        batch = mg.solve_arrays(*_stacked(frames), method=method, options=options, chunk_size=4, progress=False)
        listed = mg.solve_batch(frames, method, options, progress=False)
        assert isinstance(batch, mg.BatchSolution) and len(batch) == 9 and batch.method == method
        assert batch.pose3d.shape == (9, 17, 3) and batch.rotation.shape == (9, 4, 3, 3)
        assert batch.scale.shape == (9, 4) and batch.shift.shape == (9, 4, 3) and batch.objective.shape == (9,)
        assert batch.reprojection.shape == batch.reprojection_pixels.shape == (9, 4, 17, 2)
        assert batch.x.shape == (9, solution_size(4, 17))
        for i, solution in enumerate(listed):
            _assert_same_solution(batch[i], solution)
        for got, want in zip(batch.solutions(), listed):
            _assert_same_solution(got, want)
        for got, want in zip(batch, listed):
            _assert_same_solution(got, want)
        _assert_same_solution(batch[-1], listed[-1])
        np.testing.assert_array_equal(batch.cameras.project(batch.pose3d), batch.reprojection)

    def test_from_solutions_stacks_them_back(self, scenes):
        frames = [scene.views() for scene in scenes[:6]]
        for options in (None, {"history_every": 20}):
            batch = mg.solve_arrays(*_stacked(frames), options=options, progress=False)
            again = mg.BatchSolution.from_solutions(mg.solve_batch(frames, "ir", options, progress=False))
            assert again.method == batch.method and (again.history is None) == (batch.history is None)
            for name in ("pose3d", "rotation", "scale", "shift", "reprojection", "reprojection_pixels", "objective",
                         "x"):
                np.testing.assert_array_equal(getattr(again, name), getattr(batch, name), err_msg=name)
            if batch.history is not None:
                assert batch.history.objective.shape == (6, 6) and batch.history.pose3d.shape == (6, 6, 17, 3)
                for name in ("steps", "objective", "pose3d", "rotation", "scale", "shift"):
                    np.testing.assert_array_equal(getattr(again.history, name), getattr(batch.history, name))

    def test_slices_and_bad_indices(self, scenes):
        frames = [scene.views() for scene in scenes[:5]]
        batch = mg.solve_arrays(*_stacked(frames), options={"history_every": 50}, progress=False)
        part = batch[1:4]
        assert isinstance(part, mg.BatchSolution) and len(part) == 3
        _assert_same_solution(part[0], batch[1])
        np.testing.assert_array_equal(part.history.steps, batch.history.steps)
        _assert_same_solution(batch[np.int64(2)], batch[2])
        with pytest.raises(IndexError, match="frame 5 out of range"):
            batch[5]
        with pytest.raises(IndexError):
            batch[-6]
        for bad in (1.0, True, "0"):
            with pytest.raises(TypeError, match="integers or slices"):
                batch[bad]

    def test_from_solutions_rejects_what_does_not_stack(self, scenes):
        views = scenes[0].views()
        ir, s1 = mg.solve(views, "ir"), mg.solve(views, "s1")
        with pytest.raises(ValueError, match="at least one"):
            mg.BatchSolution.from_solutions([])
        with pytest.raises(ValueError, match=r"solutions\[1\]: method 's1' differs"):
            mg.BatchSolution.from_solutions([ir, s1])
        with pytest.raises(ValueError, match=r"solutions\[1\]: its history"):
            mg.BatchSolution.from_solutions([ir, mg.solve(views, "ir", {"history_every": 10})])
        with pytest.raises(ValueError, match=r"solutions\[0\]: expected a Solution"):
            mg.BatchSolution.from_solutions([ir.x])
        perspective = dataclasses.replace(ir, cameras=mg.PerspectiveCameras(*[np.zeros(1)] * 5))
        with pytest.raises(ValueError, match=r"solutions\[1\]: a BatchSolution stacks weak cameras"):
            mg.BatchSolution.from_solutions([ir, perspective])
        with pytest.raises(ValueError, match="shapes differ"):
            mg.BatchSolution.from_solutions([ir, mg.solve(views.subset([0, 1, 2]), "ir")])

    def test_without_boxes_pixels_are_box_units(self, scenes):
        frames = [scene.views() for scene in scenes[:3]]
        mixtures, mono3d, _ = _stacked(frames)
        batch = mg.solve_arrays(mixtures, mono3d, progress=False)
        np.testing.assert_array_equal(batch.reprojection_pixels, batch.reprojection)
        bare = mg.solve_arrays(mixtures, options={"init": "random"}, progress=False)
        for i, views in enumerate(frames):
            _assert_same_solution(bare[i], mg.solve(mg.Views(views.mixtures), "ir", {"init": "random"}))

    def test_solve_arrays_validates_as_views_do(self, scenes):
        mixtures, mono3d, boxes = _stacked([scene.views() for scene in scenes[:2]])
        zero = mixtures.copy()
        zero[1, 2, 5, :, 0] = 0.0
        cases = [
            ((mixtures[0],), {}, r"mixtures: expected shape \(B, C, J, K, 4\)"),
            ((mixtures[:, :1],), {}, "at least two cameras"),
            ((mixtures[:, :, :16],), {}, "skeleton 'h36m17' has 17"),
            ((zero,), {}, r"zero total weight at frame 1, camera 2, joint 5 \(l_knee\)"),
            ((mixtures, mono3d[:1]), {}, r"mono3d: expected shape \(B=2, C=4, J=17, 3\)"),
            ((mixtures, np.full_like(mono3d, np.nan)), {}, "mono3d: contains NaN"),
            ((mixtures, mono3d, boxes[0]), {}, r"boxes: expected shape \(B=2, C=4, 4\)"),
            ((mixtures, mono3d, -boxes), {}, "boxes: width and height"),
            ((mixtures, mono3d), {"method": "anipose"}, "'anipose' does not give weak cameras"),
            ((mixtures, mono3d), {"skeleton": "h36m"}, "skeleton: expected a Skeleton"),
            ((mixtures, mono3d), {"chunk_size": 0}, "chunk_size"),
            ((mixtures,), {"method": "s1", "options": {"init": "s1"}}, "mono3d: stage 1 needs"),
        ]
        for args, kwargs, match in cases:
            with pytest.raises(ValueError, match=match):
                mg.solve_arrays(*args, progress=False, **kwargs)


# --------------------------------------------------------------------------- per-call threads


class TestPerCallThreads:
    def test_results_are_the_same_bits_on_1_and_2_threads_and_the_global_count_stays(self, scenes,
                                                                                     restore_threads):
        frames = [scene.views() for scene in scenes[:11]]
        arrays = _stacked(frames)
        for global_count in (1, 2):
            mg.set_num_threads(global_count)
            results = {}
            for threads in (None, 1, 2):
                results[threads] = mg.solve_batch(frames, "ir", {"history_every": 50}, progress=False, chunk_size=5,
                                                  threads=threads)
                assert mg.get_num_threads() == global_count
                batch = mg.solve_arrays(*arrays, options={"history_every": 50}, progress=False, threads=threads)
                assert mg.get_num_threads() == global_count
                for i, solution in enumerate(results[threads]):
                    _assert_same_solution(batch[i], solution)
            for threads in (1, 2):
                for a, b in zip(results[threads], results[None]):
                    _assert_same_solution(a, b)

    def test_the_call_runs_on_its_count(self, scenes, added_methods, restore_threads):
        frames = [scenes[0].views()] * 3
        mg.set_num_threads(1)
        for threads, seen in ((2, 2), (1, 1), (None, 1), (0, None)):
            method = mg.solve_batch(frames, "test-threads", progress=False, threads=threads)[0].method
            count = int(method.split(":")[1])
            assert count == (seen if seen is not None else count) and count >= 1
            assert mg.get_num_threads() == 1

    def test_concurrent_calls_each_see_their_own_count(self, scenes, added_methods, restore_threads):
        from concurrent.futures import ThreadPoolExecutor

        frames = [scenes[0].views()] * 2
        mg.set_num_threads(3)
        counts = [1, 2, 4, 1, 2, 4, 1, 2]
        with ThreadPoolExecutor(4) as pool:
            seen = list(pool.map(lambda n: mg.solve_batch(frames, "test-threads", progress=False, threads=n)[0].method,
                                 counts))
        assert [int(method.split(":")[1]) for method in seen] == counts
        assert mg.get_num_threads() == 3

    def test_the_global_count_comes_back_after_an_error(self, scenes, restore_threads):
        mg.set_num_threads(1)
        with pytest.raises(ValueError, match="diverged|overflow|too large"):
            mg.solve_batch([scenes[0].views()], "ir", {"learning_rate": 1e300, "steps": 5}, progress=False, threads=2)
        assert mg.get_num_threads() == 1

    @pytest.mark.parametrize("threads", [-1, 1.5, True, "2", np.float64(2.0)])
    def test_bad_counts_are_rejected_before_anything_runs(self, scenes, threads, restore_threads):
        mg.set_num_threads(1)
        with pytest.raises(ValueError, match="threads: expected an integer >= 0"):
            mg.solve_batch([scenes[0].views()], progress=False, threads=threads)
        with pytest.raises(ValueError, match="threads: expected an integer >= 0"):
            mg.solve_arrays(scenes[0].views().mixtures[None], progress=False, threads=threads)
        assert mg.get_num_threads() == 1
