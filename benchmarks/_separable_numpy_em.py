"""The heatmap EM of ``metapose_geom.heatmaps.fit_mixtures`` in numpy, using the separable grid.

A spherical Gaussian on a pixel grid is ``gy[k, row] * gx[k, col]``, so the mixture density of every
pixel is one (H, K) @ (K, W) product, and every M-step sum is a product of ``S = w / density`` with
the factors: K * (H + W) exponentials instead of K * H * W, vectorised over all heatmaps. The factors
are scaled per row and per column by their largest component (in log space), which cancels in the
responsibilities and keeps them from underflowing; a pixel whose scaled density still underflows
(one component dominates its row, another its column) gets its responsibilities by log-sum-exp.
Same method as :func:`metapose_geom.heatmaps.fit_mixtures_numpy` (the tests' reference): valid
heatmaps only, the default limits (the whole box), any H and W.
"""

from __future__ import annotations

import numpy as np
from metapose_geom.heatmaps import PIXEL_WIDENING, WEIGHT_FLOOR, initial_split_points

_EMPTY_MASS = 1e-200
_UNDERFLOW = 1e-280


def fit_mixtures_separable(heatmaps: np.ndarray, num_components: int = 4, steps: int = 5) -> np.ndarray:
    """heatmaps (..., H, W), valid (finite, some positive value) -> mixtures (..., K, 4) box units."""
    heat = np.asarray(heatmaps, dtype=np.float64)
    leading, (rows, cols) = heat.shape[:-2], heat.shape[-2:]
    heat = np.maximum(heat.reshape(-1, rows, cols), 0.0)
    heat = heat / heat.max(axis=(1, 2), keepdims=True)
    w = heat / heat.sum(axis=(1, 2), keepdims=True)  # (N, H, W)
    pixel = max(1.0 / cols, 1.0 / rows)
    xs, ys = (np.arange(cols) + 0.5) / cols / pixel, (np.arange(rows) + 0.5) / rows / pixel
    column_sum, row_sum = w.sum(axis=1), w.sum(axis=2)  # (N, W), (N, H)
    mean = np.stack([column_sum @ xs, row_sum @ ys], axis=-1)  # (N, 2)
    dx, dy = xs - mean[:, :1], ys - mean[:, 1:]
    cxy = np.einsum("nhw,nh,nw->n", w, dy, dx)
    covariance = np.stack([np.stack([(column_sum * dx**2).sum(-1), cxy], -1),
                           np.stack([cxy, (row_sum * dy**2).sum(-1)], -1)], axis=-2)
    spread, vectors = np.linalg.eigh(covariance)
    axis = vectors[:, :, -1] * np.where((vectors[:, 0, -1] < 0) | ((vectors[:, 0, -1] == 0) & (vectors[:, 1, -1] < 0)),
                                        -1.0, 1.0)[:, None]
    mu = mean[:, None] + initial_split_points(num_components)[:, None] * (np.sqrt(spread[:, -1, None]) * axis)[:, None]
    count = len(w)
    variance, weight = np.ones((count, num_components)), np.full((count, num_components), 1.0 / num_components)
    density, scale = np.empty_like(w), np.empty_like(w)  # reused: fresh (N, H, W) temporaries page-fault
    for _ in range(steps):
        off_x, off_y = xs - mu[..., :1], ys - mu[..., 1:]  # (N, K, W), (N, K, H)
        log_x = -off_x**2 / (2 * variance[..., None])
        log_y = np.log(weight / variance)[..., None] - off_y**2 / (2 * variance[..., None])
        gx = np.exp(log_x - log_x.max(axis=1, keepdims=True))
        gy = np.exp(log_y - log_y.max(axis=1, keepdims=True))
        np.matmul(gy.transpose(0, 2, 1), gx, out=density)  # (N, H, W)
        lost = (density < _UNDERFLOW) & (w > 0) if density.min() < _UNDERFLOW else None
        if lost is not None:
            np.maximum(density, _UNDERFLOW, out=density)
        np.divide(w, density, out=scale)
        if lost is not None:
            scale[lost] = 0.0
        row_total = (gx @ scale.transpose(0, 2, 1)) * gy  # (N, K, H)
        column_total = (gy @ scale) * gx  # (N, K, W)
        mass = row_total.sum(-1)
        sums = np.stack([(column_total * off_x).sum(-1), (row_total * off_y).sum(-1)], axis=-1)  # (N, K, 2)
        square = (column_total * off_x**2).sum(-1) + (row_total * off_y**2).sum(-1)
        if lost is not None and lost.any():  # exact responsibilities of the pixels where the scaled density underflows
            n, r, c = np.nonzero(lost)
            log_density = log_y[n, :, r] + log_x[n, :, c]  # (P, K)
            q = np.exp(log_density - log_density.max(-1, keepdims=True))
            q *= (w[n, r, c] / q.sum(-1))[:, None]
            offsets = np.stack([off_x[n, :, c], off_y[n, :, r]], axis=-1)  # (P, K, 2)
            np.add.at(mass, n, q)
            np.add.at(sums, n, q[..., None] * offsets)
            np.add.at(square, n, q * (offsets**2).sum(-1))
        alive = mass > _EMPTY_MASS
        safe = np.where(alive, mass, 1.0)
        shift = sums / safe[..., None]
        new_variance = 0.5 * (square / safe - (shift**2).sum(-1))
        mu = np.where(alive[..., None], mu + shift, mu)
        variance = np.where(alive, np.maximum(new_variance, 0.0) + PIXEL_WIDENING**2, variance)
        weight = np.maximum(mass, WEIGHT_FLOOR)
        weight /= weight.sum(axis=-1, keepdims=True)
    order = np.argsort(-weight, axis=-1, kind="stable")
    weight, variance = np.take_along_axis(weight, order, -1), np.take_along_axis(variance, order, -1)
    mu = np.take_along_axis(mu, order[..., None], 1)
    out = np.concatenate([weight[..., None], mu * pixel, (variance * pixel**2)[..., None]], axis=-1)
    return out.reshape(leading + out.shape[1:])
