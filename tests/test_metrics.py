"""Pose-error metrics: PMPJPE, NMPJPE, PCK (metapose_geom.metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from metapose_geom import metrics

import reference as ref
from conftest import BATCH_SHAPES, assert_close, in_unit, random_rotations, refusal

JOINTS = 17
MODES = ["norm_ratio", "umeyama"]


def pose_pair(rng, batch=(), noise=30.0):
    """A ground truth in mm and a prediction that is a noisy similar copy of it."""
    ground_truth = rng.normal(size=batch + (JOINTS, 3)) * 300.0
    rotation = random_rotations(rng, batch)
    scale = rng.uniform(0.5, 2.0, size=batch + (1, 1))
    prediction = scale * (ground_truth + noise * rng.normal(size=ground_truth.shape)) @ rotation + 100.0
    return prediction, ground_truth


def camera_frame_pair(rng, batch=(), noise=30.0):
    """Both poses in one camera frame: a prediction off by scale, offset and noise (no rotation)."""
    ground_truth = rng.normal(size=batch + (JOINTS, 3)) * 300.0 + np.array([0.0, 0.0, 4000.0])
    scale = rng.uniform(0.5, 2.0, size=batch + (1, 1))
    prediction = scale * (ground_truth + noise * rng.normal(size=ground_truth.shape)) + rng.normal(size=batch + (1, 3))
    return prediction, ground_truth


class TestPmpjpe:
    def test_smoke_perfect_prediction(self, rng):
        _, ground_truth = pose_pair(rng)
        np.testing.assert_allclose(metrics.pmpjpe(ground_truth, ground_truth), 0.0, atol=1e-9)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("per_joint", [False, True])
    def test_shapes(self, rng, batch, per_joint):
        error = np.asarray(metrics.pmpjpe(*pose_pair(rng, batch), per_joint=per_joint))
        assert error.shape == batch + ((JOINTS,) if per_joint else ())
        assert error.dtype == np.float64

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("mode", MODES)
    def test_values_against_reference(self, rng, batch, mode):
        prediction, ground_truth = pose_pair(rng, batch)
        assert_close(metrics.pmpjpe(prediction, ground_truth, scale=mode, per_joint=True),
                     ref.pmpjpe_per_joint(prediction, ground_truth, mode))
        assert_close(np.asarray(metrics.pmpjpe(prediction, ground_truth, scale=mode)),
                     ref.pmpjpe(prediction, ground_truth, mode))

    def test_default_scale_is_norm_ratio(self, rng):
        prediction, ground_truth = pose_pair(rng, (5,), noise=80.0)
        np.testing.assert_array_equal(metrics.pmpjpe(prediction, ground_truth),
                                      metrics.pmpjpe(prediction, ground_truth, scale="norm_ratio"))
        assert not np.allclose(metrics.pmpjpe(prediction, ground_truth),
                               metrics.pmpjpe(prediction, ground_truth, scale="umeyama"))

    @pytest.mark.parametrize("mode", MODES)
    def test_invariant_to_a_similarity_of_the_prediction(self, rng, mode):
        prediction, ground_truth = pose_pair(rng, (6,))
        moved = 3.0 * prediction @ random_rotations(rng, (6,)) - 250.0
        assert_close(metrics.pmpjpe(moved, ground_truth, scale=mode), metrics.pmpjpe(prediction, ground_truth, scale=mode),
                     rtol=1e-10)

    def test_zero_for_any_similar_copy(self, rng):
        _, ground_truth = pose_pair(rng, (6,))
        prediction = 0.3 * ground_truth @ random_rotations(rng, (6,)) + 42.0
        for mode in MODES:
            np.testing.assert_allclose(metrics.pmpjpe(prediction, ground_truth, scale=mode), 0.0, atol=1e-9)

    def test_mean_of_per_joint(self, rng):
        prediction, ground_truth = pose_pair(rng, (4,))
        per_joint = metrics.pmpjpe(prediction, ground_truth, per_joint=True)
        assert_close(np.asarray(metrics.pmpjpe(prediction, ground_truth)), per_joint.mean(axis=-1), rtol=1e-14)


class TestNmpjpe:
    def test_smoke_perfect_prediction(self, rng):
        _, ground_truth = camera_frame_pair(rng)
        np.testing.assert_allclose(metrics.nmpjpe(ground_truth, ground_truth), 0.0, atol=1e-9)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("per_joint", [False, True])
    def test_shapes(self, rng, batch, per_joint):
        error = np.asarray(metrics.nmpjpe(*camera_frame_pair(rng, batch), per_joint=per_joint))
        assert error.shape == batch + ((JOINTS,) if per_joint else ())
        assert error.dtype == np.float64

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("mirror_fix", [False, True])
    def test_values_against_reference(self, rng, batch, mirror_fix):
        prediction, ground_truth = camera_frame_pair(rng, batch, noise=100.0)
        # half the items depth-mirrored, so mirror_fix has something to choose
        flip = rng.random(batch) < 0.5
        prediction = np.where(flip[..., None, None], prediction * np.array([1.0, 1.0, -1.0]), prediction)
        assert_close(metrics.nmpjpe(prediction, ground_truth, mirror_fix=mirror_fix, per_joint=True),
                     ref.nmpjpe_per_joint(prediction, ground_truth, mirror_fix))
        assert_close(np.asarray(metrics.nmpjpe(prediction, ground_truth, mirror_fix=mirror_fix)),
                     ref.nmpjpe(prediction, ground_truth, mirror_fix))

    def test_mirror_fix_undoes_a_depth_flip(self, rng):
        _, ground_truth = camera_frame_pair(rng, (5,))
        mirrored = 2.0 * ground_truth * np.array([1.0, 1.0, -1.0]) + 7.0
        np.testing.assert_allclose(metrics.nmpjpe(mirrored, ground_truth, mirror_fix=True), 0.0, atol=1e-9)
        assert np.all(metrics.nmpjpe(mirrored, ground_truth, mirror_fix=False) > 10.0)

    def test_mirror_fix_never_worse(self, rng):
        prediction, ground_truth = camera_frame_pair(rng, (50,), noise=150.0)
        assert np.all(metrics.nmpjpe(prediction, ground_truth, mirror_fix=True)
                      <= metrics.nmpjpe(prediction, ground_truth, mirror_fix=False) + 1e-9)

    def test_invariant_to_translation_and_scale_of_the_prediction(self, rng):
        prediction, ground_truth = camera_frame_pair(rng, (6,))
        moved = 0.01 * prediction + np.array([5.0, -3.0, 1000.0])
        assert_close(metrics.nmpjpe(moved, ground_truth), metrics.nmpjpe(prediction, ground_truth), rtol=1e-10)

    def test_not_invariant_to_rotation(self, rng):
        """Unlike PMPJPE, no rotation is fitted: a rotated exact copy has a positive error."""
        _, ground_truth = camera_frame_pair(rng, (6,))
        rotated = ground_truth @ random_rotations(rng, (6,))
        assert np.all(metrics.nmpjpe(rotated, ground_truth) > 1.0)
        np.testing.assert_allclose(metrics.pmpjpe(rotated, ground_truth), 0.0, atol=1e-9)

    def test_mean_of_per_joint(self, rng):
        prediction, ground_truth = camera_frame_pair(rng, (4,))
        per_joint = metrics.nmpjpe(prediction, ground_truth, per_joint=True)
        assert_close(np.asarray(metrics.nmpjpe(prediction, ground_truth)), per_joint.mean(axis=-1), rtol=1e-14)


class TestPck:
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        value = np.asarray(metrics.pck(*camera_frame_pair(rng, batch)))
        assert value.shape == batch
        assert value.dtype == np.float64

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("threshold", [50.0, 150.0, 300.0])
    @pytest.mark.parametrize("mirror_fix", [False, True])
    def test_values_against_reference(self, rng, batch, threshold, mirror_fix):
        prediction, ground_truth = camera_frame_pair(rng, batch, noise=120.0)
        got = np.asarray(metrics.pck(prediction, ground_truth, threshold=threshold, mirror_fix=mirror_fix))
        np.testing.assert_array_equal(got, ref.pck(prediction, ground_truth, threshold, mirror_fix))

    def test_default_threshold_is_150(self, rng):
        prediction, ground_truth = camera_frame_pair(rng, (20,), noise=120.0)
        np.testing.assert_array_equal(metrics.pck(prediction, ground_truth),
                                      metrics.pck(prediction, ground_truth, threshold=150.0))
        errors = metrics.nmpjpe(prediction, ground_truth, per_joint=True)
        np.testing.assert_array_equal(metrics.pck(prediction, ground_truth), (errors < 150.0).mean(axis=-1))

    def test_range_and_monotone_in_threshold(self, rng):
        prediction, ground_truth = camera_frame_pair(rng, (30,), noise=120.0)
        values = np.array([metrics.pck(prediction, ground_truth, threshold=t) for t in (1.0, 50.0, 150.0, 500.0, 1e6)])
        assert np.all((values >= 0.0) & (values <= 1.0))
        assert np.all(np.diff(values, axis=0) >= 0.0)
        np.testing.assert_array_equal(values[-1], 1.0)
        assert np.all(values[0] < 1.0)

    def test_perfect_prediction_is_one(self, rng):
        _, ground_truth = camera_frame_pair(rng, (3,))
        np.testing.assert_array_equal(metrics.pck(ground_truth, ground_truth), 1.0)


#: each metric with its options and the kind of pair it is measured on
UNIT_CASES = {
    "pmpjpe": (metrics.pmpjpe, {"scale": "norm_ratio"}, pose_pair),
    "pmpjpe-umeyama": (metrics.pmpjpe, {"scale": "umeyama"}, pose_pair),
    "nmpjpe": (metrics.nmpjpe, {"mirror_fix": False}, camera_frame_pair),
    "nmpjpe-mirror_fix": (metrics.nmpjpe, {"mirror_fix": True}, camera_frame_pair),
}


class TestUnitOfLength:
    """Both poses in another unit: the error in that unit. Only the prediction (metres against a
    truth in mm is what the scale alignment is for): the same error. So wherever the poses and
    the error are finite in float64 -- the core rescales inside, so even 1e-300 and 1e300 work; a
    pose that is not finite (1e306 x up to 4000 mm) is refused."""

    @pytest.mark.parametrize("unit", [1e-300, 1e-200, 1e-120, 1e-3, 1e3, 1e120, 1e200, 1e300, 1e306])
    @pytest.mark.parametrize("case", UNIT_CASES)
    @pytest.mark.parametrize("moved", ["both", "prediction"])
    def test_error_in_another_unit(self, rng, unit, case, moved):
        metric, options, make_pair = UNIT_CASES[case]
        prediction, ground_truth = make_pair(rng, (4,))
        base = metric(prediction, ground_truth, per_joint=True, **options)
        if moved == "both":
            inputs, (expected,) = in_unit(unit, prediction, ground_truth), in_unit(unit, base)
        else:
            inputs, expected = in_unit(unit, prediction) + (ground_truth,), base
        expected_refusal = refusal(inputs, [expected])
        if expected_refusal:
            assert unit == 1e306
            with pytest.raises(ValueError, match=expected_refusal):
                metric(*inputs, per_joint=True, **options)
        else:
            assert_close(metric(*inputs, per_joint=True, **options), expected, rtol=1e-9)
