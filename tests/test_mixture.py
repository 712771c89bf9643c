"""Spherical Gaussian-mixture log-likelihood and its gradient (metapose_geom.geometry)."""

from __future__ import annotations

import numpy as np
import pytest

from metapose_geom import geometry

import reference as ref
from conftest import BATCH_SHAPES, assert_close, assert_derivative_close, central_difference, random_mixtures

COMPONENTS = [1, 4]


def gaussian_log_density(points, mean, variance):
    """log N(p; mu, var I) in two dimensions."""
    squared = np.sum((points - mean) ** 2, axis=-1)
    return -np.log(2.0 * np.pi * variance) - squared / (2.0 * variance)


def mixture_inputs(rng, batch=(), components=4):
    return rng.normal(0.5, 0.3, size=batch + (2,)), random_mixtures(rng, batch, components)


class TestMixtureLogLikelihood:
    def test_smoke_standard_normal_at_its_mean(self):
        value = geometry.mixture_log_likelihood([0.0, 0.0], [[1.0, 0.0, 0.0, 1.0]])
        np.testing.assert_allclose(value, np.log(1.0 + 1e-8) - np.log(2.0 * np.pi), rtol=1e-15)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("components", COMPONENTS)
    def test_shapes(self, rng, batch, components):
        value = np.asarray(geometry.mixture_log_likelihood(*mixture_inputs(rng, batch, components)))
        assert value.shape == batch
        assert value.dtype == np.float64

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("components", COMPONENTS)
    def test_values_against_reference(self, rng, batch, components):
        inputs = mixture_inputs(rng, batch, components)
        assert_close(np.asarray(geometry.mixture_log_likelihood(*inputs)), ref.mixture_log_likelihood(*inputs))

    def test_values_over_many_scales(self, rng):
        points, mixtures = mixture_inputs(rng, (300,), 4)
        mixtures[..., 1:3] *= 100.0
        points *= 100.0
        mixtures[..., 3] = 10.0 ** rng.uniform(-6, 4, size=(300, 4))
        assert_close(geometry.mixture_log_likelihood(points, mixtures), ref.mixture_log_likelihood(points, mixtures))

    # ---------------------------------------------------------------- properties
    @pytest.mark.parametrize("weight", [0.0, 1e-12, 0.3, 1.0, 7.5])
    def test_one_component_is_a_gaussian_plus_log_weight(self, rng, weight):
        points = rng.normal(size=(20, 2))
        mixtures = random_mixtures(rng, (20,), 1)
        mixtures[..., 0] = weight
        expected = gaussian_log_density(points, mixtures[:, 0, 1:3], mixtures[:, 0, 3]) + np.log(weight + 1e-8)
        assert_close(geometry.mixture_log_likelihood(points, mixtures), expected, rtol=1e-12)

    def test_sum_of_exponentials(self, rng):
        """Against the definition summed directly (fine where nothing underflows)."""
        points, mixtures = mixture_inputs(rng, (50,), 4)
        mixtures[..., 3] = rng.uniform(0.5, 2.0, size=(50, 4))
        terms = (mixtures[..., 0] + 1e-8) * np.exp(gaussian_log_density(points[:, None], mixtures[..., 1:3], mixtures[..., 3]))
        assert_close(geometry.mixture_log_likelihood(points, mixtures), np.log(terms.sum(axis=-1)), rtol=1e-12)

    def test_zero_weights(self, rng):
        points, mixtures = mixture_inputs(rng, (30,), 4)
        mixtures[:10, :, 0] = 0.0  # all zero: every component weighs 1e-8
        mixtures[10:20, 1:, 0] = 0.0  # all but one
        value = geometry.mixture_log_likelihood(points, mixtures)
        assert np.all(np.isfinite(value))
        assert_close(value, ref.mixture_log_likelihood(points, mixtures))

    def test_far_away_points_stay_finite(self, rng):
        """Every component underflows in the plain sum; log-sum-exp keeps the exact value."""
        points, mixtures = mixture_inputs(rng, (40,), 4)
        points = points + rng.choice([-1.0, 1.0], size=(40, 2)) * 10.0 ** rng.uniform(2, 6, size=(40, 1))
        value, gradient = geometry.mixture_log_likelihood_with_gradient(points, mixtures)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(gradient))
        assert np.all(value < -1e4)
        assert_close(value, ref.mixture_log_likelihood(points, mixtures))

    def test_huge_variance_component_far_from_the_point(self):
        """A variance near the largest double and a point 1e200 away: that component's exponent is
        -inf (not inf * 0 = NaN), and the other component sets the value."""
        points = np.array([[1e200, 0.0]])
        mixtures = np.array([[[1.0, 0.0, 0.0, 1.5e308], [1.0, 1e200, 0.0, 1.0]]])
        value, gradient = geometry.mixture_log_likelihood_with_gradient(points, mixtures)
        # the first component's density is exp(-5e399 / 1.5e308) = 0; the second is at its mean
        expected = np.log(1.0 + 1e-8) - np.log(2 * np.pi)
        assert_close(value, np.array([expected]), rtol=1e-14)
        np.testing.assert_array_equal(gradient, 0.0)

    def test_invariant_to_component_order(self, rng):
        points, mixtures = mixture_inputs(rng, (20,), 5)
        shuffled = mixtures[:, rng.permutation(5)]
        assert_close(geometry.mixture_log_likelihood(points, shuffled), geometry.mixture_log_likelihood(points, mixtures),
                     rtol=1e-14)

    def test_identical_components_add_their_weights(self, rng):
        points, mixtures = mixture_inputs(rng, (20,), 1)
        doubled = np.concatenate([mixtures, mixtures], axis=-2)
        doubled[..., 0] *= 0.5
        # two halves: log((w/2 + 1e-8) * 2 * N) = log((w + 2e-8) N)
        expected = gaussian_log_density(points, mixtures[:, 0, 1:3], mixtures[:, 0, 3]) + np.log(mixtures[:, 0, 0] + 2e-8)
        assert_close(geometry.mixture_log_likelihood(points, doubled), expected, rtol=1e-12)


class TestMixtureLogLikelihoodWithGradient:
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("components", COMPONENTS)
    def test_shapes(self, rng, batch, components):
        value, gradient = geometry.mixture_log_likelihood_with_gradient(*mixture_inputs(rng, batch, components))
        assert np.shape(value) == batch
        assert gradient.shape == batch + (2,)
        assert np.asarray(value).dtype == gradient.dtype == np.float64

    def test_value_equals_mixture_log_likelihood(self, rng):
        inputs = mixture_inputs(rng, (4, 5), 4)
        value, _ = geometry.mixture_log_likelihood_with_gradient(*inputs)
        assert_close(value, geometry.mixture_log_likelihood(*inputs), rtol=1e-15)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("components", COMPONENTS)
    def test_gradient_against_reference(self, rng, batch, components):
        inputs = mixture_inputs(rng, batch, components)
        _, gradient = geometry.mixture_log_likelihood_with_gradient(*inputs)
        _, expected = ref.mixture_log_likelihood_with_gradient(*inputs)
        assert_close(gradient, expected)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    @pytest.mark.parametrize("components", COMPONENTS)
    def test_gradient_against_central_differences(self, rng, batch, components):
        points, mixtures = mixture_inputs(rng, batch, components)
        mixtures[..., 3] = rng.uniform(0.02, 0.2, size=mixtures.shape[:-1])  # moderate curvature for the step
        _, gradient = geometry.mixture_log_likelihood_with_gradient(points, mixtures)
        numeric = central_difference(lambda p: geometry.mixture_log_likelihood(p, mixtures), points, trailing=1)
        assert_derivative_close(gradient, numeric)

    def test_gradient_at_a_lone_mean_is_zero(self, rng):
        mixtures = random_mixtures(rng, (10,), 1)
        _, gradient = geometry.mixture_log_likelihood_with_gradient(mixtures[:, 0, 1:3], mixtures)
        np.testing.assert_array_equal(gradient, 0.0)

    def test_far_away_gradient_follows_the_dominant_component(self, rng):
        """Far away the widest component (largest variance) dominates: the gradient is
        -(p - mu_k) / var_k of that component, finite however far the point is."""
        points, mixtures = mixture_inputs(rng, (20,), 4)
        points = points + 1e5
        value, gradient = geometry.mixture_log_likelihood_with_gradient(points, mixtures)
        widest = np.argmax(mixtures[..., 3], axis=-1)
        component = mixtures[np.arange(20), widest]
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(gradient))
        assert_close(gradient, -(points - component[:, 1:3]) / component[:, 3:4], rtol=1e-10)

    def test_zero_weights(self, rng):
        points, mixtures = mixture_inputs(rng, (10,), 3)
        mixtures[:, :, 0] = 0.0
        value, gradient = geometry.mixture_log_likelihood_with_gradient(points, mixtures)
        expected_value, expected_gradient = ref.mixture_log_likelihood_with_gradient(points, mixtures)
        assert_close(value, expected_value)
        assert_close(gradient, expected_gradient)
