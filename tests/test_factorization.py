"""The multi-view affine factorisation (metapose_geom.factorization) and the solver's start from it.

Noise-free data is the weak-perspective re-projection of a synthetic scene's 3D truth
(``Scene.weak_labels``) as ground-truth mixtures: there the weak model holds exactly, so the
factorisation must return the truth up to the gauge a set of weak cameras cannot see (camera 0's
rotation and scale), to float64 rounding. The truth in camera 0's gauge is
``s_0 (X - mean X) R_0`` for the pose and ``R_0^T R_c``, ``s_c / s_0`` for the cameras, with the
scene's weak cameras ``(R_c, s_c)`` (``Scene.weak_cameras``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import factorization, geometry, layout, metrics, synth
from metapose_geom.factorization import TWO_VIEW_WARNING, factorize
from metapose_geom.mixtures import UNINFORMATIVE_VARIANCE
from metapose_geom.solver import RefineOptions

#: box units: the 2D of a noise-free frame is reproduced to this (the brief's ~1e-9)
PROJECTION_ATOL = 1e-9
#: relative agreement of the recovered pose and cameras with the truth (rounding through SVDs and
#: eigen-decompositions of well-conditioned 3x3 to 8x17 matrices gives ~1e-13)
RECOVERY_RTOL = 1e-9


def _weak_mixtures(scene: synth.Scene) -> np.ndarray:
    """(C, J, 4, 4): the scene's exact weak-perspective 2D as ground-truth mixtures."""
    return synth.gt_mixtures(scene.weak_labels())


def _truth_in_camera0(scene: synth.Scene) -> layout.CameraFrame:
    rotation, scale, shift = scene.weak_cameras()
    pose = scale[0] * (scene.pose3d - scene.pose3d.mean(axis=0)) @ rotation[0]
    return layout.CameraFrame(pose, rotation[0].T @ rotation, scale / scale[0], shift)


def _frame(x: np.ndarray, cameras: int, joints: int = 17) -> layout.CameraFrame:
    return layout.in_camera0(x, cameras, joints)


def _projection(frame: layout.CameraFrame) -> np.ndarray:
    return geometry.project_weak(frame.pose, frame.rotation, frame.scale, frame.shift)


def _hide(mixtures: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """mixtures (..., C, J, K, 4) with the (c, j) of ``hidden`` (..., C, J) made uninformative."""
    out = mixtures.copy()
    out[hidden, :, 3] = UNINFORMATIVE_VARIANCE
    return out


def _quiet_factorize(mixtures: np.ndarray) -> np.ndarray:
    """factorize without the two-view warning (tests that are about something else)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="factorisation with two views")
        return factorize(mixtures)


# --------------------------------------------------------------------------- exact recovery


class TestExactRecovery:
    @pytest.mark.parametrize("cameras", [3, 4, 6])
    def test_noise_free_weak_2d_gives_the_truth_up_to_the_gauge(self, cameras):
        scenes = synth.make_scenes(8, num_cameras=cameras, seed=5)
        x = factorize(np.stack([_weak_mixtures(scene) for scene in scenes]))
        assert x.shape == (8, layout.solution_size(cameras, 17)) and x.dtype == np.float64
        for index, scene in enumerate(scenes):
            got, want = _frame(x[index], cameras), _truth_in_camera0(scene)
            np.testing.assert_allclose(_projection(got), scene.weak_labels(), rtol=0, atol=PROJECTION_ATOL)
            size = np.abs(want.pose).max()
            np.testing.assert_allclose(got.pose, want.pose, rtol=0, atol=RECOVERY_RTOL * size,
                                       err_msg=f"scene {index}")
            np.testing.assert_allclose(got.rotation, want.rotation, rtol=0, atol=RECOVERY_RTOL)
            np.testing.assert_allclose(got.scale, want.scale, rtol=RECOVERY_RTOL)
            assert float(metrics.pmpjpe(got.pose, scene.pose3d)) < 1e-9 * 1700  # mm, on a 1.5-1.95 m body

    def test_layout_is_the_solvers(self):
        """Camera 0 has rotation I and scale 1, the pose is centred, shifts have depth 0."""
        x = factorize(_weak_mixtures(synth.make_scene(1))[None])
        pose, rot6d, scale_raw, shift = layout.unpack(x[0], 4, 17)
        np.testing.assert_allclose(geometry.rot6d_to_matrix(rot6d[0]), np.eye(3), atol=1e-12)
        np.testing.assert_allclose(layout.scale_from_raw(scale_raw[0]), 1.0, rtol=1e-12)
        np.testing.assert_allclose(pose.mean(axis=0), 0.0, atol=1e-12)
        assert (shift[:, 2] == 0).all()

    def test_a_frame_gives_the_same_bits_alone_or_in_any_batch(self):
        """Noisy evidence, missing joints and both the usual and the subset start in one batch."""
        scenes = synth.make_scenes(12, num_cameras=6, seed=8)
        mixtures = np.stack([scene.mixtures for scene in scenes])
        rng = np.random.default_rng(0)
        mixtures = _hide(mixtures, rng.uniform(size=mixtures.shape[:3]) < 0.15)
        together = factorize(mixtures)
        order = rng.permutation(len(scenes))
        np.testing.assert_array_equal(factorize(mixtures[order]), together[order])
        for i in range(len(scenes)):
            np.testing.assert_array_equal(factorize(mixtures[i:i + 1])[0], together[i])


# --------------------------------------------------------------------------- missing joints


class TestMissingJoints:
    @pytest.mark.parametrize("cameras, rate", [(4, 0.15), (6, 0.25)])
    def test_joints_seen_by_two_or_more_views_are_recovered_exactly(self, cameras, rate):
        scenes = synth.make_scenes(8, num_cameras=cameras, seed=6)
        rng = np.random.default_rng(1)
        hidden = rng.uniform(size=(8, cameras, 17)) < rate
        for c in range(cameras):  # keep two views of every joint and four joints of every view
            keep = (hidden.sum(axis=1) > cameras - 2)[:, None, :] & (np.arange(cameras) == c)[None, :, None]
            hidden &= ~keep
        assert hidden.any() and (hidden.sum(axis=1) <= cameras - 2).all()
        x = factorize(_hide(np.stack([_weak_mixtures(scene) for scene in scenes]), hidden))
        for index, scene in enumerate(scenes):
            got, want = _frame(x[index], cameras), _truth_in_camera0(scene)
            seen = ~hidden[index]
            np.testing.assert_allclose(_projection(got)[seen], scene.weak_labels()[seen], rtol=0,
                                       atol=PROJECTION_ATOL)
            np.testing.assert_allclose(got.pose, want.pose, rtol=0, atol=RECOVERY_RTOL * np.abs(want.pose).max())
            np.testing.assert_allclose(got.rotation, want.rotation, rtol=0, atol=RECOVERY_RTOL)

    def test_fewer_than_four_joints_in_every_view_starts_from_a_subset_of_views(self):
        """Six views, each joint hidden from a different pair: no joint is seen by all six, so the
        start is the SVD of the joints a subset of views shares; the result is still exact."""
        scene = synth.make_scene(4, num_cameras=6)
        hidden = np.zeros((6, 17), dtype=bool)
        for j in range(17):
            hidden[[j % 6, (j + 2) % 6], j] = True
        assert not (~hidden).all(axis=0).any()
        x = factorize(_hide(_weak_mixtures(scene), hidden)[None])
        got, want = _frame(x[0], 6), _truth_in_camera0(scene)
        np.testing.assert_allclose(got.pose, want.pose, rtol=0, atol=RECOVERY_RTOL * np.abs(want.pose).max())

    def test_a_joint_seen_once_lies_on_its_ray_and_one_seen_never_is_placed(self):
        scene = synth.make_scene(2, num_cameras=4)
        hidden = np.zeros((4, 17), dtype=bool)
        hidden[1:, 13] = True  # l_wrist: camera 0 only
        hidden[:, 16] = True  # r_wrist: no view
        x = factorize(_hide(_weak_mixtures(scene), hidden)[None])
        got, want = _frame(x[0], 4), _truth_in_camera0(scene)
        assert np.isfinite(x).all()
        np.testing.assert_allclose(_projection(got)[0, 13], scene.weak_labels()[0, 13], rtol=0, atol=PROJECTION_ATOL)
        others = np.setdiff1d(np.arange(17), [13, 16])
        error = metrics.pmpjpe(got.pose[others], want.pose[others]) / np.abs(want.pose).max()
        assert error < RECOVERY_RTOL
        # the rest pose, aligned to the others, puts them within a forearm of the truth
        size = np.linalg.norm(want.pose[8] - want.pose[0])  # pelvis to thorax
        assert np.linalg.norm(got.pose[16] - want.pose[16] - (got.pose - want.pose)[others].mean(axis=0)) < 2 * size


# --------------------------------------------------------------------------- mirror image, camera order


class TestChirality:
    def test_the_rest_pose_decides_the_mirror_image_on_most_poses(self):
        """On 300 varied poses the non-mirrored reconstruction is chosen at least 95% of the time
        (measured: 97-99% over thousands), and a miss is the exact mirror image, nothing else."""
        scenes = synth.make_scenes(300, num_cameras=4, seed=21)
        x = factorize(np.stack([_weak_mixtures(scene) for scene in scenes]))
        pose, truth = _frame(x, 4).pose, np.stack([scene.pose3d for scene in scenes])
        right = metrics.pmpjpe(pose, truth) < 1e-6
        mirror = metrics.pmpjpe(pose * [1.0, 1.0, -1.0], truth) < 1e-6
        assert right.mean() >= 0.95, right.mean()
        assert (right | mirror).all()

    def test_a_mirrored_rest_pose_is_turned_back(self):
        """The rest pose itself (and rotated copies) seen by four cameras: never mirrored."""
        rng = np.random.default_rng(3)
        rest = mg.H36M_17.rest_pose() / 1000.0
        frames = []
        for _ in range(10):
            spin = np.linalg.qr(rng.normal(size=(3, 3)))[0]
            spin *= np.linalg.det(spin)  # a proper rotation
            rotation = np.linalg.qr(rng.normal(size=(4, 3, 3)))[0]
            rotation[..., 2] *= np.linalg.det(rotation)[:, None]
            points = np.einsum("jk,ckl->cjl", rest @ spin, rotation)[..., :2] * 0.5 + 0.5
            frames.append(synth.gt_mixtures(points))
        x = factorize(np.stack(frames))
        pose = _frame(x, 4).pose
        assert (metrics.pmpjpe(pose, np.broadcast_to(rest, pose.shape)) < 1e-9).all()

    def test_permuting_the_cameras_permutes_them_in_the_result(self):
        """On noisy evidence: the reprojections are those of the original order, permuted, and the
        pose is the same up to the gauge (camera 0 is another camera)."""
        scenes = synth.make_scenes(10, num_cameras=4, seed=2)
        mixtures = np.stack([scene.mixtures for scene in scenes])
        order = [2, 0, 3, 1]
        first, second = _frame(factorize(mixtures), 4), _frame(factorize(mixtures[:, order]), 4)
        np.testing.assert_allclose(_projection(second), _projection(first)[:, order], rtol=0, atol=1e-12)
        # the gauge: pose' = s_k pose R_k with k = order[0], in the first result's camera-0 frame
        k = order[0]
        moved = first.scale[:, k, None, None] * first.pose @ first.rotation[:, k]
        np.testing.assert_allclose(second.pose, moved, rtol=0, atol=1e-12)
        relative = np.swapaxes(first.rotation[:, k:k + 1], -1, -2) @ first.rotation[:, order]
        np.testing.assert_allclose(second.rotation, relative, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- two views


class TestTwoViews:
    def test_two_views_warn_once_and_reproduce_the_2d(self):
        scenes = synth.make_scenes(20, num_cameras=2, seed=9)
        with pytest.warns(UserWarning, match="two views.*one-parameter family.*bone-length ratios") as record:
            x = factorize(np.stack([_weak_mixtures(scene) for scene in scenes]))
        assert len(record) == 1
        errors = []
        for index, scene in enumerate(scenes):
            got = _frame(x[index], 2)
            np.testing.assert_allclose(_projection(got), scene.weak_labels(), rtol=0, atol=PROJECTION_ATOL)
            errors.append(float(metrics.pmpjpe(got.pose, scene.pose3d)))
        # the family's member nearest the rest pose's proportions: a few mm (median 2-4 mm measured)
        assert np.median(errors) < 10.0, errors

    def test_three_views_do_not_warn(self):
        factorize(_weak_mixtures(synth.make_scene(0, num_cameras=3))[None])  # warnings are errors here

    def test_solve_batch_warns_once_per_call(self):
        frames = [mg.Views(scene.mixtures) for scene in synth.make_scenes(5, num_cameras=2, seed=4)]
        with pytest.warns(UserWarning, match="two views") as record:
            mg.solve_batch(frames, "ir", chunk_size=2, progress=False)  # 100 steps: none ends above its start
        assert len(record) == 1


# --------------------------------------------------------------------------- bad input


class TestBadInput:
    @staticmethod
    def _mixtures(frames=4, cameras=4):
        return np.stack([_weak_mixtures(scene) for scene in synth.make_scenes(frames, num_cameras=cameras, seed=1)])

    def test_one_view(self):
        with pytest.raises(ValueError, match="two or more views, got C = 1"):
            factorize(self._mixtures()[:, :1])

    def test_shapes_and_skeleton(self):
        with pytest.raises(ValueError, match=r"mixtures: expected shape \(B, C, J, K, 4\)"):
            factorize(self._mixtures()[0])
        with pytest.raises(ValueError, match="J = 16 joints"):
            factorize(self._mixtures()[:, :, :16])
        with pytest.raises(ValueError, match="skeleton: expected a Skeleton"):
            factorize(self._mixtures(), "h36m17")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="mixtures: contains NaN"):
            factorize(np.full((1, 3, 17, 1, 4), np.nan))

    def test_a_view_with_every_joint_at_one_point(self):
        mixtures = self._mixtures()
        mixtures[2, 1, :, :, 1:3] = 0.4
        with pytest.raises(ValueError, match=r"frames\[2\]: camera 1 sees every joint at one point"):
            factorize(mixtures)

    def test_a_view_with_too_few_joints(self):
        hidden = np.zeros((4, 4, 17), dtype=bool)
        hidden[3, 2, 3:] = True
        with pytest.raises(ValueError, match=r"frames\[3\]: camera 2 has evidence for 3 joint\(s\).*at least 4"):
            factorize(_hide(self._mixtures(), hidden))

    def test_too_few_joints_seen_twice(self):
        hidden = np.ones((4, 4, 17), dtype=bool)
        hidden[:, :, :3] = False  # joints 0-2 in every view
        for j in range(3, 17):
            hidden[:, j % 4, j] = False  # the others in one view each
        with pytest.raises(ValueError, match=r"frames\[0\]: 3 joint\(s\) have evidence in two or more views"):
            factorize(_hide(self._mixtures(), hidden))

    def test_views_from_one_direction(self):
        """Every view a scaled, shifted copy of view 0: the 2D has rank 2, there is no depth."""
        mixtures = self._mixtures()
        mixtures[1, :, :, :, 1:3] = mixtures[1, :1, :, :, 1:3] * np.array([1.0, 0.8, 1.2, 0.9])[:, None, None, None] + 0.05
        with pytest.raises(ValueError, match=r"frames\[1\]: the 2D evidence has rank below 3"):
            factorize(mixtures)

    def test_the_solver_names_the_frame_across_chunks(self):
        scenes = synth.make_scenes(5, num_cameras=4, seed=3)
        frames = [mg.Views(scene.mixtures) for scene in scenes]
        flat = scenes[3].mixtures.copy()
        flat[0, :, :, 1:3] = 0.5
        frames[3] = mg.Views(flat)
        for method in ("s1", "ir"):
            with pytest.raises(ValueError, match=r"frames\[3\]: camera 0 sees every joint at one point"):
                mg.solve_batch(frames, method, chunk_size=2, progress=False)
        with pytest.raises(ValueError, match=r"frames\[0\]: camera 0"):
            mg.solve(frames[3])


# --------------------------------------------------------------------------- through the solver


class TestSolver:
    @pytest.fixture(scope="class")
    def scenes(self):
        return synth.make_scenes(16, num_cameras=4, seed=11)

    def test_ir_from_the_factorisation_converges_to_a_good_pose(self, scenes):
        bare = [mg.Views(scene.mixtures, None, scene.boxes) for scene in scenes]
        start = mg.solve_batch(bare, "s1", progress=False)
        refined = mg.solve_batch(bare, "ir", progress=False)
        truth = np.stack([scene.pose3d for scene in scenes])
        error = metrics.pmpjpe(np.stack([s.pose3d for s in refined]), truth)
        assert np.median(error) < 35.0, error  # mm; stage 1 + IR from the guesses: ~20 mm on these
        for before, after in zip(start, refined):
            assert after.objective < before.objective

    def test_s1_without_guesses_is_the_factorisation(self, scenes):
        views = mg.Views(scenes[0].mixtures, None, scenes[0].boxes)
        solution = mg.solve(views, "s1")
        np.testing.assert_array_equal(solution.x, factorize(scenes[0].mixtures[None])[0])
        assert solution.method == "s1"
        explicit = mg.solve(scenes[0].views(), "s1", {"init": "factorization"})  # guesses given, not used
        np.testing.assert_array_equal(explicit.x, solution.x)

    def test_auto_with_guesses_is_stage_1_as_before(self, scenes):
        views = scenes[1].views()
        for method in ("s1", "ir"):
            np.testing.assert_array_equal(mg.solve(views, method).x, mg.solve(views, method, {"init": "s1"}).x)
        np.testing.assert_array_equal(mg.solve(views, "s1").x, mg._core.stage1(views.mono3d[None])[0])

    @pytest.mark.parametrize("method, chunk_size", [("s1", 3), ("ir", 5), ("ir", 256)])
    def test_solve_equals_solve_batch_frame_by_frame(self, scenes, method, chunk_size):
        frames = [mg.Views(scene.mixtures, None, scene.boxes) for scene in scenes[:11]]
        options = {"steps": 20, "history_every": 10}
        batch = mg.solve_batch(frames, method, options, chunk_size=chunk_size, progress=False)
        arrays = mg.solve_arrays(np.stack([v.mixtures for v in frames]), None, np.stack([v.boxes for v in frames]),
                                 method, options, chunk_size=chunk_size, progress=False)
        for i, (views, together) in enumerate(zip(frames, batch)):
            alone = mg.solve(views, method, options)
            np.testing.assert_array_equal(together.x, alone.x)
            np.testing.assert_array_equal(together.pose3d, alone.pose3d)
            np.testing.assert_array_equal(together.reprojection_pixels, alone.reprojection_pixels)
            assert together.objective == alone.objective
            np.testing.assert_array_equal(arrays[i].x, alone.x)

    def test_options_take_the_four_starts_and_reject_others(self):
        assert RefineOptions().init == "auto"
        for name in ("auto", "s1", "factorization", "random"):
            assert RefineOptions(init=name).init == name
        for bad in ("factorisation", "stage1", "", None, 1):
            with pytest.raises(ValueError, match=r"init: expected one of \('auto', 's1', 'factorization', 'random'\)"):
                RefineOptions(init=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown name.*'initialisation'"):
            RefineOptions.from_mapping({"initialisation": "factorization"})

    def test_random_start_is_what_s1_returns_with_init_random(self, scenes):
        views = mg.Views(scenes[2].mixtures)
        start = mg.solve(views, "s1", {"init": "random", "seed": 3})
        refined = mg.solve(views, "ir", {"init": "random", "seed": 3, "steps": 0})
        np.testing.assert_array_equal(start.x, refined.x)


def test_module_constants():
    assert factorization.MIN_JOINTS_PER_VIEW == 4 and 0 < factorization.Q_FLOOR < 1
    assert "two views" in TWO_VIEW_WARNING
