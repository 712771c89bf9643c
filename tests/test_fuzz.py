"""Random calls to every raw binding of ``metapose_geom._core`` (the geometry kernels, and at the
end the refiner's stage1 / refiner_objective / refine) and every public wrapper.

Shapes (0 to 4 dimensions, sizes 0 to 5, or valid ones), dtypes (real, bool, complex, object,
strings), layouts (non-contiguous, Fortran order) and values (NaN, inf, huge, tiny, subnormal)
are drawn at random. The only acceptable outcomes:

* ValueError; or
* a result of the shape the arguments imply (``signatures.expected_shapes``), float64 and
  finite everywhere -- and then the arguments must have been valid: a consistent shape with no
  zero size, no NaN or inf in any float argument, a real dtype (public API), a known mode.

Anything else (another exception, a wrong shape, a non-finite number, a crash) fails.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signatures import CORE, PUBLIC, Arg, Signature, as_outputs, expected_shapes

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SPECIALS = [
    np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, -5e-324, 1e-310, 1e-300, 1e-150, 1e150, 1e300, -1e300,
    np.finfo(np.float64).max, -np.finfo(np.float64).max,
]
MAGNITUDES = [1e-300, 1e-150, 1e-20, 1e20, 1e150, 1e300]
OTHER_DTYPES = ["float32", "float16", "int64", "int32", "uint8", "bool", "complex128", "object", "str"]


def _convert(array: np.ndarray, dtype: str) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if dtype == "str":
            return array.astype(str)
        if dtype == "object":
            return array.astype(object)
        return array.astype(dtype)


@st.composite
def call_arrays(draw, signature: Signature) -> list:
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    if draw(st.integers(0, 9)) == 0:
        batch = tuple(draw(st.lists(st.integers(0, 3), min_size=1, max_size=2)))
    dims = {name: draw(st.integers(1, 5)) for name in "JCKN"}
    if draw(st.integers(0, 9)) == 0:
        dims[draw(st.sampled_from("JCKN"))] = 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = [signature.shape_of(arg, batch, dims) for arg in signature.args]
    if all(0 not in s for s in shapes):
        arrays = [np.array(a, dtype=np.float64) for a in signature.make(rng, batch, dims)]
    else:
        arrays = [rng.normal(size=s) for s in shapes]

    # Break nothing (about a third of the calls), one argument, or every argument.
    scope = draw(st.sampled_from(["none", "none", "one", "one", "one", "all"]))
    broken = set()
    if scope == "one":
        broken = {draw(st.integers(0, len(arrays) - 1))}
    elif scope == "all":
        broken = set(range(len(arrays)))

    for index in range(len(arrays)):
        array = np.array(arrays[index], dtype=np.float64)
        if index in broken:
            for _ in range(draw(st.integers(1, 2))):
                array = draw(_mutation(array, rng))
        layout = draw(st.sampled_from(["c"] * 6 + ["strided", "fortran"]))
        if layout == "strided" and array.ndim:
            array = np.repeat(array, 2, axis=-1)[..., ::2]
        elif layout == "fortran":
            array = np.asfortranarray(array)
        arrays[index] = array
    return arrays


@st.composite
def _mutation(draw, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kind = draw(st.sampled_from(["shape", "size", "specials", "specials", "magnitude", "negate", "dtype"]))
    if array.dtype != np.float64:  # already converted: leave it
        return array
    if kind == "shape":
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
        return np.array(rng.normal(size=shape) * 10.0 ** rng.uniform(-3, 3))
    if kind == "size" and array.ndim:
        shape = list(array.shape)
        shape[draw(st.integers(0, array.ndim - 1))] = draw(st.integers(0, 5))
        return np.resize(array, shape)
    if kind == "specials" and array.size:
        array = array.copy()
        for _ in range(draw(st.integers(1, min(3, array.size)))):
            position = np.unravel_index(draw(st.integers(0, array.size - 1)), array.shape)
            array[position] = draw(st.sampled_from(SPECIALS))
        return array
    if kind == "magnitude":
        with np.errstate(all="ignore"):
            return np.array(array * draw(st.sampled_from(MAGNITUDES)))
    if kind == "negate":
        return np.array(-array)
    if kind == "dtype":
        return _convert(array, draw(st.sampled_from(OTHER_DTYPES)))
    return array


def _has_non_finite_float(array) -> bool:
    array = np.asarray(array)
    return array.dtype.kind in "fc" and not np.all(np.isfinite(array))


def _check(signature: Signature, arrays: list, call, *, public: bool, extra_valid: bool = True) -> None:
    expected = expected_shapes(signature, arrays)
    try:
        if public:
            result = call()
        else:
            # the raw core may convert other dtypes (numpy warns on complex -> float): not our concern here
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = call()
    except ValueError:
        return
    shapes = [np.shape(a) for a in arrays]
    dtypes = [np.asarray(a).dtype for a in arrays]
    assert expected is not None, f"{signature.id} accepted inconsistent shapes {shapes}"
    assert extra_valid, f"{signature.id} accepted an invalid mode / option"
    assert not any(_has_non_finite_float(a) for a in arrays), f"{signature.id} accepted NaN or inf ({shapes})"
    if public:
        assert all(d.kind in "fiu" for d in dtypes), f"{signature.id} accepted dtypes {dtypes}"
    outputs = as_outputs(signature, result)
    assert len(outputs) == len(expected), signature.id
    for output, shape in zip(outputs, expected):
        output = np.asarray(output)
        assert output.shape == shape, f"{signature.id}: output shape {output.shape}, expected {shape} for {shapes}"
        assert output.dtype == np.float64, f"{signature.id}: output dtype {output.dtype}"
        assert np.all(np.isfinite(output)), (
            f"{signature.id}: non-finite output for inputs of shapes {shapes}, dtypes {dtypes}:\n"
            + "\n".join(repr(np.asarray(a)) for a in arrays)
        )


@pytest.mark.parametrize("signature", CORE, ids=[s.id for s in CORE])
@FUZZ
@given(data=st.data())
def test_fuzz_raw_core(signature, data):
    arrays = data.draw(call_arrays(signature))
    _check(signature, arrays, lambda: signature.call(arrays), public=False)


@pytest.mark.parametrize("signature", PUBLIC, ids=[s.id for s in PUBLIC])
@FUZZ
@given(data=st.data())
def test_fuzz_public(signature, data):
    arrays = data.draw(call_arrays(signature))
    _check(signature, arrays, lambda: signature.call(arrays), public=True)


# --------------------------------------------------------------------------- options

MODE_SIGNATURES = [s for s in CORE if s.name in ("procrustes", "pmpjpe_per_joint") and s.extra == (0,)]


@pytest.mark.parametrize("signature", MODE_SIGNATURES, ids=[s.id for s in MODE_SIGNATURES])
@FUZZ
@given(data=st.data())
def test_fuzz_raw_scale_mode(signature, data):
    """The raw bindings take the scale mode as an int: 0 and 1 are valid, anything else raises."""
    arrays = data.draw(call_arrays(signature))
    mode = data.draw(st.integers(-(2**31), 2**31 - 1) | st.integers(-3, 4))
    function = signature.resolve()
    _check(signature, arrays, lambda: function(*arrays, mode), public=False, extra_valid=mode in (0, 1))


PCK = next(s for s in PUBLIC if s.name == "pck")


@FUZZ
@given(
    data=st.data(),
    threshold=st.sampled_from([150.0, 1e-3, 1e300, 0.0, -0.0, -1.0, np.nan, np.inf, -np.inf]),
    mirror_fix=st.booleans(),
)
def test_fuzz_pck_options(data, threshold, mirror_fix):
    from metapose_geom import metrics

    arrays = data.draw(call_arrays(PCK))
    valid = bool(np.isfinite(threshold) and threshold > 0)
    _check(PCK, arrays, lambda: metrics.pck(*arrays, threshold=threshold, mirror_fix=mirror_fix), public=True,
           extra_valid=valid)


PROCRUSTES = next(s for s in PUBLIC if s.name == "procrustes")


@FUZZ
@given(data=st.data(), scale=st.sampled_from(["umeyama", "norm_ratio", "UMEYAMA", "", "ratio", None, 0, 1]))
def test_fuzz_procrustes_scale(data, scale):
    from metapose_geom import geometry

    arrays = data.draw(call_arrays(PROCRUSTES))
    _check(PROCRUSTES, arrays, lambda: geometry.procrustes(*arrays, scale=scale), public=True,
           extra_valid=scale in ("umeyama", "norm_ratio"))


# --------------------------------------------------------------------------- refiner bindings
# stage1, refiner_objective and refine live in the same extension (the refiner's part of it):
# the same contract holds for them -- ValueError, or finite outputs of the implied shapes.

H36M_BONES = np.array([(0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (8, 14), (14, 15), (15, 16), (11, 12), (12, 13),
                       (0, 4), (0, 1), (1, 2), (2, 3), (4, 5), (5, 6)], dtype=np.int64)


def _valid_refiner_inputs(rng, frames, cameras, joints, components):
    from conftest import random_mixtures

    mono3d = rng.normal(size=(frames, cameras, joints, 3))
    mixtures = random_mixtures(rng, (frames, cameras, joints), components)
    bones = rng.integers(0, joints, size=(max(1, joints - 1), 2)).astype(np.int64)
    bone_reference = rng.uniform(0.5, 2.0, size=(frames, bones.shape[0]))
    return mono3d, mixtures, bones, bone_reference


def _refiner_shapes(mixtures, x, bones, bone_reference, bone_weight):
    """(B, P) or None when the call must raise."""
    arrays = [np.asarray(a) for a in (mixtures, x, bone_reference)]
    if any(a.dtype != np.float64 or a.size == 0 or not np.all(np.isfinite(a)) for a in arrays):
        return None
    m, xs, ref_lengths = arrays
    if m.ndim != 5 or m.shape[-1] != 4 or xs.ndim != 2 or ref_lengths.ndim != 2:
        return None
    frames, cameras, joints = m.shape[:3]
    if cameras < 2 or xs.shape != (frames, 3 * joints + 10 * cameras):
        return None
    bones = np.asarray(bones)
    if bones.dtype != np.int64 or bones.ndim != 2 or bones.shape[1] != 2 or bones.shape[0] < 1:
        return None
    if np.any(bones < 0) or np.any(bones >= joints) or ref_lengths.shape != (frames, bones.shape[0]):
        return None
    if np.any(m[..., 0] < 0) or np.any(m[..., 3] < 1e-300):
        return None
    if isinstance(bone_weight, bool) or not np.isfinite(bone_weight) or bone_weight < 0:
        return None
    return frames, xs.shape[1]


@st.composite
def refiner_arguments(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    frames, cameras = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 2, 3, 4]))
    joints, components = draw(st.sampled_from([1, 3, 5, 17])), draw(st.integers(1, 3))
    mono3d, mixtures, bones, bone_reference = _valid_refiner_inputs(rng, frames, cameras, joints, components)
    from metapose_geom import _core

    try:
        x = _core.stage1(mono3d)
    except ValueError:  # e.g. one camera, or one joint
        x = rng.normal(size=(frames, 3 * joints + 10 * cameras))
    arrays = [mixtures, x, bone_reference]
    which = draw(st.sampled_from(["none", "none", "mixtures", "x", "bone_reference", "bones"]))
    if which in ("mixtures", "x", "bone_reference"):
        index = ["mixtures", "x", "bone_reference"].index(which)
        arrays[index] = draw(_mutation(np.array(arrays[index]), rng))
    if which == "bones":
        bones = draw(st.sampled_from([
            bones + joints, -bones - 1, bones.astype(np.int32), bones.astype(np.float64), bones[:, :1],
            bones[:0], bones.reshape(-1), H36M_BONES,
        ]))
    bone_weight = draw(st.sampled_from([0.0, 0.0, 0.1, 1, 5.0, 0.5, 1e300, -1.0, np.nan, np.inf, True]))
    return arrays[0], arrays[1], bones, arrays[2], bone_weight


def _check_refiner_outputs(outputs, shapes) -> None:
    for output, shape in zip(outputs, shapes):
        output = np.asarray(output)
        assert output.shape == shape, (output.shape, shape)
        assert output.dtype == np.float64
        assert np.all(np.isfinite(output))


def _make_mono3d(rng, batch, dims):
    return [rng.normal(size=tuple(batch) + (dims["C"], dims["J"], 3))]


_STAGE1 = Signature("stage1", "_core", (Arg("mono3d", ("C", "J", 3)),), (), _make_mono3d)


@FUZZ
@given(data=st.data())
def test_fuzz_raw_stage1(data):
    from metapose_geom import _core

    arrays = data.draw(call_arrays(_STAGE1))
    (mono3d,) = arrays
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = _core.stage1(mono3d)
    except ValueError:
        return
    mono3d = np.asarray(mono3d)
    assert mono3d.dtype == np.float64 and mono3d.ndim >= 3 and mono3d.shape[-1] == 3 and mono3d.size
    assert np.all(np.isfinite(mono3d)) and mono3d.shape[-3] >= 2
    cameras, joints = mono3d.shape[-3:-1]
    _check_refiner_outputs([x], [mono3d.shape[:-3] + (3 * joints + 10 * cameras,)])


@FUZZ
@given(arguments=refiner_arguments())
def test_fuzz_raw_refiner_objective(arguments):
    from metapose_geom import _core

    expected = _refiner_shapes(*arguments)
    try:
        value, gradient = _core.refiner_objective(*arguments)
    except ValueError:
        return
    assert expected is not None, "refiner_objective accepted invalid arguments"
    frames, size = expected
    _check_refiner_outputs([value, gradient], [(frames,), (frames, size)])


@FUZZ
@given(
    arguments=refiner_arguments(),
    steps=st.sampled_from([0, 1, 3, -1]),
    learning_rate=st.sampled_from([1e-2, 0.0, -1e-2, np.nan]),
    history_every=st.sampled_from([0, 1, 2, -1]),
)
def test_fuzz_raw_refine(arguments, steps, learning_rate, history_every):
    from metapose_geom import _core

    expected = _refiner_shapes(*arguments)
    options_valid = steps >= 0 and history_every >= 0 and np.isfinite(learning_rate) and learning_rate >= 0
    try:
        outputs = _core.refine(*arguments, steps, learning_rate, 0.9, 0.999, 1e-7, history_every)
    except ValueError:
        return
    assert expected is not None and options_valid, "refine accepted invalid arguments"
    frames, size = expected
    history = steps // history_every + 1 if history_every > 0 else 0
    _check_refiner_outputs(outputs, [(frames, size), (frames,), (frames, history, size), (frames, history)])
