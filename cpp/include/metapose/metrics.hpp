// Pose-error metrics as MetaPose computes them, per joint (callers average or threshold).
//
// PMPJPE: the prediction is mapped onto the ground truth by similarity Procrustes
//   (procrustes.hpp, norm-ratio or Umeyama scale), then e_j = |s P_j R + t - G_j|.
// NMPJPE: both poses, in the same camera frame, are centred on their mean joint; the prediction
//   is scaled by |G_c| / |P_c| (Frobenius), e_j = |s P_c,j - G_c,j|. With the mirror fix the
//   prediction with its depth (z) negated is also scored and the copy with the smaller mean
//   error is kept (monocular depth is ambiguous up to that mirror).
// Singular case: a prediction with all joints coincident (|P_c| = 0) is left unscaled (s = 1).
#pragma once

#include <cmath>

#include "procrustes.hpp"

namespace metapose {

// prediction, ground_truth (J x 3) -> errors (J).
template <class T>
inline void pmpjpe_per_joint(const T* prediction, const T* ground_truth, int J, ProcrustesScale mode, T* errors) {
  T R[9], s, t[3];
  procrustes(prediction, ground_truth, J, mode, R, &s, t);
  for (int j = 0; j < J; ++j) {
    const T* p = prediction + 3 * j;
    T d2 = 0;
    for (int k = 0; k < 3; ++k) {
      const T aligned = s * (p[0] * R[k] + p[1] * R[3 + k] + p[2] * R[6 + k]) + t[k];
      const T d = aligned - ground_truth[3 * j + k];
      d2 += d * d;
    }
    errors[j] = std::sqrt(d2);
  }
}

template <class T>
inline void nmpjpe_per_joint(const T* prediction, const T* ground_truth, int J, bool mirror_fix, T* errors) {
  T mean_p[3] = {0, 0, 0}, mean_g[3] = {0, 0, 0};
  for (int j = 0; j < J; ++j)
    for (int k = 0; k < 3; ++k) {
      mean_p[k] += prediction[3 * j + k];
      mean_g[k] += ground_truth[3 * j + k];
    }
  T norm_p = 0, norm_g = 0;
  for (int k = 0; k < 3; ++k) {
    mean_p[k] /= T(J);
    mean_g[k] /= T(J);
  }
  for (int j = 0; j < J; ++j)
    for (int k = 0; k < 3; ++k) {
      const T p = prediction[3 * j + k] - mean_p[k], g = ground_truth[3 * j + k] - mean_g[k];
      norm_p += p * p;
      norm_g += g * g;
    }
  const T s = norm_p > T(0) ? std::sqrt(norm_g / norm_p) : T(1);
  // depth_sign = +1 scores the prediction as given, -1 its depth mirror; per-joint errors are
  // written only when `out` is given.
  auto score = [&](T depth_sign, T* out) {
    T total = 0;
    for (int j = 0; j < J; ++j) {
      T d2 = 0;
      for (int k = 0; k < 3; ++k) {
        const T sign = (k == 2) ? depth_sign : T(1);
        const T d = sign * s * (prediction[3 * j + k] - mean_p[k]) - (ground_truth[3 * j + k] - mean_g[k]);
        d2 += d * d;
      }
      const T e = std::sqrt(d2);
      if (out != nullptr) out[j] = e;
      total += e;
    }
    return total;
  };
  const T direct = score(T(1), errors);
  if (mirror_fix && score(T(-1), nullptr) < direct) score(T(-1), errors);
}

}  // namespace metapose
