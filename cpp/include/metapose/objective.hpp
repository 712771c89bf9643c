// MetaPose's refiner objective on the weak-perspective model, and its gradient.
//
// Solution vector (config.hpp): x = [pose J*3 | rot6d C*6 | scale_raw C | shift C*3], with camera
// c seeing the pose as s_c X R_c + shift_c (row vectors), R_c = rot6d_to_matrix(rot6d_c),
// s_c = softplus(scale_raw_c), and image point p_cj = the first two coordinates.
//
// Objective:  f(x) = -1/(C J) sum_{c,j} log sum_k (w + 1e-8) N(p_cj; mu_k, var_k I)
//                    + lambda || l / mean(l) - l_ref / mean(l_ref) ||      (optional bone term)
// Gradient, with g_cj = -1/(C J) dL/dp (mixture.hpp) and q_cj = X_j R_c:
//   df/dX_j      += s_c R_c[:, :2] g_cj           df/dR_c[a][k] += s_c X_ja g_cj,k   (k < 2)
//   df/ds_c      += q_cj[:2] . g_cj               df/dshift_c[k] += g_cj,k           (k < 2; z has none)
//   df/drot6d_c   = J6(rot6d_c)^T df/dR_c (GramSchmidt::backward, rotation.hpp)
//   df/dscale_raw_c = df/ds_c * sigmoid(scale_raw_c)
// Bone term, u = l/mean(l) - r (r = l_ref/mean(l_ref), B bones), E = lambda |u|:
//   dE/du = lambda u/|u| (0 at u = 0);  dE/dl_a = (dE/du_a - (1/B) sum_b dE/du_b l_b/mean(l)) / mean(l);
//   dl_a/dX_child = -dl_a/dX_parent = (X_child - X_parent) / l_a (0 for a zero-length bone).
// Singular cases: a camera whose rot6d rows are zero or parallel has no rotation, and a value that
// overflows is not finite; both are reported per frame (ok). A pose whose bones all have zero length
// has no bone term (0, no gradient), nor has u = 0 a gradient.
// Limits: at most kMaxCameras cameras, and sizes the kernels' int indexing reaches
// (objective_shape_ok); refiner_objective refuses any other problem (false) before touching anything.
//
// L frames of one shape run side by side in vector lanes (config.hpp, "Lanes"); L = 1 is one frame.
#pragma once

#include <cmath>
#include <vector>

#include "config.hpp"
#include "fastmath.hpp"
#include "linalg.hpp"
#include "mixture.hpp"
#include "rotation.hpp"

namespace metapose {

// The refinement problem of L frames of one shape (C, J, K) side by side (config.hpp, "Lanes"); L = 1
// (RefinerProblem) is one frame. Mixtures are prepared (mixture.hpp) once per frame as one block
// over the C Jp points (camera c's joint j is point c Jp + j, Jp = padded_count(J)), field-major
// with stride C Jp, all zero in the padding; with L lanes every value of that block is followed
// by the other frames' (lane-minor), and so is each bone reference.
template <class T, int L = 1>
struct RefinerLanes {
  int C = 0, J = 0, K = 0;
  const T* prepared = nullptr;        // 4 K C Jp L
  int num_bones = 0;
  const long long* bones = nullptr;   // num_bones * 2 (parent, child), shared by the L frames
  const T* bone_reference = nullptr;  // num_bones L, each frame's already divided by its mean
  T bone_weight = 0;                  // shared by the L frames
};

template <class T>
using RefinerProblem = RefinerLanes<T, 1>;

// Prepares one frame's mixtures (C x J x K x 4) into the block RefinerProblem::prepared points to
// (4 K C Jp values, zeroed here), for a shape objective_shape_ok accepts (the caller checks).
template <class T>
inline void prepare_frame(const T* mixtures, int C, int J, int K, T* prepared) {
  const int Jp = padded_count(J);
  for (int i = 0; i < 4 * K * C * Jp; ++i) prepared[i] = T(0);
  for (int c = 0; c < C; ++c) prepare_mixtures(mixtures + 4 * K * J * c, J, K, prepared + c * Jp, C * Jp);
}

// One frame's reference bone lengths (num_bones) -> out = lengths / mean(lengths), as
// RefinerLanes::bone_reference holds them. Returns false when the mean is not positive (then the
// bone term has no reference; out = lengths, the divisor taken as 1).
template <class T>
inline bool normalise_bone_reference(const T* lengths, int num_bones, T* out) {
  T mean = 0;
  for (int i = 0; i < num_bones; ++i) mean += lengths[i];
  mean /= num_bones;
  const bool positive = mean > 0;
  if (!positive) mean = 1;
  for (int i = 0; i < num_bones; ++i) out[i] = lengths[i] / mean;
  return positive;
}

inline long long prepared_frame_size(long long C, long long J, long long K) { return 4 * K * C * padded_count(J); }

// Values refiner_objective needs as scratch, for L lanes.
inline long long objective_workspace_size(long long C, long long J, long long K, long long L = 1) {
  const long long Jp = padded_count(J);
  // pose and gradient by coordinate (6 Jp L); 7 arrays of C Jp L; evaluate_mixtures' scratch
  return L * 6 * Jp + 7 * C * Jp * L + mixture_scratch_size(K, C * Jp * L);
}

// The largest lane count objective_shape_ok takes (the refiner uses kRefinerLanes).
inline constexpr int kMaxLanes = 64;

// True when the objective can run L frames of shape (C, J, K) with num_bones bones side by side:
// kMinCameras <= C <= kMaxCameras (its per-camera values are in arrays on the stack), J, K >= 1,
// num_bones >= 0, 1 <= L <= kMaxLanes, and its int indexing reaches every array: x and the gradient,
// the prepared mixtures, the bones (2 num_bones), the bone references and the workspace each hold at
// most kMaxIndex values. Every product below is bounded before it is formed, so no size overflows.
inline bool objective_shape_ok(long long C, long long J, long long K, long long num_bones, long long L = 1) {
  if (C < kMinCameras || C > kMaxCameras || J < 1 || J > kMaxIndex || K < 1 || K > kMaxIndex || num_bones < 0 ||
      num_bones > kMaxIndex / 2 || L < 1 || L > kMaxLanes)
    return false;
  const long long points = C * padded_count(J) * L;  // C Jp L < 2^42
  if (points > kMaxIndex || K + 9 > kMaxIndex / points) return false;
  return num_bones * L <= kMaxIndex && solution_size(C, J) * L <= kMaxIndex &&
         prepared_frame_size(C, J, K) * L <= kMaxIndex && objective_workspace_size(C, J, K, L) <= kMaxIndex;
}

// True when `problem` can be evaluated: its shape passes objective_shape_ok, its arrays are given
// (bones and references may be null when there are none), and every bone joins two of its J joints.
template <class T, int L>
bool objective_problem_ok(const RefinerLanes<T, L>& problem) {
  if (!objective_shape_ok(problem.C, problem.J, problem.K, problem.num_bones, L) || problem.prepared == nullptr)
    return false;
  if (problem.num_bones == 0) return true;
  if (problem.bones == nullptr || problem.bone_reference == nullptr) return false;
  for (int i = 0; i < 2 * problem.num_bones; ++i)
    if (problem.bones[i] < 0 || problem.bones[i] >= problem.J) return false;
  return true;
}

// The bone term of lane l (formulas at the top): returns its value and adds its gradient to that
// lane's pose gradient, if given.
template <class T, int L>
T bone_term(const RefinerLanes<T, L>& problem, int lane, const T* pose, T* gradient) {
  const int B = problem.num_bones;
  auto X = [&](long long joint, int a) { return pose[(3 * joint + a) * L + lane]; };
  auto reference = [&](int b) { return problem.bone_reference[b * L + lane]; };
  T lengths_stack[64];
  std::vector<T> lengths_heap(B > 64 ? B : 0);
  T* lengths = B > 64 ? lengths_heap.data() : lengths_stack;
  T mean = 0;
  for (int b = 0; b < B; ++b) {
    const long long parent = problem.bones[2 * b], child = problem.bones[2 * b + 1];
    const T d[3] = {X(child, 0) - X(parent, 0), X(child, 1) - X(parent, 1), X(child, 2) - X(parent, 2)};
    lengths[b] = norm3(d);
    mean += lengths[b];
  }
  mean /= T(B);
  if (!(mean > T(0))) return T(0);
  T norm2 = 0;
  for (int b = 0; b < B; ++b) {
    const T u = lengths[b] / mean - reference(b);
    norm2 += u * u;
  }
  const T norm = std::sqrt(norm2);
  if (gradient && norm > T(0)) {
    // dE/du_b = lambda u_b / |u|; project out the mean-length dependence.
    T correction = 0;
    for (int b = 0; b < B; ++b) {
      const T du = problem.bone_weight * (lengths[b] / mean - reference(b)) / norm;
      correction += du * lengths[b] / mean;
    }
    correction /= T(B);
    for (int b = 0; b < B; ++b) {
      if (!(lengths[b] > T(0))) continue;
      const T du = problem.bone_weight * (lengths[b] / mean - reference(b)) / norm;
      const T dl = (du - correction) / mean;
      const long long parent = problem.bones[2 * b], child = problem.bones[2 * b + 1];
      for (int a = 0; a < 3; ++a) {
        const T direction = (X(child, a) - X(parent, a)) / lengths[b];
        gradient[(3 * child + a) * L + lane] += dl * direction;
        gradient[(3 * parent + a) * L + lane] -= dl * direction;
      }
    }
  }
  return problem.bone_weight * norm;
}

// f(x) of L frames, for a problem objective_problem_ok accepts: x (P L, lane-minor) -> value (L)
// and gradient (P L), each if given; `work` holds objective_workspace_size(C, J, K, L) values.
// Clears ok[l] where frame l's rotation is undefined or, when the value is asked for, the value is
// not finite. The pose and its gradient are handled by coordinate (structure of arrays, padded to
// Jp joints with zeros) and all C Jp L points are evaluated in one pass.
template <class T, int L>
void refiner_objective_unchecked(const RefinerLanes<T, L>& problem, const T* x, T* value, T* gradient, T* work,
                                 bool* ok) {
  static_assert(L >= 1 && L <= kMaxLanes, "lane counts objective_shape_ok takes");
  const int C = problem.C, J = problem.J, K = problem.K;
  const int Jp = padded_count(J), N = C * Jp;
  const T* pose = x;
  const T* rot6d = x + 3 * J * L;
  const T* scale_raw = rot6d + 6 * C * L;
  const T* shift = scale_raw + C * L;
  T* METAPOSE_RESTRICT X0 = work;  // Jp L each
  T* METAPOSE_RESTRICT X1 = X0 + Jp * L;
  T* METAPOSE_RESTRICT X2 = X1 + Jp * L;
  T* METAPOSE_RESTRICT G0 = X2 + Jp * L;  // df/dpose by coordinate
  T* METAPOSE_RESTRICT G1 = G0 + Jp * L;
  T* METAPOSE_RESTRICT G2 = G1 + Jp * L;
  T* METAPOSE_RESTRICT px = G2 + Jp * L;  // N L each from here
  T* METAPOSE_RESTRICT py = px + N * L;
  T* METAPOSE_RESTRICT gx = py + N * L;  // d loglik / dp
  T* METAPOSE_RESTRICT gy = gx + N * L;
  T* METAPOSE_RESTRICT q0 = gy + N * L;  // the rotated pose X R_c, first two columns
  T* METAPOSE_RESTRICT q1 = q0 + N * L;
  T* values = q1 + N * L;
  T* scratch = values + N * L;  // mixture_scratch_size(K, N L), for evaluate_mixtures' general-K path
  for (int j = 0; j < Jp; ++j)
    for (int l = 0; l < L; ++l) {
      const bool real = j < J;
      X0[j * L + l] = real ? pose[3 * j * L + l] : T(0);
      X1[j * L + l] = real ? pose[(3 * j + 1) * L + l] : T(0);
      X2[j * L + l] = real ? pose[(3 * j + 2) * L + l] : T(0);
      G0[j * L + l] = G1[j * L + l] = G2[j * L + l] = T(0);
    }
  GramSchmidt<T, L> frames[kMaxCameras];
  T R[9 * kMaxCameras * L], scale[kMaxCameras * L], slope[kMaxCameras * L];
  for (int c = 0; c < C; ++c) {
    frames[c].compute(rot6d + 6 * c * L, ok);
    frames[c].matrix(R + 9 * c * L);
    METAPOSE_VECTORIZE
    for (int l = 0; l < L; ++l) softplus_and_slope(scale_raw[c * L + l], scale + c * L + l, slope + c * L + l);
    const T* Rc = R + 9 * c * L;
    const T* s = scale + c * L;
    const T* t = shift + 3 * c * L;
    T* METAPOSE_RESTRICT a = q0 + c * Jp * L;
    T* METAPOSE_RESTRICT b = q1 + c * Jp * L;
    T* METAPOSE_RESTRICT u = px + c * Jp * L;
    T* METAPOSE_RESTRICT v = py + c * Jp * L;
    for (int j = 0; j < Jp; ++j) {
      METAPOSE_VECTORIZE
      for (int l = 0; l < L; ++l) {
        const int i = j * L + l;
        a[i] = METAPOSE_MADD(X2[i], Rc[6 * L + l], METAPOSE_MADD(X1[i], Rc[3 * L + l], X0[i] * Rc[l]));
        b[i] = METAPOSE_MADD(X2[i], Rc[7 * L + l], METAPOSE_MADD(X1[i], Rc[4 * L + l], X0[i] * Rc[L + l]));
        u[i] = METAPOSE_MADD(s[l], a[i], t[l]);
        v[i] = METAPOSE_MADD(s[l], b[i], t[L + l]);
      }
    }
  }
  evaluate_mixtures(px, py, N * L, problem.prepared, K, gx, gy, value ? values : nullptr, scratch);
  const T inv_count = T(1) / T(C * J);
  if (gradient) {
    for (int c = 0; c < C; ++c) {
      const T* Rc = R + 9 * c * L;
      const T* s = scale + c * L;
      const T* METAPOSE_RESTRICT hx = gx + c * Jp * L;  // padding joints have gx = gy = 0
      const T* METAPOSE_RESTRICT hy = gy + c * Jp * L;
      const T* METAPOSE_RESTRICT a = q0 + c * Jp * L;
      const T* METAPOSE_RESTRICT b = q1 + c * Jp * L;
      // With g = -(hx, hy) / (C J) = df/dp: df/dX_j += s R_c[:, :2] g_j, df/dR[a][k] =
      // s sum_j X_ja g_jk, df/ds = sum_j q_j . g_j and df/dshift_k = sum_j g_jk.
      T w[L], r[6 * L], sums[10 * L];
      for (int l = 0; l < L; ++l) {
        w[l] = -s[l] * inv_count;
        for (int k = 0; k < 3; ++k) {
          r[(2 * k) * L + l] = w[l] * Rc[3 * k * L + l];
          r[(2 * k + 1) * L + l] = w[l] * Rc[(3 * k + 1) * L + l];
        }
      }
      for (int i = 0; i < 10 * L; ++i) sums[i] = T(0);
      for (int j = 0; j < Jp; ++j) {
        METAPOSE_VECTORIZE
        for (int l = 0; l < L; ++l) {
          const int i = j * L + l;
          G0[i] = METAPOSE_MADD(r[L + l], hy[i], METAPOSE_MADD(r[l], hx[i], G0[i]));
          G1[i] = METAPOSE_MADD(r[3 * L + l], hy[i], METAPOSE_MADD(r[2 * L + l], hx[i], G1[i]));
          G2[i] = METAPOSE_MADD(r[5 * L + l], hy[i], METAPOSE_MADD(r[4 * L + l], hx[i], G2[i]));
          sums[l] = METAPOSE_MADD(X0[i], hx[i], sums[l]);
          sums[L + l] = METAPOSE_MADD(X0[i], hy[i], sums[L + l]);
          sums[2 * L + l] = METAPOSE_MADD(X1[i], hx[i], sums[2 * L + l]);
          sums[3 * L + l] = METAPOSE_MADD(X1[i], hy[i], sums[3 * L + l]);
          sums[4 * L + l] = METAPOSE_MADD(X2[i], hx[i], sums[4 * L + l]);
          sums[5 * L + l] = METAPOSE_MADD(X2[i], hy[i], sums[5 * L + l]);
          sums[6 * L + l] = METAPOSE_MADD(a[i], hx[i], sums[6 * L + l]);
          sums[7 * L + l] = METAPOSE_MADD(b[i], hy[i], sums[7 * L + l]);
          sums[8 * L + l] += hx[i];
          sums[9 * L + l] += hy[i];
        }
      }
      const T to_f = -inv_count;  // from d loglik / dp to df/dp
      T gR[9 * L];
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < 3; ++k) {
          gR[3 * k * L + l] = w[l] * sums[2 * k * L + l];
          gR[(3 * k + 1) * L + l] = w[l] * sums[(2 * k + 1) * L + l];
          gR[(3 * k + 2) * L + l] = T(0);
        }
      frames[c].backward(rot6d + 6 * c * L, gR, gradient + (3 * J + 6 * c) * L);
      T* g_scale = gradient + (3 * J + 6 * C + c) * L;
      T* g_shift = gradient + (3 * J + 7 * C + 3 * c) * L;
      for (int l = 0; l < L; ++l) {
        g_scale[l] = to_f * (sums[6 * L + l] + sums[7 * L + l]) * slope[c * L + l];
        g_shift[l] = to_f * sums[8 * L + l];
        g_shift[L + l] = to_f * sums[9 * L + l];
        g_shift[2 * L + l] = T(0);
      }
    }
    for (int j = 0; j < J; ++j)
      for (int l = 0; l < L; ++l) {
        gradient[3 * j * L + l] = G0[j * L + l];
        gradient[(3 * j + 1) * L + l] = G1[j * L + l];
        gradient[(3 * j + 2) * L + l] = G2[j * L + l];
      }
  }
  T f[L];
  for (int l = 0; l < L; ++l) f[l] = T(0);
  if (value)
    for (int c = 0; c < C; ++c)
      for (int j = 0; j < J; ++j)
        for (int l = 0; l < L; ++l) f[l] += values[(c * Jp + j) * L + l];
  for (int l = 0; l < L; ++l) f[l] = -f[l] * inv_count;
  if (problem.bone_weight > T(0) && problem.num_bones > 0)
    for (int l = 0; l < L; ++l)
      f[l] += bone_term(problem, l, pose, gradient);
  if (value == nullptr) return;
  for (int l = 0; l < L; ++l) {
    value[l] = f[l];
    ok[l] = ok[l] && std::isfinite(f[l]);
  }
}

// The objective of L frames as adam_keras (refiner.hpp) evaluates it: f and its gradient at x
// (P L, lane-minor) for `problem`, with `work` holding objective_workspace_size(C, J, K, L) values.
// The caller checks the problem first (objective_problem_ok).
template <class T, int L>
struct RefinerObjective {
  RefinerLanes<T, L> problem;
  T* work = nullptr;

  void evaluate(const T* x, T* value, T* gradient, bool* ok) const {
    refiner_objective_unchecked(problem, x, value, gradient, work, ok);
  }
};

// refiner_objective_unchecked after the checks: returns false, touching nothing, when `problem` is
// not one objective_problem_ok accepts (17 cameras, say) or x, work or ok is null.
template <class T, int L>
bool refiner_objective(const RefinerLanes<T, L>& problem, const T* x, T* value, T* gradient, T* work, bool* ok) {
  if (!objective_problem_ok(problem) || x == nullptr || work == nullptr || ok == nullptr) return false;
  refiner_objective_unchecked(problem, x, value, gradient, work, ok);
  return true;
}

// One frame's f(x) (P) into value and the gradient (P), each if given; `work` holds
// objective_workspace_size(C, J, K) values. Returns false where a rotation became undefined or the
// value is not finite, and, touching nothing, where the problem is refused (refiner_objective above).
template <class T>
bool refiner_objective(const RefinerProblem<T>& problem, const T* x, T* value, T* gradient, T* work) {
  bool ok = true;
  return refiner_objective(problem, x, value, gradient, work, &ok) && ok;
}

}  // namespace metapose
