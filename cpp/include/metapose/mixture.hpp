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
//
// Memory: a general K (one not unrolled at compile time) is summed kMixtureTile components at a
// time, with the log-sum-exp kept relative to the running maximum (MixtureSums): after each tile
// the sums so far are rescaled by exp(m_old - m_new). Its scratch is thus bounded whatever K is
// (mixture_scratch_size), and a caller can prepare the components a tile at a time too
// (prepare_mixture_components), so that no temporary grows with K. With K <= kMixtureTile there is
// one tile and no rescaling: the bits are those of the two-pass sum.
#pragma once

#include <cmath>
#include <limits>

#include "fastmath.hpp"

namespace metapose {

inline constexpr double kMixtureWeightFloor = 1e-8;

inline constexpr int kMixtureTile = 64;  // components per tile of the general-K path

// Components [first, first + count) of N mixtures (N x K x 4, [w, mu_x, mu_y, var] per component)
// -> prepared (4 count stride), field-major: value f of component first + k of mixture n at
// prepared[(f count + k) stride + n], fields c, mu_x, mu_y, h, with stride >= N. Padding entries
// n >= N are left as they are: all zero makes a padding point that contributes a zero gradient.
// Weights must be finite and >= 0 and variances finite and >= 1e-300 (the bindings check), so that
// both logs see normal numbers.
template <class T>
inline void prepare_mixture_components(const T* mixtures, int N, int K, int first, int count, T* prepared,
                                       int stride) {
  constexpr T kLog2Pi = T(1.8378770664093454835606594728112);
  for (int k = 0; k < count; ++k) {
    METAPOSE_VECTORIZE
    for (int n = 0; n < N; ++n) {
      const T* c = mixtures + 4 * (static_cast<long long>(K) * n + first + k);
      prepared[(0 * count + k) * stride + n] =
          log_positive(c[0] + T(kMixtureWeightFloor)) - kLog2Pi - log_positive(c[3]);
      prepared[(1 * count + k) * stride + n] = c[1];
      prepared[(2 * count + k) * stride + n] = c[2];
      prepared[(3 * count + k) * stride + n] = T(0.5) / c[3];  // 1 / (2 var) without overflowing 2 var
    }
  }
}

// All K components of N mixtures (N x K x 4) -> prepared (4 K stride), as above.
template <class T>
inline void prepare_mixtures(const T* mixtures, int N, int K, T* prepared, int stride) {
  prepare_mixture_components(mixtures, N, K, 0, K, prepared, stride);
}

// Scratch values evaluate_mixtures (and MixtureSums) needs for N points: bounded in K.
inline long long mixture_scratch_size(long long K, long long N) {
  return ((K < kMixtureTile ? K : kMixtureTile) + 3) * N;
}

// The log-sum-exp of N points over their mixtures' components, summed a tile of components at a
// time: m (the largest e_k so far), total = sum_k exp(e_k - m) and the gradient sums
// gx, gy = -sum_k exp(e_k - m) h_k (p - mu_k) (times 2 / total at the end). `scratch` holds
// mixture_scratch_size(K, N) values for tiles of up to kMixtureTile components, and `m` and `total`
// live in it; gx and gy are the caller's outputs.
template <class T>
class MixtureSums {
 public:
  MixtureSums(const T* px, const T* py, int N, T* gx, T* gy, T* scratch)
      : px_(px), py_(py), N_(N), gx_(gx), gy_(gy), m_(scratch), total_(scratch + N), max_(scratch + 2 * N),
        exponents_(scratch + 3 * N) {
    for (int n = 0; n < N; ++n) {
      m_[n] = -std::numeric_limits<T>::infinity();
      total_[n] = gx_[n] = gy_[n] = T(0);
    }
  }

  // Adds `count` <= kMixtureTile components, prepared field-major with stride N: value f of
  // component k of point n at prepared[f field_stride + k N + n].
  void add(const T* prepared, int count, long long field_stride) {
    const T* METAPOSE_RESTRICT px = px_;
    const T* METAPOSE_RESTRICT py = py_;
    T* METAPOSE_RESTRICT gx = gx_;
    T* METAPOSE_RESTRICT gy = gy_;
    T* METAPOSE_RESTRICT m = m_;
    T* METAPOSE_RESTRICT total = total_;
    T* METAPOSE_RESTRICT m_new = max_;
    const int N = N_;
    for (int n = 0; n < N; ++n) m_new[n] = m[n];
    for (int k = 0; k < count; ++k) {
      const T* METAPOSE_RESTRICT c0 = prepared + k * N;
      const T* METAPOSE_RESTRICT mx = prepared + field_stride + k * N;
      const T* METAPOSE_RESTRICT my = prepared + 2 * field_stride + k * N;
      const T* METAPOSE_RESTRICT h = prepared + 3 * field_stride + k * N;
      T* METAPOSE_RESTRICT e = exponents_ + k * N;
      METAPOSE_VECTORIZE
      for (int n = 0; n < N; ++n) {
        const T dx = px[n] - mx[n], dy = py[n] - my[n];
        e[n] = METAPOSE_MADD(-METAPOSE_MADD(dy, dy, dx * dx), h[n], c0[n]);
        m_new[n] = e[n] > m_new[n] ? e[n] : m_new[n];
      }
    }
    // The sums so far, relative to the new maximum; none before the first finite e_k (the sums of
    // a point whose e_k have all been -inf so far are NaN, and are dropped).
    METAPOSE_VECTORIZE
    for (int n = 0; n < N; ++n) {
      const bool any = m[n] > -std::numeric_limits<T>::infinity();
      const T scale = any ? exp_nonpositive(m[n] - m_new[n]) : T(0);
      total[n] = any ? total[n] * scale : T(0);
      gx[n] = any ? gx[n] * scale : T(0);
      gy[n] = any ? gy[n] * scale : T(0);
      m[n] = m_new[n];
    }
    for (int k = 0; k < count; ++k) {
      const T* METAPOSE_RESTRICT mx = prepared + field_stride + k * N;
      const T* METAPOSE_RESTRICT my = prepared + 2 * field_stride + k * N;
      const T* METAPOSE_RESTRICT h = prepared + 3 * field_stride + k * N;
      const T* METAPOSE_RESTRICT e = exponents_ + k * N;
      METAPOSE_VECTORIZE
      for (int n = 0; n < N; ++n) {
        const T r = exp_nonpositive(e[n] - m[n]);
        const T w = r * h[n];
        total[n] += r;
        gx[n] = METAPOSE_MADD(-w, px[n] - mx[n], gx[n]);
        gy[n] = METAPOSE_MADD(-w, py[n] - my[n], gy[n]);
      }
    }
  }

  // The gradients d/dp into gx, gy and, if `values` is given, the log-likelihoods (N).
  void finish(T* values) {
    T* METAPOSE_RESTRICT gx = gx_;
    T* METAPOSE_RESTRICT gy = gy_;
    const T* METAPOSE_RESTRICT m = m_;
    const T* METAPOSE_RESTRICT total = total_;
    const int N = N_;
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

 private:
  const T* px_;
  const T* py_;
  int N_;
  T* gx_;
  T* gy_;
  T* m_;
  T* total_;
  T* max_;
  T* exponents_;
};

// Any K: the components a tile at a time (MixtureSums), two passes over each with the points
// innermost. `scratch` holds mixture_scratch_size(K, N) values.
template <class T>
inline void evaluate_mixtures_any_k(const T* px, const T* py, int N, const T* prepared, int K, T* gx, T* gy,
                                    T* values, T* scratch) {
  MixtureSums<T> sums(px, py, N, gx, gy, scratch);
  const long long field_stride = static_cast<long long>(K) * N;
  for (int first = 0; first < K; first += kMixtureTile) {
    const int count = K - first < kMixtureTile ? K - first : kMixtureTile;
    sums.add(prepared + static_cast<long long>(first) * N, count, field_stride);
  }
  sums.finish(values);
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
// if `values` is given, the log-likelihoods (N). `scratch` holds mixture_scratch_size(K, N) values.
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
