"""Similarity Procrustes (metapose_geom.geometry.procrustes)."""

from __future__ import annotations

import numpy as np
import pytest

from metapose_geom import geometry

import reference as ref
from conftest import BATCH_SHAPES, assert_close, assert_rotation, in_unit, random_rotations, refusal

MODES = ["umeyama", "norm_ratio"]
POINTS = 17


def similar_pair(rng, batch=(), count=POINTS, noise=0.0):
    """source, target = s * source @ R + t (+ noise), and the transform (R, s, t)."""
    source = rng.normal(size=batch + (count, 3))
    rotation = random_rotations(rng, batch)
    scale = rng.uniform(0.2, 5.0, size=batch)
    translation = rng.normal(size=batch + (3,)) * 3.0
    target = scale[..., None, None] * source @ rotation + translation[..., None, :]
    target = target + noise * rng.normal(size=target.shape)
    return source, target, (rotation, scale, translation)


def apply(similarity, points):
    rotation, scale, translation = similarity
    return np.asarray(scale)[..., None, None] * points @ rotation + np.asarray(translation)[..., None, :]


def objective(rotation, source, target):
    """trace(R^T A^T B) for the centred sets: what the rotation maximises."""
    a = source - source.mean(axis=-2, keepdims=True)
    b = target - target.mean(axis=-2, keepdims=True)
    return np.einsum("...ik,...ni,...nk->...", rotation, a, b)


class TestProcrustes:
    def test_smoke_identical_sets(self, rng):
        points = rng.normal(size=(POINTS, 3))
        rotation, scale, translation = geometry.procrustes(points, points)
        np.testing.assert_allclose(rotation, np.eye(3), rtol=0, atol=1e-14)
        np.testing.assert_allclose(scale, 1.0, rtol=1e-14)
        np.testing.assert_allclose(translation, 0.0, rtol=0, atol=1e-14)

    def test_returns_a_named_similarity(self, rng):
        source, target, _ = similar_pair(rng)
        result = geometry.procrustes(source, target)
        assert isinstance(result, geometry.Similarity)
        assert result._fields == ("rotation", "scale", "translation")

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("mode", MODES)
    def test_shapes(self, rng, batch, mode):
        source, target, _ = similar_pair(rng, batch, noise=0.1)
        rotation, scale, translation = geometry.procrustes(source, target, scale=mode)
        assert rotation.shape == batch + (3, 3)
        assert np.shape(scale) == batch
        assert translation.shape == batch + (3,)
        assert rotation.dtype == np.asarray(scale).dtype == translation.dtype == np.float64

    def test_default_mode_is_umeyama(self, rng):
        source, target, _ = similar_pair(rng, (4,), noise=0.5)
        default = geometry.procrustes(source, target)
        explicit = geometry.procrustes(source, target, scale="umeyama")
        for got, want in zip(default, explicit):
            np.testing.assert_array_equal(got, want)
        assert not np.allclose(default.scale, geometry.procrustes(source, target, scale="norm_ratio").scale)

    # ---------------------------------------------------------------- values
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("mode", MODES)
    def test_values_against_reference(self, rng, batch, mode):
        source, target, _ = similar_pair(rng, batch, noise=0.3)
        got = geometry.procrustes(source, target, scale=mode)
        want = ref.procrustes(source, target, mode)
        for name, value, expected in zip(("rotation", "scale", "translation"), got, want):
            assert_close(np.asarray(value), expected, err_msg=name)

    @pytest.mark.parametrize("mode", MODES)
    def test_values_unrelated_sets(self, rng, mode):
        """Targets that are not near any similar copy of the source (random rotation quality)."""
        source, target = rng.normal(size=(2, 50, 8, 3))
        got = geometry.procrustes(source, target, scale=mode)
        want = ref.procrustes(source, target, mode)
        for name, value, expected in zip(("rotation", "scale", "translation"), got, want):
            assert_close(np.asarray(value), expected, rtol=1e-9, err_msg=name)

    # ---------------------------------------------------------------- properties
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("mode", MODES)
    def test_recovers_an_exact_similarity(self, rng, batch, mode):
        source, target, (rotation, scale, translation) = similar_pair(rng, batch)
        got = geometry.procrustes(source, target, scale=mode)
        assert_close(got.rotation, rotation, rtol=1e-12)
        assert_close(np.asarray(got.scale), scale, rtol=1e-12)
        assert_close(got.translation, translation, rtol=1e-12)
        assert_close(apply(got, source), target, rtol=1e-12)

    @pytest.mark.parametrize("mode", MODES)
    def test_recovers_a_similarity_of_a_planar_set(self, rng, mode):
        source, _, _ = similar_pair(rng, (10,))
        source[..., 2] = 0.0  # coplanar: rank 2, the proper rotation is still unique
        rotation = random_rotations(rng, (10,))
        target = 1.7 * source @ rotation + 0.5
        got = geometry.procrustes(source, target, scale=mode)
        assert_close(got.rotation, rotation, rtol=1e-12)
        assert_close(np.asarray(got.scale), np.full(10, 1.7), rtol=1e-12)
        assert_close(apply(got, source), target, rtol=1e-12)

    @pytest.mark.parametrize("mode", MODES)
    def test_never_a_reflection(self, rng, mode):
        """The best orthogonal map onto a mirrored copy is a reflection; the answer is still the
        best proper rotation (det +1), as the SVD with the sign fix gives."""
        source, target, _ = similar_pair(rng, (30,), noise=0.05)
        mirrored = target * np.array([1.0, 1.0, -1.0])
        a = source - source.mean(-2, keepdims=True)
        b = mirrored - mirrored.mean(-2, keepdims=True)
        u, _, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
        assert np.all(np.linalg.det(u @ vt) < 0)  # the unconstrained optimum is a reflection
        got = geometry.procrustes(source, mirrored, scale=mode)
        assert_rotation(got.rotation)
        want = ref.procrustes(source, mirrored, mode)
        assert_close(got.rotation, want[0], rtol=1e-9)
        assert_close(np.asarray(got.scale), want[1], rtol=1e-9)
        # optimal among proper rotations: no random rotation does better
        best = objective(got.rotation, source, mirrored)
        others = objective(random_rotations(rng, (200, 30)), source, mirrored)
        assert np.all(best >= others.max(axis=0) - 1e-12 * np.abs(best))

    @pytest.mark.parametrize("mode", MODES)
    def test_rotation_maximises_the_trace(self, rng, mode):
        source, target, _ = similar_pair(rng, (30,), noise=2.0)
        got = geometry.procrustes(source, target, scale=mode)
        best = objective(got.rotation, source, target)
        np.testing.assert_allclose(best, objective(ref.procrustes(source, target)[0], source, target), rtol=1e-12)
        perturbed = got.rotation @ ref.rodrigues_to_matrix(rng.normal(scale=1e-3, size=(30, 3)))
        assert np.all(objective(perturbed, source, target) <= best)

    def test_umeyama_scale_is_least_squares(self, rng):
        """With R fixed, s minimises sum |s A R - B|^2: nudging it either way increases the residual."""
        source, target, _ = similar_pair(rng, (20,), noise=1.0)
        got = geometry.procrustes(source, target, scale="umeyama")

        def residual(scale):
            return np.sum((apply((got.rotation, scale, got.translation), source) - target) ** 2, axis=(-2, -1))

        # translation is optimal for its own scale; re-derive it when nudging the scale
        def residual_at(scale):
            shift = target.mean(-2) - scale[..., None] * np.einsum("...i,...ik->...k", source.mean(-2), got.rotation)
            return np.sum((apply((got.rotation, scale, shift), source) - target) ** 2, axis=(-2, -1))

        base = residual(np.asarray(got.scale))
        np.testing.assert_allclose(base, residual_at(np.asarray(got.scale)), rtol=1e-10)
        for delta in (1e-3, -1e-3):
            assert np.all(residual_at(np.asarray(got.scale) * (1 + delta)) > base)

    def test_norm_ratio_scale(self, rng):
        source, target, _ = similar_pair(rng, (20,), noise=1.0)
        a = source - source.mean(-2, keepdims=True)
        b = target - target.mean(-2, keepdims=True)
        got = geometry.procrustes(source, target, scale="norm_ratio")
        assert_close(np.asarray(got.scale), np.linalg.norm(b, axis=(-2, -1)) / np.linalg.norm(a, axis=(-2, -1)))

    @pytest.mark.parametrize("mode", MODES)
    def test_invariant_to_point_order(self, rng, mode):
        source, target, _ = similar_pair(rng, (5,), noise=0.3)
        order = rng.permutation(POINTS)
        first = geometry.procrustes(source, target, scale=mode)
        second = geometry.procrustes(source[:, order], target[:, order], scale=mode)
        for a, b in zip(first, second):
            assert_close(np.asarray(b), np.asarray(a), rtol=1e-12)

    @pytest.mark.parametrize("mode", MODES)
    def test_deterministic(self, rng, mode):
        source, target, _ = similar_pair(rng, (50,), noise=0.3)
        first = geometry.procrustes(source, target, scale=mode)
        second = geometry.procrustes(source.copy(), target.copy(), scale=mode)
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize("unit", [1e-300, 1e-120, 1e-60, 1e-20, 1e20, 1e60, 1e120, 1e300, 1e308])
    @pytest.mark.parametrize("mode", MODES)
    def test_equivariant_to_the_unit_of_length(self, rng, unit, mode):
        """Both sets in another unit: the same rotation and scale, the translation in the new unit,
        wherever the sets and the translation are finite in float64 (the core rescales inside, so
        even 1e300 works); sets that are not (1e308 x 17) are refused. Never a different answer."""
        source, target, _ = similar_pair(rng, (4,), noise=0.3)
        base = geometry.procrustes(source, target, scale=mode)
        inputs = in_unit(unit, source, target)
        expected_refusal = refusal(inputs, in_unit(unit, base.translation))
        if expected_refusal:
            assert unit == 1e308
            with pytest.raises(ValueError, match=expected_refusal):
                geometry.procrustes(*inputs, scale=mode)
            return
        got = geometry.procrustes(*inputs, scale=mode)
        assert_close(got.rotation, base.rotation, rtol=1e-9, err_msg="rotation")
        assert_close(np.asarray(got.scale), np.asarray(base.scale), rtol=1e-9, err_msg="scale")
        assert_close(got.translation / unit, base.translation, rtol=1e-9, err_msg="translation")

    @pytest.mark.parametrize("unit", [1e-310, 1e-300, 1e-200, 1e-3, 1e3, 1e200, 1e300, 1e308])
    @pytest.mark.parametrize("mode", MODES)
    def test_source_in_another_unit(self, rng, unit, mode):
        """Only the source rescaled: the same rotation, the scale divided by the unit, wherever the
        source and that scale are finite in float64. A source of 1e308 x 2.7 is refused as input;
        one of 1e-310 x 2.7 is accepted, but its scale (1e310) overflows and is refused as result."""
        source, target, _ = similar_pair(rng, (4,), noise=0.3)
        base = geometry.procrustes(source, target, scale=mode)
        (moved,) = in_unit(unit, source)
        expected_refusal = refusal([moved, target], in_unit(1 / unit, base.scale))
        if expected_refusal:
            assert unit in (1e-310, 1e308)
            with pytest.raises(ValueError, match=expected_refusal):
                geometry.procrustes(moved, target, scale=mode)
            return
        got = geometry.procrustes(moved, target, scale=mode)
        assert_close(got.rotation, base.rotation, rtol=1e-9, err_msg="rotation")
        assert_close(np.asarray(got.scale) * unit, np.asarray(base.scale), rtol=1e-9, err_msg="scale")
        assert_close(got.translation, base.translation, rtol=1e-9, err_msg="translation")

    # ---------------------------------------------------------------- degenerate sets
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("count", [1, 2, 5])
    def test_coincident_source(self, rng, mode, count):
        """Documented: identity rotation and scale 1; the translation then takes the point onto
        the target's centroid."""
        point = rng.normal(size=(4, 1, 3))
        source = np.repeat(point, count, axis=1)
        target = rng.normal(size=(4, count, 3))
        rotation, scale, translation = geometry.procrustes(source, target, scale=mode)
        np.testing.assert_array_equal(rotation, np.broadcast_to(np.eye(3), (4, 3, 3)))
        np.testing.assert_array_equal(scale, 1.0)
        np.testing.assert_allclose(translation, target.mean(axis=1) - point[:, 0], rtol=1e-12, atol=1e-14)

    @pytest.mark.parametrize("mode", MODES)
    def test_all_zero_source(self, rng, mode):
        rotation, scale, translation = geometry.procrustes(np.zeros((6, 3)), rng.normal(size=(6, 3)), scale=mode)
        np.testing.assert_array_equal(rotation, np.eye(3))
        np.testing.assert_array_equal(scale, 1.0)
        assert np.all(np.isfinite(translation))

    @pytest.mark.parametrize("mode", MODES)
    def test_collinear_sets(self, rng, mode):
        """Rank 1: the rotation is not unique, but the answer is finite, proper, and still maps
        the source onto a similar copy of it."""
        direction = rng.normal(size=(10, 1, 3))
        source = rng.normal(size=(10, 6, 1)) * direction + rng.normal(size=(10, 1, 3))
        rotation = random_rotations(rng, (10,))
        target = 2.5 * source @ rotation - 1.0
        got = geometry.procrustes(source, target, scale=mode)
        assert_rotation(got.rotation)
        assert np.all(np.isfinite(got.translation))
        assert_close(np.asarray(got.scale), np.full(10, 2.5), rtol=1e-12)
        assert_close(apply(got, source), target, rtol=1e-12)

    @pytest.mark.parametrize("mode", MODES)
    def test_collinear_along_a_coordinate_axis(self, rng, mode):
        source = np.zeros((5, 3))
        source[:, 0] = np.arange(5.0)
        target = source[:, [1, 0, 2]] * 3.0  # the same line along y
        got = geometry.procrustes(source, target, scale=mode)
        assert_rotation(got.rotation)
        np.testing.assert_allclose(got.scale, 3.0, rtol=1e-13)
        np.testing.assert_allclose(apply(got, source), target, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("mode", MODES)
    def test_coincident_target(self, rng, mode):
        """B = 0: every rotation is optimal, both scales are 0, the translation is the target point."""
        source = rng.normal(size=(3, 6, 3))
        target = np.repeat(rng.normal(size=(3, 1, 3)), 6, axis=1)
        got = geometry.procrustes(source, target, scale=mode)
        assert_rotation(got.rotation)
        np.testing.assert_allclose(got.scale, 0.0, rtol=0, atol=1e-14)
        assert_close(apply(got, source), target, rtol=1e-12)

    @pytest.mark.parametrize("mode", MODES)
    def test_degenerate_results_are_deterministic(self, rng, mode):
        direction = rng.normal(size=(1, 3))
        source = np.arange(4.0)[:, None] * direction
        target = np.arange(4.0)[:, None] * rng.normal(size=(1, 3))
        first = geometry.procrustes(source, target, scale=mode)
        second = geometry.procrustes(source, target, scale=mode)
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, b)
