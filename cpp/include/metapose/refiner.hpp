// MetaPose's stage 1 and iterative refiner (IR) on the weak-perspective model.
//
// Solution vector (design.md): x = [pose J*3 | rot6d C*6 | scale_raw C | shift C*3], with camera
// c seeing the pose as s_c X R_c + shift_c (row vectors), R_c = rot6d_to_matrix(rot6d_c),
// s_c = softplus(scale_raw_c), and image point p_cj = the first two coordinates.
//
// Objective:  f(x) = -1/(C J) sum_{c,j} log sum_k (w + 1e-8) N(p_cj; mu_k, var_k I)
//                    + lambda || l / mean(l) - l_ref / mean(l_ref) ||      (optional bone term)
// Gradient, with g_cj = -1/(C J) dL/dp (mixture.hpp) and q_cj = X_j R_c:
//   df/dX_j      += s_c R_c[:, :2] g_cj           df/dR_c[a][k] += s_c X_ja g_cj,k   (k < 2)
//   df/ds_c      += q_cj[:2] . g_cj               df/dshift_c[k] += g_cj,k           (k < 2; z has none)
//   df/drot6d_c   = J6(rot6d_c)^T df/dR_c (rot6d_to_matrix_backward)
//   df/dscale_raw_c = df/ds_c * sigmoid(scale_raw_c)
// Bone term, u = l/mean(l) - r (r = l_ref/mean(l_ref), B bones), E = lambda |u|:
//   dE/du = lambda u/|u| (0 at u = 0);  dE/dl_a = (dE/du_a - (1/B) sum_b dE/du_b l_b/mean(l)) / mean(l);
//   dl_a/dX_child = -dl_a/dX_parent = (X_child - X_parent) / l_a (0 for a zero-length bone).
// Adam in the Keras form of the original: m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
//   x -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps),  t = 1..steps.
//
// Stage 1 (S1): camera 0 is the reference (R = I, s = 1, shift = m_0, the mean joint of its guess
// G_0). For k >= 1, A = G_0 - m_0, B = G_k - m_k: R_k is the best proper rotation with A R ~ B
// (procrustes.hpp), s_k = |B| / |A|, shift_k = m_k, and view k's guess in view 0's frame is
// B R_k^T / s_k. The initial pose is the mean of those over k >= 1 (centred: view 0's m_0 is in
// its shift). Singular case: a view whose guess has all joints at one point has no scale; it is
// reported.
#pragma once

#include <cmath>
#include <vector>

#include "linalg.hpp"
#include "mixture.hpp"
#include "procrustes.hpp"
#include "rotation.hpp"

namespace metapose {

struct RefinerOptions {
  int steps = 100;
  double learning_rate = 1e-2;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-7;
  double bone_weight = 0.0;
  int history_every = 0;  // 0: no history
};

inline int solution_size(int C, int J) { return 3 * J + 10 * C; }

// The refiner keeps per-camera values on the stack; callers check C against this.
inline constexpr int kMaxCameras = 16;

template <class T>
inline T softplus(T x) {
  clean_vector_state();
  return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::fabs(x)));
}

template <class T>
inline T sigmoid(T x) {
  clean_vector_state();
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

// The raw value whose softplus is s > 0.
template <class T>
inline T inverse_softplus(T s) {
  clean_vector_state();
  return s > T(30) ? s + std::log1p(-std::exp(-s)) : std::log(std::expm1(s));
}

// One frame's refinement problem. Mixtures are prepared (mixture.hpp) once per frame as one block
// over the C Jp points (camera c's joint j is point c Jp + j, Jp = padded_count(J)), field-major
// with stride C Jp, all zero in the padding.
template <class T>
struct RefinerProblem {
  int C = 0, J = 0, K = 0;
  const T* prepared = nullptr;        // 4 K C Jp
  int num_bones = 0;
  const long long* bones = nullptr;   // num_bones * 2 (parent, child)
  const T* bone_reference = nullptr;  // num_bones, already divided by its mean
  T bone_weight = 0;
};

// Prepares one frame's mixtures (C x J x K x 4) into the block RefinerProblem::prepared points to
// (4 K C Jp values, zeroed here).
template <class T>
inline void prepare_frame(const T* mixtures, int C, int J, int K, T* prepared) {
  const int Jp = padded_count(J);
  for (int i = 0; i < 4 * K * C * Jp; ++i) prepared[i] = T(0);
  for (int c = 0; c < C; ++c) prepare_mixtures(mixtures + 4 * K * J * c, J, K, prepared + c * Jp, C * Jp);
}

inline int prepared_frame_size(int C, int J, int K) { return 4 * K * C * padded_count(J); }

// Scratch values refiner_objective needs.
// sum_n a[n] b[n] with four partial sums, which the compiler can keep in one vector register.
template <class T>
inline T dot_n(const T* a, const T* b, int n) {
  T partial[4] = {0, 0, 0, 0};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) partial[l] += a[i + l] * b[i + l];
  for (; i < n; ++i) partial[0] += a[i] * b[i];
  return (partial[0] + partial[1]) + (partial[2] + partial[3]);
}

inline int objective_workspace_size(int C, int J, int K) {
  const int Jp = padded_count(J);
  return 6 * Jp + (9 + K) * C * Jp;  // pose and gradient by coordinate; 7 arrays of C Jp; (K + 2) C Jp scratch
}

// f(x) into value and the gradient (size P), each if given; `work` holds
// objective_workspace_size(C, J, K) values. Returns false where a rotation became undefined or
// the value is not finite. The pose and its gradient are handled by coordinate (structure of
// arrays, padded to Jp joints with zeros) and all C Jp points are evaluated in one pass, so that
// the loops vectorise.
template <class T>
bool refiner_objective(const RefinerProblem<T>& problem, const T* x, T* value, T* gradient, T* work) {
  const int C = problem.C, J = problem.J, K = problem.K;
  const int Jp = padded_count(J), N = C * Jp;
  const T* pose = x;
  const T* rot6d = x + 3 * J;
  const T* scale_raw = rot6d + 6 * C;
  const T* shift = scale_raw + C;
  T* METAPOSE_RESTRICT X0 = work;
  T* METAPOSE_RESTRICT X1 = work + Jp;
  T* METAPOSE_RESTRICT X2 = work + 2 * Jp;
  T* METAPOSE_RESTRICT G0 = work + 3 * Jp;  // df/dpose by coordinate
  T* METAPOSE_RESTRICT G1 = work + 4 * Jp;
  T* METAPOSE_RESTRICT G2 = work + 5 * Jp;
  T* METAPOSE_RESTRICT px = work + 6 * Jp;  // N each from here
  T* METAPOSE_RESTRICT py = px + N;
  T* METAPOSE_RESTRICT gx = py + N;  // d loglik / dp
  T* METAPOSE_RESTRICT gy = gx + N;
  T* METAPOSE_RESTRICT q0 = gy + N;  // the rotated pose X R_c, first two columns
  T* METAPOSE_RESTRICT q1 = q0 + N;
  T* values = q1 + N;
  T* scratch = values + N;  // (K + 2) N, for evaluate_mixtures' general-K path
  for (int j = 0; j < Jp; ++j) {
    const bool real = j < J;
    X0[j] = real ? pose[3 * j] : T(0);
    X1[j] = real ? pose[3 * j + 1] : T(0);
    X2[j] = real ? pose[3 * j + 2] : T(0);
    G0[j] = G1[j] = G2[j] = T(0);
  }
  T R[9 * kMaxCameras], scale[kMaxCameras];
  for (int c = 0; c < C; ++c) {
    const T* Rc = R + 9 * c;
    if (!rot6d_to_matrix(rot6d + 6 * c, R + 9 * c)) return false;
    const T s = scale[c] = softplus(scale_raw[c]);
    const T t0 = shift[3 * c], t1 = shift[3 * c + 1];
    T* METAPOSE_RESTRICT a = q0 + c * Jp;
    T* METAPOSE_RESTRICT b = q1 + c * Jp;
    T* METAPOSE_RESTRICT u = px + c * Jp;
    T* METAPOSE_RESTRICT v = py + c * Jp;
    METAPOSE_VECTORIZE
    for (int j = 0; j < Jp; ++j) {
      a[j] = X0[j] * Rc[0] + X1[j] * Rc[3] + X2[j] * Rc[6];
      b[j] = X0[j] * Rc[1] + X1[j] * Rc[4] + X2[j] * Rc[7];
      u[j] = s * a[j] + t0;
      v[j] = s * b[j] + t1;
    }
  }
  evaluate_mixtures(px, py, N, problem.prepared, K, gx, gy, value ? values : nullptr, scratch);
  const T inv_count = T(1) / T(C * J);
  T total = 0;
  if (value)
    for (int c = 0; c < C; ++c)
      for (int j = 0; j < J; ++j) total += values[c * Jp + j];
  if (gradient) {
    for (int c = 0; c < C; ++c) {
      const T* Rc = R + 9 * c;
      const T s = scale[c];
      const T* METAPOSE_RESTRICT hx = gx + c * Jp;  // padding joints have gx = gy = 0
      const T* METAPOSE_RESTRICT hy = gy + c * Jp;
      const T* METAPOSE_RESTRICT a = q0 + c * Jp;
      const T* METAPOSE_RESTRICT b = q1 + c * Jp;
      // With g = -(hx, hy) / (C J) = df/dp: df/dX_j += s R_c[:, :2] g_j, df/dR[a][k] =
      // s sum_j X_ja g_jk, df/ds = sum_j q_j . g_j and df/dshift_k = sum_j g_jk.
      const T w = -s * inv_count;
      const T r00 = w * Rc[0], r01 = w * Rc[1], r10 = w * Rc[3], r11 = w * Rc[4], r20 = w * Rc[6], r21 = w * Rc[7];
      METAPOSE_VECTORIZE
      for (int j = 0; j < Jp; ++j) {
        G0[j] += r00 * hx[j] + r01 * hy[j];
        G1[j] += r10 * hx[j] + r11 * hy[j];
        G2[j] += r20 * hx[j] + r21 * hy[j];
      }
      const T to_f = -inv_count;  // from d loglik / dp to df/dp
      const T gR[9] = {w * dot_n(X0, hx, Jp), w * dot_n(X0, hy, Jp), 0,
                       w * dot_n(X1, hx, Jp), w * dot_n(X1, hy, Jp), 0,
                       w * dot_n(X2, hx, Jp), w * dot_n(X2, hy, Jp), 0};
      const T gs = to_f * (dot_n(a, hx, Jp) + dot_n(b, hy, Jp));
      T shift_x = 0, shift_y = 0;
      for (int j = 0; j < J; ++j) {
        shift_x += hx[j];
        shift_y += hy[j];
      }
      rot6d_to_matrix_backward(rot6d + 6 * c, gR, gradient + 3 * J + 6 * c);
      gradient[3 * J + 6 * C + c] = gs * sigmoid(scale_raw[c]);
      T* g_shift = gradient + 3 * J + 7 * C + 3 * c;
      g_shift[0] = to_f * shift_x;
      g_shift[1] = to_f * shift_y;
      g_shift[2] = T(0);
    }
  }
  T* g_pose = gradient;
  if (gradient)
    for (int j = 0; j < J; ++j) {
      g_pose[3 * j] = G0[j];
      g_pose[3 * j + 1] = G1[j];
      g_pose[3 * j + 2] = G2[j];
    }
  T f = -total * inv_count;
  if (problem.bone_weight > T(0) && problem.num_bones > 0) {
    const int B = problem.num_bones;
    T lengths_stack[64];
    std::vector<T> lengths_heap(B > 64 ? B : 0);
    T* lengths = B > 64 ? lengths_heap.data() : lengths_stack;
    T mean = 0;
    for (int b = 0; b < B; ++b) {
      const T* parent = pose + 3 * problem.bones[2 * b];
      const T* child = pose + 3 * problem.bones[2 * b + 1];
      const T d[3] = {child[0] - parent[0], child[1] - parent[1], child[2] - parent[2]};
      lengths[b] = norm3(d);
      mean += lengths[b];
    }
    mean /= T(B);
    if (mean > T(0)) {
      T norm2 = 0;
      for (int b = 0; b < B; ++b) {
        const T u = lengths[b] / mean - problem.bone_reference[b];
        norm2 += u * u;
      }
      const T norm = std::sqrt(norm2);
      f += problem.bone_weight * norm;
      if (gradient && norm > T(0)) {
        // dE/du_b = lambda u_b / |u|; project out the mean-length dependence.
        T correction = 0;
        for (int b = 0; b < B; ++b) {
          const T du = problem.bone_weight * (lengths[b] / mean - problem.bone_reference[b]) / norm;
          correction += du * lengths[b] / mean;
        }
        correction /= T(B);
        for (int b = 0; b < B; ++b) {
          if (!(lengths[b] > T(0))) continue;
          const T du = problem.bone_weight * (lengths[b] / mean - problem.bone_reference[b]) / norm;
          const T dl = (du - correction) / mean;
          const long long parent = problem.bones[2 * b], child = problem.bones[2 * b + 1];
          for (int a = 0; a < 3; ++a) {
            const T direction = (pose[3 * child + a] - pose[3 * parent + a]) / lengths[b];
            g_pose[3 * child + a] += dl * direction;
            g_pose[3 * parent + a] -= dl * direction;
          }
        }
      }
    }
  }
  if (value == nullptr) return true;
  *value = f;
  return std::isfinite(f);
}

// Adam from x (updated in place). objective receives f(final x). history_x (H * P) and
// history_objective (H) receive x and f(x) at steps 0, n, 2n, ... <= steps when n > 0.
// `scratch` holds refine_workspace_size(C, J, K) values. Returns false where the objective became undefined.
inline int refine_workspace_size(int C, int J, int K) {
  return 3 * solution_size(C, J) + objective_workspace_size(C, J, K);
}

template <class T>
bool refine(const RefinerProblem<T>& problem, const RefinerOptions& options, T* x, T* objective, T* history_x,
            T* history_objective, T* scratch) {
  const int P = solution_size(problem.C, problem.J);
  T* gradient = scratch;
  T* m = scratch + P;
  T* v = scratch + 2 * P;
  T* work = scratch + 3 * P;
  for (int i = 0; i < P; ++i) m[i] = v[i] = 0;
  const T b1 = T(options.beta1), b2 = T(options.beta2), lr = T(options.learning_rate), eps = T(options.epsilon);
  const int every = options.history_every;
  T b1_power = 1, b2_power = 1;
  int recorded = 0;
  for (int t = 1; t <= options.steps; ++t) {
    const bool record = every > 0 && (t - 1) % every == 0;  // x is still x_{t-1}
    T value = 0;
    if (!refiner_objective(problem, x, record ? &value : nullptr, gradient, work)) return false;
    if (record) {
      for (int i = 0; i < P; ++i) history_x[P * recorded + i] = x[i];
      history_objective[recorded++] = value;
    }
    b1_power *= b1;
    b2_power *= b2;
    const T step = lr * std::sqrt(T(1) - b2_power) / (T(1) - b1_power);
    for (int i = 0; i < P; ++i) {
      const T g = gradient[i];
      m[i] = b1 * m[i] + (T(1) - b1) * g;
      v[i] = b2 * v[i] + (T(1) - b2) * g * g;
      x[i] -= step * m[i] / (std::sqrt(v[i]) + eps);
    }
  }
  for (int i = 0; i < P; ++i)
    if (!std::isfinite(x[i])) return false;
  if (!refiner_objective(problem, x, objective, static_cast<T*>(nullptr), work)) return false;
  if (every > 0 && options.steps % every == 0) {
    for (int i = 0; i < P; ++i) history_x[P * recorded + i] = x[i];
    history_objective[recorded] = *objective;
  }
  return true;
}

// Stage 1 from monocular guesses G (C x J x 3) -> x (P). False when a view's guess is a point.
template <class T>
bool stage1(const T* guesses, int C, int J, T* x) {
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
