"""Random calls to every raw binding of ``metapose_geom._core`` and every public wrapper.

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

from signatures import CORE, PUBLIC, Signature, as_outputs, expected_shapes

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
