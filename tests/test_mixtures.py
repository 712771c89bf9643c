"""mixtures: the validation rule, keypoints to mixtures and the mixture mean."""

from __future__ import annotations

import numpy as np
import pytest

from metapose_geom import geometry, mixtures as mx


def random_mixtures(rng, shape=(3, 17, 4)):
    out = np.empty(shape + (4,))
    out[..., 0] = rng.uniform(0.1, 1.0, shape)
    out[..., 1:3] = rng.uniform(0, 1, shape + (2,))
    out[..., 3] = rng.uniform(1e-4, 1e-2, shape)
    return out


def test_mean_is_the_weighted_mean_of_component_means(rng):
    m = random_mixtures(rng)
    expected = np.einsum("cjk,cjkd->cjd", m[..., 0], m[..., 1:3]) / m[..., 0].sum(-1)[..., None]
    np.testing.assert_allclose(mx.mixture_mean(m), expected, rtol=1e-14)


def test_mean_is_the_likelihood_peak_of_one_component(rng):
    m = random_mixtures(rng, (2, 5, 1))
    mean = mx.mixture_mean(m)
    ll = geometry.mixture_log_likelihood(mean, m)
    for step in ([1e-4, 0.0], [0.0, -1e-4]):
        assert (geometry.mixture_log_likelihood(mean + np.array(step), m) < ll).all()


@pytest.mark.parametrize("change, match", [
    (lambda m: np.where(np.arange(4) == 1, np.nan, m), "mixtures: contains NaN or inf"),
    (lambda m: m * np.array([-1, 1, 1, 1]), "weights must be >= 0"),
    (lambda m: m * np.array([1, 1, 1, 0]), "variances must be > 0"),
    (lambda m: m * np.array([0, 1, 1, 1]), "zero total weight at camera 0, joint 0 \\(pelvis\\)"),
    (lambda m: m[..., :3], "expected shape \\(\\.\\.\\., K, 4\\)"),
])
def test_validation_rule(rng, change, match):
    names = ("pelvis",) + tuple(f"j{i}" for i in range(1, 17))
    with pytest.raises(ValueError, match=match):
        mx.check_mixtures(change(random_mixtures(rng)), joint_names=names)


def test_zero_weight_allowed_when_not_asked(rng):
    m = random_mixtures(rng) * np.array([0, 1, 1, 1])
    assert mx.check_mixtures(m, positive_total=False) is not None


def test_keypoints_to_mixtures(rng):
    points = rng.uniform(0, 1, (2, 4, 2))
    conf = np.array([[1.0, 0.5, 0.0, 0.25], [1.0, 1.0, 1.0, 1.0]])
    points[1, 3] = np.nan
    m = mx.keypoints_to_mixtures(points, conf)
    assert m.shape == (2, 4, 1, 4)
    np.testing.assert_array_equal(m[..., 0, 0], 1.0)
    np.testing.assert_array_equal(m[0, :2, 0, 1:3], points[0, :2])
    np.testing.assert_allclose(np.sqrt(m[0, [0, 1, 3], 0, 3]), mx.KEYPOINT_SIGMA / conf[0, [0, 1, 3]], rtol=1e-15)
    missing = mx.missing_joints(m)
    np.testing.assert_array_equal(missing, [[False, False, True, False], [False, False, False, True]])
    np.testing.assert_array_equal(m[missing][:, 0], [[1.0, 0.5, 0.5, mx.UNINFORMATIVE_VARIANCE]] * 2)


def test_zero_weight_in_stacked_frames_names_the_frame(rng):
    m = random_mixtures(rng, (2, 3, 17, 4))
    m[1, 2, 5, :, 0] = 0.0
    with pytest.raises(ValueError, match=r"zero total weight at frame 1, camera 2, joint 5$"):
        mx.check_mixtures(m)
