"""Shared fixtures and samplers for the tests of the compiled core.

The samplers are plain functions (importable as ``from conftest import ...``) so that
hypothesis tests, which cannot take function-scoped fixtures, can use them too.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from ci_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 (hooks: CI may not skip aniposelib)

SEED = 20220619

#: leading batch shapes every kernel is exercised over
BATCH_SHAPES = [(), (5,), (2, 3)]

#: float64 tolerances for comparisons against the numpy reference
RTOL = 1e-10
#: central differences: step (relative to max(1, |x|)) and the tolerance they support
FD_STEP = 1e-6
FD_RTOL = 1e-7


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator per test: every test sees the same numbers on every run."""
    return np.random.default_rng(SEED)


@pytest.fixture
def restore_threads():
    """Put the core's thread count back after a test that changes it."""
    import metapose_geom

    before = metapose_geom.get_num_threads()
    yield
    metapose_geom.set_num_threads(before)


# --------------------------------------------------------------------------- rotations


def random_rotations(rng: np.random.Generator, shape: tuple = ()) -> np.ndarray:
    """Uniform (Haar) random rotations (shape + (3, 3)), det +1: QR of a Gaussian matrix."""
    gaussian = rng.normal(size=tuple(shape) + (3, 3))
    q, r = np.linalg.qr(gaussian)
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    q[..., :, 2] *= np.linalg.det(q)[..., None]
    return q


def rotation_about(axis, angle) -> np.ndarray:
    """Rotation by ``angle`` radians about ``axis`` (column-vector convention, as Rodrigues)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    return ref.rodrigues_to_matrix(axis * np.asarray(angle, dtype=np.float64)[..., None])


def random_rot6d(rng: np.random.Generator, shape: tuple = ()) -> np.ndarray:
    """Generic, well-conditioned 6D inputs (shape + (6,)): rows of unequal length, not orthogonal,
    at least ~27 degrees apart, so Gram-Schmidt and its derivative are well defined."""
    rotation = random_rotations(rng, shape)
    length1 = rng.uniform(0.5, 2.0, size=tuple(shape) + (1,))
    along = rng.uniform(-1.0, 1.0, size=tuple(shape) + (1,))
    across = rng.choice([-1.0, 1.0], size=tuple(shape) + (1,)) * rng.uniform(0.5, 2.0, size=tuple(shape) + (1,))
    a1 = length1 * rotation[..., 0, :]
    a2 = along * rotation[..., 0, :] + across * rotation[..., 1, :]
    return np.concatenate([a1, a2], axis=-1)


# --------------------------------------------------------------------------- cameras


def random_camera(rng: np.random.Generator, shape: tuple = ()) -> dict[str, np.ndarray]:
    """Realistic full-perspective cameras for a 1920x1080 image: fx, fy in 1000-1500 px, the
    principal point near the centre, distortion in the ranges calibrated lenses show."""
    shape = tuple(shape)
    fx = rng.uniform(1000.0, 1500.0, size=shape)
    fy = fx * rng.uniform(0.98, 1.02, size=shape)
    cx = 960.0 + rng.uniform(-40.0, 40.0, size=shape)
    cy = 540.0 + rng.uniform(-30.0, 30.0, size=shape)
    distortion = np.stack(
        [
            rng.uniform(-0.3, 0.3, size=shape),  # k1
            rng.uniform(-0.1, 0.1, size=shape),  # k2
            rng.uniform(-1e-3, 1e-3, size=shape),  # p1
            rng.uniform(-1e-3, 1e-3, size=shape),  # p2
            rng.uniform(-0.05, 0.05, size=shape),  # k3
        ],
        axis=-1,
    )
    return {
        "rotation": random_rotations(rng, shape),
        "translation": rng.uniform(-1.0, 1.0, size=shape + (3,)),
        "intrinsics": np.stack([fx, fy, cx, cy], axis=-1),
        "distortion": distortion,
    }


def random_points_in_view(rng: np.random.Generator, camera: dict, count: int) -> tuple[np.ndarray, np.ndarray]:
    """World points (..., count, 3) 2-6 m in front of ``camera`` and inside its 1920x1080 image,
    with their camera-frame coordinates (..., count, 3)."""
    intrinsics = camera["intrinsics"]
    shape = intrinsics.shape[:-1] + (count,)
    fx, fy, cx, cy = (intrinsics[..., i, None] for i in range(4))
    depth = rng.uniform(2.0, 6.0, size=shape)
    # 70% of the half-width / half-height in undistorted normalised coordinates: even the
    # strongest distortion in random_camera keeps the pixels inside the image.
    x = rng.uniform(-0.7, 0.7, size=shape) * cx / fx
    y = rng.uniform(-0.7, 0.7, size=shape) * cy / fy
    in_camera = np.stack([x * depth, y * depth, depth], axis=-1)
    # Xc = R X + t  =>  X = R^T (Xc - t), i.e. row form (Xc - t) @ R.
    world = (in_camera - camera["translation"][..., None, :]) @ camera["rotation"]
    return world, in_camera


def camera_args(camera: dict) -> tuple[np.ndarray, ...]:
    return camera["rotation"], camera["translation"], camera["intrinsics"], camera["distortion"]


# --------------------------------------------------------------------------- mixtures


def random_mixtures(rng: np.random.Generator, shape: tuple = (), components: int = 4) -> np.ndarray:
    """Mixtures (shape + (K, 4)) [weight, mu_x, mu_y, variance] in box-unit-like scales."""
    shape = tuple(shape) + (components,)
    return np.stack(
        [
            rng.uniform(0.05, 1.0, size=shape),
            rng.normal(0.5, 0.3, size=shape),
            rng.normal(0.5, 0.3, size=shape),
            rng.uniform(0.002, 0.05, size=shape),
        ],
        axis=-1,
    )


# --------------------------------------------------------------------------- derivatives


def central_difference(function, x: np.ndarray, trailing: int, step: float = FD_STEP) -> np.ndarray:
    """Central differences of ``function`` with respect to the last ``trailing`` axes of ``x``.

    ``function`` maps batch items independently (leading axes of ``x`` are batch axes), so each
    coordinate is perturbed in every item at once. Returns ``output.shape + x.shape[-trailing:]``.
    The step is ``step * max(1, |x|)`` per entry.
    """
    x = np.asarray(x, dtype=np.float64)
    inner = x.shape[x.ndim - trailing :]
    columns = []
    for flat in range(int(np.prod(inner))):
        index = (Ellipsis, *np.unravel_index(flat, inner))
        h = step * np.maximum(1.0, np.abs(x[index]))
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        h_actual = plus[index] - minus[index]  # the step actually taken, after rounding
        difference = np.asarray(function(plus)) - np.asarray(function(minus))
        columns.append(difference / _expand(h_actual, difference.ndim))
    stacked = np.stack(columns, axis=-1)
    return stacked.reshape(stacked.shape[:-1] + inner)


def _expand(h: np.ndarray, ndim: int) -> np.ndarray:
    """Broadcast a batch-shaped step against an output whose leading axes are the batch axes."""
    h = np.asarray(h)
    return h.reshape(h.shape + (1,) * (ndim - h.ndim))


def assert_derivative_close(analytic, numeric, rtol: float = FD_RTOL, what: str = "") -> None:
    """Analytic vs numeric derivative, with the absolute floor set by the derivative's magnitude."""
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    assert analytic.shape == numeric.shape, (what, analytic.shape, numeric.shape)
    scale = max(1.0, float(np.abs(numeric).max(initial=0.0)))
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=rtol * scale, err_msg=what)


def assert_rotation(matrix: np.ndarray, atol: float = 1e-12) -> None:
    """Orthonormal rows and determinant +1, over any batch."""
    matrix = np.asarray(matrix)
    assert np.all(np.isfinite(matrix))
    gram = matrix @ np.swapaxes(matrix, -1, -2)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape), rtol=0, atol=atol)
    np.testing.assert_allclose(np.linalg.det(matrix), 1.0, rtol=0, atol=atol)


def assert_close(got, want, rtol: float = RTOL, err_msg: str = "") -> None:
    """float64 agreement to ``rtol`` relative to the magnitude of the expected array (entries
    near zero are held to ``rtol * max |want|``, not to their own tiny size)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (err_msg, got.shape, want.shape)
    assert got.dtype == np.float64, (err_msg, got.dtype)
    scale = float(np.abs(want).max(initial=0.0))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


# --------------------------------------------------------------------------- float64's range


def in_unit(unit: float, *arrays) -> tuple[np.ndarray, ...]:
    """Each array times ``unit``; what leaves float64's range becomes inf (no warning)."""
    with np.errstate(over="ignore", under="ignore"):
        return tuple(unit * np.asarray(a, dtype=np.float64) for a in arrays)


def refusal(inputs, results) -> str | None:
    """Decide up front whether a call must succeed: None when every input and every exact
    result is finite in float64; else the regex of the ValueError it must raise -- the input
    check's (``name: contains NaN or inf``) when an input is not finite, the overflow check's
    (``names: values too large or too small for float64``) when only a result is not."""
    if not all(np.all(np.isfinite(a)) for a in inputs):
        return r"^\w+: contains NaN or inf"
    if not all(np.all(np.isfinite(r)) for r in results):
        return r"^\w+(, \w+)*: values too large or too small for float64"
    return None


def pytest_configure(config):
    # hypothesis' failure report touches mypy_extensions.TypedDict, whose DeprecationWarning the
    # project's `filterwarnings = error` would turn into an INTERNALERROR hiding the real failure.
    config.addinivalue_line("filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
