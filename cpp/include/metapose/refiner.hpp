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
//   df/drot6d_c   = J6(rot6d_c)^T df/dR_c (GramSchmidt::backward, rotation.hpp)
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

#include "fastmath.hpp"
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

// Sizes are computed in 64 bits, so that a caller can check them against the int indexing inside.
inline long long solution_size(long long C, long long J) { return 3 * J + 10 * C; }

// The refiner keeps per-camera values on the stack; callers check C against this.
inline constexpr int kMaxCameras = 16;

// The refinement problem of L frames of one shape (C, J, K) side by side (see "Lanes" below); L = 1
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
// (4 K C Jp values, zeroed here).
template <class T>
inline void prepare_frame(const T* mixtures, int C, int J, int K, T* prepared) {
  const int Jp = padded_count(J);
  for (int i = 0; i < 4 * K * C * Jp; ++i) prepared[i] = T(0);
  for (int c = 0; c < C; ++c) prepare_mixtures(mixtures + 4 * K * J * c, J, K, prepared + c * Jp, C * Jp);
}

inline long long prepared_frame_size(long long C, long long J, long long K) { return 4 * K * C * padded_count(J); }

// Lanes. The objective and Adam run L frames of one shape (C, J, K) side by side, so that the
// per-camera work (Gram-Schmidt, its reverse, the reductions over joints) and Adam fill vector
// registers as the per-point work does. Every per-frame array of n values is stored lane-minor,
// n x L (value i of frame l at [i L + l]); L = 1 is one frame in its plain layout. No value ever
// mixes lanes, so a frame's result is the same bits whichever lane, group or thread it runs in.
// Four lanes measured as fast per frame as eight (0.091 against 0.089 ms) and waste less on a
// batch's last, partial group (see refiner_lane_width).
inline constexpr int kRefinerLanes = 4;

// The lane width for a group when `left` frames remain: kRefinerLanes, or for the last few the
// narrowest width that holds them (3 -> 4, 2 -> 2, 1 -> 1), so that one frame alone does not pay
// for four.
inline int refiner_lane_width(long long left) { return left >= 3 ? kRefinerLanes : static_cast<int>(left); }

// Values refiner_objective needs as scratch, for L lanes.
inline long long objective_workspace_size(long long C, long long J, long long K, long long L = 1) {
  const long long Jp = padded_count(J);
  return L * (6 * Jp + (9 + K) * C * Jp);  // pose and gradient by coordinate; 7 arrays of C Jp L; (K + 2) C Jp L scratch
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

// f(x) of L frames: x (P L, lane-minor) -> value (L) and gradient (P L), each if given; `work` holds
// objective_workspace_size(C, J, K, L) values. Clears ok[l] where frame l's rotation is undefined or,
// when the value is asked for, the value is not finite. The pose and its gradient are handled by
// coordinate (structure of arrays, padded to Jp joints with zeros) and all C Jp L points are
// evaluated in one pass.
template <class T, int L>
void refiner_objective(const RefinerLanes<T, L>& problem, const T* x, T* value, T* gradient, T* work, bool* ok) {
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
  T* scratch = values + N * L;  // (K + 2) N L, for evaluate_mixtures' general-K path
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

// One frame's f(x) (P) into value and the gradient (P), each if given; `work` holds
// objective_workspace_size(C, J, K) values. Returns false where a rotation became undefined or the
// value is not finite.
template <class T>
bool refiner_objective(const RefinerProblem<T>& problem, const T* x, T* value, T* gradient, T* work) {
  bool ok = true;
  refiner_objective(problem, x, value, gradient, work, &ok);
  return ok;
}

// Scratch refine needs, for L lanes (enough for any narrower width too).
inline long long refine_workspace_size(long long C, long long J, long long K, long long num_bones,
                                       long long L = kRefinerLanes) {
  return L * (4 * solution_size(C, J) + prepared_frame_size(C, J, K) + num_bones) + objective_workspace_size(C, J, K, L);
}

// Adam on `count` <= L frames side by side: problems[i], x[i] (P, updated
// in place), objective[i] (receives f(final x)), history_x[i] (H P) and history_objective[i] (H)
// receive x and f(x) at steps 0, n, 2n, ... <= steps when n = options.history_every > 0. Lanes past
// `count` repeat frame 0 and are discarded. The frames share C, J, K, the bones and the bone
// weight, which are taken from problems[0]. `scratch` holds refine_workspace_size(C, J, K,
// num_bones, L) values. ok[i] is set false where frame i's objective became undefined.
template <class T, int L>
void refine(const RefinerProblem<T>* problems, int count, const RefinerOptions& options, T* const* x,
            T* const* objective, T* const* history_x, T* const* history_objective, T* scratch, bool* ok) {
  const RefinerProblem<T>& first = problems[0];
  const int C = first.C, J = first.J, K = first.K, B = first.num_bones;
  const int P = static_cast<int>(solution_size(C, J)), prepared_size = static_cast<int>(prepared_frame_size(C, J, K));
  T* METAPOSE_RESTRICT xl = scratch;
  T* METAPOSE_RESTRICT gradient = xl + P * L;
  T* METAPOSE_RESTRICT m = gradient + P * L;
  T* METAPOSE_RESTRICT v = m + P * L;
  T* prepared = v + P * L;
  T* reference = prepared + prepared_size * L;
  T* work = reference + B * L;
  bool lane_ok[L];
  const T* x_in[L];
  const T* prepared_in[L];
  const T* reference_in[L];
  for (int l = 0; l < L; ++l) {
    const int frame = l < count ? l : 0;
    x_in[l] = x[frame];
    prepared_in[l] = problems[frame].prepared;
    reference_in[l] = problems[frame].bone_reference;
    lane_ok[l] = true;
  }
  for (int i = 0; i < P; ++i)
    for (int l = 0; l < L; ++l) xl[i * L + l] = x_in[l][i];
  for (int i = 0; i < prepared_size; ++i)
    for (int l = 0; l < L; ++l) prepared[i * L + l] = prepared_in[l][i];
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < L; ++l) reference[b * L + l] = reference_in[l][b];
  RefinerLanes<T, L> lanes;
  lanes.C = C, lanes.J = J, lanes.K = K;
  lanes.prepared = prepared;
  lanes.num_bones = B;
  lanes.bones = first.bones;
  lanes.bone_reference = reference;
  lanes.bone_weight = first.bone_weight;
  for (int i = 0; i < P * L; ++i) m[i] = v[i] = 0;
  const T b1 = T(options.beta1), b2 = T(options.beta2), lr = T(options.learning_rate), eps = T(options.epsilon);
  const int every = options.history_every;
  T value[L];
  auto record = [&](int index) {
    for (int l = 0; l < count; ++l) {
      for (int i = 0; i < P; ++i) history_x[l][P * index + i] = xl[i * L + l];
      history_objective[l][index] = value[l];
    }
  };
  T b1_power = 1, b2_power = 1;
  int recorded = 0;
  for (int t = 1; t <= options.steps; ++t) {
    const bool recording = every > 0 && (t - 1) % every == 0;  // x is still x_{t-1}
    refiner_objective(lanes, xl, recording ? value : nullptr, gradient, work, lane_ok);
    if (recording) record(recorded++);
    b1_power *= b1;
    b2_power *= b2;
    const T step = lr * std::sqrt(T(1) - b2_power) / (T(1) - b1_power);
    METAPOSE_VECTORIZE
    for (int i = 0; i < P * L; ++i) {
      const T g = gradient[i];
      m[i] = b1 * m[i] + (T(1) - b1) * g;
      v[i] = b2 * v[i] + (T(1) - b2) * g * g;
      xl[i] -= step * m[i] / (std::sqrt(v[i]) + eps);
    }
  }
  for (int i = 0; i < P; ++i)
    for (int l = 0; l < L; ++l) lane_ok[l] = lane_ok[l] && std::isfinite(xl[i * L + l]);
  refiner_objective(lanes, xl, value, static_cast<T*>(nullptr), work, lane_ok);
  if (every > 0 && options.steps % every == 0) record(recorded);
  for (int l = 0; l < count; ++l) {
    for (int i = 0; i < P; ++i) x[l][i] = xl[i * L + l];
    *objective[l] = value[l];
    ok[l] = lane_ok[l];
  }
}

// refine() at a lane width chosen at run time (refiner_lane_width: 4, 2 or 1), count <= width.
template <class T>
void refine_group(int width, const RefinerProblem<T>* problems, int count, const RefinerOptions& options,
                  T* const* x, T* const* objective, T* const* history_x, T* const* history_objective, T* scratch,
                  bool* ok) {
  static_assert(kRefinerLanes == 4, "refine_group dispatches the widths refiner_lane_width returns");
  switch (width) {
    case 4: return refine<T, 4>(problems, count, options, x, objective, history_x, history_objective, scratch, ok);
    case 2: return refine<T, 2>(problems, count, options, x, objective, history_x, history_objective, scratch, ok);
    default: return refine<T, 1>(problems, count, options, x, objective, history_x, history_objective, scratch, ok);
  }
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
