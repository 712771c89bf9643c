// MetaPose's stage 1 (S1): an initial solution from the monocular 3D guesses alone.
//
// Camera 0 is the reference (R = I, s = 1, shift = m_0, the mean joint of its guess G_0). For
// k >= 1, with centred guesses A = G_0 - m_0 and B = G_k - m_k: R_k is the best proper rotation
// with A R ~ B (procrustes_rotation of M = A^T B, procrustes.hpp), s_k = |B| / |A| (ratio of
// Frobenius norms, as the original), shift_k = m_k, and view k's guess in view 0's frame is
// B R_k^T / s_k. The initial pose is the mean of those over k >= 1 (view 0's own guess is not in
// the mean, as in the original; it is centred, view 0's m_0 being in its shift). The result is a
// solution vector (config.hpp) with scale_raw = inverse_softplus(s).
// Singular case: a view whose guess has all joints at one point has no scale; it is reported.
// Limits: C >= kMinCameras and J >= 1, with the guesses and x within int indexing. Stage 1 keeps
// no per-camera values on the stack, so it takes more than kMaxCameras views (the objective and the
// refiner do not).
#pragma once

#include <cmath>
#include <vector>

#include "config.hpp"
#include "fastmath.hpp"
#include "procrustes.hpp"
#include "rotation.hpp"

namespace metapose {

// True when stage1 takes C views of J joints (the limits above).
inline bool stage1_shape_ok(long long C, long long J) {
  return C >= kMinCameras && J >= 1 && J <= kMaxIndex && C <= kMaxIndex / (3 * J) && solution_size(C, J) <= kMaxIndex;
}

// Stage 1 from monocular guesses G (C x J x 3) -> x (P). False when a view's guess is a point, and,
// touching nothing, when the sizes are out of range (stage1_shape_ok) or an array is null.
template <class T>
bool stage1(const T* guesses, int C, int J, T* x) {
  if (!stage1_shape_ok(C, J) || guesses == nullptr || x == nullptr) return false;
  std::vector<T> mean(3 * C, T(0));
  for (int c = 0; c < C; ++c) {
    for (int j = 0; j < J; ++j)
      for (int a = 0; a < 3; ++a) mean[3 * c + a] += guesses[3 * (c * J + j) + a];
    for (int a = 0; a < 3; ++a) mean[3 * c + a] /= T(J);
  }
  auto centred = [&](int c, int j, int a) { return guesses[3 * (c * J + j) + a] - mean[3 * c + a]; };
  T norm0 = 0;
  for (int j = 0; j < J; ++j)
    for (int a = 0; a < 3; ++a) norm0 += centred(0, j, a) * centred(0, j, a);
  if (!(norm0 > T(0))) return false;
  T* pose = x;
  T* rot6d = x + 3 * J;
  T* scale_raw = rot6d + 6 * C;
  T* shift = scale_raw + C;
  for (int i = 0; i < 3 * J; ++i) pose[i] = 0;
  const T identity[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  matrix_to_rot6d(identity, rot6d);
  scale_raw[0] = inverse_softplus(T(1));
  for (int a = 0; a < 3; ++a) shift[a] = mean[a];
  for (int k = 1; k < C; ++k) {
    T M[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    T norm_k = 0;
    for (int j = 0; j < J; ++j)
      for (int r = 0; r < 3; ++r) {
        norm_k += centred(k, j, r) * centred(k, j, r);
        for (int col = 0; col < 3; ++col) M[3 * r + col] += centred(0, j, r) * centred(k, j, col);
      }
    if (!(norm_k > T(0))) return false;
    T R[9];
    procrustes_rotation(M, R);
    const T s = std::sqrt(norm_k / norm0);
    matrix_to_rot6d(R, rot6d + 6 * k);
    scale_raw[k] = inverse_softplus(s);
    for (int a = 0; a < 3; ++a) shift[3 * k + a] = mean[3 * k + a];
    // Guess k in view 0's frame: B R^T / s, averaged over k >= 1.
    for (int j = 0; j < J; ++j)
      for (int a = 0; a < 3; ++a) {
        const T mapped =
            (centred(k, j, 0) * R[3 * a] + centred(k, j, 1) * R[3 * a + 1] + centred(k, j, 2) * R[3 * a + 2]) / s;
        pose[3 * j + a] += mapped / T(C - 1);
      }
  }
  return true;
}

}  // namespace metapose
