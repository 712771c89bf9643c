"""The core's dense layer ``_core.dense(rows, weight, bias, activation, threads)`` (dense.hpp).

* values: ``rows @ weight + bias`` against a long-double reference, within the rounding bound of
  any summation order, ``(I + 1) eps (|rows| @ |weight| + |bias|)``, in float64 and float32, over
  shapes that exercise every tile (full 4-row tiles, the 1-3 last rows, wide, one-vector and
  single-column panels, I = 0); a bias per group of rows; non-contiguous and read-only inputs;
* selu: the same values as the numpy reference :func:`metapose_geom.stage2.forward.selu` (to
  1 ulp; the same C library ``expm1``) and as ``torch.nn.functional.selu`` (a few ulp);
* bits: a row's result does not depend on M, its position, its neighbours, its bias group's
  position, or the thread count (``set_num_threads`` and ``threads=``);
* arguments: every bad one is a ValueError naming it; empty M, O or I work; a result too large
  to allocate is a ValueError (beyond the address space) or a MemoryError, never a crash.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom._core_loader import core
from metapose_geom.stage2.forward import SELU_ALPHA, SELU_SCALE, selu

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
DTYPES = (np.float64, np.float32)
#: (M, I, O): every tile shape of dense.hpp (AVX2: 12 / 24 wide panels, 4 / 8 lanes; SSE2: 6 / 12, 2 / 4)
SHAPES = [(1, 1, 1), (3, 7, 5), (4, 316, 256), (5, 256, 10), (6, 53, 51), (7, 129, 13), (17, 64, 257),
          (130, 33, 24), (4, 0, 12), (2, 300, 1)]


def random_layer(rng: np.random.Generator, M: int, I: int, O: int, dtype=np.float64, groups: int | None = None):
    rows = rng.normal(size=(M, I)).astype(dtype)
    weight = (rng.uniform(-1.0, 1.0, size=(I, O)) / np.sqrt(max(I, 1))).astype(dtype)
    bias = rng.normal(0.0, 0.5, size=(O,) if groups is None else (groups, O)).astype(dtype)
    return rows, weight, bias


def exact(rows: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """rows @ weight + bias in long double (bias (O,) or one row per group of rows)."""
    wide = np.longdouble
    bias = bias.astype(wide)
    if bias.ndim == 2:
        bias = np.repeat(bias, rows.shape[0] // max(bias.shape[0], 1), axis=0)
    return rows.astype(wide) @ weight.astype(wide) + bias


def rounding_bound(rows: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(I + 1) eps (|rows| @ |weight| + |bias|): the error bound of any order of the I + 1 sums."""
    I = rows.shape[1]
    magnitude = np.abs(exact(np.abs(rows), np.abs(weight), np.abs(bias)))
    return (I + 1) * float(np.finfo(rows.dtype).eps) * magnitude


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in units of the last place of b."""
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) / np.spacing(np.abs(b)).astype(np.float64)


# --------------------------------------------------------------------------- values


class TestValues:
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", SHAPES)
    def test_against_a_long_double_product(self, rng, shape, dtype):
        rows, weight, bias = random_layer(rng, *shape, dtype=dtype)
        got = core.dense(rows, weight, bias)
        assert got.dtype == dtype and got.shape == (shape[0], shape[2])
        error = np.abs(got.astype(np.longdouble) - exact(rows, weight, bias))
        assert (error <= rounding_bound(rows, weight, bias)).all(), f"max error {error.max()}"

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_numpy_matmul_agrees(self, rng, dtype):
        rows, weight, bias = random_layer(rng, 301, 256, 256, dtype=dtype)
        got = core.dense(rows, weight, bias)
        tolerance = 257 * float(np.finfo(dtype).eps) * (np.abs(rows) @ np.abs(weight) + np.abs(bias)).max()
        np.testing.assert_allclose(got, rows @ weight + bias, rtol=0, atol=tolerance)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_one_bias_row_per_group_of_rows(self, rng, dtype):
        """bias (G, O): row m takes bias row m // (M / G), e.g. a frame's C camera rows its frame's row."""
        frames, cameras = 7, 4
        rows, weight, bias = random_layer(rng, frames * cameras, 40, 30, dtype=dtype, groups=frames)
        got = core.dense(rows, weight, bias)
        error = np.abs(got.astype(np.longdouble) - exact(rows, weight, bias))
        assert (error <= rounding_bound(rows, weight, np.repeat(bias, cameras, axis=0))).all()
        # the same bits as adding the group's bias row by hand: the chain starts from the bias value
        for frame in range(frames):
            part = slice(frame * cameras, (frame + 1) * cameras)
            np.testing.assert_array_equal(got[part], core.dense(rows[part], weight, bias[frame]))
        # one group is the shared bias
        np.testing.assert_array_equal(core.dense(rows, weight, bias[:1]), core.dense(rows, weight, bias[0]))

    def test_zero_input_width_gives_the_bias(self, rng):
        bias = rng.normal(size=(3, 5))
        np.testing.assert_array_equal(core.dense(np.zeros((6, 0)), np.zeros((0, 5)), bias), np.repeat(bias, 2, axis=0))

    def test_non_contiguous_and_read_only_inputs(self, rng):
        rows, weight, bias = random_layer(rng, 9, 20, 14)
        expected = core.dense(rows, weight, bias, "selu")
        wide = np.zeros((18, 40))
        wide[::2, ::2] = rows
        np.testing.assert_array_equal(core.dense(wide[::2, ::2], np.asfortranarray(weight), bias, "selu"), expected)
        for array in (rows, weight, bias):
            array.setflags(write=False)
        np.testing.assert_array_equal(core.dense(rows, weight, bias, "selu"), expected)

    def test_non_finite_values_stay_in_their_row(self, rng):
        rows, weight, bias = random_layer(rng, 6, 12, 9)
        rows[2, 3], rows[4, 0] = np.nan, np.inf
        got = core.dense(rows, weight, bias)
        assert np.isnan(got[2]).all() and np.isinf(got[4]).all()
        with_selu = core.dense(rows, weight, bias, "selu")  # selu(-inf) = -alpha scale
        np.testing.assert_array_equal(with_selu[4], np.where(got[4] > 0, np.inf, -SELU_ALPHA * SELU_SCALE))
        clean = [0, 1, 3, 5]
        np.testing.assert_array_equal(with_selu[clean], core.dense(rows[clean], weight, bias, "selu"))


# --------------------------------------------------------------------------- selu


class TestSelu:
    VALUES = np.concatenate([np.linspace(-30.0, 30.0, 4001), [-1e-300, -0.0, 0.0, 1e-300, 700.0, -700.0, -1e-8]])

    def through_dense(self, values: np.ndarray, dtype) -> np.ndarray:
        """selu(values) by the core: an identity layer whose bias is the values."""
        values = values.astype(dtype)
        return core.dense(np.zeros((1, 1), dtype), np.zeros((1, values.size), dtype), values, "selu")[0]

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_the_numpy_selu_to_one_ulp(self, dtype):
        got = self.through_dense(self.VALUES, dtype)
        expected = selu(self.VALUES.astype(dtype))
        assert got.dtype == dtype
        assert (ulps(got, expected) <= 1).all()

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_selu_of_a_product_is_selu_of_the_product(self, rng, dtype):
        rows, weight, bias = random_layer(rng, 11, 60, 70, dtype=dtype)
        plain = core.dense(rows, weight, bias)
        assert (plain < 0).mean() > 0.3 and (plain > 0).mean() > 0.3
        assert (ulps(core.dense(rows, weight, bias, "selu"), selu(plain.copy())) <= 1).all()

    @pytest.mark.skipif(UNDER_ASAN, reason="torch is not loaded under AddressSanitizer (.ci/sanitize tests the core)")
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_torchs_selu(self, dtype):
        torch = pytest.importorskip("torch")
        values = self.VALUES.astype(dtype)
        expected = torch.nn.functional.selu(torch.from_numpy(values.copy())).numpy()
        got = self.through_dense(values, dtype)
        # torch's vectorised exp / expm1 are not the C library's: a few ulp apart
        assert (ulps(got, expected) <= 4).all()
        assert got[values > 0].tolist() == expected[values > 0].tolist()  # scale * x: one rounding in both


# --------------------------------------------------------------------------- bits


class TestSameBits:
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", [(316, 256), (256, 51), (53, 10), (7, 3)])
    def test_a_row_alone_and_at_every_position(self, rng, dtype, shape):
        I, O = shape
        rows, weight, bias = random_layer(rng, 13, I, O, dtype=dtype)
        batch = core.dense(rows, weight, bias, "selu")
        for m in range(13):
            np.testing.assert_array_equal(core.dense(rows[m:m + 1], weight, bias, "selu")[0], batch[m])
            for count in (2, 3, 4, 5, 8):  # the row at every position of a batch of each size
                for position in range(count):
                    others = rng.normal(size=(count, I)).astype(dtype)
                    others[position] = rows[m]
                    np.testing.assert_array_equal(core.dense(others, weight, bias, "selu")[position], batch[m])

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_a_frames_group_anywhere_in_a_batch(self, rng, dtype):
        cameras = 4
        rows, weight, bias = random_layer(rng, 5 * cameras, 45, 33, dtype=dtype, groups=5)
        batch = core.dense(rows, weight, bias, "selu")
        for shift in range(5):  # the same frames rotated: each frame's rows land elsewhere
            order = np.roll(np.arange(5), shift)
            moved = rows.reshape(5, cameras, -1)[order].reshape(5 * cameras, -1)
            got = core.dense(moved, weight, bias[order], "selu").reshape(5, cameras, -1)
            np.testing.assert_array_equal(got, batch.reshape(5, cameras, -1)[order])

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_thread_counts(self, rng, restore_threads, dtype):
        rows, weight, bias = random_layer(rng, 1001, 256, 256, dtype=dtype)  # ~32 rows per thread at least
        mg.set_num_threads(1)
        one = core.dense(rows, weight, bias, "selu")
        for threads in (2, 3, 7):
            mg.set_num_threads(threads)
            np.testing.assert_array_equal(core.dense(rows, weight, bias, "selu"), one)
            mg.set_num_threads(1)
            np.testing.assert_array_equal(core.dense(rows, weight, bias, "selu", threads), one)
        np.testing.assert_array_equal(core.dense(rows[500:501], weight, bias, "selu")[0], one[500])


# --------------------------------------------------------------------------- arguments


class TestArguments:
    def test_bad_arguments_are_value_errors_naming_them(self):
        rows, weight, bias = np.zeros((4, 3)), np.zeros((3, 5)), np.zeros(5)
        cases = [
            ((rows.tolist(), weight, bias), r"^rows: expected a numpy array of float64 or float32, got list"),
            ((rows, weight.tolist(), bias), r"^weight: expected a numpy array"),
            ((rows, weight, 0.0), r"^bias: expected a numpy array"),
            ((rows[0], weight, bias), r"^rows: expected shape \(M, I\), got \(3,\)"),
            ((rows[None], weight, bias), r"^rows: expected shape \(M, I\), got \(1, 4, 3\)"),
            ((rows.astype(np.int64), weight, bias), r"^rows: expected dtype float64 or float32, got int64"),
            ((rows.astype(np.float16), weight, bias), r"^rows: expected dtype float64 or float32, got float16"),
            ((rows.astype(">f8"), weight, bias), r"^rows: expected dtype float64 or float32, got >f8"),
            ((rows, weight[:2], bias), r"^weight: expected shape \(I, O\) with I = 3 \(rows' width\), got \(2, 5\)"),
            ((rows, weight[0], bias), r"^weight: expected shape \(I, O\)"),
            ((rows, weight.astype(np.float32), bias), r"^weight: expected dtype float64 \(rows' dtype\), got float32"),
            ((rows.astype(np.float32), weight, bias.astype(np.float32)), r"^weight: expected dtype float32"),
            ((rows, weight, bias.astype(np.float32)), r"^bias: expected dtype float64 \(rows' dtype\)"),
            ((rows, weight, bias[:4]), r"^bias: expected shape \(5,\) \(O, weight's width\) or \(G, 5\) with G dividing M = 4"),
            ((rows, weight, np.zeros((3, 5))), r"^bias: expected shape \(5,\)"),
            ((rows, weight, np.zeros((0, 5))), r"^bias: expected shape \(5,\)"),
            ((rows, weight, np.zeros((4, 4))), r"^bias: expected shape \(5,\)"),
            ((rows, weight, np.zeros((1, 4, 5))), r"^bias: expected shape \(5,\)"),
        ]
        for arguments, message in cases:
            with pytest.raises(ValueError, match=message):
                core.dense(*arguments)
        for activation in ("relu", "SELU", None, 1, b"selu"):
            with pytest.raises(ValueError, match=r"^activation: expected 'none' or 'selu', got "):
                core.dense(rows, weight, bias, activation)
        for threads in (0, -1, 1 << 17, 1.5, True, "2"):
            with pytest.raises(ValueError, match=r"^threads: expected an integer"):
                core.dense(rows, weight, bias, "none", threads)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_empty_sizes(self, dtype):
        empty = core.dense(np.zeros((0, 3), dtype), np.ones((3, 4), dtype), np.ones(4, dtype), "selu")
        assert empty.shape == (0, 4) and empty.dtype == dtype
        assert core.dense(np.zeros((0, 3), dtype), np.ones((3, 4), dtype), np.ones((0, 4), dtype)).shape == (0, 4)
        assert core.dense(np.zeros((2, 3), dtype), np.ones((3, 0), dtype), np.ones(0, dtype)).shape == (2, 0)
        assert core.dense(np.zeros((0, 0), dtype), np.ones((0, 0), dtype), np.ones(0, dtype)).shape == (0, 0)

    def test_a_result_beyond_the_address_space_is_a_value_error(self):
        rows = np.broadcast_to(np.zeros((1, 0)), (2**59, 0))  # no memory: zero columns
        with pytest.raises(ValueError, match=r"^rows, weight: the result \(M, O\) = \(576460752303423488, 3\) is too large"):
            core.dense(rows, np.zeros((0, 3)), np.zeros(3))

    @pytest.mark.skipif(UNDER_ASAN, reason="AddressSanitizer aborts on an allocation this large instead of failing it")
    def test_a_result_too_large_for_memory_is_a_memory_error(self):
        rows = np.broadcast_to(np.zeros((1, 0)), (2**40, 0))
        with pytest.raises(MemoryError):
            core.dense(rows, np.zeros((0, 3)), np.zeros(3))
