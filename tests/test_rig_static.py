"""metapose_geom.rig.static and the core's rig_objective / rig_refine: the static-rig objective
(rotations shared by all frames, per-frame poses, scales and shifts) and its Adam refiner.

References are independent of the code under test: the torch twin of the refiner objective
(nn/objective.py) evaluated frame by frame on the used cameras and combined with the weights,
torch autograd and central differences for the gradients, and the per-frame iterative refiner
(``_core.refine``, ``solve(method="ir")``) for the one-frame rig.
"""

from __future__ import annotations

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import _core, geometry, layout, synth
from metapose_geom.rig import StaticRig, StaticRigGradient, refine_static_rig, static_rig_objective
from metapose_geom.solver import RefineOptions

from conftest import SEED, assert_derivative_close, central_difference

ADAM = (0.01, 0.9, 0.999, 1e-7)  # learning_rate, beta1, beta2, epsilon (RefineOptions' defaults)
NO_BONES = np.zeros((1, 2), np.int64)  # the core refiner's bones, unused at bone weight 0


# --------------------------------------------------------------------------- problems


def make_rig(rng: np.random.Generator, F: int = 5, C: int = 4, J: int = 6, K: int = 3) -> dict:
    """A random rig whose mixtures sit near the projections of a start close to them (a well-posed,
    non-trivial objective): arguments by name, in the order of static_rig_objective."""
    rot6d = rng.normal(size=(C, 6))
    poses = rng.normal(scale=0.3, size=(F, J, 3))
    scale = rng.uniform(0.7, 1.3, size=(F, C))
    shifts = rng.normal(0.5, 0.1, size=(F, C, 3))
    points = geometry.project_weak(poses, np.broadcast_to(geometry.rot6d_to_matrix(rot6d), (F, C, 3, 3)), scale,
                                   shifts)
    mixtures = np.stack([
        rng.uniform(0.05, 1.0, size=(F, C, J, K)),
        points[..., None, 0] + rng.normal(scale=0.05, size=(F, C, J, K)),
        points[..., None, 1] + rng.normal(scale=0.05, size=(F, C, J, K)),
        rng.uniform(0.002, 0.02, size=(F, C, J, K)),
    ], axis=-1)  # fmt: skip
    return dict(
        mixtures=mixtures, used=np.ones((F, C), bool), frame_weights=rng.uniform(0.5, 2.0, size=F), rot6d=rot6d,
        poses=poses + rng.normal(scale=0.05, size=poses.shape), scale_raw=layout.raw_from_scale(scale),
        shifts=shifts + rng.normal(scale=0.02, size=shifts.shape),
    )  # fmt: skip


def mixed_rig(rng: np.random.Generator) -> dict:
    """A rig whose frames use 4, 3, 2, 1 and 4 cameras, one of the full frames with weight 0, and NaN in
    the mixtures of every unused view."""
    rig = make_rig(rng, F=6)
    rig["used"] = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]], bool)
    rig["frame_weights"][4] = 0.0
    rig["mixtures"][~rig["used"]] = np.nan
    return rig


def core_objective(rig: dict) -> tuple:
    return _core.rig_objective(*(rig[name] for name in
                                 ("mixtures", "used", "frame_weights", "rot6d", "poses", "scale_raw", "shifts")))


def core_refine(rig: dict, steps: int, adam=ADAM) -> tuple:
    return _core.rig_refine(*(rig[name] for name in
                              ("mixtures", "used", "frame_weights", "rot6d", "poses", "scale_raw", "shifts")),
                            steps, *adam)


def frame_solution(rig: dict, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame f's sub-problem on its used cameras: mixtures (n, J, K, 4), x (P,) in the refiner's layout."""
    used = rig["used"][f]
    x = layout.pack(rig["poses"][f], rig["rot6d"][used], rig["scale_raw"][f, used], rig["shifts"][f, used])
    return rig["mixtures"][f, used], x


def torch_total(rig: dict, torch):
    """The static-rig total in torch from the twin of the refiner objective, frame by frame, and the
    leaves (rot6d, poses, scale_raw, shifts) to differentiate it by."""
    from metapose_geom.nn.objective import refiner_objective

    leaves = {name: torch.tensor(rig[name], requires_grad=True) for name in ("rot6d", "poses", "scale_raw", "shifts")}
    numerator, denominator, per_frame = 0.0, 0.0, []
    for f in range(len(rig["poses"])):
        used = torch.as_tensor(rig["used"][f])
        n, w = int(used.sum()), float(rig["frame_weights"][f])
        if n < 2 or w == 0:
            per_frame.append(float("nan"))
            continue
        x = torch.cat([leaves["poses"][f].reshape(-1), leaves["rot6d"][used].reshape(-1), leaves["scale_raw"][f][used],
                       leaves["shifts"][f][used].reshape(-1)])
        value = refiner_objective(torch.tensor(rig["mixtures"][f][rig["used"][f]]), x)
        per_frame.append(float(value.detach()))
        numerator = numerator + w * n * value
        denominator += w * n
    return numerator / denominator, leaves, np.array(per_frame)


def angle_degrees(a: np.ndarray, b: np.ndarray) -> float:
    cosine = (np.trace(a.T @ b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


# --------------------------------------------------------------------------- the objective


class TestObjective:
    def test_value_and_gradient_equal_the_torch_twin(self):
        torch = pytest.importorskip("torch")
        rig = mixed_rig(np.random.default_rng(SEED))
        total, gradient, per_frame = static_rig_objective(**rig)
        expected, leaves, expected_per_frame = torch_total(rig, torch)
        expected.backward()
        assert total == pytest.approx(float(expected.detach()), rel=1e-10, abs=1e-12)
        np.testing.assert_array_equal(np.isnan(per_frame), [False, False, False, True, True, False])
        np.testing.assert_allclose(per_frame, expected_per_frame, rtol=1e-10, equal_nan=True)
        for name in StaticRigGradient._fields:
            want = leaves[name].grad.numpy()
            np.testing.assert_allclose(getattr(gradient, name), want, rtol=1e-10, atol=1e-10 * np.abs(want).max(),
                                       err_msg=name)

    def test_gradient_matches_central_differences(self):
        rig = mixed_rig(np.random.default_rng(SEED + 1))
        rig["mixtures"][~rig["used"]] = 0.5  # finite, so that np.nan cannot hide in the differences
        _, gradient, _ = static_rig_objective(**rig)
        for name in StaticRigGradient._fields:
            def total_of(value, name=name):
                return static_rig_objective(**{**rig, name: value})[0]

            numeric = central_difference(total_of, rig[name], rig[name].ndim)
            assert_derivative_close(getattr(gradient, name), numeric, what=name)

    def test_frames_that_do_not_enter_have_no_gradient(self):
        rig = mixed_rig(np.random.default_rng(SEED + 2))
        _, gradient, _ = static_rig_objective(**rig)
        for f in (3, 4):  # one used camera; weight 0
            assert not gradient.poses[f].any() and not gradient.scale_raw[f].any() and not gradient.shifts[f].any()
        unused = ~rig["used"]
        assert not gradient.scale_raw[unused].any() and not gradient.shifts[unused].any()
        assert not gradient.shifts[..., 2].any()  # depth is not seen

    def test_each_frame_is_the_refiner_objective_on_its_used_cameras(self):
        rig = mixed_rig(np.random.default_rng(SEED + 3))
        _, _, per_frame = static_rig_objective(**rig)
        for f in (0, 1, 2, 5):
            mixtures, x = frame_solution(rig, f)
            value, _ = _core.refiner_objective(mixtures[None], x[None], NO_BONES, np.ones((1, 1)), 0.0)
            assert per_frame[f] == value[0], f

    def test_one_frame_with_every_camera_is_the_refiner_objective(self):
        rig = make_rig(np.random.default_rng(SEED + 4), F=1)
        total, gradient, _ = static_rig_objective(**rig)
        mixtures, x = frame_solution(rig, 0)
        value, expected = _core.refiner_objective(mixtures[None], x[None], NO_BONES, np.ones((1, 1)), 0.0)
        assert total == value[0]
        parts = layout.unpack(expected[0], 4, 6)
        np.testing.assert_array_equal(gradient.rot6d, parts.rot6d)
        np.testing.assert_array_equal(gradient.poses[0], parts.pose)
        np.testing.assert_array_equal(gradient.scale_raw[0], parts.scale_raw)
        np.testing.assert_array_equal(gradient.shifts[0], parts.shift)

    def test_weights_count_views_and_frames(self):
        """A frame of weight 2 counts as the frame twice; scaling every weight changes nothing."""
        rig = mixed_rig(np.random.default_rng(SEED + 5))
        total, _, _ = static_rig_objective(**rig)
        scaled, _, _ = static_rig_objective(**{**rig, "frame_weights": 8.0 * rig["frame_weights"]})
        assert scaled == pytest.approx(total, rel=1e-14)
        doubled = dict(rig, frame_weights=rig["frame_weights"].copy())
        doubled["frame_weights"][1] *= 2
        twice = {name: np.concatenate([rig[name], rig[name][1:2]]) if name != "rot6d" else rig[name] for name in rig}
        assert static_rig_objective(**doubled)[0] == pytest.approx(static_rig_objective(**twice)[0], rel=1e-13)

    def test_an_unused_view_changes_nothing(self):
        """A view marked unused, NaN mixtures or not, whatever its scale and shift, is as absent."""
        rng = np.random.default_rng(SEED + 6)
        rig = make_rig(rng, F=3)
        rig["used"][1, 2] = False
        rig["mixtures"][1, 2] = np.nan
        other = {name: value.copy() for name, value in rig.items()}
        other["mixtures"][1, 2] = rng.uniform(0.1, 1.0, other["mixtures"][1, 2].shape)
        other["scale_raw"][1, 2] += 1.0
        other["shifts"][1, 2] += 0.3
        total, gradient, per_frame = static_rig_objective(**rig)
        total_other, gradient_other, per_frame_other = static_rig_objective(**other)
        assert total == total_other
        np.testing.assert_array_equal(per_frame, per_frame_other)
        for name in StaticRigGradient._fields:
            np.testing.assert_array_equal(getattr(gradient, name), getattr(gradient_other, name), err_msg=name)
        refined, refined_other = core_refine(rig, 30), core_refine(other, 30)
        others = np.ones((3, 4), bool)
        others[1, 2] = False  # the unused view keeps its own start
        for index, (a, b) in enumerate(zip(refined, refined_other)):
            if index in (2, 3):
                a, b = a[others], b[others]
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(refined[2][1, 2], rig["scale_raw"][1, 2])
        np.testing.assert_array_equal(refined[3][1, 2], rig["shifts"][1, 2])

    def test_permuting_frames_permutes_the_results(self):
        rig = mixed_rig(np.random.default_rng(SEED + 7))
        order = np.array([4, 2, 0, 5, 3, 1])
        permuted = {name: value if name == "rot6d" else value[order] for name, value in rig.items()}
        total, gradient, per_frame = static_rig_objective(**rig)
        total_p, gradient_p, per_frame_p = static_rig_objective(**permuted)
        assert total_p == pytest.approx(total, rel=1e-13)
        np.testing.assert_array_equal(per_frame_p, per_frame[order])  # each frame alone: the same bits
        # the weights' sum (and the rotations' gradient) adds the frames in another order: rounding apart
        np.testing.assert_allclose(gradient_p.rot6d, gradient.rot6d, rtol=1e-12, atol=1e-14)
        for name in ("poses", "scale_raw", "shifts"):
            np.testing.assert_allclose(getattr(gradient_p, name), getattr(gradient, name)[order], rtol=1e-13,
                                       atol=1e-15, err_msg=name)
        refined, refined_p = core_refine(rig, 40), core_refine(permuted, 40)
        np.testing.assert_allclose(refined_p[0], refined[0], rtol=0, atol=1e-11)
        for index in (1, 2, 3):
            np.testing.assert_allclose(refined_p[index], refined[index][order], rtol=0, atol=1e-11)
        np.testing.assert_allclose(refined_p[4], refined[4][order], rtol=1e-11, equal_nan=True)

    def test_thread_count_does_not_change_a_bit(self, restore_threads):
        """Enough frames (300, in lane groups with a partial last one) for the core to split them."""
        rig = make_rig(np.random.default_rng(SEED + 8), F=301, C=4, J=17, K=4)
        rig["used"][::7, 1] = False  # a second camera subset
        results = []
        for threads in (1, 2):
            mg.set_num_threads(threads)
            results.append((core_objective(rig), core_refine(rig, 15)))
        for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- the refiner


class TestRefine:
    def test_one_frame_equals_the_iterative_refiner(self):
        rig = make_rig(np.random.default_rng(SEED + 9), F=1)
        mixtures, x0 = frame_solution(rig, 0)
        x, objective, _, _ = _core.refine(mixtures[None], x0[None], NO_BONES, np.ones((1, 1)), 0.0, 100, *ADAM, 0)
        result = refine_static_rig(rig["mixtures"], rig["used"], rig["rot6d"], rig["poses"], rig["scale_raw"],
                                   rig["shifts"])
        assert isinstance(result, StaticRig)
        parts = layout.unpack(x[0], 4, 6)
        np.testing.assert_allclose(result.rot6d, parts.rot6d, rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.poses[0], parts.pose, rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.scale_raw[0], parts.scale_raw, rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.shifts[0], parts.shift, rtol=0, atol=1e-12)
        assert result.total == pytest.approx(objective[0], rel=1e-12)
        assert result.objective[0] == result.total
        np.testing.assert_allclose(result.rotation, geometry.rot6d_to_matrix(parts.rot6d), rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.scale, layout.scale_from_raw(parts.scale_raw)[None], rtol=1e-15)

    def test_one_frame_equals_the_ir_method_from_its_start(self):
        scene = synth.make_scene(3, num_cameras=4)
        views = scene.views()
        options = RefineOptions(init="s1", steps=60)
        solution = mg.solve(views, "ir", options)
        start = layout.unpack(_core.stage1(views.mono3d[None])[0], 4, 17)
        result = refine_static_rig(views.mixtures[None], np.ones((1, 4), bool), start.rot6d, start.pose[None],
                                   start.scale_raw[None], start.shift[None], options=options)
        expected = layout.unpack(solution.x, 4, 17)
        np.testing.assert_allclose(result.rot6d, expected.rot6d, rtol=0, atol=1e-10)
        np.testing.assert_allclose(result.poses[0], expected.pose, rtol=0, atol=1e-10)
        np.testing.assert_allclose(result.scale_raw[0], expected.scale_raw, rtol=0, atol=1e-10)
        np.testing.assert_allclose(result.shifts[0], expected.shift, rtol=0, atol=1e-10)
        assert result.total == pytest.approx(solution.objective, rel=1e-10)

    def test_recovers_the_rotations_of_a_synthetic_fixed_rig(self):
        """30 frames of a noise-free weak rig (4 cameras of synth.sample_cameras, poses in metres,
        ground-truth mixtures), started 17-18 degrees off per camera: the relative rotations R_0^T R_c
        (the objective cannot see a common rotation) come back."""
        rng = np.random.default_rng(5)
        F, C = 30, 4
        poses_mm = np.stack([synth.sample_pose(rng) for _ in range(F)])
        rotation = np.transpose(synth.sample_cameras(rng, poses_mm[0], C).rotation, (0, 2, 1))  # weak: R^T
        poses = (poses_mm - poses_mm.mean(axis=1, keepdims=True)) / 1000.0
        scale = rng.uniform(0.4, 0.6, (F, C))  # box units per metre
        shifts = np.concatenate([rng.uniform(0.3, 0.7, (F, C, 2)), np.zeros((F, C, 1))], axis=-1)
        points = geometry.project_weak(poses, np.broadcast_to(rotation, (F, C, 3, 3)), scale, shifts)
        mixtures = synth.gt_mixtures(points)
        axes = rng.normal(size=(C, 3))
        axes *= np.radians(10) / np.linalg.norm(axes, axis=1, keepdims=True)
        start = geometry.rodrigues_to_matrix(axes) @ rotation
        result = refine_static_rig(
            mixtures, np.ones((F, C), bool), geometry.matrix_to_rot6d(start),
            poses + rng.normal(scale=0.02, size=poses.shape),
            layout.raw_from_scale(scale * (1 + rng.normal(scale=0.05, size=scale.shape))),
            shifts + np.concatenate([rng.normal(scale=0.01, size=(F, C, 2)), np.zeros((F, C, 1))], axis=-1),
            options=RefineOptions(steps=200),
        )  # fmt: skip

        def errors(estimate):
            return [angle_degrees(estimate[0].T @ estimate[c], rotation[0].T @ rotation[c]) for c in range(1, C)]

        assert min(errors(start)) > 10.0
        assert max(errors(result.rotation)) < 0.05, errors(result.rotation)
        truth = (geometry.matrix_to_rot6d(rotation), poses, layout.raw_from_scale(scale), shifts)
        truth_total, _, _ = static_rig_objective(mixtures, np.ones((F, C), bool), np.ones(F), *truth)
        assert result.total < truth_total + 1e-3
        assert np.isfinite(result.objective).all()

    def test_what_does_not_enter_is_returned_unchanged(self):
        rig = mixed_rig(np.random.default_rng(SEED + 10))
        result = refine_static_rig(**rig, options=RefineOptions(steps=25))
        for f in (3, 4):
            np.testing.assert_array_equal(result.poses[f], rig["poses"][f])
            np.testing.assert_array_equal(result.scale_raw[f], rig["scale_raw"][f])
            np.testing.assert_array_equal(result.shifts[f], rig["shifts"][f])
        unused = ~rig["used"]
        np.testing.assert_array_equal(result.scale_raw[unused], rig["scale_raw"][unused])
        np.testing.assert_array_equal(result.shifts[..., 2], rig["shifts"][..., 2])
        np.testing.assert_array_equal(np.isnan(result.objective), [False, False, False, True, True, False])

    def test_refinement_lowers_the_objective_and_reports_it_at_the_result(self):
        rig = mixed_rig(np.random.default_rng(SEED + 11))
        start, _, _ = static_rig_objective(**rig)
        result = refine_static_rig(**rig)
        assert result.total < start
        total, _, per_frame = static_rig_objective(rig["mixtures"], rig["used"], rig["frame_weights"], result.rot6d,
                                                   result.poses, result.scale_raw, result.shifts)
        assert result.total == total
        np.testing.assert_array_equal(result.objective, per_frame)

    def test_zero_steps_return_the_start(self):
        rig = mixed_rig(np.random.default_rng(SEED + 12))
        result = refine_static_rig(**rig, options={"steps": 0})
        for name in ("rot6d", "poses", "scale_raw", "shifts"):
            np.testing.assert_array_equal(getattr(result, name), rig[name])
        assert result.total == static_rig_objective(**rig)[0]

    def test_default_weights_are_one(self):
        rig = mixed_rig(np.random.default_rng(SEED + 13))
        rig["frame_weights"] = np.ones(6)
        options = RefineOptions(steps=10)
        a = refine_static_rig(**rig, options=options)
        b = refine_static_rig(**{k: v for k, v in rig.items() if k != "frame_weights"}, options=options)
        np.testing.assert_array_equal(a.rot6d, b.rot6d)

    def test_divergence_is_an_error(self):
        rig = make_rig(np.random.default_rng(SEED + 14), F=2)
        with pytest.raises(ValueError, match="lower learning_rate"):
            refine_static_rig(**rig, options=RefineOptions(steps=5, learning_rate=1e300))


# --------------------------------------------------------------------------- bad input


ARGUMENTS = ("mixtures", "used", "frame_weights", "rot6d", "poses", "scale_raw", "shifts")


class TestBadInput:
    @pytest.fixture
    def rig(self):
        return make_rig(np.random.default_rng(SEED + 20), F=3, C=3, J=4, K=2)

    @pytest.mark.parametrize("name", ARGUMENTS)
    @pytest.mark.parametrize("change", ["drop_axis", "extra_axis", "resize_last", "resize_first", "empty"])
    def test_wrong_shape_names_the_argument(self, rig, name, change):
        value = rig[name]
        if change == "drop_axis":
            value = value[0]
        elif change == "extra_axis":
            value = value[..., None]
        elif change == "resize_last":
            value = np.resize(value, value.shape[:-1] + (value.shape[-1] + 1,))
        elif change == "resize_first":
            value = np.resize(value, (value.shape[0] + 1,) + value.shape[1:])
        else:
            value = value[:0]
        # mixtures set F, C, J and K: more frames there make `used` the first argument that does not fit
        expected = "used" if (name, change) == ("mixtures", "resize_first") else name
        for call in (lambda r: static_rig_objective(**r), core_objective, lambda r: core_refine(r, 3)):
            with pytest.raises(ValueError, match=f"^{expected}: "):
                call({**rig, name: value})

    @pytest.mark.parametrize("name", ARGUMENTS)
    def test_wrong_dtype_to_the_core_names_the_argument(self, rig, name):
        value = rig[name].astype(np.float32) if name != "used" else rig[name].astype(np.int64)
        with pytest.raises(ValueError, match=f"^{name}: expected dtype"):
            core_objective({**rig, name: value})

    @pytest.mark.parametrize("name", [n for n in ARGUMENTS if n != "used"])
    def test_other_real_dtypes_convert_in_the_wrapper(self, rig, name):
        single = rig[name].astype(np.float32)
        converted = static_rig_objective(**{**rig, name: single})[0]
        assert converted == static_rig_objective(**{**rig, name: single.astype(np.float64)})[0]

    def test_used_must_be_bool(self, rig):
        for value in (rig["used"].astype(np.int64), rig["used"].astype(float), "yes", [[1, 2], [3]]):
            with pytest.raises(ValueError, match="^used: expected a bool"):
                static_rig_objective(**{**rig, "used": value})
        with pytest.raises(ValueError, match="^used: expected a numpy bool array"):
            _core.rig_objective(rig["mixtures"], None, *(rig[n] for n in ARGUMENTS[2:]))

    @pytest.mark.parametrize("name", ["frame_weights", "rot6d", "poses", "scale_raw", "shifts"])
    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_values_name_the_argument(self, rig, name, bad):
        value = rig[name].copy()
        value.flat[-1] = bad
        with pytest.raises(ValueError, match=f"^{name}: contains NaN or inf"):
            static_rig_objective(**{**rig, name: value})

    def test_non_finite_used_mixtures(self, rig):
        rig["mixtures"][2, 1, 3, 1, 2] = np.nan
        with pytest.raises(ValueError, match=r"^mixtures: contains NaN or inf in a used view \(frame 2, camera 1\)"):
            static_rig_objective(**rig)
        rig["used"][2, 1] = False  # the same NaN in an unused view is fine
        assert np.isfinite(static_rig_objective(**rig)[0])

    def test_invalid_used_mixtures(self, rig):
        negative = rig["mixtures"].copy()
        negative[1, 0, 2, 1, 0] = -0.1
        with pytest.raises(ValueError, match=r"^mixtures: weights must be >= 0 \(frame 1, camera 0\)"):
            static_rig_objective(**{**rig, "mixtures": negative})
        for variance in (0.0, -1.0, 1e-310):
            zero = rig["mixtures"].copy()
            zero[0, 2, 0, 0, 3] = variance
            with pytest.raises(ValueError, match=r"^mixtures: variances must be > 0"):
                static_rig_objective(**{**rig, "mixtures": zero})

    def test_negative_frame_weight(self, rig):
        with pytest.raises(ValueError, match="^frame_weights: must be >= 0"):
            static_rig_objective(**{**rig, "frame_weights": np.array([1.0, -1.0, 1.0])})

    def test_huge_frame_weights_overflow(self, rig):
        with pytest.raises(ValueError, match="^frame_weights: too large"):
            static_rig_objective(**{**rig, "frame_weights": np.full(3, 1e308)})

    @pytest.mark.parametrize("case", ["one_camera_each", "zero_weights", "none_used"])
    def test_no_frame_enters(self, rig, case):
        if case == "one_camera_each":
            rig["used"][:] = np.eye(3, dtype=bool)
        elif case == "zero_weights":
            rig["frame_weights"][:] = 0.0
        else:
            rig["used"][:] = False
        for call in (lambda: static_rig_objective(**rig), lambda: refine_static_rig(**rig)):
            with pytest.raises(ValueError, match="no frame has two used cameras with weight > 0"):
                call()

    @pytest.mark.parametrize("rows", [[0, 0, 0, 0, 0, 0], [1, 2, 3, 2, 4, 6], [1e-160, 0, 0, 0, 1e-160, 0]])
    def test_camera_without_a_rotation(self, rig, rows):
        rig["rot6d"][1] = rows
        with pytest.raises(ValueError, match="^rot6d: camera 1 has no rotation"):
            static_rig_objective(**rig)

    @pytest.mark.parametrize("cameras", [1, 17])
    def test_camera_count_out_of_range(self, cameras):
        rig = make_rig(np.random.default_rng(SEED), F=2, C=2, J=3, K=1)
        rig = {name: np.repeat(value[:, :1], cameras, axis=1) if name in ("mixtures", "used", "scale_raw", "shifts")
               else np.repeat(value[:1], cameras, axis=0) if name == "rot6d" else value for name, value in rig.items()}
        with pytest.raises(ValueError, match="^mixtures: (a rig needs at least two|at most 16) cameras"):
            static_rig_objective(**rig)

    @pytest.mark.parametrize(("name", "value"), [
        ("steps", -1), ("steps", 1.5), ("steps", True), ("steps", 1 << 30), ("learning_rate", -1.0),
        ("learning_rate", np.nan), ("beta1", 1.0), ("beta2", -0.5), ("epsilon", 0.0), ("epsilon", "small"),
    ])  # fmt: skip
    def test_bad_adam_settings(self, rig, name, value):
        settings = dict(zip(("steps", "learning_rate", "beta1", "beta2", "epsilon"), (10, *ADAM)))
        settings[name] = value
        with pytest.raises(ValueError, match=f"^{name}"):
            _core.rig_refine(*(rig[n] for n in ARGUMENTS), *settings.values())
        if name != "steps" or value != 1 << 30:  # RefineOptions takes any steps >= 0; the core caps them
            with pytest.raises(ValueError, match=name):
                refine_static_rig(**rig, options={name: value})

    @pytest.mark.parametrize(("field", "value"), [("bone_weight", 0.5), ("history_every", 10)])
    def test_options_the_rig_does_not_have(self, rig, field, value):
        with pytest.raises(ValueError, match=f"^options.{field}"):
            refine_static_rig(**rig, options=RefineOptions(**{field: value}))
        with pytest.raises(ValueError, match=f"^options.{field}"):
            refine_static_rig(**rig, options={field: value})
        with pytest.raises(ValueError, match="unknown name"):
            refine_static_rig(**rig, options={"iterations": 3})


class TestGarbage:
    """Random garbage for every argument of the two core functions: a ValueError or a finite result
    of the right shapes, never a crash or another exception."""

    def _garbage(self, rng: np.random.Generator, value: np.ndarray):
        kind = rng.integers(9)
        if kind == 0:
            return value  # intact
        if kind == 1:
            return rng.normal(size=tuple(rng.integers(0, 4, size=rng.integers(0, 5))))
        if kind == 2:
            return value.astype(rng.choice(["float32", "int64", "bool", "complex128", "object", "U3"]))
        if kind == 3:
            bad = np.array(value, dtype=np.float64)
            bad.flat[rng.integers(bad.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e308, -1e308, 5e-324])
            return bad.astype(value.dtype)
        if kind == 4:
            return np.asfortranarray(value) if value.ndim > 1 else value[::-1]
        if kind == 5:
            return np.repeat(value, 2, axis=-1)[..., ::2]  # strided view
        if kind == 6:
            return [None, 3, "x", 2.5, [1.0, 2.0]][rng.integers(5)]
        if kind == 7:
            return value * 10.0 ** rng.choice([-300, -150, 150, 300]) if value.dtype != bool else ~value
        return -value if value.dtype != bool else np.zeros_like(value)

    def test_garbage_never_crashes(self):
        rng = np.random.default_rng(SEED + 30)
        outcomes = {"ok": 0, "error": 0}
        with np.errstate(all="ignore"):
            for trial in range(300):
                rig = make_rig(rng, F=int(rng.integers(1, 4)), C=int(rng.integers(2, 5)), J=int(rng.integers(1, 5)),
                               K=int(rng.integers(1, 3)))
                arrays = [self._garbage(rng, rig[name]) if rng.integers(3) == 0 else rig[name] for name in ARGUMENTS]
                refine = bool(rng.integers(2))
                try:
                    if refine:
                        out = _core.rig_refine(*arrays, int(rng.integers(0, 4)), *ADAM)
                        shapes = [rig["rot6d"].shape, rig["poses"].shape, rig["scale_raw"].shape, rig["shifts"].shape,
                                  rig["poses"].shape[:1], ()]
                    else:
                        out = _core.rig_objective(*arrays)
                        shapes = [(), rig["rot6d"].shape, rig["poses"].shape, rig["scale_raw"].shape,
                                  rig["shifts"].shape, rig["poses"].shape[:1]]
                except ValueError as error:
                    assert str(error).split(":")[0].split(",")[0] in ARGUMENTS + ("steps",), str(error)
                    outcomes["error"] += 1
                    continue
                outcomes["ok"] += 1
                for index, (value, shape) in enumerate(zip(out, shapes)):
                    assert np.shape(value) == shape, (trial, index)
                    if index != (4 if refine else 5):  # per_frame: NaN for frames that do not enter
                        assert np.isfinite(value).all(), (trial, index)
        assert outcomes["ok"] > 50 and outcomes["error"] > 50, outcomes
