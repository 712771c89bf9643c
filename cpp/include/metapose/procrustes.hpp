// Similarity Procrustes: rotation R, scale s, translation t with B ~ s A R + t (row vectors).
//
// With centred sets A_c, B_c and M = A_c^T B_c, the best proper rotation maximises
// trace(R^T M). Umeyama's answer is U diag(1, 1, sign det(U V^T)) V^T from the SVD of M; we
// compute the same maximiser by Horn's quaternion method: the unit eigenvector of the largest
// eigenvalue of Horn's symmetric 4x4 matrix N(M) is the quaternion of R^T. This never yields a
// reflection (a unit quaternion is always a proper rotation) and needs no special case for
// det(U V^T) < 0.
//   Umeyama scale:  s = trace(R^T M) / |A_c|^2   (least squares);
//   norm ratio:     s = |B_c| / |A_c|             (Frobenius norms, as MetaPose);
//   translation:    t = mean(B) - s mean(A) R.
// Singular cases, each with a defined finite answer: coincident source points (|A_c| = 0 up to
// rounding) give R = I and s = 1; coincident targets give s = 0 in both modes; rank-deficient
// sets (collinear points) have a family of optimal rotations, of which the Jacobi eigen-solver
// picks one deterministically; when every rotation is optimal (M = 0) it picks the identity.
#pragma once

#include <cmath>
#include <limits>

#include "linalg.hpp"
#include "rotation.hpp"

namespace metapose {

enum class ProcrustesScale : int { kUmeyama = 0, kNormRatio = 1 };

// Best proper rotation R (row-vector form, maximising trace(R^T M)) for M (3x3 row-major).
// M is divided by its largest entry first (the maximiser does not change), so that the eigen-solver's
// sums of squares neither overflow nor underflow.
template <class T>
inline void procrustes_rotation(const T* M_in, T* R) {
  T largest = 0;
  for (int i = 0; i < 9; ++i) largest = std::fmax(largest, std::fabs(M_in[i]));
  const T inv = largest > T(0) ? T(1) / largest : T(1);
  T M[9];
  for (int i = 0; i < 9; ++i) M[i] = M_in[i] * inv;
  const T Sxx = M[0], Sxy = M[1], Sxz = M[2];
  const T Syx = M[3], Syy = M[4], Syz = M[5];
  const T Szx = M[6], Szy = M[7], Szz = M[8];
  T N[16] = {Sxx + Syy + Szz, Syz - Szy,        Szx - Sxz,        Sxy - Syx,
             Syz - Szy,       Sxx - Syy - Szz,  Sxy + Syx,        Szx + Sxz,
             Szx - Sxz,       Sxy + Syx,        -Sxx + Syy - Szz, Syz + Szy,
             Sxy - Syx,       Szx + Sxz,        Syz + Szy,        -Sxx - Syy + Szz};
  T values[4], vectors[16];
  symmetric_eigen<T, 4>(N, values, vectors);
  int best = 0;
  for (int i = 1; i < 4; ++i)
    if (values[i] > values[best]) best = i;
  T q[4];
  T norm = 0;
  for (int i = 0; i < 4; ++i) {
    q[i] = vectors[4 * i + best];
    norm += q[i] * q[i];
  }
  norm = std::sqrt(norm);
  for (int i = 0; i < 4; ++i) q[i] /= norm;
  // q rotates column vectors a -> b, i.e. it is the matrix Q = R^T.
  T Q[9];
  quaternion_to_matrix(q, Q);
  transpose3(Q, R);
}

// A power of two at or above the largest absolute coordinate of N points (N x 3), 1 when all are
// zero: dividing by it (a multiplication by its exact inverse) is exact and cheap.
template <class T>
inline T coordinate_scale(const T* points, int N) {
  T largest = 0;
  for (int i = 0; i < 3 * N; ++i) largest = std::fmax(largest, std::fabs(points[i]));
  if (!(largest > T(0))) return T(1);
  int exponent = 0;
  std::frexp(largest, &exponent);  // largest = m 2^exponent, m in [0.5, 1)
  // Keep the scale and its inverse finite and normal (subnormal inputs are then scaled to ~1e-16).
  exponent = exponent > 1023 ? 1023 : (exponent < -1021 ? -1021 : exponent);
  return std::ldexp(T(1), exponent);
}

// Copies N points (N x 3) into `out` divided by their coordinate scale (exact: a power of two) and
// returns that scale.
template <class T>
inline T to_unit_coordinates(const T* points, int N, T* out) {
  const T scale = coordinate_scale(points, N);
  const T inverse = T(1) / scale;
  for (int i = 0; i < 3 * N; ++i) out[i] = points[i] * inverse;
  return scale;
}

// Procrustes on points already divided by their coordinate scales (all coordinates in [-1, 1], so
// no square below over- or underflows): A, B (N x 3) -> R (9), s, t (3) in those units. Returns
// true when the source points coincide (then R = I, s = 1).
template <class T>
inline bool procrustes_unit(const T* A, const T* B, int N, ProcrustesScale mode, T* R, T* s, T* t) {
  T mean_a[3] = {0, 0, 0}, mean_b[3] = {0, 0, 0};
  for (int n = 0; n < N; ++n)
    for (int i = 0; i < 3; ++i) {
      mean_a[i] += A[3 * n + i];
      mean_b[i] += B[3 * n + i];
    }
  for (int i = 0; i < 3; ++i) {
    mean_a[i] /= T(N);
    mean_b[i] /= T(N);
  }
  T M[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  T norm_a = 0, norm_b = 0, spread = 0;
  for (int n = 0; n < N; ++n) {
    T a[3], b[3];
    for (int i = 0; i < 3; ++i) {
      a[i] = A[3 * n + i] - mean_a[i];
      b[i] = B[3 * n + i] - mean_b[i];
      spread = std::fmax(spread, std::fabs(a[i]));
    }
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) M[3 * r + c] += a[r] * b[c];
    norm_a += dot3(a, a);
    norm_b += dot3(b, b);
  }
  // Coincident source points leave only rounding noise after centring (the mean of equal values
  // need not be exact); below that level the spread is taken as zero.
  const bool coincident = !(spread > T(16) * std::numeric_limits<T>::epsilon());
  if (!coincident) {
    procrustes_rotation(M, R);
    if (mode == ProcrustesScale::kUmeyama) {
      T trace = 0;  // trace(R^T M)
      for (int i = 0; i < 9; ++i) trace += R[i] * M[i];
      *s = trace / norm_a;
    } else {
      *s = std::sqrt(norm_b / norm_a);
    }
  } else {
    for (int i = 0; i < 9; ++i) R[i] = (i % 4 == 0) ? T(1) : T(0);
    *s = T(1);
  }
  for (int k = 0; k < 3; ++k)
    t[k] = mean_b[k] - *s * (mean_a[0] * R[k] + mean_a[1] * R[3 + k] + mean_a[2] * R[6 + k]);
  return coincident;
}

// A, B (N x 3, row-major) -> R (9), s, t (3), at any magnitude: the sets are divided by their
// coordinate scales first, which the rotation does not see and the scale and shift undo.
// `unit` (6 N values) receives the scaled copies.
template <class T>
inline void procrustes(const T* A, const T* B, int N, ProcrustesScale mode, T* R, T* s, T* t, T* unit) {
  T* a = unit;
  T* b = unit + 3 * N;
  const T scale_a = to_unit_coordinates(A, N, a), scale_b = to_unit_coordinates(B, N, b);
  T unit_s;
  // In the original units: s = unit_s scale_b / scale_a; t = scale_b t_unit. A coincident source
  // keeps s = 1 and takes its point onto the target's centroid.
  if (procrustes_unit(a, b, N, mode, R, &unit_s, t)) {
    *s = T(1);
    T mean_a[3] = {0, 0, 0}, mean_b[3] = {0, 0, 0};
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < 3; ++i) {
        mean_a[i] += a[3 * n + i] / T(N);
        mean_b[i] += b[3 * n + i] / T(N);
      }
    for (int k = 0; k < 3; ++k) t[k] = scale_b * mean_b[k] - scale_a * mean_a[k];
    return;
  }
  *s = unit_s * (scale_b / scale_a);
  for (int k = 0; k < 3; ++k) t[k] *= scale_b;
}

}  // namespace metapose
