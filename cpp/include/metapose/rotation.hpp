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
// reports failure and the binding raises.
//
// Rodrigues: v = theta * axis, R = I + (sin t / t) [v]x + ((1 - cos t) / t^2) [v]x^2, the two
// coefficients taken from their Taylor series near t = 0 and 1 - cos t written 2 sin^2(t/2). R rotates column vectors (R @ x), as
// OpenCV. Back: the unit quaternion of R by Shepperd's method (largest of trace and diagonal,
// stable everywhere including t = pi), then v = 2 atan2(|q_xyz|, q_w) q_xyz / |q_xyz|.
#pragma once

#include <cmath>

#include "linalg.hpp"

namespace metapose {

// The Gram-Schmidt step shared by the forward and reverse maps: b1, b2, the norms |a1|, |u2| and
// d = b1 . a2. u2 is re-orthogonalised against b1 once more (mathematically a no-op, so the
// derivatives are unchanged) to keep b1 . b2 at rounding level when a2 is nearly parallel to a1.
// Returns false where the rows are zero or parallel.
template <class T>
struct GramSchmidt {
  T b1[3], b2[3], n1, n2, d;

  bool compute(const T* r6) {
    const T* a1 = r6;
    const T* a2 = r6 + 3;
    n1 = norm3(a1);
    if (!(n1 > T(0)) || !std::isfinite(n1)) return false;
    for (int i = 0; i < 3; ++i) b1[i] = a1[i] / n1;
    d = dot3(b1, a2);
    T u2[3] = {a2[0] - d * b1[0], a2[1] - d * b1[1], a2[2] - d * b1[2]};
    const T again = dot3(b1, u2);
    for (int i = 0; i < 3; ++i) u2[i] -= again * b1[i];
    n2 = norm3(u2);
    // Parallel rows: the component of a2 orthogonal to a1 is lost in rounding.
    if (!(n2 > T(1e-12) * norm3(a2)) || !(n2 > T(0)) || !std::isfinite(n2)) return false;
    for (int i = 0; i < 3; ++i) b2[i] = u2[i] / n2;
    return true;
  }
};

// r6 (6) -> R (9, row-major). jacobian, if given, receives d R[k] / d r6[i] at jacobian[6 k + i]
// (9 x 6 row-major). Returns false where the rows are zero or parallel (outputs untouched).
template <class T>
bool rot6d_to_matrix(const T* r6, T* R, T* jacobian = nullptr) {
  GramSchmidt<T> gs;
  if (!gs.compute(r6)) return false;
  const T* a2 = r6 + 3;
  const T* b1 = gs.b1;
  const T* b2 = gs.b2;
  const T n1 = gs.n1, n2 = gs.n2, d = gs.d;
  T b3[3];
  cross3(b1, b2, b3);
  for (int i = 0; i < 3; ++i) {
    R[i] = b1[i];
    R[3 + i] = b2[i];
    R[6 + i] = b3[i];
  }
  if (jacobian == nullptr) return true;

  // db1/da1 (3x3), symmetric.
  T db1[9];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) db1[3 * r + c] = ((r == c ? T(1) : T(0)) - b1[r] * b1[c]) / n1;
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
    for (int c = 0; c < 3; ++c) P2[3 * r + c] = ((r == c ? T(1) : T(0)) - b2[r] * b2[c]) / n2;
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
// without forming J, which is what the refiner needs (about a fifth of the work). With G's rows
// g1, g2, g3 (for b1, b2, b3), P(v) = I - v v^T and [.] the accumulated adjoints:
//   b3 = b1 x b2:            [b1] = g1 + b2 x g3,  [b2] = g2 + g3 x b1
//   b2 = u2 / |u2|:          [u2] = P(b2) [b2] / |u2|
//   u2 = a2 - (b1 . a2) b1:  [a2] = P(b1) [u2],    [b1] -= (b1 . a2) [u2] + (b1 . [u2]) a2
//   b1 = a1 / |a1|:          [a1] = P(b1) [b1] / |a1|
// Returns false where the rows are zero or parallel (gradient untouched).
template <class T>
bool rot6d_to_matrix_backward(const T* r6, const T* G, T* gradient) {
  GramSchmidt<T> gs;
  if (!gs.compute(r6)) return false;
  const T* a2 = r6 + 3;
  const T* b1 = gs.b1;
  const T* b2 = gs.b2;
  const T n1 = gs.n1, n2 = gs.n2, d = gs.d;
  T x[3], y[3];
  cross3(b2, G + 6, x);
  cross3(G + 6, b1, y);
  T adj_b1[3] = {G[0] + x[0], G[1] + x[1], G[2] + x[2]};
  const T adj_b2[3] = {G[3] + y[0], G[4] + y[1], G[5] + y[2]};
  const T along_b2 = dot3(b2, adj_b2);
  const T adj_u2[3] = {(adj_b2[0] - b2[0] * along_b2) / n2, (adj_b2[1] - b2[1] * along_b2) / n2,
                       (adj_b2[2] - b2[2] * along_b2) / n2};
  const T along_b1 = dot3(b1, adj_u2);
  for (int i = 0; i < 3; ++i) {
    gradient[3 + i] = adj_u2[i] - b1[i] * along_b1;
    adj_b1[i] -= d * adj_u2[i] + along_b1 * a2[i];
  }
  const T along = dot3(b1, adj_b1);
  for (int i = 0; i < 3; ++i) gradient[i] = (adj_b1[i] - b1[i] * along) / n1;
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
