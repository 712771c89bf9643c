"""Every kind of bad input to every public function raises ValueError naming the argument.

The generic cases start from a valid call (``signatures.PUBLIC``) and break one thing: a
trailing shape, the number of dimensions, the dtype, a value (NaN, inf), the size (zero
anywhere), the leading batch shape or a dimension shared between arguments. The specific cases
follow: negative weights, variances <= 0, bad ``scale``, non-rotations, points behind the
camera, degenerate 6D rows, non-invertible distortion, bad thresholds and thread counts.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import metapose_geom
from metapose_geom import geometry, metrics

from conftest import SEED, camera_args, random_camera, random_points_in_view, random_rotations
from signatures import DIMS, PUBLIC, Signature, expected_shapes

SIGNATURES = pytest.mark.parametrize("signature", PUBLIC, ids=[s.id for s in PUBLIC])


def _valid(signature: Signature, batch=(3,), dims=None) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    return signature.make(rng, batch, dict(DIMS, **(dims or {})))


def _names(*names: str) -> str:
    return "|".join(re.escape(n) for n in names)


def _cases(kind):
    """(signature, arg index) pairs, with readable ids."""
    out = []
    for s in PUBLIC:
        for i, a in enumerate(s.args):
            if kind(s, a):
                out.append(pytest.param(s, i, id=f"{s.id}-{a.name}"))
    return out


EVERY_ARG = _cases(lambda s, a: True)
FIXED_TRAILING_ARG = _cases(lambda s, a: any(isinstance(d, int) for d in a.trailing))
MULTI_ARG = [p for p in EVERY_ARG if len(p.values[0].args) > 1]


def _call(signature: Signature, arrays: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        signature.call(arrays)


class TestValidBaseline:
    """The unbroken calls the cases below start from do succeed (else the cases prove nothing)."""

    @SIGNATURES
    def test_valid_call_succeeds(self, signature):
        arrays = _valid(signature)
        result = signature.call(arrays)
        outputs = [result] if signature.single else list(result)
        for output, shape in zip(outputs, expected_shapes(signature, arrays)):
            assert np.shape(output) == shape
            assert np.all(np.isfinite(output))


class TestTrailingShape:
    @pytest.mark.parametrize(("signature", "index"), FIXED_TRAILING_ARG)
    @pytest.mark.parametrize("delta", [-1, +1])
    def test_wrong_fixed_trailing_size(self, signature, index, delta):
        arg = signature.args[index]
        for position, size in enumerate(arg.trailing):
            if not isinstance(size, int):
                continue
            arrays = _valid(signature)
            shape = list(arrays[index].shape)
            axis = len(shape) - len(arg.trailing) + position
            shape[axis] = size + delta
            arrays[index] = np.resize(arrays[index], shape)
            _call(signature, arrays, arg.name)

    @pytest.mark.parametrize(("signature", "index"), FIXED_TRAILING_ARG)
    def test_zero_fixed_trailing_size(self, signature, index):
        arg = signature.args[index]
        arrays = _valid(signature)
        shape = list(arrays[index].shape)
        shape[-1] = 0
        arrays[index] = np.zeros(shape)
        _call(signature, arrays, arg.name)

    @pytest.mark.parametrize(("signature", "index"), EVERY_ARG)
    def test_extra_trailing_axis(self, signature, index):
        arrays = _valid(signature)
        arrays[index] = arrays[index][..., None]
        _call(signature, arrays, signature.args[index].name)


class TestNumberOfDimensions:
    @pytest.mark.parametrize(("signature", "index"), EVERY_ARG)
    def test_too_few_dimensions(self, signature, index):
        """Without a batch, drop the argument's first core axis (e.g. (J, 3) -> (3,), (6,) -> ())."""
        arrays = _valid(signature, batch=())
        arrays[index] = arrays[index][0]
        _call(signature, arrays, signature.args[index].name)

    @pytest.mark.parametrize(("signature", "index"), EVERY_ARG)
    def test_scalar(self, signature, index):
        arrays = _valid(signature, batch=())
        arrays[index] = np.float64(1.0)
        _call(signature, arrays, signature.args[index].name)


    @pytest.mark.parametrize(("signature", "index"), EVERY_ARG)
    def test_zero_dimensional_array_when_every_size_is_one(self, signature, index):
        """A 0-d array is never a valid argument, even where the expected shape holds one number
        (scale (C,) with C = 1): it must not be silently promoted to shape (1,)."""
        rng = np.random.default_rng(SEED)
        arrays = signature.make(rng, (), {"J": 1, "C": 1, "K": 1, "N": 1})
        arrays[index] = np.array(np.ravel(arrays[index])[0])
        assert arrays[index].ndim == 0
        _call(signature, arrays, signature.args[index].name)


class TestDtype:
    @pytest.mark.parametrize(("signature", "index"), EVERY_ARG)
    @pytest.mark.parametrize("kind", ["complex", "bool", "object", "string", "ragged-list", "none"])
    def test_not_a_real_array(self, signature, index, kind):
        arrays = _valid(signature)
        value = arrays[index]
        if kind == "complex":
            value = value + 0j
        elif kind == "bool":
            value = value > 0
        elif kind == "object":
            value = value.astype(object)
        elif kind == "string":
            value = value.astype(str)
        elif kind == "ragged-list":
            value = [[1.0, 2.0], [3.0]]
        else:
            value = None
        arrays[index] = value
        _call(signature, arrays, signature.args[index].name)

    @pytest.mark.parametrize(("signature", "index"), EVERY_ARG)
    def test_float32_is_converted(self, signature, index):
        """Real numeric dtypes are accepted and converted to float64 (the documented behaviour)."""
        arrays = _valid(signature)
        arrays[index] = arrays[index].astype(np.float32)
        converted = [np.asarray(a, dtype=np.float64) for a in arrays]
        _assert_same_result(signature, arrays, converted)

    @pytest.mark.parametrize(
        ("signature", "index"),
        _cases(lambda s, a: a.name in {"pose", "shift", "rotvec", "prediction", "ground_truth", "source", "target"}),
    )
    @pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
    def test_integers_are_converted(self, signature, index, dtype):
        arrays = _valid(signature)
        arrays[index] = np.abs(np.round(arrays[index])).astype(dtype)
        converted = [np.asarray(a, dtype=np.float64) for a in arrays]
        _assert_same_result(signature, arrays, converted)


def _assert_same_result(signature, arrays, converted):
    got = [signature.call(arrays)] if signature.single else list(signature.call(arrays))
    want = [signature.call(converted)] if signature.single else list(signature.call(converted))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


class TestNonFinite:
    @pytest.mark.parametrize(("signature", "index"), EVERY_ARG)
    @pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
    @pytest.mark.parametrize("where", ["first", "last"])
    def test_non_finite_value(self, signature, index, value, where):
        arrays = _valid(signature)
        broken = np.array(arrays[index], dtype=np.float64)
        flat = 0 if where == "first" else broken.size - 1
        broken[np.unravel_index(flat, broken.shape)] = value
        arrays[index] = broken
        _call(signature, arrays, signature.args[index].name)


class TestEmpty:
    @SIGNATURES
    @pytest.mark.parametrize("batch", [(0,), (3, 0), (0, 2)])
    def test_empty_batch(self, signature, batch):
        arrays = [np.ones(signature.shape_of(a, batch, DIMS)) for a in signature.args]
        _call(signature, arrays, _names(*signature.arg_names()))

    @pytest.mark.parametrize(
        ("signature", "dim"),
        [
            pytest.param(s, d, id=f"{s.id}-{d}")
            for s in PUBLIC
            for d in sorted({d for a in s.args for d in a.trailing if isinstance(d, str)})
        ],
    )
    def test_zero_sized_dimension(self, signature, dim):
        rng = np.random.default_rng(SEED)
        dims = dict(DIMS, **{dim: 0})
        arrays = [rng.normal(size=signature.shape_of(a, (3,), dims)) for a in signature.args]
        holders = [a.name for a in signature.args if dim in a.trailing]
        _call(signature, arrays, _names(*holders))


class TestBatchMismatch:
    @pytest.mark.parametrize(("signature", "index"), MULTI_ARG)
    @pytest.mark.parametrize(
        ("own", "others"),
        [((2,), (3,)), ((3, 2), (2, 3)), ((1,), (3,)), ((), (3,)), ((3,), ()), ((1, 3), (3,)), ((3, 1), (3,))],
        ids=["2-vs-3", "32-vs-23", "broadcast-1", "none-vs-3", "3-vs-none", "13-vs-3", "31-vs-3"],
    )
    def test_mismatched_leading_shape(self, signature, index, own, others):
        """No broadcasting: every argument must carry exactly the same leading shape."""
        rng = np.random.default_rng(SEED)
        arrays = signature.make(rng, others, DIMS)
        arrays[index] = signature.make(rng, own, DIMS)[index]
        assert expected_shapes(signature, arrays) is None
        _call(signature, arrays, _names(*signature.arg_names()))

    @pytest.mark.parametrize(
        ("signature", "dim", "index"),
        [
            pytest.param(s, d, i, id=f"{s.id}-{d}-{a.name}")
            for s in PUBLIC
            for d in sorted({d for a in s.args for d in a.trailing if isinstance(d, str)})
            if sum(d in a.trailing for a in s.args) > 1
            for i, a in enumerate(s.args)
            if d in a.trailing
        ],
    )
    def test_mismatched_shared_dimension(self, signature, dim, index):
        """C between rotation/scale/shift, N between source/target, J between prediction/truth."""
        rng = np.random.default_rng(SEED)
        arrays = signature.make(rng, (3,), DIMS)
        arrays[index] = signature.make(rng, (3,), dict(DIMS, **{dim: DIMS[dim] + 1}))[index]
        holders = [a.name for a in signature.args if dim in a.trailing]
        _call(signature, arrays, _names(*holders))


# --------------------------------------------------------------------------- specific cases


class TestMixtureDomain:
    @pytest.mark.parametrize("function", [geometry.mixture_log_likelihood, geometry.mixture_log_likelihood_with_gradient])
    @pytest.mark.parametrize(
        ("column", "value"),
        [(0, -1e-3), (0, -1.0), (3, 0.0), (3, -0.01), (3, -0.0)],
        ids=["weight-slightly-negative", "weight-negative", "variance-zero", "variance-negative", "variance-minus-zero"],
    )
    def test_bad_weight_or_variance(self, rng, function, column, value):
        points = rng.normal(size=(4, 2))
        mixtures = np.stack(
            [rng.uniform(0.1, 1, (4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.uniform(0.1, 1, (4, 3))],
            axis=-1,
        )
        mixtures[2, 1, column] = value
        with pytest.raises(ValueError, match="mixtures"):
            function(points, mixtures)


class TestScaleMode:
    @pytest.mark.parametrize("scale", ["Umeyama", "norm-ratio", "", "least_squares", None, 0, 1, 1.0, b"umeyama"])
    def test_procrustes_bad_scale(self, rng, scale):
        source, target = rng.normal(size=(2, 6, 3))
        with pytest.raises(ValueError, match="scale"):
            geometry.procrustes(source, target, scale=scale)

    @pytest.mark.parametrize("scale", ["Umeyama", "", None, 1])
    def test_pmpjpe_bad_scale(self, rng, scale):
        prediction, ground_truth = rng.normal(size=(2, 17, 3))
        with pytest.raises(ValueError, match="scale"):
            metrics.pmpjpe(prediction, ground_truth, scale=scale)


class TestNotARotation:
    @pytest.mark.parametrize(
        "make",
        [
            lambda r, g: 2.0 * r,
            lambda r, g: -r,  # a reflection: orthonormal, det -1
            lambda r, g: r @ np.diag([1.0, 1.0, -1.0]),
            lambda r, g: r + 1e-4 * g.normal(size=(3, 3)),
            lambda r, g: g.normal(size=(3, 3)),
            lambda r, g: np.zeros((3, 3)),
            lambda r, g: np.ones((3, 3)),
        ],
        ids=["scaled", "negated", "reflection", "perturbed-1e-4", "random", "zeros", "ones"],
    )
    def test_matrix_to_rodrigues_rejects(self, rng, make):
        rotations = random_rotations(rng, (4,))
        rotations[2] = make(rotations[2], rng)
        with pytest.raises(ValueError, match="rotation"):
            geometry.matrix_to_rodrigues(rotations)

    def test_matrix_to_rodrigues_accepts_rounding_noise(self, rng):
        """The documented tolerance is 1e-6: rounding-level noise is still a rotation."""
        rotations = random_rotations(rng, (4,)) + 1e-9 * rng.normal(size=(4, 3, 3))
        assert np.all(np.isfinite(geometry.matrix_to_rodrigues(rotations)))


class TestBehindCamera:
    @pytest.mark.parametrize(
        "function", [geometry.project_perspective, geometry.project_perspective_with_jacobian]
    )
    @pytest.mark.parametrize("depth", [-3.0, -1e-9, 0.0, -0.0])
    def test_point_at_or_behind_camera(self, rng, function, depth):
        camera = random_camera(rng, (2,))
        _, in_camera = random_points_in_view(rng, camera, 6)
        camera["rotation"][1] = np.eye(3)  # camera 1: Xc = X + t exactly
        world = in_camera - camera["translation"][:, None, :]
        world[0] = (in_camera[0] - camera["translation"][0]) @ camera["rotation"][0]
        world[1, 4] = np.array([0.2, -0.1, depth]) - camera["translation"][1]
        with pytest.raises(ValueError, match="points"):
            function(world, *camera_args(camera))

    def test_same_points_in_front_are_fine(self, rng):
        camera = random_camera(rng, (2,))
        world, _ = random_points_in_view(rng, camera, 6)
        assert np.all(np.isfinite(geometry.project_perspective(world, *camera_args(camera))))


class TestDegenerateRot6d:
    @pytest.mark.parametrize(
        "function", [geometry.rot6d_to_matrix, geometry.rot6d_to_matrix_with_jacobian]
    )
    @pytest.mark.parametrize(
        "rows",
        [
            ([0.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
            ([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]),
            ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
            ([1.0, 2.0, 3.0], [3.0, 6.0, 9.0]),
            ([1.0, 2.0, 3.0], [-0.5, -1.0, -1.5]),
            ([0.3, -0.7, 0.2], [0.3, -0.7, 0.2]),
        ],
        ids=["zero-first", "zero-second", "both-zero", "parallel", "anti-parallel", "equal"],
    )
    def test_zero_or_parallel_rows(self, rng, function, rows):
        rot6d = rng.normal(size=(3, 6))
        rot6d[1] = np.concatenate(rows)
        with pytest.raises(ValueError, match="rot6d"):
            function(rot6d)


class TestUndistortDomain:
    def test_distortion_that_cannot_be_inverted(self):
        """k1 = -1: the distorted radius r (1 - r^2) never exceeds 2 / (3 sqrt 3) ~ 0.385, so a
        pixel at normalised radius 1 has no preimage."""
        intrinsics = np.array([1000.0, 1000.0, 960.0, 540.0])
        distortion = np.array([-1.0, 0.0, 0.0, 0.0, 0.0])
        pixels = np.array([[960.0 + 100.0, 540.0], [960.0 + 1000.0, 540.0]])
        with pytest.raises(ValueError, match="pixels"):
            geometry.undistort_points(pixels, intrinsics, distortion)


class TestMetricArguments:
    @pytest.mark.parametrize("threshold", [0.0, -1.0, np.nan, np.inf, -np.inf])
    def test_pck_bad_threshold(self, rng, threshold):
        prediction, ground_truth = rng.normal(size=(2, 17, 3))
        with pytest.raises(ValueError, match="threshold"):
            metrics.pck(prediction, ground_truth, threshold=threshold)

    @pytest.mark.parametrize("threshold", ["150", None, [150.0], np.array([150.0, 50.0]), 150j])
    def test_pck_threshold_not_a_real_number(self, rng, threshold):
        """As everywhere in the API (and set_num_threads): a ValueError naming the argument."""
        prediction, ground_truth = rng.normal(size=(2, 17, 3))
        with pytest.raises(ValueError, match="threshold"):
            metrics.pck(prediction, ground_truth, threshold=threshold)

    @pytest.mark.parametrize("flag", ["no", None, 0, 1, [True]])
    @pytest.mark.parametrize("call", [
        lambda p, g, flag: metrics.nmpjpe(p, g, mirror_fix=flag),
        lambda p, g, flag: metrics.pck(p, g, mirror_fix=flag),
        lambda p, g, flag: metrics.nmpjpe(p, g, per_joint=flag),
        lambda p, g, flag: metrics.pmpjpe(p, g, per_joint=flag),
    ], ids=["nmpjpe-mirror_fix", "pck-mirror_fix", "nmpjpe-per_joint", "pmpjpe-per_joint"])
    def test_switches_are_true_or_false(self, rng, flag, call):
        """Not anything Python finds truthy: "no" would otherwise switch the mirror fix on."""
        prediction, ground_truth = rng.normal(size=(2, 17, 3))
        with pytest.raises(ValueError, match=r"^(mirror_fix|per_joint): expected True or False"):
            call(prediction, ground_truth, flag)
        call(prediction, ground_truth, np.bool_(True))  # numpy's bool is a bool


class TestThreadCount:
    @pytest.mark.parametrize("count", [-1, -100, 1.5, 2.0, "2", None, True, False, [2]])
    def test_set_num_threads_rejects(self, count, restore_threads):
        with pytest.raises(ValueError, match="count"):
            metapose_geom.set_num_threads(count)


def test_an_unpickled_float64_dtype_is_float64_to_the_core():
    """The core compares dtypes by equality: an array whose float64 dtype object came through
    pickle (another object than numpy's own) is taken, and a big-endian one is refused."""
    import pickle

    import metapose_geom as mg

    foreign = pickle.loads(pickle.dumps(np.dtype(np.float64)))
    rows = np.random.default_rng(0).normal(size=(5, 6))
    array = np.empty(rows.shape, dtype=foreign)
    array[...] = rows
    np.testing.assert_array_equal(mg.geometry.rot6d_to_matrix(array), mg.geometry.rot6d_to_matrix(rows))
    np.testing.assert_array_equal(mg._core.rot6d_to_matrix(array), mg.geometry.rot6d_to_matrix(rows))
    with pytest.raises(ValueError, match="float64"):
        mg._core.rot6d_to_matrix(rows.astype(">f8"))
