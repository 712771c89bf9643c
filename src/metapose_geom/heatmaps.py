"""Heatmaps and spherical Gaussian mixtures: weighted-EM fitting and synthetic rendering (numba).

A 2D pose network gives, per view and joint, a heatmap (H, W). MetaPose's 2D evidence is a small
spherical Gaussian mixture ``[weight, mu_x, mu_y, variance]`` in *box units* fitted to it by a few
steps of weighted EM, the heatmap's pixels being samples weighted by their values (Frisch and
Hanebeck, "Gaussian mixture estimation from weighted samples"). :func:`fit_mixtures` does that for
any number of heatmaps at once, spread over threads; :func:`render_mixtures` and
:func:`render_heatmaps` go the other way (the synthetic generator uses them).

**Grid.** ``limits = (x_min, y_min, x_max, y_max)`` (box units) is the area the heatmap covers: its
W columns and H rows tile it, so pixel ``(row r, column c)`` is the point
``(x_min + (c + 0.5) dx, y_min + (r + 0.5) dy)`` with ``dx = (x_max - x_min) / W`` and
``dy = (y_max - y_min) / H``. The default ``(0, 0, 1, 1)`` is a heatmap covering the person's
square box. (The original TensorFlow code put the first and last pixel centres *on* the limits;
to reproduce that, widen its limits by half a pixel on each side.)

**The fit** (per heatmap; coordinates are measured internally in units of the larger pixel side
``max(dx, dy)``, "pixels" below):

1. Pixel weights are the heatmap values over their sum; negative values count as zero (or make the
   heatmap invalid with ``negative="invalid"``).
2. Initialisation: the K means lie on the first principal axis of the weighted pixel cloud, at
   ``mean + q_k * sqrt(lambda) * axis`` where ``lambda`` is the cloud's variance along that axis
   and ``q_k`` are standard-normal points (:func:`initial_split_points`: for K >= 3 the centres
   between the K - 1 equal-probability split points ``Phi^-1(i / K)``, the outer two mirrored out;
   ``(-0.3, 0.3)`` for K = 2 and ``0`` for K = 1, as the original). Weights are equal and every
   variance is *one pixel squared*. (The original's ``sigma = 1`` was in its output units, about a
   whole heatmap, which makes the first steps pull every mean to the cloud's centre: with a
   pixel-sized start, separate blobs are separated within the default 5 steps.)
3. ``steps`` EM steps: responsibilities r from the current mixture (exact, with a log-sum-exp
   fall-back where every component's density underflows), then each component's new weight
   ``sum w r``, mean ``sum w r x / sum w r`` and spherical variance
   ``sum w r |x - mu|^2 / (2 sum w r)`` (w the pixel weights); each step's sigma is then widened by
   half a pixel in quadrature (``variance += 0.25`` pixels squared) to undo pixelisation. This is
   also the variance floor: no component can collapse. A component that loses all its mass
   (``sum w r <= 1e-200``) keeps its mean and variance; weights are floored at
   :data:`WEIGHT_FLOOR` and renormalised to sum to one, so every value stays finite.
4. Components are sorted by decreasing weight (component 0 is the heaviest), and means and
   variances are mapped to box units through the limits (variances times the pixel side squared).

On a heatmap rendered at pixel centres from a Gaussian of variance ``s^2`` (box units squared),
a converged fit returns ``s^2 + (0.5 max(dx, dy))^2``: the half-pixel widening is part of the
method.

**Invalid heatmaps**: one that contains NaN or inf, has no positive value (all zero or all
negative), or (with ``negative="invalid"``) any negative value either raises ValueError naming
it (``on_invalid="raise"``, the default) or gets the *uninformative mixture*
(``on_invalid="uninformative"``): K equal weights, every mean at the centre of the limits,
variance :data:`~metapose_geom.views.UNINFORMATIVE_VARIANCE` (one box wide), as
:meth:`Views.from_keypoints <metapose_geom.views.Views.from_keypoints>` gives a missing joint.
Never NaN.

The kernels are numba ``nopython`` free functions, compiled on first use and cached on disk; the
heatmaps of one call are spread over :func:`metapose_geom.get_num_threads` threads (numba's pool,
at most ``NUMBA_NUM_THREADS``). :func:`fit_mixtures_numpy` is the same fit in plain vectorised
numpy, the reference the tests and benchmarks hold the kernel to.

**Processes and threads.** Unless numba's threading layer was chosen already (the
``NUMBA_THREADING_LAYER`` variable, or numba's parallel loops ran before this module was
imported), importing this module asks numba for a fork-safe layer (``"forksafe"``: TBB where it
loads, else numba's own ``workqueue``; never GNU OpenMP, which kills every child forked after a
parallel loop), so a ``multiprocessing`` fork pool works after :func:`fit_mixtures`. The calls of
this module from several Python threads take turns (a lock): ``workqueue`` is not thread-safe, and
each call uses all of numba's threads anyway.

Example::

    from metapose_geom import heatmaps
    mixtures = heatmaps.fit_mixtures(network_output)        # (C, J, 64, 64) -> (C, J, 4, 4)
    target = heatmaps.render_heatmaps(joints_box, size=64)  # (C, J, 2) -> (C, J, 64, 64)
"""

from __future__ import annotations

import functools
import math
import os
import threading
from statistics import NormalDist

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_float64, check_choice, check_int, check_number
from .geometry import get_num_threads
from .mixtures import UNINFORMATIVE_VARIANCE, check_mixtures

F64 = NDArray[np.float64]

__all__ = [
    "DEFAULT_LIMITS",
    "PIXEL_WIDENING",
    "WEIGHT_FLOOR",
    "fit_mixtures",
    "fit_mixtures_numpy",
    "initial_split_points",
    "render_heatmaps",
    "render_mixtures",
]

#: The heatmap covers the square box: ``(x_min, y_min, x_max, y_max)`` in box units.
DEFAULT_LIMITS = (0.0, 0.0, 1.0, 1.0)
#: Each EM step widens sigma by this many pixels, in quadrature (the original's value).
PIXEL_WIDENING = 0.5
#: Smallest weight of a component during EM and in the result (before renormalising).
WEIGHT_FLOOR = 1e-12
#: A component whose responsibility mass is at most this keeps its mean and variance.
_EMPTY_MASS = 1e-200
#: Separable density factors below this (the smallest normal float64, times the factor's scale) are
#: set to zero rather than computed as subnormals (whose arithmetic is some hundred times slower).
_FLUSH = 2.2250738585072014e-308
#: Below this summed density a pixel's responsibilities are recomputed in log space (exactly, and
#: so the flushed factors, each below 4 * _FLUSH, never matter).
_UNDERFLOW = 1e-280
#: Fewer heatmaps than this are fitted on the calling thread: a parallel launch costs more than it saves.
_PARALLEL_FROM = 8
#: A heatmap whose values (clipped at 0) sum to within these bounds is used as it is; another is divided
#: by its peak first. Below, the sums would lose precision to subnormals; above, a pixel's
#: ``weight / density`` (density down to :data:`_UNDERFLOW`) or the sums over the pixels could overflow.
_RAW_TOTAL = (1e-150, 1e8)
#: exp(x) is exactly 0 in float64 below this
_EXP_UNDERFLOW = -745.2
#: A row or column whose separable factors are all below this is rescaled by its largest (in log
#: space), so that the products of row and column factors stay far above :data:`_UNDERFLOW`.
_RESCALE = 1e-100

#: LLVM fast-math flags of the fitting kernel: reassociation lets the sums over a row vectorise;
#: none that assumes finite values (the kernel checks for NaN and inf itself) or replaces a division
#: by a multiplication with the reciprocal (which overflows for a subnormal peak)
_FAST = {"reassoc", "contract", "nsz"}
#: and for loops over values known to be finite (the min and max reductions then vectorise)
_FAST_FINITE = _FAST | {"nnan", "ninf"}

_STATUS_OK, _STATUS_NONFINITE, _STATUS_EMPTY, _STATUS_NEGATIVE = 0, 1, 2, 3
_STATUS_TEXT = {
    _STATUS_NONFINITE: "contains NaN or inf",
    _STATUS_EMPTY: "has no positive value (all zero or negative)",
    _STATUS_NEGATIVE: "has negative values (negative='invalid')",
}
_ON_INVALID = ("raise", "uninformative")
_NEGATIVE = ("clip", "invalid")


def _choose_fork_safe_layer() -> None:
    """Ask numba for a fork-safe threading layer, unless one was chosen (``NUMBA_THREADING_LAYER``)
    or numba's threads are running already (the layer is then fixed for the process)."""
    from numba.np.ufunc import parallel

    if str(numba.config.THREADING_LAYER).lower() == "default" and not getattr(parallel, "_is_initialized", False):
        numba.config.THREADING_LAYER = "forksafe"


_choose_fork_safe_layer()

#: Held by every call into numba's parallel loops: the fork-safe layer on Linux (workqueue) aborts
#: the interpreter when two threads enter it at once.
_PARALLEL_LOCK = threading.RLock()


def _new_parallel_lock() -> None:
    """A forked child starts with a free lock (another thread of the parent may have held it)."""
    global _PARALLEL_LOCK
    _PARALLEL_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_parallel_lock)


# --------------------------------------------------------------------------- numba kernels


@numba.njit(cache=True)
def _principal_axis(cxx: float, cyy: float, cxy: float) -> tuple[float, float, float]:
    """Largest eigenvalue of [[cxx, cxy], [cxy, cyy]] and its unit eigenvector, sign fixed so that
    x > 0 (or x = 0 and y > 0); the x axis when the two eigenvalues are equal."""
    half_difference = 0.5 * (cxx - cyy)
    root = math.sqrt(half_difference * half_difference + cxy * cxy)
    largest = 0.5 * (cxx + cyy) + root
    if root == 0.0:
        return largest, 1.0, 0.0
    if half_difference >= 0.0:  # the better conditioned of the two forms of the eigenvector
        axis_x, axis_y = half_difference + root, cxy
    else:
        axis_x, axis_y = cxy, root - half_difference
    norm = math.sqrt(axis_x * axis_x + axis_y * axis_y)
    axis_x, axis_y = axis_x / norm, axis_y / norm
    if axis_x < 0.0 or (axis_x == 0.0 and axis_y < 0.0):
        axis_x, axis_y = -axis_x, -axis_y
    return largest, axis_x, axis_y


@numba.njit(cache=True)
def _gaussian_on_grid(offsets, step, half_precision, coef, out) -> None:
    """out[i] = coef * exp(-offsets[i]^2 * half_precision) for offsets in arithmetic progression
    (``offsets[i] = offsets[0] + i * step``, step > 0), with 4 exponentials instead of one each.

    From the offset nearest zero outward, each value is the previous one times a ratio that itself
    shrinks by ``exp(-2 step^2 half_precision)`` per pixel. Every ratio is at most 1, so nothing
    overflows; values below ``_FLUSH * coef`` are set to zero (and so are all further out). n pixels
    away the relative error is about ``n^2 / 2`` ulp (2e-13 for 64 pixels).
    """
    count = offsets.shape[0]
    out[:] = 0.0
    floor = _FLUSH * coef
    centre = min(max(int(round(-offsets[0] / step)), 0), count - 1)
    d = offsets[centre]
    value = coef * math.exp(-d * d * half_precision)
    if value < floor:
        return
    out[centre] = value
    shrink = math.exp(-2.0 * step * step * half_precision)
    ratio = math.exp(-(2.0 * d + step) * step * half_precision)  # out[i + 1] / out[i] at i = centre
    for i in range(centre + 1, count):
        value *= ratio
        if value < floor:
            break
        out[i] = value
        ratio *= shrink
    value = out[centre]
    ratio = math.exp(-(step - 2.0 * d) * step * half_precision)  # out[i - 1] / out[i] at i = centre
    for i in range(centre - 1, -1, -1):
        value *= ratio
        if value < floor:
            break
        out[i] = value
        ratio *= shrink


@numba.njit(cache=True, fastmath=_FAST)
def _all_finite(heatmap) -> bool:
    """Whether every value is finite, in one vectorisable pass: ``0 * value`` is NaN exactly when
    value is NaN or inf, so their sum is 0 for a finite heatmap."""
    rows, cols = heatmap.shape
    nonfinite = 0.0
    for r in range(rows):
        for c in range(cols):
            nonfinite += 0.0 * heatmap[r, c]
    return nonfinite == 0.0


@numba.njit(cache=True, fastmath=_FAST)
def _cloud_sums(values, xs, column_sum, row_sum, row_x) -> tuple[float, float]:
    """One vectorisable pass over a finite heatmap: with ``w = max(values, 0)``, fills in
    ``column_sum[c] = sum_r w[r, c]``, ``row_sum[r] = sum_c w[r, c]`` and ``row_x[r] = sum_c
    w[r, c] xs[c]``, and returns (``sum w``, the sum of the negative values)."""
    rows, cols = values.shape
    column_sum[:] = 0.0
    negative = 0.0
    for r in range(rows):
        mass = moment = 0.0
        for c in range(cols):
            value = values[r, c]
            negative += min(value, 0.0)
            value = max(value, 0.0)
            column_sum[c] += value
            mass += value
            moment += value * xs[c]
        row_sum[r] = mass
        row_x[r] = moment
    total = 0.0
    for r in range(rows):
        total += row_sum[r]
    return total, negative


@numba.njit(cache=True)
def _axis_factors(grid, step, mu, half_precision, coef, log_coef, factor, offset, largest) -> None:
    """The separable factors of the K = mu.shape[0] components along one axis of the grid.

    ``offset[k, i] = grid[i] - mu[k]`` and ``factor[k, i] = coef[k] exp(-offset^2 half_precision[k])``
    (by :func:`_gaussian_on_grid`), except at a position i where every component's factor is below
    :data:`_RESCALE`: there ``factor[k, i] = exp(l_k - max_j l_j)`` with
    ``l_k = log_coef[k] - offset^2 half_precision[k]``, the same values divided by their largest.
    A scale common to all components at one position cancels from the responsibilities, and so the
    product of a row's and a column's factors underflows only where one component dominates the
    row and another the column. Rows k >= K of ``factor`` are left alone (zero padding);
    ``largest`` (length,) is scratch space.
    """
    count = mu.shape[0]
    length = grid.shape[0]
    for k in range(count):
        for i in range(length):
            offset[k, i] = grid[i] - mu[k]
        _gaussian_on_grid(offset[k], step, half_precision[k], coef[k], factor[k])
    largest[:] = factor[0]
    for k in range(1, count):
        for i in range(length):  # contiguous, a select: vectorises
            value = factor[k, i]
            largest[i] = value if value > largest[i] else largest[i]
    for i in range(length):
        if largest[i] >= _RESCALE:
            continue
        best = -np.inf
        for k in range(count):
            d = offset[k, i]
            best = max(best, log_coef[k] - d * d * half_precision[k])
        for k in range(count):
            d = offset[k, i]
            exponent = log_coef[k] - d * d * half_precision[k] - best
            factor[k, i] = math.exp(exponent) if exponent > _EXP_UNDERFLOW else 0.0


@numba.njit(cache=True, fastmath=_FAST)
def _scale_at(value, density) -> float:
    """A pixel's ``max(value, 0) / density``, or 0 where the density is below :data:`_UNDERFLOW`
    (its sums are then added exactly by :func:`_add_lost`)."""
    return max(value, 0.0) / max(density, _UNDERFLOW) if density >= _UNDERFLOW else 0.0


@numba.njit(cache=True, fastmath=_FAST)
def _add_row(e, dy, a, p, q, k, mass, sum_x, sum_y, sum_sq) -> None:
    """Row sums of component k into its totals: with ``a = sum_c S ex``, ``p = sum_c S ex dx`` and
    ``q = sum_c S ex dx^2`` over the row, its responsibility mass there is ``e a`` (``e = ey[k, r]``)."""
    row_mass = e * a
    mass[k] += row_mass
    sum_x[k] += e * p
    sum_y[k] += row_mass * dy
    sum_sq[k] += row_mass * dy * dy + e * q


@numba.njit(cache=True, fastmath=_FAST)
def _sums_four(weights, ex, gx, gxx, ey, off_y, scale, lost, mass, sum_x, sum_y, sum_sq) -> int:
    """The E and M sums over all pixels for K <= 4 components (factor rows 0..3, zero padded).

    Per row, one pass for ``S = w / sum_k ey[k, r] ex[k, c]`` (into ``scale``), one for the twelve
    sums of S with ``ex``, ``ex dx`` and ``ex dx^2``, which stay in registers. ``lost[r]`` counts
    the row's pixels of positive weight whose density underflowed (their S is 0; the caller adds them
    exactly); returns the total."""
    rows, cols = weights.shape
    total_lost = 0
    for r in range(rows):
        e0, e1, e2, e3 = ey[0, r], ey[1, r], ey[2, r], ey[3, r]
        count = 0
        for c in range(cols):
            n = e0 * ex[0, c] + e1 * ex[1, c] + e2 * ex[2, c] + e3 * ex[3, c]
            value = weights[r, c]
            scale[r, c] = _scale_at(value, n)
            count += (n < _UNDERFLOW) & (value > 0.0)
        lost[r] = count
        total_lost += count
        a0 = a1 = a2 = a3 = 0.0
        p0 = p1 = p2 = p3 = 0.0
        q0 = q1 = q2 = q3 = 0.0
        for c in range(cols):
            s = scale[r, c]
            a0 += s * ex[0, c]
            a1 += s * ex[1, c]
            a2 += s * ex[2, c]
            a3 += s * ex[3, c]
            p0 += s * gx[0, c]
            p1 += s * gx[1, c]
            p2 += s * gx[2, c]
            p3 += s * gx[3, c]
            q0 += s * gxx[0, c]
            q1 += s * gxx[1, c]
            q2 += s * gxx[2, c]
            q3 += s * gxx[3, c]
        _add_row(e0, off_y[0, r], a0, p0, q0, 0, mass, sum_x, sum_y, sum_sq)
        _add_row(e1, off_y[1, r], a1, p1, q1, 1, mass, sum_x, sum_y, sum_sq)
        _add_row(e2, off_y[2, r], a2, p2, q2, 2, mass, sum_x, sum_y, sum_sq)
        _add_row(e3, off_y[3, r], a3, p3, q3, 3, mass, sum_x, sum_y, sum_sq)
    return total_lost


@numba.njit(cache=True, fastmath=_FAST)
def _sums_any(weights, ex, gx, gxx, ey, off_y, count, scale, lost, mass, sum_x, sum_y, sum_sq) -> int:
    """:func:`_sums_four` for any K (one component at a time: more memory traffic)."""
    rows, cols = weights.shape
    density = np.empty(cols)
    total_lost = 0
    for r in range(rows):
        density[:] = 0.0
        for k in range(count):
            e = ey[k, r]
            for c in range(cols):
                density[c] += e * ex[k, c]
        row_lost = 0
        for c in range(cols):
            value = weights[r, c]
            scale[r, c] = _scale_at(value, density[c])
            row_lost += (density[c] < _UNDERFLOW) & (value > 0.0)
        lost[r] = row_lost
        total_lost += row_lost
        for k in range(count):
            a = p = q = 0.0
            for c in range(cols):
                s = scale[r, c]
                a += s * ex[k, c]
                p += s * gx[k, c]
                q += s * gxx[k, c]
            _add_row(ey[k, r], off_y[k, r], a, p, q, k, mass, sum_x, sum_y, sum_sq)
    return total_lost


@numba.njit(cache=True)
def _add_lost(weights, scale, r, count, off_x, off_y, log_coef, half_precision, terms,
              mass, sum_x, sum_y, sum_sq) -> None:
    """The pixels of row r of positive weight whose ``scale`` is 0 (:func:`_sums_four`: their separable
    density underflowed): their responsibilities by log-sum-exp over the components, added to the
    sums directly. (A pixel whose scale underflowed on a normal density is exact this way too.)"""
    cols = weights.shape[1]
    for c in range(cols):
        value = weights[r, c]
        if scale[r, c] != 0.0 or not value > 0.0:  # also skips the negative values (weight 0)
            continue
        best = -np.inf
        for k in range(count):
            dx, dy = off_x[k, c], off_y[k, r]
            terms[k] = log_coef[k] - (dx * dx + dy * dy) * half_precision[k]
            best = max(best, terms[k])
        norm = 0.0
        for k in range(count):  # mostly one component is left: spare the others' exp
            exponent = terms[k] - best
            if exponent == 0.0:
                terms[k] = 1.0
            elif exponent < _EXP_UNDERFLOW:
                terms[k] = 0.0
            else:
                terms[k] = math.exp(exponent)
            norm += terms[k]
        for k in range(count):
            q = value * terms[k] / norm
            dx, dy = off_x[k, c], off_y[k, r]
            mass[k] += q
            sum_x[k] += q * dx
            sum_y[k] += q * dy
            sum_sq[k] += q * (dx * dx + dy * dy)


@numba.njit(cache=True, fastmath=_FAST)
def _fit_one(heatmap, limits, split, steps, negative_invalid, out) -> int:
    """Fit one heatmap (H, W) in place into out (K, 4) box units; return a status code.

    Separable throughout: component k's density at pixel (r, c) is ``ey[k, r] * ex[k, c]``
    (:func:`_axis_factors`), so with ``S = w / sum_k ey[k, r] ex[k, c]`` (w the pixel weights) every
    sum of the M step is, per row, ``ey[k, r]`` times a sum over the row of S with ``ex``,
    ``ex dx`` and ``ex dx^2``. Per pixel and step: K multiply-adds for the mixture density, one
    division, 3 K multiply-adds for the sums; the components run in blocks of 4 (zero padded) whose
    sums stay in registers. A few exponentials per component and axis.
    """
    rows, cols = heatmap.shape
    count = split.shape[0]
    if not _all_finite(heatmap):
        return _STATUS_NONFINITE

    # grid in units of the larger pixel side
    step_x = (limits[2] - limits[0]) / cols
    step_y = (limits[3] - limits[1]) / rows
    pixel = max(step_x, step_y)
    xs = (np.arange(cols) + 0.5) * (step_x / pixel)
    ys = (np.arange(rows) + 0.5) * (step_y / pixel)
    widening = PIXEL_WIDENING * PIXEL_WIDENING

    # the pixel weights: the heatmap clipped at zero (on the fly) where the clipped values sum to
    # within _RAW_TOTAL (nothing can overflow), else a copy clipped and divided by its peak. They are
    # left unnormalised: the sums are divided by their total instead.
    column_sum = np.empty(cols)
    row_sum = np.empty(rows)
    row_x = np.empty(rows)
    total, negative = _cloud_sums(heatmap, xs, column_sum, row_sum, row_x)
    if negative_invalid and negative < 0.0:
        return _STATUS_NEGATIVE
    if not total > 0.0:
        return _STATUS_EMPTY
    weights = heatmap
    if not _RAW_TOTAL[0] <= total <= _RAW_TOTAL[1]:
        peak = 0.0
        for r in range(rows):
            for c in range(cols):
                peak = max(peak, heatmap[r, c])
        weights = np.empty((rows, cols))
        reciprocal = 1.0 / peak if peak >= _FLUSH else 0.0  # 1 / peak where that is finite
        for r in range(rows):
            for c in range(cols):
                value = heatmap[r, c]
                if reciprocal > 0.0:
                    weights[r, c] = value * reciprocal if value > 0.0 else 0.0
                else:
                    weights[r, c] = value / peak if value > 0.0 else 0.0
        total, _ = _cloud_sums(weights, xs, column_sum, row_sum, row_x)
    mean_x = mean_y = 0.0
    for c in range(cols):
        mean_x += column_sum[c] * xs[c]
    for r in range(rows):
        mean_y += row_sum[r] * ys[r]
    mean_x /= total
    mean_y /= total
    # covariance about the mean (two passes, the second over the row and column sums)
    cxx = cyy = cxy = 0.0
    for c in range(cols):
        dx = xs[c] - mean_x
        cxx += column_sum[c] * dx * dx
    for r in range(rows):
        dy = ys[r] - mean_y
        cyy += row_sum[r] * dy * dy
        cxy += dy * (row_x[r] - mean_x * row_sum[r])
    spread, axis_x, axis_y = _principal_axis(cxx / total, cyy / total, cxy / total)
    sigma = math.sqrt(spread)

    weight = np.full(count, 1.0 / count)
    mu_x = mean_x + split * (sigma * axis_x)
    mu_y = mean_y + split * (sigma * axis_y)
    variance = np.ones(count)  # one pixel squared

    padded = max(count, 4)  # factor rows beyond K stay zero
    ex = np.zeros((padded, cols))  # exp(-(x - mu_x)^2 / 2 var), rescaled per column where tiny
    gx = np.zeros((padded, cols))  # ex (x - mu_x)
    gxx = np.zeros((padded, cols))  # ex (x - mu_x)^2
    ey = np.zeros((padded, rows))  # weight / var * exp(-(y - mu_y)^2 / 2 var), rescaled per row where tiny
    off_x = np.zeros((padded, cols))  # x - mu_x
    off_y = np.zeros((padded, rows))
    ones = np.ones(count)
    zeros = np.zeros(count)
    coef = np.empty(count)
    log_coef = np.empty(count)
    half_precision = np.empty(count)
    terms = np.empty(count)
    scale = np.empty((rows, cols))
    lost = np.empty(rows, dtype=np.int64)
    largest_x = np.empty(cols)
    largest_y = np.empty(rows)
    mass = np.zeros(padded)
    sum_x = np.zeros(padded)
    sum_y = np.zeros(padded)
    sum_sq = np.zeros(padded)
    for _ in range(steps):
        # E-step factors (the 1 / 2 pi is common to all k)
        for k in range(count):
            half_precision[k] = 0.5 / variance[k]
            coef[k] = weight[k] / variance[k]
            log_coef[k] = math.log(coef[k])
        _axis_factors(xs, step_x / pixel, mu_x, half_precision, ones, zeros, ex, off_x, largest_x)
        _axis_factors(ys, step_y / pixel, mu_y, half_precision, coef, log_coef, ey, off_y, largest_y)
        for k in range(count):
            for c in range(cols):
                gx[k, c] = ex[k, c] * off_x[k, c]
                gxx[k, c] = gx[k, c] * off_x[k, c]
        mass[:] = 0.0
        sum_x[:] = 0.0
        sum_y[:] = 0.0
        sum_sq[:] = 0.0
        # sums of w * responsibility times offsets from the current means (which keeps the
        # variance update free of cancellation)
        if count <= 4:
            lost_total = _sums_four(weights, ex, gx, gxx, ey, off_y, scale, lost, mass, sum_x, sum_y, sum_sq)
        else:
            lost_total = _sums_any(weights, ex, gx, gxx, ey, off_y, count, scale, lost, mass, sum_x, sum_y, sum_sq)
        for r in range(rows if lost_total else 0):
            if lost[r]:
                _add_lost(weights, scale, r, count, off_x, off_y, log_coef, half_precision, terms,
                          mass, sum_x, sum_y, sum_sq)
        # M-step (the sums are over unnormalised weights: their total divides them)
        weight_total = 0.0
        for k in range(count):
            mass_k = mass[k] / total
            if mass_k > _EMPTY_MASS:
                shift_x, shift_y = sum_x[k] / mass[k], sum_y[k] / mass[k]
                spread_k = 0.5 * (sum_sq[k] / mass[k] - shift_x * shift_x - shift_y * shift_y)
                mu_x[k] += shift_x
                mu_y[k] += shift_y
                variance[k] = max(spread_k, 0.0) + widening
            weight[k] = max(mass_k, WEIGHT_FLOOR)
            weight_total += weight[k]
        for k in range(count):
            weight[k] /= weight_total

    order = np.argsort(-weight, kind="mergesort")  # stable: ties keep the initial order
    for slot in range(count):
        k = order[slot]
        out[slot, 0] = weight[k]
        out[slot, 1] = limits[0] + mu_x[k] * pixel
        out[slot, 2] = limits[1] + mu_y[k] * pixel
        out[slot, 3] = variance[k] * pixel * pixel
    return _STATUS_OK


@numba.njit(parallel=True, cache=True)
def _fit_many(heatmaps, limits, split, steps, negative_invalid):
    """heatmaps (N, H, W), limits (N, 4), split (K,) -> mixtures (N, K, 4), status (N,), over numba's threads."""
    count = heatmaps.shape[0]
    out = np.zeros((count, split.shape[0], 4))
    status = np.zeros(count, dtype=np.int64)
    for n in numba.prange(count):
        status[n] = _fit_one(heatmaps[n], limits[n], split, steps, negative_invalid, out[n])
    return out, status


@numba.njit(cache=True)
def _fit_serial(heatmaps, limits, split, steps, negative_invalid):
    """:func:`_fit_many` on the calling thread (no parallel launch: one thread, or a few heatmaps)."""
    count = heatmaps.shape[0]
    out = np.zeros((count, split.shape[0], 4))
    status = np.zeros(count, dtype=np.int64)
    for n in range(count):
        status[n] = _fit_one(heatmaps[n], limits[n], split, steps, negative_invalid, out[n])
    return out, status


@numba.njit(parallel=True, cache=True)
def _render_many(mixtures, limits, rows, cols):
    """mixtures (N, K, 4), limits (N, 4) -> densities (N, rows, cols) at the pixel centres."""
    count, components = mixtures.shape[0], mixtures.shape[1]
    out = np.zeros((count, rows, cols))
    for n in numba.prange(count):
        step_x = (limits[n, 2] - limits[n, 0]) / cols
        step_y = (limits[n, 3] - limits[n, 1]) / rows
        ex = np.empty((components, cols))
        ey = np.empty((components, rows))
        for k in range(components):
            weight, mu_x, mu_y, variance = mixtures[n, k, 0], mixtures[n, k, 1], mixtures[n, k, 2], mixtures[n, k, 3]
            half_precision = 0.5 / variance
            coef = weight / (2.0 * math.pi * variance)
            for c in range(cols):
                d = limits[n, 0] + (c + 0.5) * step_x - mu_x
                ex[k, c] = math.exp(-d * d * half_precision)
            for r in range(rows):
                d = limits[n, 1] + (r + 0.5) * step_y - mu_y
                ey[k, r] = coef * math.exp(-d * d * half_precision)
        for r in range(rows):
            for c in range(cols):
                value = 0.0
                for k in range(components):
                    value += ey[k, r] * ex[k, c]
                out[n, r, c] = value
    return out


# --------------------------------------------------------------------------- validation helpers


def _check_heatmaps(heatmaps: ArrayLike) -> F64:
    array = as_float64(heatmaps, "heatmaps")
    if array.ndim < 2 or array.shape[-1] == 0 or array.shape[-2] == 0:
        raise ValueError(f"heatmaps: expected shape (..., H, W) with H, W >= 1, got {array.shape}")
    return array


def _check_limits(limits: ArrayLike, leading: tuple[int, ...]) -> F64:
    """limits (4,) or broadcastable to leading + (4,) -> (N, 4) float64."""
    if limits is DEFAULT_LIMITS:  # checked once
        rows = np.empty((math.prod(leading), 4))
        rows[:] = DEFAULT_LIMITS
        return rows
    array = as_float64(limits, "limits")
    if array.ndim < 1 or array.shape[-1] != 4:
        raise ValueError(f"limits: expected (x_min, y_min, x_max, y_max) of shape (4,) or (..., 4), got {array.shape}")
    try:
        array = np.broadcast_to(array, leading + (4,))
    except ValueError:
        raise ValueError(f"limits: shape {array.shape} does not broadcast to {leading + (4,)}") from None
    if not np.isfinite(array).all():
        raise ValueError("limits: contains NaN or inf")
    if (array[..., 2] <= array[..., 0]).any() or (array[..., 3] <= array[..., 1]).any():
        raise ValueError("limits: expected x_max > x_min and y_max > y_min")
    return array.reshape(-1, 4).copy()  # a fresh writable array: one numba signature


def _check_size(size) -> tuple[int, int]:
    """``size``: one integer (a square) or (H, W), each >= 1 (check_int refuses bools)."""
    if isinstance(size, (int, np.integer)):
        size = (size, size)
    try:
        rows, cols = size
    except (TypeError, ValueError):
        raise ValueError(f"size: expected an integer or (H, W), got {size!r}") from None
    return check_int(rows, "size", 1), check_int(cols, "size", 1)


def initial_split_points(num_components: int) -> F64:
    """(K,) standard-normal points where the K initial means sit along the principal axis.

    K >= 3: with ``p_i = Phi^-1(i / K)``, i = 1..K-1, the equal-probability split points of a
    standard normal, the midpoints ``(p_i + p_{i+1}) / 2`` and, outside them, ``2 p_1 - m_1`` and
    ``2 p_{K-1} - m_{K-2}`` (m the first and last midpoints); ``(-0.3, 0.3)`` for K = 2, ``(0,)``
    for K = 1. Ascending and symmetric about 0.
    """
    return _split_points(check_int(num_components, "num_components", 1)).copy()


@functools.lru_cache(maxsize=64)
def _split_points(count: int) -> F64:
    """:func:`initial_split_points`, computed once per K (read-only)."""
    if count == 1:
        points = np.zeros(1)
    elif count == 2:
        points = np.array([-0.3, 0.3])
    else:
        split = np.array([NormalDist().inv_cdf(i / count) for i in range(1, count)])
        middle = 0.5 * (split[:-1] + split[1:])
        points = np.concatenate([[2 * split[0] - middle[0]], middle, [2 * split[-1] - middle[-1]]])
    points.setflags(write=False)
    return points


def _prepare(heatmaps, num_components, steps, limits, on_invalid, negative):
    array = _check_heatmaps(heatmaps)
    count = check_int(num_components, "num_components", 1)
    steps = check_int(steps, "steps", 0)
    check_choice(on_invalid, "on_invalid", _ON_INVALID)
    check_choice(negative, "negative", _NEGATIVE)
    leading = array.shape[:-2]
    return array.reshape((-1,) + array.shape[-2:]), leading, count, steps, _check_limits(limits, leading)


def _finish(out: F64, status: NDArray[np.int64], leading, limits: F64, on_invalid: str) -> F64:
    bad = np.flatnonzero(status != _STATUS_OK)
    if len(bad):
        if on_invalid == "raise":
            first = bad[0]
            where = tuple(int(i) for i in np.unravel_index(first, leading)) if leading else ()
            raise ValueError(
                f"heatmaps: the heatmap at index {where} {_STATUS_TEXT[int(status[first])]}"
                f" ({len(bad)} invalid of {len(status)}); pass on_invalid='uninformative' to give"
                " such heatmaps an uninformative mixture"
            )
        out[bad, :, 0] = 1.0 / out.shape[1]
        out[bad, :, 1] = (0.5 * (limits[bad, 0] + limits[bad, 2]))[:, None]
        out[bad, :, 2] = (0.5 * (limits[bad, 1] + limits[bad, 3]))[:, None]
        out[bad, :, 3] = UNINFORMATIVE_VARIANCE
    return out.reshape(leading + out.shape[1:])


class _numba_threads:
    """Run numba's parallel loops on metapose_geom.get_num_threads() threads (at most numba's pool),
    one call at a time (:data:`_PARALLEL_LOCK`)."""

    def __enter__(self) -> None:
        self.lock = _PARALLEL_LOCK
        self.lock.acquire()
        try:
            self.previous = numba.get_num_threads()
            numba.set_num_threads(max(1, min(get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, *exc) -> None:
        try:
            numba.set_num_threads(self.previous)
        finally:
            self.lock.release()


# --------------------------------------------------------------------------- public API


def fit_mixtures(
    heatmaps: ArrayLike,
    num_components: int = 4,
    steps: int = 5,
    limits: ArrayLike = DEFAULT_LIMITS,
    on_invalid: str = "raise",
    negative: str = "clip",
) -> F64:
    """heatmaps (..., H, W) -> mixtures (..., K, 4) ``[weight, mu_x, mu_y, variance]`` in box units.

    Weighted EM on each heatmap's pixels (see the module docstring for the exact method):
    K = ``num_components`` spherical components started along the first principal axis of the
    weighted pixel cloud, ``steps`` EM steps (0: the initialisation alone), each step's sigma
    widened by half a pixel in quadrature. Weights sum to one and component 0 is the heaviest.

    Args:
        heatmaps: (..., H, W) non-negative scores of any real dtype (computed in float64); the
            scale does not matter.
        num_components: K >= 1.
        steps: EM steps >= 0.
        limits: ``(x_min, y_min, x_max, y_max)`` box units, the area the heatmap's pixels tile;
            shape (4,) or broadcastable to (..., 4) for one per heatmap. Default: the whole box.
        on_invalid: ``"raise"`` (ValueError naming the first invalid heatmap) or
            ``"uninformative"`` (equal weights, means at the centre of the limits, variance
            ``UNINFORMATIVE_VARIANCE``) for a heatmap with NaN or inf, no positive value, or
            (with ``negative="invalid"``) a negative value.
        negative: ``"clip"`` (negative values weigh zero, as networks' slightly negative
            background) or ``"invalid"`` (a negative value makes the heatmap invalid).

    Returns:
        (..., K, 4) float64 box units; variances in box units squared.

    Example::

        >>> blob = render_heatmaps(np.array([0.3, 0.6]), size=64, sigma_px=2.0)  # sigma 2/64
        >>> fit_mixtures(blob, num_components=1).round(6)  # variance (2^2 + 0.5^2) / 64^2
        array([[1.      , 0.3     , 0.6     , 0.001038]])
    """
    array, leading, count, steps, limit_rows = _prepare(heatmaps, num_components, steps, limits, on_invalid, negative)
    split = _split_points(count)
    if array.shape[0] == 0:
        return np.zeros(leading + (count, 4))
    if min(get_num_threads(), numba.config.NUMBA_NUM_THREADS) <= 1 or array.shape[0] < _PARALLEL_FROM:
        out, status = _fit_serial(array, limit_rows, split, steps, negative == "invalid")
    else:
        with _numba_threads():
            out, status = _fit_many(array, limit_rows, split, steps, negative == "invalid")
    return _finish(out, status, leading, limit_rows, on_invalid)


def fit_mixtures_numpy(
    heatmaps: ArrayLike,
    num_components: int = 4,
    steps: int = 5,
    limits: ArrayLike = DEFAULT_LIMITS,
    on_invalid: str = "raise",
    negative: str = "clip",
) -> F64:
    """:func:`fit_mixtures` in plain vectorised numpy over all heatmaps (no numba): the reference.

    Same arguments, result and method, written independently of the kernel: dense (N, H*W, K)
    responsibilities in log space, ``numpy.linalg.eigh`` for the principal axis, two-pass variances.
    It agrees with :func:`fit_mixtures` to rounding (except for the order of components of
    exactly equal weight when the cloud is isotropic). Memory: a few (N, H*W, K, 2) arrays.
    """
    array, leading, count, steps, limit_rows = _prepare(heatmaps, num_components, steps, limits, on_invalid, negative)
    total, rows, cols = array.shape
    if count == 1:
        split = np.zeros(1)
    elif count == 2:
        split = np.array([-0.3, 0.3])
    else:
        boundaries = np.array([NormalDist().inv_cdf(p) for p in np.arange(1, count) / count])
        middle = (boundaries[1:] + boundaries[:-1]) / 2
        split = np.concatenate([[2 * boundaries[0] - middle[0]], middle, [2 * boundaries[-1] - middle[-1]]])
    finite = np.isfinite(array).all(axis=(1, 2))
    clipped = np.where(np.isfinite(array), np.maximum(array, 0.0), 0.0)
    status = np.where(clipped.max(axis=(1, 2), initial=0.0) > 0, _STATUS_OK, _STATUS_EMPTY)
    if negative == "invalid":
        status = np.where((array < 0).any(axis=(1, 2)), _STATUS_NEGATIVE, status)
    status = np.where(finite, status, _STATUS_NONFINITE)
    good = status == _STATUS_OK
    out = np.zeros((total, count, 4))
    if good.any():
        heat = clipped[good]
        heat = heat / heat.max(axis=(1, 2), keepdims=True)
        weights = (heat / heat.sum(axis=(1, 2), keepdims=True)).reshape(len(heat), -1)  # (N, P)
        lim = limit_rows[good]
        step = np.stack([(lim[:, 2] - lim[:, 0]) / cols, (lim[:, 3] - lim[:, 1]) / rows], axis=-1)  # (N, 2)
        pixel = step.max(axis=-1)
        grid_y, grid_x = np.meshgrid(np.arange(rows) + 0.5, np.arange(cols) + 0.5, indexing="ij")
        points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)[None] * (step / pixel[:, None])[:, None]
        mean = np.einsum("np,npd->nd", weights, points)
        centred = points - mean[:, None]
        covariance = np.einsum("np,npd,npe->nde", weights, centred, centred)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        spread, axis = eigenvalues[:, -1], eigenvectors[:, :, -1]
        flip = (axis[:, 0] < 0) | ((axis[:, 0] == 0) & (axis[:, 1] < 0))
        axis = np.where(flip[:, None], -axis, axis)
        widening = PIXEL_WIDENING**2
        mu = mean[:, None] + split[None, :, None] * (np.sqrt(spread)[:, None] * axis)[:, None]  # (N, K, 2)
        variance = np.ones((len(heat), count))
        weight = np.full((len(heat), count), 1.0 / count)
        for _ in range(steps):
            squared = ((points[:, :, None] - mu[:, None]) ** 2).sum(axis=-1)  # (N, P, K)
            log_density = np.log(weight / variance)[:, None] - squared / (2 * variance[:, None])
            log_density -= log_density.max(axis=-1, keepdims=True)
            responsibility = np.exp(log_density)
            responsibility /= responsibility.sum(axis=-1, keepdims=True)
            weighted = weights[..., None] * responsibility  # (N, P, K)
            mass = weighted.sum(axis=1)  # (N, K)
            alive = mass > _EMPTY_MASS
            safe = np.where(alive, mass, 1.0)
            new_mu = np.einsum("npk,npd->nkd", weighted, points) / safe[..., None]
            new_variance = (weighted * ((points[:, :, None] - new_mu[:, None]) ** 2).sum(-1)).sum(1) / (2 * safe)
            mu = np.where(alive[..., None], new_mu, mu)
            variance = np.where(alive, new_variance + widening, variance)
            weight = np.maximum(mass, WEIGHT_FLOOR)
            weight /= weight.sum(axis=-1, keepdims=True)
        order = np.argsort(-weight, axis=-1, kind="stable")
        weight = np.take_along_axis(weight, order, axis=-1)
        mu = np.take_along_axis(mu, order[..., None], axis=1)
        variance = np.take_along_axis(variance, order, axis=-1)
        out[good] = np.concatenate([
            weight[..., None],
            lim[:, None, :2] + mu * pixel[:, None, None],
            (variance * pixel[:, None] ** 2)[..., None],
        ], axis=-1)
    return _finish(out, status, leading, limit_rows, on_invalid)


def render_mixtures(mixtures: ArrayLike, size: int | tuple[int, int] = 64, limits: ArrayLike = DEFAULT_LIMITS) -> F64:
    """mixtures (..., K, 4) box units -> heatmaps (..., H, W): the mixture density at the pixel centres.

    The value is ``sum_k w_k N(p; mu_k, var_k I)`` in box units^-2 at each pixel centre ``p`` of
    the grid that tiles ``limits`` (see the module docstring), so ``heatmap.sum() * dx * dy`` is
    about the weight inside the limits. ``size`` is H = W or (H, W). Weights must be >= 0,
    variances > 0 (box units squared), everything finite.
    """
    array = check_mixtures(mixtures, positive_total=False)
    rows, cols = _check_size(size)
    leading = array.shape[:-2]
    limit_rows = _check_limits(limits, leading)
    flat = array.reshape((-1,) + array.shape[-2:])
    if flat.shape[0] == 0:
        return np.zeros(leading + (rows, cols))
    with _numba_threads():
        out = _render_many(flat, limit_rows, rows, cols)
    return out.reshape(leading + (rows, cols))


def render_heatmaps(points: ArrayLike, size: int | tuple[int, int] = 64, sigma_px: float = 2.0,
                    limits: ArrayLike = DEFAULT_LIMITS) -> F64:
    """points (..., 2) box units -> heatmaps (..., H, W): ``exp(-|p - point|^2 / (2 sigma^2))``.

    The usual training target of a heatmap network: one Gaussian blob per point, peak 1 at the
    point, ``sigma = sigma_px`` pixels of the grid (the larger pixel side when they differ), sampled
    at the pixel centres of the grid that tiles ``limits``. ``size`` is H = W or (H, W).
    """
    array = as_float64(points, "points")
    if array.ndim < 1 or array.shape[-1] != 2:
        raise ValueError(f"points: expected shape (..., 2), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("points: contains NaN or inf")
    check_number(sigma_px, "sigma_px", 0.0, low_open=True)
    rows, cols = _check_size(size)
    leading = array.shape[:-1]
    limit_rows = _check_limits(limits, leading)
    pixel = np.maximum((limit_rows[:, 2] - limit_rows[:, 0]) / cols, (limit_rows[:, 3] - limit_rows[:, 1]) / rows)
    variance = (float(sigma_px) * pixel) ** 2  # (N,)
    mixtures = np.empty((len(limit_rows), 1, 4))
    mixtures[:, 0, 0] = 2 * np.pi * variance  # cancels the density's normalisation: peak 1
    mixtures[:, 0, 1:3] = array.reshape(-1, 2)
    mixtures[:, 0, 3] = variance
    return render_mixtures(mixtures.reshape(leading + (1, 4)), (rows, cols), limit_rows.reshape(leading + (4,)))
