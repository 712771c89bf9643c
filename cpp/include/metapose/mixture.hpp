// Spherical Gaussian-mixture log-likelihood of a 2D point (MetaPose's per-joint evidence).
//
// Parameters per component k: [w_k, mu_x, mu_y, var_k] (variance, not sigma). With
//   e_k = log(w_k + 1e-8) - log(2 pi var_k) - |p - mu_k|^2 / (2 var_k),
//   L   = log sum_k exp(e_k) = m + log sum_k exp(e_k - m),  m = max_k e_k  (log-sum-exp),
// which stays finite however far p is from every mean. The 1e-8 makes zero weights harmless
// (as the original). Gradient: dL/dp = sum_k r_k (mu_k - p) / var_k, r_k = exp(e_k - L).
// Singular cases: var_k <= 0 and w_k < 0 are invalid and rejected by the caller.
//
// The per-component constants do not depend on the point, so mixtures are first *prepared* into
// c_k = log(w_k + 1e-8) - log(2 pi var_k), mu_k and h_k = 1 / (2 var_k), stored field-major over
// a block of N mixtures so that the evaluation vectorises over points; the refiner prepares once
// per frame and evaluates at every step. exp_nonpositive is a branch-free, vectorisable exp for
// the arguments e_k - m <= 0, and log_positive a vectorisable log, exact for normal positive
// numbers (the library's exp and log are scalar calls).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "linalg.hpp"

// a * b + c, fused where the target has FMA (then exact to one rounding, and the same in scalar and
// vector code), plain otherwise.
#if defined(__FMA__)
#define METAPOSE_MADD(a, b, c) std::fma((a), (b), (c))
#else
#define METAPOSE_MADD(a, b, c) ((a) * (b) + (c))
#endif

namespace metapose {

inline constexpr double kMixtureWeightFloor = 1e-8;

// exp(x) for x <= 0 to about 1 ulp; arguments below -700 give exp(-700) (~1e-304), which is
// negligible beside the largest term exp(0) = 1 that every log-sum-exp here contains.
inline double exp_nonpositive(double x) {
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2 split so n * kLn2Hi is exact
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kShifter = 6755399441055744.0;          // 1.5 * 2^52: adding it rounds to an integer
  x = x < -700.0 ? -700.0 : x;
  const double shifted = METAPOSE_MADD(x, kLog2e, kShifter);
  const double n = shifted - kShifter;
  const double r = METAPOSE_MADD(-n, kLn2Lo, METAPOSE_MADD(-n, kLn2Hi, x));  // |r| <= ln(2) / 2
  // Taylor series of e^r to degree 13: truncation below 4e-18 relative on |r| <= 0.347.
  double p = 1.0 / 6227020800.0;
  p = METAPOSE_MADD(p, r, 1.0 / 479001600.0);
  p = METAPOSE_MADD(p, r, 1.0 / 39916800.0);
  p = METAPOSE_MADD(p, r, 1.0 / 3628800.0);
  p = METAPOSE_MADD(p, r, 1.0 / 362880.0);
  p = METAPOSE_MADD(p, r, 1.0 / 40320.0);
  p = METAPOSE_MADD(p, r, 1.0 / 5040.0);
  p = METAPOSE_MADD(p, r, 1.0 / 720.0);
  p = METAPOSE_MADD(p, r, 1.0 / 120.0);
  p = METAPOSE_MADD(p, r, 1.0 / 24.0);
  p = METAPOSE_MADD(p, r, 1.0 / 6.0);
  p = METAPOSE_MADD(p, r, 0.5);
  p = METAPOSE_MADD(p, r, 1.0);
  p = METAPOSE_MADD(p, r, 1.0);
  // 2^n from the integer left in the low bits of `shifted`.
  std::int64_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  const std::int64_t exponent = (bits - std::int64_t{0x4338000000000000}) + 1023;
  const std::uint64_t scale_bits = static_cast<std::uint64_t>(exponent) << 52;
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

// log(x) to about 2 ulp, branch-free so that loops over it vectorise (the library's log is a
// scalar call). x = 2^k f with f in [sqrt(1/2), sqrt(2)), and log f = 2 atanh(s), s = (f - 1) /
// (f + 1), |s| < 0.172, summed to s^23 (the first term left out is below 1e-17 relative); k ln 2
// is added in two parts. Subnormals are scaled by 2^54 first; 0 gives -inf, inf gives inf, and a
// negative x or NaN gives NaN, as the library's log.
inline double log_positive(double x) {
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kSqrt2 = 1.41421356237309504880;
  constexpr double kSmallest = std::numeric_limits<double>::min();  // smallest normal
  constexpr double kLargest = std::numeric_limits<double>::max();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const bool subnormal = x < kSmallest;
  const double y = subnormal ? x * 18014398509481984.0 : x;  // 2^54
  std::int64_t bits;
  std::memcpy(&bits, &y, sizeof bits);
  const std::int64_t exponent = ((bits >> 52) & 0x7ff) - 1023;
  const std::uint64_t mantissa_bits =
      (static_cast<std::uint64_t>(bits) & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;  // f in [1, 2)
  double f;
  std::memcpy(&f, &mantissa_bits, sizeof f);
  const bool halve = f >= kSqrt2;
  f = halve ? 0.5 * f : f;
  const double k = static_cast<double>(exponent) + (halve ? 1.0 : 0.0) - (subnormal ? 54.0 : 0.0);
  const double s = (f - 1.0) / (f + 1.0);
  const double z = s * s;
  double p = 1.0 / 23;
  p = METAPOSE_MADD(p, z, 1.0 / 21);
  p = METAPOSE_MADD(p, z, 1.0 / 19);
  p = METAPOSE_MADD(p, z, 1.0 / 17);
  p = METAPOSE_MADD(p, z, 1.0 / 15);
  p = METAPOSE_MADD(p, z, 1.0 / 13);
  p = METAPOSE_MADD(p, z, 1.0 / 11);
  p = METAPOSE_MADD(p, z, 1.0 / 9);
  p = METAPOSE_MADD(p, z, 1.0 / 7);
  p = METAPOSE_MADD(p, z, 1.0 / 5);
  p = METAPOSE_MADD(p, z, 1.0 / 3);
  const double log_f = METAPOSE_MADD(2.0 * s * z, p, 2.0 * s);
  const double result = METAPOSE_MADD(k, kLn2Hi, METAPOSE_MADD(k, kLn2Lo, log_f));
  // Outside (0, largest]: 0 -> -inf, inf -> inf, negative or NaN -> NaN (x - x is NaN for both).
  const double special = x == 0.0 ? -kInf : (x == kInf ? kInf : (x - x) / 0.0);
  return x > 0.0 && x <= kLargest ? result : special;
}

template <class T>
inline T log_positive(T x) {
  return std::log(x);  // other scalar types: the library log
}

template <class T>
inline T exp_nonpositive(T x) {
  return std::exp(x);  // other scalar types: the library exp
}

// N mixtures (N x K x 4, [w, mu_x, mu_y, var] per component) -> prepared (4 K stride), field-major:
// value f of component k of mixture n at prepared[(f K + k) stride + n], fields c, mu_x, mu_y, h,
// with stride >= N. Padding entries n >= N are left as they are: all zero makes a padding point
// that contributes a zero gradient. Weights must be finite and >= 0 and variances finite and
// >= 1e-300 (the bindings check), so that both logs see normal numbers.
template <class T>
inline void prepare_mixtures(const T* mixtures, int N, int K, T* prepared, int stride) {
  constexpr T kLog2Pi = T(1.8378770664093454835606594728112);
  for (int k = 0; k < K; ++k) {
    METAPOSE_VECTORIZE
    for (int n = 0; n < N; ++n) {
      const T* c = mixtures + 4 * (K * n + k);
      prepared[(0 * K + k) * stride + n] = log_positive(c[0] + T(kMixtureWeightFloor)) - kLog2Pi - log_positive(c[3]);
      prepared[(1 * K + k) * stride + n] = c[1];
      prepared[(2 * K + k) * stride + n] = c[2];
      prepared[(3 * K + k) * stride + n] = T(0.5) / c[3];  // 1 / (2 var) without overflowing 2 var
    }
  }
}

// Rounds a count of points up to a whole number of 4-double vectors, so that the evaluation
// loops have no scalar remainder.
template <class Int>
inline Int padded_count(Int n) {
  return (n + 3) & ~Int(3);
}

// Any K: two passes over the components with the points innermost. `scratch` holds (K + 2) N values.
template <class T>
inline void evaluate_mixtures_any_k(const T* px_in, const T* py_in, int N, const T* prepared, int K, T* gx_out,
                              T* gy_out, T* values, T* scratch) {
  // The buffers never overlap; saying so lets the compiler vectorise without run-time checks.
  const T* METAPOSE_RESTRICT px = px_in;
  const T* METAPOSE_RESTRICT py = py_in;
  T* METAPOSE_RESTRICT gx = gx_out;
  T* METAPOSE_RESTRICT gy = gy_out;
  T* METAPOSE_RESTRICT m = scratch;
  T* METAPOSE_RESTRICT total = scratch + N;
  T* METAPOSE_RESTRICT exponents = scratch + 2 * N;  // K N: e_k of point n at [k N + n]
  for (int n = 0; n < N; ++n) {
    m[n] = -std::numeric_limits<T>::infinity();
    total[n] = gx[n] = gy[n] = T(0);
  }
  for (int k = 0; k < K; ++k) {
    const T* METAPOSE_RESTRICT c0 = prepared + k * N;
    const T* METAPOSE_RESTRICT mx = prepared + (K + k) * N;
    const T* METAPOSE_RESTRICT my = prepared + (2 * K + k) * N;
    const T* METAPOSE_RESTRICT h = prepared + (3 * K + k) * N;
    T* METAPOSE_RESTRICT e = exponents + k * N;
    METAPOSE_VECTORIZE
    for (int n = 0; n < N; ++n) {
      const T dx = px[n] - mx[n], dy = py[n] - my[n];
      e[n] = METAPOSE_MADD(-METAPOSE_MADD(dy, dy, dx * dx), h[n], c0[n]);
      m[n] = e[n] > m[n] ? e[n] : m[n];
    }
  }
  for (int k = 0; k < K; ++k) {
    const T* METAPOSE_RESTRICT mx = prepared + (K + k) * N;
    const T* METAPOSE_RESTRICT my = prepared + (2 * K + k) * N;
    const T* METAPOSE_RESTRICT h = prepared + (3 * K + k) * N;
    const T* METAPOSE_RESTRICT e = exponents + k * N;
    METAPOSE_VECTORIZE
    for (int n = 0; n < N; ++n) {
      const T r = exp_nonpositive(e[n] - m[n]);
      const T w = r * h[n];
      total[n] += r;
      gx[n] = METAPOSE_MADD(-w, px[n] - mx[n], gx[n]);
      gy[n] = METAPOSE_MADD(-w, py[n] - my[n], gy[n]);
    }
  }
  METAPOSE_VECTORIZE
  for (int n = 0; n < N; ++n) {  // the factor 2 of 2 h_k = 1 / var_k, and the division by sum_k r_k
    const T to_gradient = T(2) / total[n];
    gx[n] *= to_gradient;
    gy[n] *= to_gradient;
  }
  if (values != nullptr) {
    METAPOSE_VECTORIZE
    for (int n = 0; n < N; ++n) values[n] = m[n] + log_positive(total[n]);  // 1 <= total <= K
  }
}

// K fixed at compile time: one loop over the points (vectorised across points), the components
// unrolled in registers.
template <class T, int K>
inline void evaluate_mixtures_fixed_k(const T* px_in, const T* py_in, int N, const T* prepared, T* gx_out,
                                      T* gy_out, T* values) {
  const T* METAPOSE_RESTRICT px = px_in;
  const T* METAPOSE_RESTRICT py = py_in;
  const T* METAPOSE_RESTRICT c0 = prepared;
  const T* METAPOSE_RESTRICT mx = prepared + K * N;
  const T* METAPOSE_RESTRICT my = prepared + 2 * K * N;
  const T* METAPOSE_RESTRICT h = prepared + 3 * K * N;
  T* METAPOSE_RESTRICT gx = gx_out;
  T* METAPOSE_RESTRICT gy = gy_out;
  METAPOSE_VECTORIZE
  for (int n = 0; n < N; ++n) {
    T e[K], dx[K], dy[K];
    T m = -std::numeric_limits<T>::infinity();
    METAPOSE_UNROLL
    for (int k = 0; k < K; ++k) {
      dx[k] = px[n] - mx[k * N + n];
      dy[k] = py[n] - my[k * N + n];
      e[k] = METAPOSE_MADD(-METAPOSE_MADD(dy[k], dy[k], dx[k] * dx[k]), h[k * N + n], c0[k * N + n]);
      m = e[k] > m ? e[k] : m;
    }
    // dL/dp = -sum_k 2 r_k h_k (p - mu_k) / sum_k r_k (h_k = 1 / (2 var_k)), one division per point.
    T total = 0, sx = 0, sy = 0;
    METAPOSE_UNROLL
    for (int k = 0; k < K; ++k) {
      const T r = exp_nonpositive(e[k] - m);
      const T w = r * h[k * N + n];
      total += r;
      sx = METAPOSE_MADD(-w, dx[k], sx);
      sy = METAPOSE_MADD(-w, dy[k], sy);
    }
    const T to_gradient = T(2) / total;
    gx[n] = sx * to_gradient;
    gy[n] = sy * to_gradient;
  }
  // The values are asked for only at history points and at the end, so a second pass computes them.
  if (values != nullptr) {
    METAPOSE_VECTORIZE
    for (int n = 0; n < N; ++n) {
      T m = -std::numeric_limits<T>::infinity();
      T e[K];
      METAPOSE_UNROLL
      for (int k = 0; k < K; ++k) {
        const T ddx = px[n] - mx[k * N + n], ddy = py[n] - my[k * N + n];
        e[k] = METAPOSE_MADD(-METAPOSE_MADD(ddy, ddy, ddx * ddx), h[k * N + n], c0[k * N + n]);
        m = e[k] > m ? e[k] : m;
      }
      T total = 0;
      METAPOSE_UNROLL
      for (int k = 0; k < K; ++k) total += exp_nonpositive(e[k] - m);
      values[n] = m + log_positive(total);  // 1 <= total <= K
    }
  }
}

// N points (px, py) against their N prepared mixtures: gradients d/dp into gx, gy (N each) and,
// if `values` is given, the log-likelihoods (N). `scratch` holds (K + 2) N values.
template <class T>
inline void evaluate_mixtures(const T* px, const T* py, int N, const T* prepared, int K, T* gx, T* gy, T* values,
                              T* scratch) {
  switch (K) {
    case 1: return evaluate_mixtures_fixed_k<T, 1>(px, py, N, prepared, gx, gy, values);
    case 2: return evaluate_mixtures_fixed_k<T, 2>(px, py, N, prepared, gx, gy, values);
    case 3: return evaluate_mixtures_fixed_k<T, 3>(px, py, N, prepared, gx, gy, values);
    case 4: return evaluate_mixtures_fixed_k<T, 4>(px, py, N, prepared, gx, gy, values);
    case 5: return evaluate_mixtures_fixed_k<T, 5>(px, py, N, prepared, gx, gy, values);
    case 6: return evaluate_mixtures_fixed_k<T, 6>(px, py, N, prepared, gx, gy, values);
    case 8: return evaluate_mixtures_fixed_k<T, 8>(px, py, N, prepared, gx, gy, values);
    default: return evaluate_mixtures_any_k(px, py, N, prepared, K, gx, gy, values, scratch);
  }
}

}  // namespace metapose
