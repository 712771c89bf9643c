// Rotations: the 6D representation and Rodrigues vectors, to and from 3x3 matrices.
//
// 6D (Zhou et al. 2019, the form MetaPose optimises): the first two *rows* a1, a2 of R.
//   b1 = a1 / |a1|,  u2 = a2 - (b1 . a2) b1,  b2 = u2 / |u2|,  b3 = b1 x b2,  R = [b1; b2; b3].
// Derivative (for the refiner), with P(v) = I - v v^T:
//   db1/da1 = P(b1) / |a1|,                       db1/da2 = 0
//   du2/da1 = -((b1 . a2) I + b1 a2^T) db1/da1,   du2/da2 = P(b1)
//   db2     = P(b2) / |u2| du2
//   db3     = db1 x b2 + b1 x db2  =  -[b2]x db1 + [b1]x db2
// Singular cases: a1 = 0, or a2 parallel to a1 (u2 = 0): no rotation is defined; the function
// reports failure and the binding raises. So do rows with norms outside about 1e-154 .. 1e154,
// whose squares cannot be formed in double precision.
//
// Rodrigues: v = theta * axis, R = I + (sin t / t) [v]x + ((1 - cos t) / t^2) [v]x^2, the two
// coefficients taken from their Taylor series near t = 0 and 1 - cos t written 2 sin^2(t/2). R rotates column vectors (R @ x), as
// OpenCV. Back: the unit quaternion of R by Shepperd's method (largest of trace and diagonal,
// stable everywhere including t = pi), then v = 2 atan2(|q_xyz|, q_w) q_xyz / |q_xyz|.
#pragma once

#include <cmath>
#include <limits>

#include "fastmath.hpp"
#include "linalg.hpp"

namespace metapose {

// The Gram-Schmidt step shared by the forward and reverse maps, for L rotations side by side
// (the refiner runs several frames in one vector): values are lane-minor, entry i of lane l at
// [i L + l], so L = 1 is the plain layout. It keeps b1, b2, 1 / |a1|, 1 / |u2| and d = b1 . a2.
// u2 is re-orthogonalised against b1 once more (mathematically a no-op, so the derivatives are
// unchanged) to keep b1 . b2 at rounding level when a2 is nearly parallel to a1. Every lane is
// computed; compute() clears ok[l] where lane l's rows are zero or parallel, whose values are then
// meaningless. Each lane's arithmetic is the same whatever L is and whatever the other lanes hold.
template <class T, int L = 1>
struct GramSchmidt {
  T b1[3 * L], b2[3 * L], inv_n1[L], inv_n2[L], d[L];  // inv_n1 = 1 / |a1|, inv_n2 = 1 / |u2|

  void compute(const T* r6, bool* ok) {
    constexpr T kLargest = std::numeric_limits<T>::max();
    T n1_squared[L], n2_squared[L], a2_squared[L];
    METAPOSE_VECTORIZE
    for (int l = 0; l < L; ++l) {
      const T a1[3] = {r6[l], r6[L + l], r6[2 * L + l]};
      const T a2[3] = {r6[3 * L + l], r6[4 * L + l], r6[5 * L + l]};
      n1_squared[l] = dot3(a1, a1);
      const T inv1 = T(1) / std::sqrt(n1_squared[l]);
      T c[3];
      for (int i = 0; i < 3; ++i) c[i] = a1[i] * inv1;
      const T dd = dot3(c, a2);
      T u2[3] = {a2[0] - dd * c[0], a2[1] - dd * c[1], a2[2] - dd * c[2]};
      const T again = dot3(c, u2);
      for (int i = 0; i < 3; ++i) u2[i] -= again * c[i];
      n2_squared[l] = dot3(u2, u2);
      const T inv2 = T(1) / std::sqrt(n2_squared[l]);
      for (int i = 0; i < 3; ++i) {
        b1[i * L + l] = c[i];
        b2[i * L + l] = u2[i] * inv2;
      }
      inv_n1[l] = inv1;
      inv_n2[l] = inv2;
      d[l] = dd;
      a2_squared[l] = dot3(a2, a2);
    }
    // Rows whose squared norms leave the normal range (norms below about 1e-154, where the square
    // loses precision, or above 1e154, where it overflows), and parallel rows: the component of a2
    // orthogonal to a1 (|u2| against 1e-12 |a2|) is lost in rounding. (x <= largest is isfinite
    // for x >= 0.)
    constexpr T kSmallest = std::numeric_limits<T>::min();
    for (int l = 0; l < L; ++l)
      ok[l] = ok[l] && n1_squared[l] >= kSmallest && n1_squared[l] <= kLargest &&
              n2_squared[l] > T(1e-24) * a2_squared[l] && n2_squared[l] >= kSmallest && n2_squared[l] <= kLargest;
  }

  // R (9 L, row-major per lane) = [b1; b2; b1 x b2].
  void matrix(T* R) const {
    METAPOSE_VECTORIZE
    for (int l = 0; l < L; ++l)
      for (int i = 0; i < 3; ++i) {
        const int j = (i + 1) % 3, k = (i + 2) % 3;
        R[i * L + l] = b1[i * L + l];
        R[(3 + i) * L + l] = b2[i * L + l];
        R[(6 + i) * L + l] = b1[j * L + l] * b2[k * L + l] - b1[k * L + l] * b2[j * L + l];
      }
  }

  // Reverse mode, given the r6 (6 L) it was computed from: G = dL/dR (9 L, row-major per lane) ->
  // dL/dr6 (6 L, lane stride L) = J^T G, without forming J (about a fifth of the work). With G's
  // rows g1, g2, g3 (for b1, b2, b3), P(v) = I - v v^T and [.] the accumulated adjoints:
  //   b3 = b1 x b2:            [b1] = g1 + b2 x g3,  [b2] = g2 + g3 x b1
  //   b2 = u2 / |u2|:          [u2] = P(b2) [b2] / |u2|
  //   u2 = a2 - (b1 . a2) b1:  [a2] = P(b1) [u2],    [b1] -= (b1 . a2) [u2] + (b1 . [u2]) a2
  //   b1 = a1 / |a1|:          [a1] = P(b1) [b1] / |a1|
  void backward(const T* r6, const T* G, T* gradient) const {
    METAPOSE_VECTORIZE
    for (int l = 0; l < L; ++l) {
      const T a2[3] = {r6[3 * L + l], r6[4 * L + l], r6[5 * L + l]};
      const T c1[3] = {b1[l], b1[L + l], b1[2 * L + l]};
      const T c2[3] = {b2[l], b2[L + l], b2[2 * L + l]};
      const T g3[3] = {G[6 * L + l], G[7 * L + l], G[8 * L + l]};
      T x[3], y[3];
      cross3(c2, g3, x);
      cross3(g3, c1, y);
      T adj_b1[3] = {G[l] + x[0], G[L + l] + x[1], G[2 * L + l] + x[2]};
      const T adj_b2[3] = {G[3 * L + l] + y[0], G[4 * L + l] + y[1], G[5 * L + l] + y[2]};
      const T along_b2 = dot3(c2, adj_b2);
      const T adj_u2[3] = {(adj_b2[0] - c2[0] * along_b2) * inv_n2[l], (adj_b2[1] - c2[1] * along_b2) * inv_n2[l],
                           (adj_b2[2] - c2[2] * along_b2) * inv_n2[l]};
      const T along_b1 = dot3(c1, adj_u2);
      for (int i = 0; i < 3; ++i) {
        gradient[(3 + i) * L + l] = adj_u2[i] - c1[i] * along_b1;
        adj_b1[i] -= d[l] * adj_u2[i] + along_b1 * a2[i];
      }
      const T along = dot3(c1, adj_b1);
      for (int i = 0; i < 3; ++i) gradient[i * L + l] = (adj_b1[i] - c1[i] * along) * inv_n1[l];
    }
  }
};

// r6 (6) -> R (9, row-major). jacobian, if given, receives d R[k] / d r6[i] at jacobian[6 k + i]
// (9 x 6 row-major). Returns false where the rows are zero or parallel (outputs untouched).
template <class T>
bool rot6d_to_matrix(const T* r6, T* R, T* jacobian = nullptr) {
  GramSchmidt<T> gs;
  bool ok = true;
  gs.compute(r6, &ok);
  if (!ok) return false;
  const T* a2 = r6 + 3;
  const T* b1 = gs.b1;
  const T* b2 = gs.b2;
  const T inv_n1 = gs.inv_n1[0], inv_n2 = gs.inv_n2[0], d = gs.d[0];
  gs.matrix(R);
  if (jacobian == nullptr) return true;

  // db1/da1 (3x3), symmetric.
  T db1[9];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) db1[3 * r + c] = ((r == c ? T(1) : T(0)) - b1[r] * b1[c]) * inv_n1;
  // du2/da1 = -(d I + b1 a2^T) db1 ; du2/da2 = P(b1).
  T du2_da1[9], du2_da2[9];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      T acc = 0;
      for (int k = 0; k < 3; ++k) acc += ((r == k ? d : T(0)) + b1[r] * a2[k]) * db1[3 * k + c];
      du2_da1[3 * r + c] = -acc;
      du2_da2[3 * r + c] = (r == c ? T(1) : T(0)) - b1[r] * b1[c];
    }
  // db2/dx = P(b2)/n2 du2/dx.
  T P2[9];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) P2[3 * r + c] = ((r == c ? T(1) : T(0)) - b2[r] * b2[c]) * inv_n2;
  T db2_da1[9], db2_da2[9];
  matmul3(P2, du2_da1, db2_da1);
  matmul3(P2, du2_da2, db2_da2);
  // db3 = db1 x b2 + b1 x db2, column by column.
  T db3_da1[9], db3_da2[9];
  for (int c = 0; c < 3; ++c) {
    const T e1[3] = {db1[c], db1[3 + c], db1[6 + c]};
    const T f1[3] = {db2_da1[c], db2_da1[3 + c], db2_da1[6 + c]};
    const T f2[3] = {db2_da2[c], db2_da2[3 + c], db2_da2[6 + c]};
    T x1[3], x2[3], x3[3];
    cross3(e1, b2, x1);
    cross3(b1, f1, x2);
    cross3(b1, f2, x3);
    for (int r = 0; r < 3; ++r) {
      db3_da1[3 * r + c] = x1[r] + x2[r];
      db3_da2[3 * r + c] = x3[r];
    }
  }
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      T* row0 = jacobian + 6 * r;        // R[0][r] = b1[r]
      T* row1 = jacobian + 6 * (3 + r);  // R[1][r] = b2[r]
      T* row2 = jacobian + 6 * (6 + r);  // R[2][r] = b3[r]
      row0[c] = db1[3 * r + c];
      row0[3 + c] = T(0);
      row1[c] = db2_da1[3 * r + c];
      row1[3 + c] = db2_da2[3 * r + c];
      row2[c] = db3_da1[3 * r + c];
      row2[3 + c] = db3_da2[3 * r + c];
    }
  return true;
}

// Reverse mode of rot6d_to_matrix: given G = dL/dR (9, row-major), writes dL/dr6 (6) = J^T G
// (GramSchmidt::backward). Returns false where the rows are zero or parallel (gradient untouched).
template <class T>
bool rot6d_to_matrix_backward(const T* r6, const T* G, T* gradient) {
  GramSchmidt<T> gs;
  bool ok = true;
  gs.compute(r6, &ok);
  if (!ok) return false;
  gs.backward(r6, G, gradient);
  return true;
}

// R (9) -> r6 (6): its first two rows.
template <class T>
void matrix_to_rot6d(const T* R, T* r6) {
  for (int i = 0; i < 6; ++i) r6[i] = R[i];
}

template <class T>
void rodrigues_to_matrix(const T* v, T* R) {
  const T t2 = dot3(v, v);
  T a, b;  // sin(t)/t and (1 - cos(t))/t^2, the latter as 2 sin^2(t/2)/t^2 to avoid cancellation
  if (t2 < T(1e-8)) {
    a = T(1) - t2 / T(6) * (T(1) - t2 / T(20));
    b = T(0.5) - t2 / T(24) * (T(1) - t2 / T(30));
  } else {
    clean_vector_state();
    const T t = std::sqrt(t2);
    const T half = std::sin(T(0.5) * t) / t;
    a = std::sin(t) / t;
    b = T(2) * half * half;
  }
  // [v]x^2 = v v^T - t2 I.
  const T x = v[0], y = v[1], z = v[2];
  R[0] = T(1) + b * (x * x - t2);
  R[1] = -a * z + b * x * y;
  R[2] = a * y + b * x * z;
  R[3] = a * z + b * x * y;
  R[4] = T(1) + b * (y * y - t2);
  R[5] = -a * x + b * y * z;
  R[6] = -a * y + b * x * z;
  R[7] = a * x + b * y * z;
  R[8] = T(1) + b * (z * z - t2);
}

// True when R is orthonormal and proper to `tolerance` (max abs entry of R R^T - I, det - 1).
template <class T>
bool is_rotation(const T* R, T tolerance) {
  for (int r = 0; r < 3; ++r)
    for (int c = r; c < 3; ++c) {
      const T value = dot3(R + 3 * r, R + 3 * c) - (r == c ? T(1) : T(0));
      if (!(std::fabs(value) <= tolerance)) return false;
    }
  return std::fabs(det3(R) - T(1)) <= tolerance;
}

// Unit quaternion (w, x, y, z), w >= 0, of a rotation matrix (Shepperd).
template <class T>
void matrix_to_quaternion(const T* R, T* q) {
  const T trace = R[0] + R[4] + R[8];
  if (trace >= R[0] && trace >= R[4] && trace >= R[8]) {
    const T w = T(0.5) * std::sqrt(T(1) + trace);
    const T f = T(0.25) / w;
    q[0] = w;
    q[1] = (R[7] - R[5]) * f;
    q[2] = (R[2] - R[6]) * f;
    q[3] = (R[3] - R[1]) * f;
  } else if (R[0] >= R[4] && R[0] >= R[8]) {
    const T x = T(0.5) * std::sqrt(T(1) + R[0] - R[4] - R[8]);
    const T f = T(0.25) / x;
    q[0] = (R[7] - R[5]) * f;
    q[1] = x;
    q[2] = (R[1] + R[3]) * f;
    q[3] = (R[2] + R[6]) * f;
  } else if (R[4] >= R[8]) {
    const T y = T(0.5) * std::sqrt(T(1) - R[0] + R[4] - R[8]);
    const T f = T(0.25) / y;
    q[0] = (R[2] - R[6]) * f;
    q[1] = (R[1] + R[3]) * f;
    q[2] = y;
    q[3] = (R[5] + R[7]) * f;
  } else {
    const T z = T(0.5) * std::sqrt(T(1) - R[0] - R[4] + R[8]);
    const T f = T(0.25) / z;
    q[0] = (R[3] - R[1]) * f;
    q[1] = (R[2] + R[6]) * f;
    q[2] = (R[5] + R[7]) * f;
    q[3] = z;
  }
  if (q[0] < 0)
    for (int i = 0; i < 4; ++i) q[i] = -q[i];
}

// Rotation matrix (column-vector convention) of a unit quaternion (w, x, y, z).
template <class T>
void quaternion_to_matrix(const T* q, T* R) {
  const T w = q[0], x = q[1], y = q[2], z = q[3];
  R[0] = w * w + x * x - y * y - z * z;
  R[1] = T(2) * (x * y - w * z);
  R[2] = T(2) * (x * z + w * y);
  R[3] = T(2) * (x * y + w * z);
  R[4] = w * w - x * x + y * y - z * z;
  R[5] = T(2) * (y * z - w * x);
  R[6] = T(2) * (x * z - w * y);
  R[7] = T(2) * (y * z + w * x);
  R[8] = w * w - x * x - y * y + z * z;
}

// Returns false (v untouched) when R is not a rotation to 1e-6.
template <class T>
bool matrix_to_rodrigues(const T* R, T* v) {
  if (!is_rotation(R, T(1e-6))) return false;
  T q[4];
  matrix_to_quaternion(R, q);
  const T s = std::sqrt(q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  clean_vector_state();
  // theta / sin(theta / 2); its limit at s -> 0 is 2 / w.
  const T factor = s > T(0) ? T(2) * std::atan2(s, q[0]) / s : T(2) / q[0];
  for (int i = 0; i < 3; ++i) v[i] = q[1 + i] * factor;
  return true;
}

}  // namespace metapose
