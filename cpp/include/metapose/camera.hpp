// Cameras: weak perspective (the solver's model) and full perspective with Brown-Conrady
// distortion (the data's and the baselines' model).
//
// Weak camera c (row vectors, design.md): q = s * X R + t, image point p = (q_0, q_1):
//   p_k = s * sum_i X_i R_ik + t_k,   k in {0, 1}
//   dp_k/dX_i = s R_ik,   dp_k/dR_ab = s X_a [b == k],   dp_k/ds = sum_i X_i R_ik,   dp_k/dt_i = [i == k].
//
// Perspective camera (column vectors, OpenCV): Xc = R X + t, x = Xc_0 / Xc_2, y = Xc_1 / Xc_2,
//   r2 = x^2 + y^2, radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3,
//   xd = x radial + 2 p1 x y + p2 (r2 + 2 x^2),  yd = y radial + p1 (r2 + 2 y^2) + 2 p2 x y,
//   u = fx xd + cx,  v = fy yd + cy.
// With g = k1 + 2 k2 r2 + 3 k3 r2^2 (so d radial / dx = 2 x g):
//   dxd/dx = radial + 2 x^2 g + 2 p1 y + 6 p2 x,   dxd/dy = 2 x y g + 2 p1 x + 2 p2 y,
//   dyd/dx = 2 x y g + 2 p1 x + 2 p2 y,            dyd/dy = radial + 2 y^2 g + 6 p1 y + 2 p2 x.
// Singular case: depth Xc_2 <= 0 (at or behind the camera) is rejected.
// Undistortion inverts (x, y) -> (xd, yd) by Newton's method with step halving, from (xd, yd),
// to full precision; a pixel whose distortion cannot be inverted there is reported.
#pragma once

#include <cmath>
#include <limits>

#include "linalg.hpp"

namespace metapose {

// ---------------------------------------------------------------------------- weak perspective

// X (3), R (9), s, t (3) -> p (2).
template <class T>
inline void project_weak_point(const T* X, const T* R, T s, const T* t, T* p) {
  for (int k = 0; k < 2; ++k) p[k] = s * (X[0] * R[k] + X[1] * R[3 + k] + X[2] * R[6 + k]) + t[k];
}

// Derivatives of one projected point: d_X (2x3), d_R (2x9), d_s (2), d_t (2x3), row-major.
template <class T>
inline void project_weak_point_jacobian(const T* X, const T* R, T s, T* d_X, T* d_R, T* d_s, T* d_t) {
  for (int k = 0; k < 2; ++k) {
    for (int i = 0; i < 3; ++i) {
      d_X[3 * k + i] = s * R[3 * i + k];
      d_t[3 * k + i] = (i == k) ? T(1) : T(0);
    }
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) d_R[9 * k + 3 * a + b] = (b == k) ? s * X[a] : T(0);
    d_s[k] = X[0] * R[k] + X[1] * R[3 + k] + X[2] * R[6 + k];
  }
}

// ---------------------------------------------------------------------------- full perspective

// Normalised (x, y) -> distorted (xd, yd); jacobian (2x2 row-major) if given.
template <class T>
inline void distort(T x, T y, const T* k, T* xd, T* yd, T* jacobian = nullptr) {
  const T k1 = k[0], k2 = k[1], p1 = k[2], p2 = k[3], k3 = k[4];
  const T r2 = x * x + y * y;
  const T radial = T(1) + r2 * (k1 + r2 * (k2 + r2 * k3));
  *xd = x * radial + T(2) * p1 * x * y + p2 * (r2 + T(2) * x * x);
  *yd = y * radial + p1 * (r2 + T(2) * y * y) + T(2) * p2 * x * y;
  if (jacobian != nullptr) {
    const T g = k1 + r2 * (T(2) * k2 + T(3) * k3 * r2);
    jacobian[0] = radial + T(2) * x * x * g + T(2) * p1 * y + T(6) * p2 * x;
    jacobian[1] = T(2) * x * y * g + T(2) * p1 * x + T(2) * p2 * y;
    jacobian[2] = jacobian[1];
    jacobian[3] = radial + T(2) * y * y * g + T(6) * p1 * y + T(2) * p2 * x;
  }
}

// X (3) world point; R (9), t (3) world-to-camera; intrinsics (fx, fy, cx, cy); distortion (5).
// uv (2) pixels; jacobian (2x3) d uv / d X if given. False when the point is not in front.
template <class T>
inline bool project_perspective_point(const T* X, const T* R, const T* t, const T* intrinsics, const T* distortion,
                                      T* uv, T* jacobian = nullptr) {
  const T xc = dot3(R, X) + t[0];
  const T yc = dot3(R + 3, X) + t[1];
  const T zc = dot3(R + 6, X) + t[2];
  if (!(zc > T(0))) return false;
  const T inv_z = T(1) / zc;
  const T x = xc * inv_z, y = yc * inv_z;
  T xd, yd, dd[4];
  distort(x, y, distortion, &xd, &yd, jacobian ? dd : nullptr);
  uv[0] = intrinsics[0] * xd + intrinsics[2];
  uv[1] = intrinsics[1] * yd + intrinsics[3];
  if (jacobian != nullptr) {
    // d(x, y)/dXc = [[1/z, 0, -x/z], [0, 1/z, -y/z]]; chain with the distortion, the focal
    // lengths and d Xc / d X = R.
    const T dn[6] = {inv_z, 0, -x * inv_z, 0, inv_z, -y * inv_z};
    for (int r = 0; r < 2; ++r) {
      T row[3];
      for (int c = 0; c < 3; ++c) row[c] = intrinsics[r] * (dd[2 * r] * dn[c] + dd[2 * r + 1] * dn[3 + c]);
      for (int c = 0; c < 3; ++c) jacobian[3 * r + c] = row[0] * R[c] + row[1] * R[3 + c] + row[2] * R[6 + c];
    }
  }
  return true;
}

// Pixel (2) -> normalised image point (2) with distort(x, y) = ((u - cx)/fx, (v - cy)/fy).
// Returns false when Newton's method does not reach the point.
template <class T>
inline bool undistort_point(const T* uv, const T* intrinsics, const T* distortion, T* xy) {
  const T target_x = (uv[0] - intrinsics[2]) / intrinsics[0];
  const T target_y = (uv[1] - intrinsics[3]) / intrinsics[1];
  if (!std::isfinite(target_x) || !std::isfinite(target_y)) return false;
  T x = target_x, y = target_y;
  T xd, yd, J[4];
  distort(x, y, distortion, &xd, &yd, J);
  T rx = xd - target_x, ry = yd - target_y;
  T residual = rx * rx + ry * ry;
  const T tolerance = T(4) * std::numeric_limits<T>::epsilon() * (T(1) + std::fabs(target_x) + std::fabs(target_y));
  for (int iteration = 0; iteration < 100; ++iteration) {
    if (std::sqrt(residual) <= tolerance) break;
    const T det = J[0] * J[3] - J[1] * J[2];
    if (!(std::fabs(det) > T(0)) || !std::isfinite(det)) return false;
    const T step_x = (J[3] * rx - J[1] * ry) / det;
    const T step_y = (J[0] * ry - J[2] * rx) / det;
    // Damped step: halve until the residual does not grow.
    T lambda = 1;
    bool accepted = false;
    for (int halving = 0; halving < 40; ++halving) {
      const T nx = x - lambda * step_x, ny = y - lambda * step_y;
      T nxd, nyd, nJ[4];
      distort(nx, ny, distortion, &nxd, &nyd, nJ);
      const T nrx = nxd - target_x, nry = nyd - target_y;
      const T next = nrx * nrx + nry * nry;
      if (next <= residual) {
        x = nx, y = ny, rx = nrx, ry = nry, residual = next;
        for (int i = 0; i < 4; ++i) J[i] = nJ[i];
        accepted = true;
        break;
      }
      lambda *= T(0.5);
    }
    if (!accepted) break;  // no descent left: at the rounding floor, or stuck
  }
  if (!(std::sqrt(residual) <= T(1e-9) * (T(1) + std::fabs(target_x) + std::fabs(target_y)))) return false;
  xy[0] = x;
  xy[1] = y;
  return true;
}

}  // namespace metapose
