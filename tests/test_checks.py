"""_checks: the shared argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from metapose_geom._checks import as_float64, check_bool, check_choice, check_int, check_number


@pytest.mark.parametrize("value", [0, 5, np.int32(3), np.uint8(7)])
def test_int_accepts(value):
    assert check_int(value, "n", 0, 10) == int(value) and type(check_int(value, "n")) is int


@pytest.mark.parametrize("value, match", [
    (True, r"n: expected an integer >= 1, got True"), (np.bool_(True), "integer"), (1.0, "integer"),
    ("3", "integer"), (0, r">= 1"), (None, "integer"),
])
def test_int_rejects(value, match):
    with pytest.raises(ValueError, match=match):
        check_int(value, "n", 1)


def test_int_bounds_message():
    with pytest.raises(ValueError, match=r"k: expected an integer in \[2, 8\], got 9"):
        check_int(9, "k", 2, 8)


@pytest.mark.parametrize("value, ok", [
    (0.0, False), (1e-300, True), (1.0, True), (2, True), (3.0, False), (np.inf, False), (np.nan, False),
    (True, False), ("1", False), (np.float32(2.5), True),
])
def test_number_half_open(value, ok):
    if ok:
        assert check_number(value, "x", 0.0, 3.0, low_open=True, high_open=True) == float(value)
    else:
        with pytest.raises(ValueError, match=r"x: expected a finite number in \(0.0, 3.0\)"):
            check_number(value, "x", 0.0, 3.0, low_open=True, high_open=True)


def test_choice_and_bool():
    assert check_choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"mode: expected one of \('a', 'b'\), got 'c'"):
        check_choice("c", "mode", ("a", "b"))
    assert check_bool(np.bool_(False), "flag") is False
    with pytest.raises(ValueError, match="flag: expected True or False, got 1"):
        check_bool(1, "flag")


def test_as_float64():
    assert as_float64([1, 2], "a").dtype == np.float64
    for bad in ([True], [1j], ["x"], [[1, 2], [3]]):
        with pytest.raises(ValueError, match="a: expected a real numeric array"):
            as_float64(bad, "a")
