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
// per frame and evaluates at every step, with the vectorisable exp_nonpositive (the arguments
// e_k - m are <= 0) and log_positive of fastmath.hpp.
#pragma once

#include <cmath>
#include <limits>

#include "fastmath.hpp"

namespace metapose {

inline constexpr double kMixtureWeightFloor = 1e-8;

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
