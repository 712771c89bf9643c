"""Argument checks shared by every module: integers, numbers, choices, flags and float64 arrays.

Each check returns the value in its canonical Python type, or raises :class:`ValueError` whose
message starts with the argument's name and says what was expected and what came. Booleans are
never accepted as numbers (``True`` is not the integer 1 here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]

__all__ = ["as_float64", "check_bool", "check_choice", "check_int", "check_number"]


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]`` (either bound may be None), else ValueError."""
    ok = not _is_bool(value) and isinstance(value, (int, np.integer))
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if high is None:
            expected = "an integer" if low is None else f"an integer >= {low}"
        elif low is None:
            expected = f"an integer <= {high}"
        else:
            expected = f"an integer in [{low}, {high}]"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return int(value)


def check_number(value: Any, name: str, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the bounds, else ValueError.

    ``low_open`` / ``high_open`` exclude the bound itself (``(low, high]`` and so on); a missing
    bound is infinite."""
    ok = not _is_bool(value) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        number = float(value)
        ok = math.isfinite(number)
        ok = ok and (low is None or (number > low if low_open else number >= low))
        ok = ok and (high is None or (number < high if high_open else number <= high))
    if not ok:
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name}: expected a finite number in {bounds}, got {value!r}")
    return number


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``choices``, else ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool if it is True or False (Python or numpy), else ValueError."""
    if not _is_bool(value):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def as_float64(value: ArrayLike, name: str) -> F64:
    """Return ``value`` as a C-contiguous float64 array, or raise ValueError naming ``name``.

    Real numeric dtypes (float, int, unsigned) convert; bool, complex, object and strings do not.
    The array may share memory with ``value`` when that is already float64 and C-contiguous."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:  # ragged nested lists and the like
        raise ValueError(f"{name}: expected a real numeric array, got {type(value).__name__} ({error})") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a real numeric array, got dtype {array.dtype}")
    return np.asarray(array, dtype=np.float64, order="C")  # keeps 0-d arrays 0-d
