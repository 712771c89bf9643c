"""metapose_geom.heatmaps: the numba EM fit against its numpy reference, recovery of known mixtures,
single blobs, invalid heatmaps, limits, rendering, Views.from_heatmaps and the generator's heatmaps."""

from __future__ import annotations

import itertools
import subprocess
import sys
from statistics import NormalDist

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import heatmaps as hm
from metapose_geom import synth
from metapose_geom.views import UNINFORMATIVE_VARIANCE

SIZE = 64  # heatmap side (px) of most tests: one pixel is 1 / 64 box units
PX = 1.0 / SIZE
TOLERANCE = 1e-9  # numba vs numpy reference: both float64, different summation orders


def mixture_px(rng, count: int, size: int = SIZE, sigma=(1.5, 3.0), separation: float = 4.0, margin: float = 5.0,
               line: bool = False) -> np.ndarray:
    """One mixture (count, 4) in *pixels* of a size x size grid: blobs at least ``separation`` times
    the sum of their sigmas apart and ``margin`` sigmas inside the grid; on a line if ``line``."""
    for _ in range(10_000):
        spread = rng.uniform(*sigma, count)
        low, high = margin * sigma[1], size - margin * sigma[1]
        if line:
            start, end = rng.uniform(low, high, (2, 2))
            mu = start + np.sort(rng.uniform(0, 1, count))[:, None] * (end - start)
        else:
            mu = rng.uniform(low, high, (count, 2))
        gaps = np.linalg.norm(mu[:, None] - mu[None], axis=-1) + np.eye(count) * 1e9
        if (gaps >= separation * (spread[:, None] + spread[None])).all():
            weight = rng.uniform(0.5, 1.5, count)
            return np.column_stack([weight / weight.sum(), mu, spread**2])
    raise AssertionError("no mixture with these constraints")


def to_box(mixture_px_: np.ndarray, size: int = SIZE) -> np.ndarray:
    out = mixture_px_.copy()
    out[..., 1:3] /= size
    out[..., 3] /= size**2
    return out


def match(fit: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """fit (K, 4) reordered to the permutation of its components closest to truth's means."""
    best = min(itertools.permutations(range(len(truth))),
               key=lambda order: np.abs(fit[list(order), 1:3] - truth[:, 1:3]).sum())
    return fit[list(best)]


def anisotropic_heatmaps(rng, count: int, rows: int, cols: int) -> np.ndarray:
    """(count, rows, cols): two or three blobs of unequal weight and a uniform noise floor, so the
    pixel cloud has a clear first principal axis and the components clear weights."""
    out = np.empty((count, rows, cols))
    for n in range(count):
        blobs = rng.integers(2, 4)
        mixture = np.column_stack([
            rng.uniform(0.2, 1.0, blobs),
            rng.uniform(0.15, 0.85, blobs), rng.uniform(0.15, 0.85, blobs),
            rng.uniform(1.0, 4.0, blobs) ** 2 / max(rows, cols) ** 2,
        ])
        out[n] = hm.render_mixtures(mixture, (rows, cols))
        out[n] /= out[n].max()
        out[n] += rng.uniform(0.0, 0.02, (rows, cols))
    return out


# --------------------------------------------------------------------------- the reference


class TestAgainstNumpyReference:
    @pytest.mark.parametrize("components", [1, 2, 3, 4, 6])
    @pytest.mark.parametrize("steps", [0, 1, 5])
    def test_same_fit(self, rng, components, steps):
        heat = anisotropic_heatmaps(rng, 12, 40, 40)
        got = hm.fit_mixtures(heat, components, steps)
        want = hm.fit_mixtures_numpy(heat, components, steps)
        assert got.shape == (12, components, 4) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * np.abs(want).max())

    @pytest.mark.parametrize("shape", [(32, 32), (48, 64), (128, 128)], ids=["32", "48x64", "128"])
    @pytest.mark.parametrize("components", [1, 2, 8])
    def test_same_fit_other_sizes_and_components(self, rng, shape, components):
        heat = anisotropic_heatmaps(rng, 6, *shape)
        got = hm.fit_mixtures(heat, components)
        want = hm.fit_mixtures_numpy(heat, components)
        np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * np.abs(want).max())

    def test_batch_shapes_non_square_grids_and_limits(self, rng):
        heat = anisotropic_heatmaps(rng, 6, 24, 40).reshape(2, 3, 24, 40)
        limits = np.stack([rng.uniform(-0.5, 0.0, (2, 3)), rng.uniform(-0.5, 0.0, (2, 3)),
                           rng.uniform(0.8, 1.5, (2, 3)), rng.uniform(0.8, 1.5, (2, 3))], axis=-1)
        for lim in (limits, limits[:, :1], (0.1, -0.2, 0.9, 1.3)):  # per heatmap, broadcast, one
            got = hm.fit_mixtures(heat, 4, 5, limits=lim)
            want = hm.fit_mixtures_numpy(heat, 4, 5, limits=lim)
            assert got.shape == (2, 3, 4, 4)
            np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * np.abs(want).max())

    def test_underflowing_pixels_take_the_log_path(self):
        # sharp blobs in opposite corners: far pixels underflow every component's density
        mixture = to_box(np.array([[0.6, 6.0, 6.0, 0.3**2], [0.4, 57.0, 58.0, 0.4**2]]))
        heat = hm.render_mixtures(mixture, SIZE) + 1e-6
        got, want = hm.fit_mixtures(heat, 4), hm.fit_mixtures_numpy(heat, 4)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE)
        np.testing.assert_allclose(got[..., 0].sum(), 1.0, rtol=1e-14)

    @pytest.mark.parametrize("components", [1, 4, 5])
    @pytest.mark.parametrize("steps", [1, 5])
    def test_far_rows_and_columns_are_rescaled(self, components, steps):
        # a sharp blob near one corner of a 128 x 128 grid, faint background: in the first step
        # (variance one pixel squared) every component's factor is below 1e-100 in the far rows and
        # columns, which are then rescaled by their largest; K = 5 takes the general-K sums
        mixture = np.array([[0.7, 0.03, 0.05, (0.6 / 128) ** 2], [0.3, 0.08, 0.02, (0.8 / 128) ** 2]])
        heat = hm.render_mixtures(mixture, 128)
        heat = heat / heat.max() + 1e-5
        got, want = hm.fit_mixtures(heat, components, steps), hm.fit_mixtures_numpy(heat, components, steps)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * np.abs(want).max())

    @pytest.mark.parametrize("factor", [1e-200, 1e-140, 1e5, 1e10, 1e30, 1e140, 1e200])
    def test_the_scale_of_the_heatmap_does_not_matter(self, rng, factor):
        # totals outside [1e-150, 1e8] are divided by the peak first, the others used as they are
        heat = anisotropic_heatmaps(rng, 4, 32, 32) - 0.005  # some negative background, clipped
        np.testing.assert_allclose(hm.fit_mixtures(heat * factor), hm.fit_mixtures(heat), rtol=1e-11, atol=1e-13)
        # sharp blobs on a flat background: far pixels of tiny density, whose weight / density
        # overflowed when large heatmaps were used unscaled
        blob = hm.render_mixtures(np.array([[0.7, 0.3, 0.6, (1.5 / 64) ** 2], [0.3, 0.75, 0.2, (2.5 / 64) ** 2]]), 64)
        blob = blob / blob.max() + 0.2
        for components in (1, 4):
            got = hm.fit_mixtures(blob * factor, components)
            assert np.isfinite(got).all()
            np.testing.assert_allclose(got, hm.fit_mixtures_numpy(blob, components), rtol=1e-9, atol=1e-12)

    def test_one_and_two_threads_agree_exactly(self, rng, restore_threads):
        heat = anisotropic_heatmaps(rng, 8, 32, 32)
        mg.set_num_threads(1)
        one = hm.fit_mixtures(heat)
        mg.set_num_threads(2)
        np.testing.assert_array_equal(hm.fit_mixtures(heat), one)

    def test_float32_and_integer_heatmaps(self, rng):
        heat = anisotropic_heatmaps(rng, 3, 32, 32)
        single = heat.astype(np.float32)
        np.testing.assert_array_equal(hm.fit_mixtures(single), hm.fit_mixtures(single.astype(np.float64)))
        counts = np.round(heat * 100).astype(np.int32)
        np.testing.assert_array_equal(hm.fit_mixtures(counts), hm.fit_mixtures(counts.astype(np.float64)))


class TestSplitPoints:
    def test_small_k_as_the_original(self):
        np.testing.assert_array_equal(hm.initial_split_points(1), [0.0])
        np.testing.assert_array_equal(hm.initial_split_points(2), [-0.3, 0.3])

    @pytest.mark.parametrize("components", [3, 4, 5, 8])
    def test_equal_probability_construction(self, components):
        boundaries = [NormalDist().inv_cdf(i / components) for i in range(1, components)]
        points = hm.initial_split_points(components)
        assert len(points) == components
        np.testing.assert_allclose(points[1:-1], np.convolve(boundaries, [0.5, 0.5], "valid"), rtol=1e-14)
        np.testing.assert_allclose(points[0], 2 * boundaries[0] - points[1], rtol=1e-14)
        np.testing.assert_allclose(points, -points[::-1], atol=1e-14)  # symmetric, ascending
        assert (np.diff(points) > 0).all()

    def test_four_components(self):
        want = [-1.0117346, -0.3372449, 0.3372449, 1.0117346]
        np.testing.assert_allclose(hm.initial_split_points(4), want, atol=1e-7)


# --------------------------------------------------------------------------- what the fit recovers


class TestRecoversKnownMixtures:
    """Heatmaps rendered at pixel centres from known, well separated mixtures (blobs at least four
    times the sum of their sigmas apart, sigma 1.5-3 px, inside the grid): the fit with K equal to
    the number of blobs recovers every mean to a small fraction of a pixel, the weights, and each
    variance plus the half-pixel widening."""

    @staticmethod
    def check(fit_box: np.ndarray, truth_px: np.ndarray, mean_px: float, relative: float) -> None:
        fit = match(fit_box, truth_px / np.array([1, SIZE, SIZE, SIZE**2]))
        np.testing.assert_allclose(fit[:, 1:3] * SIZE, truth_px[:, 1:3], rtol=0, atol=mean_px)
        np.testing.assert_allclose(fit[:, 0], truth_px[:, 0], rtol=relative)
        np.testing.assert_allclose(fit[:, 3] * SIZE**2, truth_px[:, 3] + hm.PIXEL_WIDENING**2, rtol=relative)

    @pytest.mark.parametrize("components", [1, 2])
    def test_default_five_steps(self, rng, components):
        truth = np.stack([mixture_px(rng, components) for _ in range(40)])
        fit = hm.fit_mixtures(hm.render_mixtures(to_box(truth), SIZE), components)
        for one_fit, one_truth in zip(fit, truth):
            self.check(one_fit, one_truth, mean_px=0.01, relative=1e-3)

    def test_three_blobs_on_a_line_in_eight_steps(self, rng):
        # three times the sum of the sigmas apart: the blobs overlap a little, hence the looser bounds
        truth = np.stack([mixture_px(rng, 3, line=True, separation=3.0) for _ in range(20)])
        fit = hm.fit_mixtures(hm.render_mixtures(to_box(truth), SIZE), 3, steps=8)
        for one_fit, one_truth in zip(fit, truth):
            self.check(one_fit, one_truth, mean_px=0.01, relative=1e-2)

    @pytest.mark.parametrize("components", [3, 4])
    def test_anywhere_once_converged(self, rng, components):
        # blobs anywhere need more than five steps to be told apart from a start on one axis
        truth = np.stack([mixture_px(rng, components) for _ in range(20)])
        fit = hm.fit_mixtures(hm.render_mixtures(to_box(truth), SIZE), components, steps=60)
        for one_fit, one_truth in zip(fit, truth):
            self.check(one_fit, one_truth, mean_px=0.01, relative=1e-3)

    def test_noise_moves_the_means_by_a_fraction_of_a_pixel(self, rng):
        truth = np.stack([mixture_px(rng, 2) for _ in range(20)])
        heat = hm.render_mixtures(to_box(truth), SIZE)
        heat /= heat.max(axis=(-2, -1), keepdims=True)
        heat *= 1 + 0.05 * rng.normal(size=heat.shape)
        fit = hm.fit_mixtures(heat, 2)
        for one_fit, one_truth in zip(fit, truth):
            one_fit = match(one_fit, one_truth / np.array([1, SIZE, SIZE, SIZE**2]))
            np.testing.assert_allclose(one_fit[:, 1:3] * SIZE, one_truth[:, 1:3], rtol=0, atol=0.1)

    def test_square_pixels_of_a_non_square_grid(self, rng):
        # 48 x 64 heatmap over x in [0, 1], y in [0.1, 0.85]: square pixels of 1/64 box units
        limits = (0.0, 0.1, 1.0, 0.85)
        truth_px = mixture_px(rng, 2, size=48)
        truth = to_box(truth_px)
        truth[:, 2] += 0.1
        fit = match(hm.fit_mixtures(hm.render_mixtures(truth, (48, 64), limits), 2, limits=limits), truth)
        np.testing.assert_allclose(fit[:, 1:3], truth[:, 1:3], rtol=0, atol=0.01 * PX)
        np.testing.assert_allclose(fit[:, 3], truth[:, 3] + (0.5 * PX) ** 2, rtol=1e-3)


class TestSingleBlob:
    """One clean blob, sigma 2 px, centred off the pixel grid."""

    centre = np.array([0.3137, 0.5921])

    @pytest.fixture
    def blob(self) -> np.ndarray:
        return hm.render_heatmaps(self.centre, SIZE, sigma_px=2.0)

    def test_one_component_is_the_blob(self, blob):
        fit = hm.fit_mixtures(blob, 1)
        np.testing.assert_allclose(fit[0, 1:3], self.centre, rtol=0, atol=1e-6 * PX)
        np.testing.assert_allclose(fit[0, 3], (2.0**2 + 0.25) * PX**2, rtol=1e-6)
        assert fit[0, 0] == 1.0

    def test_odd_k_gives_one_dominant_component_at_the_centre(self, blob):
        for components in (3, 5):
            fit = hm.fit_mixtures(blob, components)
            np.testing.assert_allclose(fit[0, 1:3], self.centre, rtol=0, atol=0.01 * PX)
            assert fit[0, 0] > 1.1 * fit[1, 0], fit[:, 0]  # at least 10% heavier than any other

    def test_default_k_stays_on_the_blob(self, blob):
        # With an even K the start, and so the fit, is symmetric about the centre: the two heaviest
        # components share the weight a third of a pixel either side of it.
        fit = hm.fit_mixtures(blob)
        np.testing.assert_allclose((fit[:, :1] * fit[:, 1:3]).sum(axis=0), self.centre, rtol=0, atol=1e-9)
        distance = np.linalg.norm(fit[:, 1:3] - self.centre, axis=-1) / PX
        assert (distance[:2] < 0.5).all() and (distance < 2.0).all(), distance
        assert np.isclose(fit[0, 0], fit[1, 0], rtol=1e-4) and fit[0, 0] > fit[2, 0]
        assert np.allclose(np.sqrt(fit[:, 3]) / PX, 2.0, rtol=0.1)  # each about the blob's sigma

    def test_weights_sum_to_one_and_are_sorted(self, blob, rng):
        for heat in (blob, anisotropic_heatmaps(rng, 5, 32, 32)):
            fit = hm.fit_mixtures(heat, 4)
            np.testing.assert_allclose(fit[..., 0].sum(axis=-1), 1.0, rtol=1e-14)
            assert (np.diff(fit[..., 0], axis=-1) <= 0).all()


# --------------------------------------------------------------------------- invalid heatmaps


def bad_heatmaps() -> dict[str, np.ndarray]:
    good = hm.render_mixtures(np.array([[0.7, 0.4, 0.6, 0.004], [0.3, 0.7, 0.3, 0.006]]), 16)  # anisotropic
    nan, inf, negative = good.copy(), good.copy(), good.copy()
    nan[3, 4] = np.nan
    inf[0, 0] = -np.inf
    negative[5, 5] = -0.1
    return {"zero": np.zeros((16, 16)), "all negative": -good, "nan": nan, "inf": inf, "good": good,
            "one negative": negative}


class TestInvalidHeatmaps:
    @pytest.mark.parametrize("name, message", [
        ("zero", "has no positive value"), ("all negative", "has no positive value"),
        ("nan", "contains NaN or inf"), ("inf", "contains NaN or inf"),
    ])
    def test_raise_names_the_heatmap(self, name, message):
        heat = np.stack([bad_heatmaps()["good"]] * 6).reshape(2, 3, 16, 16)
        heat[1, 2] = bad_heatmaps()[name]
        for fit in (hm.fit_mixtures, hm.fit_mixtures_numpy):
            with pytest.raises(ValueError, match=rf"heatmaps: the heatmap at index \(1, 2\) {message}"):
                fit(heat)

    def test_uninformative_mixture(self):
        cases = bad_heatmaps()
        heat = np.stack([cases[name] for name in ("zero", "all negative", "nan", "inf", "good")])
        limits = np.array([[0, 0, 1, 1], [0.2, 0.0, 0.6, 1.0], [0, 0, 1, 1], [-1, -1, 1, 3], [0, 0, 1, 1]])
        for fit in (hm.fit_mixtures, hm.fit_mixtures_numpy):
            out = fit(heat, 3, limits=limits, on_invalid="uninformative")
            assert np.isfinite(out).all()
            np.testing.assert_array_equal(out[:4, :, 0], 1 / 3)
            np.testing.assert_array_equal(out[:4, :, 3], UNINFORMATIVE_VARIANCE)
            np.testing.assert_array_equal(out[:4, 0, 1:3], [[0.5, 0.5], [0.4, 0.5], [0.5, 0.5], [0.0, 1.0]])
            np.testing.assert_allclose(out[4], fit(heat[4], 3), rtol=1e-12)
        frame = np.tile(cases["good"], (2, 17, 1, 1))
        frame[1, 3] = cases["nan"]
        views = mg.Views.from_heatmaps(frame, None, on_invalid="uninformative")
        np.testing.assert_array_equal(views.mixtures[1, 3, :, 3], UNINFORMATIVE_VARIANCE)
        with pytest.raises(ValueError, match=r"heatmaps: the heatmap at index \(1, 3\) contains NaN"):
            mg.Views.from_heatmaps(frame, None)

    def test_negative_pixels_clip_or_invalidate(self):
        cases = bad_heatmaps()
        clipped = np.maximum(cases["one negative"], 0.0)
        np.testing.assert_array_equal(hm.fit_mixtures(cases["one negative"]), hm.fit_mixtures(clipped))
        with pytest.raises(ValueError, match=r"negative values \(negative='invalid'\)"):
            hm.fit_mixtures(cases["one negative"], negative="invalid")
        out = hm.fit_mixtures(cases["one negative"], negative="invalid", on_invalid="uninformative")
        np.testing.assert_array_equal(out[:, 3], UNINFORMATIVE_VARIANCE)
        np.testing.assert_array_equal(hm.fit_mixtures(cases["good"], negative="invalid"),
                                      hm.fit_mixtures(cases["good"]))

    @pytest.mark.parametrize("heat", [
        np.full((16, 16), 1e300), np.full((16, 16), 5e-324), np.eye(16) * 1e-310, np.ones((1, 1)), np.ones((1, 9)),
        np.pad([[1.0]], ((7, 8), (3, 12))), np.pad([[1.0, 1e-300]], ((0, 15), (14, 0))),
    ], ids=["huge", "subnormal", "subnormal diagonal", "1x1", "1x9", "one pixel", "pixel and a whisper"])
    def test_extreme_but_valid_heatmaps_stay_finite(self, heat):
        for components in (1, 4):
            out = hm.fit_mixtures(heat, components)
            assert np.isfinite(out).all()
            np.testing.assert_allclose(out[..., 0].sum(), 1.0, rtol=1e-14)
            assert (out[..., 0] > 0).all()
            pixel = 1.0 / max(heat.shape)
            assert (out[..., 3] >= 0.25 * pixel**2 * (1 - 1e-12)).all()  # the half-pixel floor
            # weights and variances only: a square or constant cloud has no preferred axis
            reference = hm.fit_mixtures_numpy(heat, components)
            np.testing.assert_allclose(out[:, [0, 3]], reference[:, [0, 3]], rtol=1e-9, atol=1e-12)

    def test_one_pixel_heatmap_puts_every_component_on_it(self):
        heat = np.zeros((16, 16))
        heat[4, 9] = 2.0
        out = hm.fit_mixtures(heat, 4)
        np.testing.assert_allclose(out[:, 1:3], np.tile([9.5 / 16, 4.5 / 16], (4, 1)), rtol=1e-12)
        np.testing.assert_allclose(out[:, 3], 0.25 / 16**2, rtol=1e-12)


class TestArguments:
    @pytest.mark.parametrize("kwargs, message", [
        ({"heatmaps": np.ones(5)}, "heatmaps: expected shape"),
        ({"heatmaps": np.ones((3, 0, 4))}, "heatmaps: expected shape"),
        ({"heatmaps": np.array([["a"]])}, "heatmaps: expected a real numeric"),
        ({"heatmaps": np.ones((2, 2), dtype=complex)}, "heatmaps: expected a real numeric"),
        ({"num_components": 0}, "num_components"),
        ({"num_components": 2.0}, "num_components"),
        ({"num_components": True}, "num_components"),
        ({"steps": -1}, "steps"),
        ({"limits": (0, 0, 1)}, "limits: expected"),
        ({"limits": (0, 0, 0, 1)}, "limits: expected x_max > x_min"),
        ({"limits": (0, 1, 1, 0.5)}, "limits: expected x_max > x_min"),
        ({"limits": (0, 0, np.nan, 1)}, "limits: contains NaN"),
        ({"limits": np.ones((3, 4))}, "limits: shape"),
        ({"on_invalid": "nan"}, "on_invalid"),
        ({"negative": "abs"}, "negative"),
    ])
    def test_bad_arguments_name_themselves(self, kwargs, message):
        arguments = {"heatmaps": np.ones((2, 8, 8))} | kwargs
        for fit in (hm.fit_mixtures, hm.fit_mixtures_numpy):
            with pytest.raises(ValueError, match=message):
                fit(**arguments)

    def test_empty_batch(self):
        assert hm.fit_mixtures(np.ones((0, 3, 8, 8)), 2).shape == (0, 3, 2, 4)
        assert hm.render_mixtures(np.ones((0, 2, 4)), 8).shape == (0, 8, 8)

    def test_limits_are_an_affine_map(self, rng):
        heat = anisotropic_heatmaps(rng, 4, 32, 32)
        unit = hm.fit_mixtures(heat)
        moved = hm.fit_mixtures(heat, limits=(-0.25, 0.5, 1.75, 2.5))  # scale 2, shift (-0.25, 0.5)
        np.testing.assert_allclose(moved[..., 0], unit[..., 0], rtol=1e-12)
        np.testing.assert_allclose(moved[..., 1:3], 2 * unit[..., 1:3] + [-0.25, 0.5], rtol=1e-12)
        np.testing.assert_allclose(moved[..., 3], 4 * unit[..., 3], rtol=1e-12)


# --------------------------------------------------------------------------- rendering


class TestRendering:
    def test_mixture_density_at_pixel_centres(self, rng):
        blobs = [mixture_px(rng, 3, size=20, sigma=(1.0, 2.0), separation=1.0, margin=2.0) for _ in range(4)]
        mixtures = to_box(np.stack(blobs), size=20).reshape(2, 2, 3, 4)
        limits = (0.1, -0.2, 1.1, 0.8)
        got = hm.render_mixtures(mixtures, (10, 20), limits)
        x = 0.1 + (np.arange(20) + 0.5) / 20
        y = -0.2 + (np.arange(10) + 0.5) / 10
        point = np.stack(np.meshgrid(x, y), axis=-1)[..., None, :]  # (10, 20, 1, 2)
        want = np.empty((2, 2, 10, 20))
        for index in np.ndindex(2, 2):
            weight, mu, variance = mixtures[index][:, 0], mixtures[index][:, 1:3], mixtures[index][:, 3]
            density = np.exp(-((point - mu) ** 2).sum(-1) / (2 * variance)) / (2 * np.pi * variance)
            want[index] = (weight * density).sum(-1)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14 * want.max())

    def test_density_integrates_to_the_weight(self):
        mixture = np.array([[0.7, 0.4, 0.45, 0.03**2], [0.3, 0.7, 0.6, 0.05**2]])
        np.testing.assert_allclose(hm.render_mixtures(mixture, 128).sum() / 128**2, 1.0, rtol=1e-9)

    def test_render_heatmaps_peaks_at_one(self):
        point = np.array([[10.5, 20.5], [3.5, 60.5]]) / SIZE  # on pixel centres (x, y)
        heat = hm.render_heatmaps(point, SIZE, sigma_px=2.5)
        assert heat.shape == (2, SIZE, SIZE)
        np.testing.assert_allclose(heat.max(axis=(-2, -1)), 1.0, rtol=1e-14)
        assert heat[0, 20, 10] == heat[0].max() and heat[1, 60, 3] == heat[1].max()
        np.testing.assert_allclose(heat[0, 20, 12], np.exp(-(2**2) / (2 * 2.5**2)), rtol=1e-14)

    @pytest.mark.parametrize("call, message", [
        (lambda: hm.render_mixtures(np.ones((2, 3)), 8), "mixtures: expected shape"),
        (lambda: hm.render_mixtures(np.array([[1.0, 0.5, 0.5, 0.0]]), 8), "variances"),
        (lambda: hm.render_mixtures(np.array([[-1.0, 0.5, 0.5, 0.1]]), 8), "weights"),
        (lambda: hm.render_mixtures(np.array([[1.0, np.nan, 0.5, 0.1]]), 8), "NaN"),
        (lambda: hm.render_mixtures(np.array([[1.0, 0.5, 0.5, 0.1]]), 0), "size"),
        (lambda: hm.render_mixtures(np.array([[1.0, 0.5, 0.5, 0.1]]), (8, 8, 8)), "size"),
        (lambda: hm.render_heatmaps(np.ones(3), 8), "points: expected shape"),
        (lambda: hm.render_heatmaps(np.ones(2), 8, sigma_px=0.0), "sigma_px"),
        (lambda: hm.render_heatmaps(np.ones(2), 8, limits=(1, 0, 0, 1)), "limits"),
    ])
    def test_bad_input(self, call, message):
        with pytest.raises(ValueError, match=message):
            call()


# --------------------------------------------------------------------------- Views and the generator


@pytest.fixture(scope="module")
def heatmap_scene() -> synth.Scene:
    return synth.make_scene(11, num_cameras=3, heatmaps=True, confusion_rate=0.3, occlusion_rate=0.2)


class TestViewsFromHeatmaps:
    def test_fits_every_view_and_joint(self, heatmap_scene):
        scene = heatmap_scene
        views = mg.Views.from_heatmaps(scene.heatmaps, scene.boxes, mono3d=scene.mono3d, mono3d_units="box")
        np.testing.assert_array_equal(views.mixtures, hm.fit_mixtures(scene.heatmaps))
        np.testing.assert_array_equal(views.boxes, scene.boxes)
        np.testing.assert_array_equal(views.mono3d, scene.mono3d)
        assert views.mono3d_alignment is None
        # by default the guesses are fitted onto the evidence: box-unit guesses move little
        aligned = mg.Views.from_heatmaps(scene.heatmaps, scene.boxes, mono3d=scene.mono3d)
        np.testing.assert_allclose(aligned.mono3d_alignment[:, 0], 1.0, atol=0.2)
        assert views.camera_names == ("cam0", "cam1", "cam2")
        three = mg.Views.from_heatmaps(scene.heatmaps, None, num_components=3, steps=2)
        np.testing.assert_array_equal(three.mixtures, hm.fit_mixtures(scene.heatmaps, 3, 2))

    def test_bad_input(self, heatmap_scene):
        with pytest.raises(ValueError, match=r"heatmaps: expected shape \(C, J, H, W\)"):
            mg.Views.from_heatmaps(heatmap_scene.heatmaps[0], None)
        with pytest.raises(ValueError, match="boxes"):
            mg.Views.from_heatmaps(heatmap_scene.heatmaps, np.ones((2, 4)))
        with pytest.raises(ValueError, match="skeleton"):
            mg.Views.from_heatmaps(heatmap_scene.heatmaps[:, :5], None)


class TestGeneratorHeatmaps:
    def test_everything_else_is_the_plain_scene(self, heatmap_scene):
        plain = synth.make_scene(11, num_cameras=3, confusion_rate=0.3, occlusion_rate=0.2)
        assert plain.heatmaps is None
        for name in ("pose3d", "rotation", "translation", "intrinsics", "distortion", "image_size", "pose3d_cam",
                     "pose2d", "boxes", "mono3d", "occluded", "confused"):
            np.testing.assert_array_equal(getattr(heatmap_scene, name), getattr(plain, name), err_msg=name)
        assert heatmap_scene.heatmaps.shape == (3, 17, 64, 64)
        np.testing.assert_array_equal(heatmap_scene.mixtures, hm.fit_mixtures(heatmap_scene.heatmaps))

    def test_reproducible_and_sized(self):
        one = synth.make_scenes(2, 2, seed=4, heatmaps=True, heatmap_size=32)
        two = synth.make_scenes(2, 2, seed=4, heatmaps=True, heatmap_size=32)
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a.heatmaps, b.heatmaps)
            assert a.heatmaps.shape == (2, 17, 32, 32) and a.mixtures.shape == (2, 17, 4, 4)

    def test_blobs_where_the_joints_are(self, heatmap_scene):
        scene = heatmap_scene
        truth = scene.pose2d_box_units()
        mirrored = truth[:, list(synth.H36M_MIRROR)]
        peak = np.array(np.unravel_index(scene.heatmaps.reshape(3, 17, -1).argmax(-1), (64, 64)))  # (2, C, J): r, c
        peak_box = (peak[::-1].transpose(1, 2, 0) + 0.5) / 64
        plain = ~scene.occluded & ~scene.confused
        size = scene.box_size()[:, None]
        # the detector's error is pixel_noise = 3 px of the image per axis, plus the heatmap's pixel
        peak_error_px = np.linalg.norm(peak_box - truth, axis=-1) * size
        assert np.median(peak_error_px[plain]) < 8
        near = np.linalg.norm(scene.mixtures[..., 1:3] - truth[:, :, None], axis=-1)
        near_mirror = np.linalg.norm(scene.mixtures[..., 1:3] - mirrored[:, :, None], axis=-1)
        weight = scene.mixtures[..., 0]
        assert np.median(near[..., 0][plain]) < 0.03  # heaviest component within 3% of the box
        confused = scene.confused & (np.linalg.norm(truth - mirrored, axis=-1) > 0.1)
        assert confused.any()
        # a confused joint has a second blob: real weight on components near its mirror
        mass_on_mirror = np.where(near_mirror < near, weight, 0.0).sum(-1)
        assert (mass_on_mirror[confused] > 0.15).all(), mass_on_mirror[confused]
        assert (mass_on_mirror[plain & (np.linalg.norm(truth - mirrored, axis=-1) > 0.1)] < 0.1).mean() > 0.9

    def test_noise_leaves_negative_background(self, heatmap_scene):
        assert (heatmap_scene.heatmaps < 0).any() and np.isfinite(heatmap_scene.heatmaps).all()
        np.testing.assert_allclose(heatmap_scene.heatmaps.max(axis=(-2, -1)), 1.0, atol=0.3)

    def test_weak_label_ablation_moves_fitted_components_with_their_joints(self, heatmap_scene):
        scene = heatmap_scene
        moved = scene.ablated_views(weak_labels=True).mixtures
        shift = scene.weak_labels() - scene.pose2d_box_units()
        np.testing.assert_allclose(moved[..., 0, 1:3][~scene.confused],
                                   (scene.mixtures[..., 0, 1:3] + shift)[~scene.confused], rtol=1e-12)
        assert np.isfinite(moved).all()

    def test_solvable(self, heatmap_scene):
        solution = mg.solve(heatmap_scene.views(), "ir")
        assert float(mg.metrics.pmpjpe(solution.pose3d, heatmap_scene.pose3d)) < 80.0

    @pytest.mark.parametrize("kwargs, message", [({"heatmaps": "yes"}, "heatmaps"), ({"heatmaps": 1}, "heatmaps"),
                                                 ({"heatmaps": True, "heatmap_size": 2}, "heatmap_size")])
    def test_bad_options(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            synth.make_scene(0, **kwargs)


def test_the_compiled_kernels_are_cached_on_disk():
    """A fresh process loads the kernels this one compiled (or an earlier run did) from numba's
    on-disk cache instead of compiling them again."""
    code = (
        "import numpy as np\n"
        "import metapose_geom as mg\n"
        "from metapose_geom import heatmaps as hm\n"
        "mg.set_num_threads(2)\n"
        "hm.fit_mixtures(np.ones((2, 4, 4))); hm.fit_mixtures(np.ones((hm._PARALLEL_FROM, 4, 4)))\n"
        "hm.render_mixtures(np.array([[1.0, 0.5, 0.5, 0.1]]), 4)\n"
        "stats = hm._fit_serial.stats, hm._fit_many.stats, hm._render_many.stats\n"
        "print(*(sum(counter.values()) for one in stats for counter in (one.cache_hits, one.cache_misses)))\n"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # fills the cache
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    serial_hits, serial_misses, fit_hits, fit_misses, render_hits, render_misses = map(int, out.stdout.split())
    assert serial_hits >= 1 and fit_hits >= 1 and render_hits >= 1, out.stdout
    assert serial_misses == fit_misses == render_misses == 0, out.stdout
