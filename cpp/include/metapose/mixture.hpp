// Spherical Gaussian-mixture log-likelihood of a 2D point (MetaPose's per-joint evidence).
//
// Parameters per component k: [w_k, mu_x, mu_y, var_k] (variance, not sigma). With
//   e_k = log(w_k + 1e-8) - log(2 pi var_k) - |p - mu_k|^2 / (2 var_k),
//   L   = log sum_k exp(e_k) = m + log sum_k exp(e_k - m),  m = max_k e_k  (log-sum-exp),
// which stays finite however far p is from every mean. The 1e-8 makes zero weights harmless
// (as the original). Gradient: dL/dp = sum_k r_k (mu_k - p) / var_k, r_k = exp(e_k - L).
// Singular cases: var_k <= 0 and w_k < 0 are invalid and rejected by the caller.
//
// The per-component constants do not depend on the point, so a mixture is first *prepared*
// into [log(w + 1e-8) - log(2 pi var), mu_x, mu_y, 1 / (2 var)]; the refiner prepares once and
// evaluates it at every step.
#pragma once

#include <cmath>
#include <limits>

namespace metapose {

inline constexpr double kMixtureWeightFloor = 1e-8;

// mixture (K x 4) -> prepared (K x 4).
template <class T>
inline void prepare_mixture(const T* mixture, int K, T* prepared) {
  constexpr T kLog2Pi = T(1.8378770664093454835606594728112);
  for (int k = 0; k < K; ++k) {
    const T* c = mixture + 4 * k;
    T* out = prepared + 4 * k;
    out[0] = std::log(c[0] + T(kMixtureWeightFloor)) - kLog2Pi - std::log(c[3]);
    out[1] = c[1];
    out[2] = c[2];
    out[3] = T(1) / (T(2) * c[3]);
  }
}

// p (2), prepared mixture (K x 4) -> log-likelihood; gradient (2) d/dp if given.
template <class T>
inline T prepared_mixture_log_likelihood(const T* p, const T* prepared, int K, T* gradient = nullptr) {
  constexpr int kStack = 32;
  T stack[kStack];
  auto exponent = [&](int k) {
    const T* c = prepared + 4 * k;
    const T dx = p[0] - c[1], dy = p[1] - c[2];
    return c[0] - (dx * dx + dy * dy) * c[3];
  };
  T m = -std::numeric_limits<T>::infinity();
  for (int k = 0; k < K; ++k) {
    const T e = exponent(k);
    if (k < kStack) stack[k] = e;
    m = e > m ? e : m;
  }
  T total = 0, gx = 0, gy = 0;
  for (int k = 0; k < K; ++k) {
    const T r = std::exp((k < kStack ? stack[k] : exponent(k)) - m);
    total += r;
    if (gradient != nullptr) {
      const T* c = prepared + 4 * k;
      const T w = T(2) * r * c[3];
      gx += w * (c[1] - p[0]);
      gy += w * (c[2] - p[1]);
    }
  }
  if (gradient != nullptr) {
    gradient[0] = gx / total;
    gradient[1] = gy / total;
  }
  return m + std::log(total);
}

}  // namespace metapose
