// Pose-error metrics as MetaPose computes them, per joint (callers average or threshold).
//
// PMPJPE: the prediction is mapped onto the ground truth by similarity Procrustes
//   (procrustes.hpp, norm-ratio or Umeyama scale), then e_j = |s P_j R + t - G_j|.
// NMPJPE: both poses, in the same camera frame, are centred on their mean joint; the prediction
//   is scaled by |G_c| / |P_c| (Frobenius), e_j = |s P_c,j - G_c,j|. With the mirror fix the
//   prediction with its depth (z) negated is also scored and the copy with the smaller mean
//   error is kept (monocular depth is ambiguous up to that mirror).
// Both work on copies divided by each pose's largest coordinate, so that no square over- or
// underflows at any magnitude, and scale the errors back by the ground truth's.
// Singular case: a prediction with all joints coincident cannot be aligned or rescaled; its
// errors are the ground truth's distances from its own centre.
#pragma once

#include <cmath>
#include <limits>

#include "procrustes.hpp"

namespace metapose {

// prediction, ground_truth (J x 3) -> errors (J); `unit` holds 6 J values.
template <class T>
inline void pmpjpe_per_joint(const T* prediction, const T* ground_truth, int J, ProcrustesScale mode, T* errors,
                             T* unit) {
  T* p = unit;
  T* g = unit + 3 * J;
  to_unit_coordinates(prediction, J, p);
  const T scale_g = to_unit_coordinates(ground_truth, J, g);
  T R[9], s, t[3];
  const bool coincident = procrustes_unit(p, g, J, mode, R, &s, t);
  T mean_g[3] = {0, 0, 0};
  for (int j = 0; j < J; ++j)
    for (int k = 0; k < 3; ++k) mean_g[k] += g[3 * j + k] / T(J);
  for (int j = 0; j < J; ++j) {
    T d2 = 0;
    for (int k = 0; k < 3; ++k) {
      const T* q = p + 3 * j;
      const T aligned = coincident ? mean_g[k] : s * (q[0] * R[k] + q[1] * R[3 + k] + q[2] * R[6 + k]) + t[k];
      const T d = aligned - g[3 * j + k];
      d2 += d * d;
    }
    errors[j] = scale_g * std::sqrt(d2);
  }
}

// prediction, ground_truth (J x 3) -> errors (J); `unit` holds 6 J values.
template <class T>
inline void nmpjpe_per_joint(const T* prediction, const T* ground_truth, int J, bool mirror_fix, T* errors, T* unit) {
  T* p = unit;  // centred, in units of the pose's largest coordinate
  T* g = unit + 3 * J;
  to_unit_coordinates(prediction, J, p);
  const T scale_g = to_unit_coordinates(ground_truth, J, g);
  T mean_p[3] = {0, 0, 0}, mean_g[3] = {0, 0, 0};
  for (int j = 0; j < J; ++j)
    for (int k = 0; k < 3; ++k) {
      mean_p[k] += p[3 * j + k];
      mean_g[k] += g[3 * j + k];
    }
  for (int k = 0; k < 3; ++k) {
    mean_p[k] /= T(J);
    mean_g[k] /= T(J);
  }
  T norm_p = 0, norm_g = 0, spread = 0;
  for (int j = 0; j < J; ++j)
    for (int k = 0; k < 3; ++k) {
      p[3 * j + k] -= mean_p[k];
      g[3 * j + k] -= mean_g[k];
      norm_p += p[3 * j + k] * p[3 * j + k];
      norm_g += g[3 * j + k] * g[3 * j + k];
      spread = std::fmax(spread, std::fabs(p[3 * j + k]));
    }
  // Scale taking the centred prediction onto the ground truth's norm, in these units; a
  // coincident prediction (spread at rounding level) contributes nothing.
  const T s = spread > T(16) * std::numeric_limits<T>::epsilon() ? std::sqrt(norm_g / norm_p) : T(0);
  // depth_sign = +1 scores the prediction as given, -1 its depth mirror; per-joint errors are
  // written only when `out` is given.
  auto score = [&](T depth_sign, T* out) {
    T total = 0;
    for (int j = 0; j < J; ++j) {
      T d2 = 0;
      for (int k = 0; k < 3; ++k) {
        const T sign = (k == 2) ? depth_sign : T(1);
        const T d = sign * s * p[3 * j + k] - g[3 * j + k];
        d2 += d * d;
      }
      const T e = scale_g * std::sqrt(d2);
      if (out != nullptr) out[j] = e;
      total += e;
    }
    return total;
  };
  const T direct = score(T(1), errors);
  if (mirror_fix && score(T(-1), nullptr) < direct) score(T(-1), errors);
}

}  // namespace metapose
