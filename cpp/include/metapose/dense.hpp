// Dense layers for stage-2 inference: out = activation(rows @ weight + bias), row by row.
//
// rows (M, I), weight (I, O) row-major, bias one row of O values per group of consecutive rows
// (G groups of M / G rows; G = 1 is the usual shared bias), out (M, O). Every output value is one
// chain of multiply-adds in a fixed order,
//   acc = bias[g, o];  acc = acc + rows[m, i] * weight[i, o]  for i = 0, 1, .., I - 1,
// each step fused where the target has FMA (METAPOSE_MADD, fastmath.hpp) and in every code path,
// then the activation. There is no reduction across vector lanes, so the vector width, the row and
// column blocking, the row's position, M and the thread count never change a value: a row's result
// is the same bits alone, in any batch and on any thread count (the stage-2 network's guarantee).
//
// Speed: the product is in axpy form, vectorised across the output index. A tile of 4 rows by 3
// vectors of outputs keeps its 12 accumulators in registers while i runs, so each weight vector
// loaded feeds 4 multiply-adds and each row value broadcast feeds 3; a panel of weight columns
// (I x tile width) stays in the L1 cache across a block of rows, and the panel's next rows are
// prefetched (a frame alone reads each weight once: its speed is the memory's). The last 1-3 rows
// run tiles of 12 / rows vectors, the last columns one-vector and one-value tiles: the same
// per-value chain.
//
// selu is torch's: scale * x for x > 0, scale * alpha * expm1(x) otherwise, the constants rounded
// to T as numpy rounds them (so the same values as stage2/forward.py's numpy selu, with the
// library's expm1 / expm1f that numpy also calls).
// Singular cases: none; non-finite inputs propagate as IEEE arithmetic makes them (NaN, inf). An
// empty M or O does nothing; I = 0 gives the bias.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "fastmath.hpp"

#if defined(__SSE2__) || defined(__AVX__)
#include <immintrin.h>
#endif

namespace metapose {

enum class Activation { kNone, kSelu };

// torch's selu constants (torch.nn.SELU; Klambauer et al. 2017), and alpha * scale rounded once
// in double, as numpy's selu uses them.
inline constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
inline constexpr double kSeluScale = 1.0507009873554804934193349852946;
inline constexpr double kSeluNegative = kSeluAlpha * kSeluScale;

template <class T>
inline T selu(T x) {
  return x > T(0) ? x * static_cast<T>(kSeluScale) : std::expm1(x) * static_cast<T>(kSeluNegative);
}

namespace dense_detail {

// The vector type of the tiles, a struct per target: load, store, broadcast and madd (a * b + c,
// fused exactly when METAPOSE_MADD is, so that vector and scalar columns agree to the bit).
// AVX with FMA: 256-bit registers; SSE2 (x86-64's baseline, a portable wheel): 128-bit ones with
// a separate multiply and add; elsewhere one value at a time.
#if defined(__AVX__) && defined(__FMA__)
inline constexpr bool kHasSimd = true;
template <class T>
struct Simd;
template <>
struct Simd<double> {
  using V = __m256d;
  static constexpr int kLanes = 4;
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V broadcast(double x) { return _mm256_set1_pd(x); }
  static V madd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
};
template <>
struct Simd<float> {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V broadcast(float x) { return _mm256_set1_ps(x); }
  static V madd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
};
#elif defined(__SSE2__) && !defined(__FMA__)
inline constexpr bool kHasSimd = true;
template <class T>
struct Simd;
template <>
struct Simd<double> {
  using V = __m128d;
  static constexpr int kLanes = 2;
  static V load(const double* p) { return _mm_loadu_pd(p); }
  static void store(double* p, V v) { _mm_storeu_pd(p, v); }
  static V broadcast(double x) { return _mm_set1_pd(x); }
  static V madd(V a, V b, V c) { return _mm_add_pd(_mm_mul_pd(a, b), c); }
};
template <>
struct Simd<float> {
  using V = __m128;
  static constexpr int kLanes = 4;
  static V load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, V v) { _mm_storeu_ps(p, v); }
  static V broadcast(float x) { return _mm_set1_ps(x); }
  static V madd(V a, V b, V c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
};
#else
inline constexpr bool kHasSimd = false;  // no vector struct: every column is a Scalar one
template <class T>
struct Simd;
#endif

// One value at a time: the remainder columns (and every column without a vector struct).
template <class T>
struct Scalar {
  using V = T;
  static constexpr int kLanes = 1;
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static V broadcast(T x) { return x; }
  static V madd(V a, V b, V c) { return METAPOSE_MADD(a, b, c); }
};

inline constexpr int kTileRows = 4;
// Accumulator vectors per tile: 4 rows x 3 vectors (+ 3 weight vectors and a broadcast: the 16
// registers of AVX2), and as many for the narrower tiles of the last rows (1 row x 12 vectors), so
// that FMAs on independent accumulators cover the FMA latency whatever the row count.
inline constexpr int kAccumulators = 12;
inline constexpr std::size_t kBlockRows = 64;  // rows per pass over the weight panels
// The weight rows of a panel are O values apart, a stride the hardware prefetchers follow poorly:
// a tile asks for the row this many ahead (measured: a frame's 4 rows against weights not in the
// cache, 1.4x faster at 16 than without; no change for weights in the cache).
inline constexpr std::size_t kPrefetchRows = 16;

// out[r, 0:N L] = bias_r[0:N L] + sum_i rows[r, i] weight[i, 0:N L] for R rows, N vectors of L
// lanes each (Vec's); the loops have constant bounds, so the compiler unrolls them and holds acc in
// registers.
template <class Vec, int R, int N, class T>
inline void tile(const T* METAPOSE_RESTRICT rows, std::size_t I, const T* METAPOSE_RESTRICT weight, std::size_t O,
                 const T* const* bias, T* METAPOSE_RESTRICT out) {
  using V = typename Vec::V;
  constexpr int L = Vec::kLanes;
  V acc[R][N];
  METAPOSE_UNROLL
  for (int r = 0; r < R; ++r) {
    METAPOSE_UNROLL
    for (int n = 0; n < N; ++n) acc[r][n] = Vec::load(bias[r] + n * L);
  }
  for (std::size_t i = 0; i < I; ++i) {
    const T* w = weight + i * O;
#if defined(__GNUC__) || defined(__clang__)
    if (i + kPrefetchRows < I) {  // both cache lines the panel's row may straddle
      __builtin_prefetch(w + kPrefetchRows * O);
      __builtin_prefetch(w + kPrefetchRows * O + (N * L - 1));
    }
#endif
    V column[N];
    METAPOSE_UNROLL
    for (int n = 0; n < N; ++n) column[n] = Vec::load(w + n * L);
    METAPOSE_UNROLL
    for (int r = 0; r < R; ++r) {
      const V x = Vec::broadcast(rows[r * I + i]);
      METAPOSE_UNROLL
      for (int n = 0; n < N; ++n) acc[r][n] = Vec::madd(x, column[n], acc[r][n]);
    }
  }
  METAPOSE_UNROLL
  for (int r = 0; r < R; ++r) {
    METAPOSE_UNROLL
    for (int n = 0; n < N; ++n) Vec::store(out + r * O + n * L, acc[r][n]);
  }
}

// Columns [column, column + N lanes) of the rows [begin, end), R at a time ((end - begin) % R == 0).
template <class Vec, int R, int N, class T>
inline void panel(const T* rows, std::size_t I, const T* weight, std::size_t O, const T* bias, std::size_t group,
                  T* out, std::size_t begin, std::size_t end, std::size_t column) {
  for (std::size_t first = begin; first < end; first += R) {
    const T* row_bias[R];
    for (std::size_t r = 0; r < R; ++r) row_bias[r] = bias + ((first + r) / group) * O + column;
    tile<Vec, R, N>(rows + first * I, I, weight + column, O, row_bias, out + first * O + column);
  }
}

// Every column of the rows [begin, end), R at a time: column panels outside, rows inside, so that a
// panel (I x its width) is reused by every row; full-width panels, then one-vector ones, then
// single columns.
template <class T, int R>
inline void sweep(const T* rows, std::size_t I, const T* weight, std::size_t O, const T* bias, std::size_t group,
                  T* out, std::size_t begin, std::size_t end) {
  std::size_t o = 0;
  if constexpr (kHasSimd) {
    constexpr int kVectors = kAccumulators / R;
    constexpr std::size_t kLanes = Simd<T>::kLanes, kWide = kVectors * kLanes;
    for (; o + kWide <= O; o += kWide)
      panel<Simd<T>, R, kVectors>(rows, I, weight, O, bias, group, out, begin, end, o);
    for (; o + kLanes <= O; o += kLanes) panel<Simd<T>, R, 1>(rows, I, weight, O, bias, group, out, begin, end, o);
    // fewer than kLanes columns are left (the explicit bound spares GCC a false overflow warning)
    for (std::size_t k = 0; k < kLanes && o + k < O; ++k)
      panel<Scalar<T>, R, 1>(rows, I, weight, O, bias, group, out, begin, end, o + k);
  } else {
    for (; o < O; ++o) panel<Scalar<T>, R, 1>(rows, I, weight, O, bias, group, out, begin, end, o);
  }
}

}  // namespace dense_detail

// out[m] = activation(rows[m] @ weight + bias[m / group]) for the rows m in [begin, end); rows
// (M, I) and out (M, O) row-major, weight (I, O) row-major, bias (M / group, O). Pure: reads
// rows, weight and bias, writes out[begin:end] only, so disjoint ranges can run on threads.
template <class T>
void dense_rows(const T* rows, std::size_t I, const T* weight, std::size_t O, const T* bias, std::size_t group,
                Activation activation, T* out, std::size_t begin, std::size_t end) {
  using namespace dense_detail;
  for (std::size_t block = begin; block < end; block += kBlockRows) {
    const std::size_t block_end = std::min(end, block + kBlockRows);
    const std::size_t tiled = block + (block_end - block) / kTileRows * kTileRows;
    sweep<T, kTileRows>(rows, I, weight, O, bias, group, out, block, tiled);
    switch (block_end - tiled) {  // the last rows: narrower tiles, the same per-value chain
      case 3: sweep<T, 3>(rows, I, weight, O, bias, group, out, tiled, block_end); break;
      case 2: sweep<T, 2>(rows, I, weight, O, bias, group, out, tiled, block_end); break;
      case 1: sweep<T, 1>(rows, I, weight, O, bias, group, out, tiled, block_end); break;
      default: break;
    }
    if (activation == Activation::kSelu) {
      clean_vector_state();  // expm1 is a scalar library call
      T* y = out + block * O;
      const std::size_t n = (block_end - block) * O;
      for (std::size_t k = 0; k < n; ++k) y[k] = selu(y[k]);
    }
  }
}

}  // namespace metapose
