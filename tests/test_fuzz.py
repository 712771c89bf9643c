"""Random calls to every raw binding of ``metapose_geom._core`` (the geometry kernels, and at the
end the refiner's stage1 / refiner_objective / refine) and every public wrapper.

Shapes (0 to 4 dimensions, sizes 0 to 5, or valid ones), dtypes (real, bool, complex, object,
strings), layouts (non-contiguous, Fortran order) and values (NaN, inf, huge, tiny, subnormal)
are drawn at random. Before each call a predicate (:func:`expect`) decides from the arguments
alone what must happen:

* **must raise** ValueError, whose message names the argument (and says what is wrong when
  there is one thing wrong): an inconsistent shape or a zero size, NaN or inf in a float
  argument, a dtype the function does not take (raw core: anything but float64; public API:
  anything but a real dtype), an unknown mode or option;
* **must succeed** with a result of the shape the arguments imply (``signatures.expected_shapes``),
  float64 and finite everywhere: every argument as the signature's generator of valid inputs
  made it (in any memory layout), with valid options;
* **either** of the two, for well-formed arguments whose values were mutated (huge, tiny,
  negated, converted to another real dtype): the function may refuse values outside its domain
  or float64's range, but if it answers, the answer has the right shape and is finite.

Each test also holds a floor on the share of calls that succeeded (:func:`run_fuzz`), so a
binding that refused everything fails even where hypothesis happened to draw no must-succeed call.
Anything else (another exception, a wrong shape, a non-finite number, a crash) fails.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from typing import NamedTuple

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


class Call(NamedTuple):
    """One generated call: its arrays, and whether each is as the valid-input generator made it
    (possibly in another memory layout), i.e. no mutation touched any of them."""

    arrays: list
    intact: bool


@st.composite
def call_arrays(draw, signature: Signature) -> Call:
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
    return Call(arrays, intact=not broken)


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


# --------------------------------------------------------------------------- the predicate

SUCCEED, RAISE, EITHER = "must succeed", "must raise", "either"
SUCCEEDED, RAISED = "succeeded", "raised"

#: what each kind of defect makes the message say (after the argument's name)
SHAPE = r"shape|is empty|does not match|expected P ="
NON_FINITE = r"NaN or inf"
RAW_DTYPE = r"expected (dtype float64|a numpy array of float64)"
PUBLIC_DTYPE = r"expected a real numeric array"


class Expectation(NamedTuple):
    outcome: str  #: SUCCEED, RAISE or EITHER
    match: str | None = None  #: for RAISE: a regex the ValueError's message must match


def expectation(names: list[str], problems: list[str], must_succeed: bool) -> Expectation:
    """RAISE when there are ``problems`` (regexes of what the message says about each; one
    starting with ``^`` is the whole message's start), with a message that starts with one of
    ``names`` -- and, for a single problem, says it; else SUCCEED when ``must_succeed``, else EITHER."""
    if len(problems) == 1 and problems[0].startswith("^"):
        return Expectation(RAISE, problems[0])
    if problems:
        named = "^(" + "|".join(re.escape(n) for n in names) + r")\b"
        return Expectation(RAISE, named + (f".*({problems[0]})" if len(problems) == 1 else ""))
    return Expectation(SUCCEED if must_succeed else EITHER)


def expect(signature: Signature, call: Call, *, public: bool, option: tuple[str, str | None] = ("", None)
           ) -> Expectation:
    """What a call of ``signature`` on ``call.arrays`` must do (see the module docstring).

    ``option`` is (name, problem): an extra argument's name and, when its value is invalid, the
    regex of what the message says about it."""
    arrays = call.arrays
    option_name, option_problem = option
    problems = []
    if expected_shapes(signature, arrays) is None:
        problems.append(SHAPE)
    if any(_has_non_finite_float(a) for a in arrays):
        problems.append(NON_FINITE)
    dtypes = [np.asarray(a).dtype for a in arrays]
    if public and any(d.kind not in "fiu" for d in dtypes):
        problems.append(PUBLIC_DTYPE)
    if not public and any(d != np.float64 for d in dtypes):
        problems.append(RAW_DTYPE)
    if option_problem is not None:
        problems.append(option_problem)
    names = signature.arg_names() + ([option_name] if option_name else [])
    return expectation(names, problems, must_succeed=call.intact)


def check_call(expected: Expectation, call, check_result, describe: str) -> str:
    """Make the call as ``expected`` says; returns SUCCEEDED or RAISED."""
    if expected.outcome == RAISE:
        with pytest.raises(ValueError, match=expected.match):
            call()
        return RAISED
    if expected.outcome == SUCCEED:
        result = call()  # a ValueError here fails the test
    else:
        try:
            result = call()
        except ValueError as error:
            assert re.match(r"^[a-z_0-9]+(, [a-z_0-9]+)*: ", str(error)), f"{describe}: unnamed error {error}"
            return RAISED
    check_result(result)
    return SUCCEEDED


def run_fuzz(body, floor: float, strategy=None) -> Counter:
    """Run ``body(case)`` on FUZZ's examples of ``strategy`` (default ``st.data()``); ``body``
    returns SUCCEEDED or RAISED. Then at least ``floor`` of the calls must have succeeded (the
    floors are set well below the shares these deterministic runs reach)."""
    outcomes: Counter = Counter()

    @FUZZ
    @given(case=st.data() if strategy is None else strategy)
    def run(case):
        outcomes[body(case)] += 1

    run()
    total = sum(outcomes.values())
    assert total >= FUZZ.max_examples // 2, outcomes
    assert outcomes[SUCCEEDED] >= floor * total, f"only {outcomes[SUCCEEDED]} of {total} calls succeeded: {outcomes}"
    return outcomes


def _ignoring_conversion_warnings(function):
    """The raw core is handed arrays as they are; numpy may warn while building them. Not ours."""
    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return function()
    return call


def _checker(signature: Signature, arrays: list):
    """The checks on a result: the implied shapes, float64, finite everywhere."""
    def check(result):
        expected = expected_shapes(signature, arrays)
        shapes = [np.shape(a) for a in arrays]
        outputs = as_outputs(signature, result)
        assert len(outputs) == len(expected), signature.id
        for output, shape in zip(outputs, expected):
            output = np.asarray(output)
            assert output.shape == shape, f"{signature.id}: output shape {output.shape}, expected {shape} for {shapes}"
            assert output.dtype == np.float64, f"{signature.id}: output dtype {output.dtype}"
            assert np.all(np.isfinite(output)), (
                f"{signature.id}: non-finite output for inputs of shapes {shapes}, "
                f"dtypes {[np.asarray(a).dtype for a in arrays]}:\n" + "\n".join(repr(np.asarray(a)) for a in arrays)
            )
    return check


def fuzz_signature(signature: Signature, data, *, public: bool, function=None, option=("", None)) -> str:
    """One random call of ``signature`` (or of ``function(*arrays)``), checked against :func:`expect`."""
    call = data.draw(call_arrays(signature))
    expected = expect(signature, call, public=public, option=option)
    function = function or (lambda *arrays: signature.call(list(arrays)))
    make = lambda: function(*call.arrays)  # noqa: E731
    if not public:
        make = _ignoring_conversion_warnings(make)
    return check_call(expected, make, _checker(signature, call.arrays), signature.id)


#: the share of calls that must succeed: about a third of the calls are left intact and some
#: mutated ones succeed too (38% to 68% per signature in these deterministic runs)
FLOOR = 0.25


@pytest.mark.parametrize("signature", CORE, ids=[s.id for s in CORE])
def test_fuzz_raw_core(signature):
    run_fuzz(lambda data: fuzz_signature(signature, data, public=False), FLOOR)


@pytest.mark.parametrize("signature", PUBLIC, ids=[s.id for s in PUBLIC])
def test_fuzz_public(signature):
    run_fuzz(lambda data: fuzz_signature(signature, data, public=True), FLOOR)


# --------------------------------------------------------------------------- options

MODE_SIGNATURES = [s for s in CORE if s.name in ("procrustes", "pmpjpe_per_joint") and s.extra == (0,)]


@pytest.mark.parametrize("signature", MODE_SIGNATURES, ids=[s.id for s in MODE_SIGNATURES])
def test_fuzz_raw_scale_mode(signature):
    """The raw bindings take the scale mode as an int: 0 and 1 are valid, anything else raises."""
    function = signature.resolve()

    def body(data):
        mode = data.draw(st.sampled_from([0, 1]) | st.integers(-(2**31), 2**31 - 1) | st.integers(-3, 4))
        problem = None if mode in (0, 1) else r"expected an integer in \[0, 1\]"
        return fuzz_signature(signature, data, public=False, function=lambda *arrays: function(*arrays, mode),
                              option=("scale", problem))

    run_fuzz(body, FLOOR / 2)  # about two fifths of the modes are valid


PCK = next(s for s in PUBLIC if s.name == "pck")


def test_fuzz_pck_options():
    from metapose_geom import metrics

    def body(data):
        threshold = data.draw(st.sampled_from([150.0, 1e-3, 1e300, 0.0, -0.0, -1.0, np.nan, np.inf, -np.inf]))
        mirror_fix = data.draw(st.booleans())
        problem = None if np.isfinite(threshold) and threshold > 0 else r"expected a .*number"
        return fuzz_signature(PCK, data, public=True, option=("threshold", problem),
                              function=lambda *arrays: metrics.pck(*arrays, threshold=threshold,
                                                                   mirror_fix=mirror_fix))

    run_fuzz(body, FLOOR / 2)  # a third of the thresholds are valid


PROCRUSTES = next(s for s in PUBLIC if s.name == "procrustes")


def test_fuzz_procrustes_scale():
    from metapose_geom import geometry

    def body(data):
        scale = data.draw(st.sampled_from(["umeyama", "norm_ratio", "UMEYAMA", "", "ratio", None, 0, 1]))
        problem = None if scale in ("umeyama", "norm_ratio") else r"expected one of"
        return fuzz_signature(PROCRUSTES, data, public=True, option=("scale", problem),
                              function=lambda *arrays: geometry.procrustes(*arrays, scale=scale))

    run_fuzz(body, FLOOR / 2)  # a quarter of the modes are valid


# --------------------------------------------------------------------------- refiner bindings
# stage1, refiner_objective and refine live in the same extension (the refiner's part of it):
# the same contract holds for them -- must raise, must succeed with finite outputs of the implied
# shapes, or (mutated values, a huge bone weight) either.

H36M_BONES = np.array([(0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (8, 14), (14, 15), (15, 16), (11, 12), (12, 13),
                       (0, 4), (0, 1), (1, 2), (2, 3), (4, 5), (5, 6)], dtype=np.int64)

#: bone weights: valid and moderate, valid but huge (the objective may overflow), invalid
MODERATE_WEIGHTS = [0.0, 0.1, 1, 5.0, 0.5]
OTHER_WEIGHTS = [1e300, -1.0, np.nan, np.inf, True]


def _valid_refiner_inputs(rng, frames, cameras, joints, components):
    from conftest import random_mixtures

    mono3d = rng.normal(size=(frames, cameras, joints, 3))
    mixtures = random_mixtures(rng, (frames, cameras, joints), components)
    bones = rng.integers(0, joints, size=(max(1, joints - 1), 2)).astype(np.int64)
    bone_reference = rng.uniform(0.5, 2.0, size=(frames, bones.shape[0]))
    return mono3d, mixtures, bones, bone_reference


def _refiner_problems(mixtures, x, bones, bone_reference, bone_weight) -> list[str]:
    """What is wrong with these arguments (regexes of the message's words), [] when nothing."""
    problems = []
    arrays = [np.asarray(a) for a in (mixtures, x, bone_reference)]
    if any(a.dtype != np.float64 for a in arrays):
        problems.append(RAW_DTYPE)
    elif any(not np.all(np.isfinite(a)) for a in arrays):
        problems.append(NON_FINITE)
    m, xs, ref_lengths = arrays
    bones = np.asarray(bones)
    if any(a.size == 0 for a in arrays) or m.ndim != 5 or m.shape[-1] != 4 or xs.ndim != 2 or ref_lengths.ndim != 2:
        problems.append(SHAPE)
    else:
        frames, cameras, joints = m.shape[:3]
        if cameras < 2:
            problems.append(r"^mixtures: at least two cameras")
        elif xs.shape != (frames, 3 * joints + 10 * cameras):
            problems.append(SHAPE)
        if bones.dtype != np.int64 or bones.ndim != 2 or bones.shape[1] != 2 or bones.shape[0] < 1:
            problems.append(r"^bones: expected")
        elif np.any(bones < 0) or np.any(bones >= joints):
            problems.append(r"^bones: joint index .* outside")
        elif ref_lengths.shape != (frames, bones.shape[0]):
            problems.append(SHAPE)
        if m.dtype == np.float64 and (np.any(m[..., 0] < 0) or np.any(m[..., 3] < 1e-300)):
            problems.append(r"^mixtures: (weights|variances) must be")
    if isinstance(bone_weight, bool) or not np.isfinite(bone_weight) or bone_weight < 0:
        problems.append(r"^bone_weight: expected a (finite )?number")
    return problems


class RefinerCall(NamedTuple):
    arguments: tuple  #: mixtures, x, bones, bone_reference, bone_weight
    intact: bool  #: arrays as generated and a moderate bone weight


@st.composite
def refiner_arguments(draw) -> RefinerCall:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    frames, cameras = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 2, 3, 4]))
    joints, components = draw(st.sampled_from([1, 3, 5, 17])), draw(st.integers(1, 3))
    mono3d, mixtures, bones, bone_reference = _valid_refiner_inputs(rng, frames, cameras, joints, components)
    from metapose_geom import _core

    if cameras >= 2 and joints >= 2:
        x = _core.stage1(mono3d)
    else:  # stage 1 needs two cameras and two distinct joints
        x = rng.normal(size=(frames, 3 * joints + 10 * cameras))
    arrays = [mixtures, x, bone_reference]
    which = draw(st.sampled_from(["none", "none", "none", "mixtures", "x", "bone_reference", "bones"]))
    if which in ("mixtures", "x", "bone_reference"):
        index = ["mixtures", "x", "bone_reference"].index(which)
        arrays[index] = draw(_mutation(np.array(arrays[index]), rng))
    if which == "bones":
        bones = draw(st.sampled_from([
            bones + joints, -bones - 1, bones.astype(np.int32), bones.astype(np.float64), bones[:, :1],
            bones[:0], bones.reshape(-1), H36M_BONES,
        ]))
    bone_weight = draw(st.sampled_from(MODERATE_WEIGHTS) | st.sampled_from(OTHER_WEIGHTS))
    intact = which == "none" and any(bone_weight is w for w in MODERATE_WEIGHTS)
    return RefinerCall((arrays[0], arrays[1], bones, arrays[2], bone_weight), intact)


REFINER_NAMES = ["mixtures", "x", "x0", "bones", "bone_reference", "bone_weight", "steps", "learning_rate",
                 "history_every"]


def _refiner_checker(shapes):
    def check(outputs):
        for output, shape in zip(outputs, shapes):
            output = np.asarray(output)
            assert output.shape == shape, (output.shape, shape)
            assert output.dtype == np.float64
            assert np.all(np.isfinite(output))
    return check


def _make_mono3d(rng, batch, dims):
    return [rng.normal(size=tuple(batch) + (dims["C"], dims["J"], 3))]


_STAGE1 = Signature("stage1", "_core", (Arg("mono3d", ("C", "J", 3)),), (), _make_mono3d)


def test_fuzz_raw_stage1():
    from metapose_geom import _core

    def body(data):
        call = data.draw(call_arrays(_STAGE1))
        (mono3d,) = call.arrays
        expected = expect(_STAGE1, call, public=False)
        shape = np.shape(mono3d)
        if expected.outcome != RAISE:  # well-formed, so (..., C, J, 3)
            if shape[-3] < 2:
                expected = expectation(["mono3d"], [r"^mono3d: at least two cameras"], False)
            elif shape[-2] < 2:  # one joint: the centred guess is exactly 0
                expected = expectation(["mono3d"], [r"^mono3d: a view's guess has all joints at one point"], False)
        size = 3 * shape[-2] + 10 * shape[-3] if len(shape) >= 3 else 0
        return check_call(expected, _ignoring_conversion_warnings(lambda: _core.stage1(mono3d)),
                          lambda x: _refiner_checker([shape[:-3] + (size,)])([x]), "stage1")

    run_fuzz(body, FLOOR / 2)  # one argument, so a third is intact, and a fifth of those has one camera


def test_fuzz_raw_refiner_objective():
    from metapose_geom import _core

    def body(call):
        problems = _refiner_problems(*call.arguments)
        expected = expectation(REFINER_NAMES, problems, call.intact)
        frames, size = np.shape(call.arguments[0])[:1] + np.shape(call.arguments[1])[-1:] if not problems else (0, 0)
        return check_call(expected, lambda: _core.refiner_objective(*call.arguments),
                          _refiner_checker([(frames,), (frames, size)]), "refiner_objective")

    run_fuzz(body, FLOOR, refiner_arguments())


def test_fuzz_raw_refine():
    from metapose_geom import _core

    def body(data):
        call = data.draw(refiner_arguments())
        # valid options at least half the time each
        steps = data.draw(st.sampled_from([0, 1, 3]) | st.sampled_from([0, 1, 3, -1]))
        learning_rate = data.draw(st.sampled_from([1e-2, 0.0]) | st.sampled_from([1e-2, 0.0, -1e-2, np.nan]))
        history_every = data.draw(st.sampled_from([0, 1, 2]) | st.sampled_from([0, 1, 2, -1]))
        problems = _refiner_problems(*call.arguments)
        if steps < 0:
            problems.append(r"^steps: expected an integer in")
        if history_every < 0:
            problems.append(r"^history_every: expected an integer in")
        if not (np.isfinite(learning_rate) and learning_rate >= 0):
            problems.append(r"^learning_rate: expected a finite number")
        expected = expectation(REFINER_NAMES, problems, call.intact)
        frames, size = np.shape(call.arguments[0])[:1] + np.shape(call.arguments[1])[-1:] if not problems else (0, 0)
        history = steps // history_every + 1 if history_every > 0 else 0
        return check_call(
            expected, lambda: _core.refine(*call.arguments, steps, learning_rate, 0.9, 0.999, 1e-7, history_every),
            _refiner_checker([(frames, size), (frames,), (frames, history, size), (frames, history)]), "refine")

    run_fuzz(body, FLOOR / 2)  # the options are invalid in about two calls of five
