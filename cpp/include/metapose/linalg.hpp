// Small fixed-size linear algebra on plain arrays: 3-vectors and row-major 3x3 matrices.
//
// Everything in the core works on raw pointers to contiguous float storage, so that the
// bindings can hand numpy buffers straight through. A matrix M is stored row-major:
// M[3 * row + col]. These helpers are the only place such index arithmetic is spelled out.
#pragma once

#include <cmath>

namespace metapose {

template <class T>
inline T dot3(const T* a, const T* b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

template <class T>
inline T norm3(const T* a) {
  return std::sqrt(dot3(a, a));
}

// out = a x b (out must not alias a or b).
template <class T>
inline void cross3(const T* a, const T* b, T* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

// out = a^T (3x3).
template <class T>
inline void transpose3(const T* a, T* out) {
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) out[3 * c + r] = a[3 * r + c];
}

// out = a * b (3x3 times 3x3).
template <class T>
inline void matmul3(const T* a, const T* b, T* out) {
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      out[3 * r + c] = a[3 * r] * b[c] + a[3 * r + 1] * b[3 + c] + a[3 * r + 2] * b[6 + c];
}

template <class T>
inline T det3(const T* m) {
  return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
         m[2] * (m[3] * m[7] - m[4] * m[6]);
}

// Cyclic Jacobi eigen-decomposition of a symmetric N x N matrix `a` (row-major, destroyed).
// On return `values[i]` are the eigenvalues and column i of `vectors` (row-major N x N) the
// matching unit eigenvector. Deterministic: the same input gives the same basis, and a matrix
// that is already diagonal (including zero) keeps the identity basis.
template <class T, int N>
inline void symmetric_eigen(T* a, T* values, T* vectors) {
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < N; ++j) vectors[N * i + j] = (i == j) ? T(1) : T(0);
  for (int sweep = 0; sweep < 64; ++sweep) {
    T off = 0, scale = 0;
    for (int i = 0; i < N; ++i) {
      scale += a[N * i + i] * a[N * i + i];
      for (int j = i + 1; j < N; ++j) off += a[N * i + j] * a[N * i + j];
    }
    if (!(off > T(1e-40) * scale) || off == T(0)) break;  // converged (or all zero)
    for (int p = 0; p < N; ++p) {
      for (int q = p + 1; q < N; ++q) {
        const T apq = a[N * p + q];
        if (apq == T(0)) continue;
        // Rotation angle that zeroes a[p][q]: t = tan(theta), smaller root for stability.
        const T theta = (a[N * q + q] - a[N * p + p]) / (T(2) * apq);
        const T t = (theta >= 0 ? T(1) : T(-1)) / (std::fabs(theta) + std::sqrt(theta * theta + T(1)));
        const T c = T(1) / std::sqrt(t * t + T(1));
        const T s = t * c;
        for (int k = 0; k < N; ++k) {  // columns p, q of a
          const T akp = a[N * k + p], akq = a[N * k + q];
          a[N * k + p] = c * akp - s * akq;
          a[N * k + q] = s * akp + c * akq;
        }
        for (int k = 0; k < N; ++k) {  // rows p, q of a
          const T apk = a[N * p + k], aqk = a[N * q + k];
          a[N * p + k] = c * apk - s * aqk;
          a[N * q + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < N; ++k) {
          const T vkp = vectors[N * k + p], vkq = vectors[N * k + q];
          vectors[N * k + p] = c * vkp - s * vkq;
          vectors[N * k + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  for (int i = 0; i < N; ++i) values[i] = a[N * i + i];
}

}  // namespace metapose
