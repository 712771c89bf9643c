// MetaPose's iterative refiner (IR): Adam in the Keras form of the original over an objective.
//
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
//   x -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps),   t = 1 .. steps,
// with g the objective's gradient at x_{t-1}. adam_keras is generic over the objective (any type
// with evaluate(x, value, gradient, ok), see there), as a refiner over a problem; refine runs it on
// MetaPose's objective (objective.hpp) for up to kRefinerLanes frames side by side in vector lanes.
// Singular case: a frame whose objective becomes undefined (a rotation with parallel rows, an
// overflow) or whose x stops being finite is reported as diverged (ok false); the others go on.
// Limits: refine refuses (false, touching nothing) a group whose shape the objective or the int
// indexing of its workspace cannot take (refiner_shape_ok), frames of different shapes, and counts,
// steps or history intervals out of range.
#pragma once

#include <cmath>

#include "config.hpp"
#include "fastmath.hpp"
#include "objective.hpp"
#include "rotation.hpp"

namespace metapose {

struct RefinerOptions {
  int steps = 100;
  double learning_rate = 1e-2;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-7;
  int history_every = 0;  // 0: no history
};

// Scratch refine needs, for L lanes (enough for any narrower width too).
inline long long refine_workspace_size(long long C, long long J, long long K, long long num_bones,
                                       long long L = kRefinerLanes) {
  return L * (4 * solution_size(C, J) + prepared_frame_size(C, J, K) + num_bones) + objective_workspace_size(C, J, K, L);
}

// True when refine can run L frames of this shape side by side: the objective can
// (objective_shape_ok) and refine's whole scratch stays within int indexing.
inline bool refiner_shape_ok(long long C, long long J, long long K, long long num_bones, long long L = kRefinerLanes) {
  return objective_shape_ok(C, J, K, num_bones, L) && refine_workspace_size(C, J, K, num_bones, L) <= kMaxIndex;
}

// Keras-form Adam on L problems side by side, generic over the objective: any type with
//   void evaluate(const T* x, T* value, T* gradient, bool* ok)
// taking x (P L, lane-minor) to the values (L), when `value` is given, and the gradient (P L), when
// `gradient` is given, and clearing ok[l] where problem l's objective is undefined. x is updated in
// place for options.steps steps. When n = options.history_every > 0, `value` receives f(x) at steps
// 0, n, 2n, ... <= steps, each time followed by record(index) (x is then that step's x); at the end
// it receives f(final x). `scratch` holds 3 P L values (the gradient and the two moments). ok[l]
// is also cleared where problem l's final x is not finite.
template <class T, int L, class Objective, class Record>
void adam_keras(const Objective& objective, int P, const RefinerOptions& options, T* x_inout, T* value, T* scratch,
                bool* ok, Record&& record) {
  T* METAPOSE_RESTRICT x = x_inout;
  T* METAPOSE_RESTRICT gradient = scratch;
  T* METAPOSE_RESTRICT m = gradient + P * L;
  T* METAPOSE_RESTRICT v = m + P * L;
  for (int i = 0; i < P * L; ++i) m[i] = v[i] = 0;
  const T b1 = T(options.beta1), b2 = T(options.beta2), lr = T(options.learning_rate), eps = T(options.epsilon);
  const int every = options.history_every;
  T b1_power = 1, b2_power = 1;
  int recorded = 0;
  for (int t = 1; t <= options.steps; ++t) {
    const bool recording = every > 0 && (t - 1) % every == 0;  // x is still x_{t-1}
    objective.evaluate(x, recording ? value : nullptr, gradient, ok);
    if (recording) record(recorded++);
    b1_power *= b1;
    b2_power *= b2;
    const T step = lr * std::sqrt(T(1) - b2_power) / (T(1) - b1_power);
    METAPOSE_VECTORIZE
    for (int i = 0; i < P * L; ++i) {
      const T g = gradient[i];
      m[i] = b1 * m[i] + (T(1) - b1) * g;
      v[i] = b2 * v[i] + (T(1) - b2) * g * g;
      x[i] -= step * m[i] / (std::sqrt(v[i]) + eps);
    }
  }
  for (int i = 0; i < P; ++i)
    for (int l = 0; l < L; ++l) ok[l] = ok[l] && std::isfinite(x[i * L + l]);
  objective.evaluate(x, value, static_cast<T*>(nullptr), ok);
  if (every > 0 && options.steps % every == 0) record(recorded);
}

// True when refine<T, L> can run this call: 1 <= count <= L frames, each a problem the objective
// accepts (objective_problem_ok) of the shape of problems[0], which refiner_shape_ok takes for L
// lanes; steps and history_every >= 0; and the arrays given (the histories only when recorded).
template <class T, int L>
bool refine_accepts(const RefinerProblem<T>* problems, int count, const RefinerOptions& options, T* const* x,
                    T* const* objective, T* const* history_x, T* const* history_objective, const T* scratch,
                    const bool* ok) {
  if (problems == nullptr || count < 1 || count > L || options.steps < 0 || options.history_every < 0 ||
      x == nullptr || objective == nullptr || scratch == nullptr || ok == nullptr)
    return false;
  const bool history = options.history_every > 0;
  if (history && (history_x == nullptr || history_objective == nullptr)) return false;
  const RefinerProblem<T>& first = problems[0];
  if (!refiner_shape_ok(first.C, first.J, first.K, first.num_bones, L)) return false;
  for (int l = 0; l < count; ++l) {
    const RefinerProblem<T>& p = problems[l];
    if (p.C != first.C || p.J != first.J || p.K != first.K || p.num_bones != first.num_bones ||
        !objective_problem_ok(p) || x[l] == nullptr || objective[l] == nullptr ||
        (history && (history_x[l] == nullptr || history_objective[l] == nullptr)))
      return false;
  }
  return true;
}

// Adam on MetaPose's objective for `count` <= L frames side by side: problems[i], x[i] (P, updated
// in place), objective[i] (receives f(final x)), history_x[i] (H P) and history_objective[i] (H)
// receive x and f(x) at steps 0, n, 2n, ... <= steps when n = options.history_every > 0. Lanes past
// `count` repeat frame 0 and are discarded. The frames share C, J, K, the bones and the bone
// weight, which are taken from problems[0]. `scratch` holds refine_workspace_size(C, J, K,
// num_bones, L) values. ok[i] is set false where frame i's objective became undefined. Returns
// false, touching nothing, when refine_accepts does not accept the call.
template <class T, int L>
bool refine(const RefinerProblem<T>* problems, int count, const RefinerOptions& options, T* const* x,
            T* const* objective, T* const* history_x, T* const* history_objective, T* scratch, bool* ok) {
  if (!refine_accepts<T, L>(problems, count, options, x, objective, history_x, history_objective, scratch, ok))
    return false;
  const RefinerProblem<T>& first = problems[0];
  const int C = first.C, J = first.J, K = first.K, B = first.num_bones;
  const int P = static_cast<int>(solution_size(C, J)), prepared_size = static_cast<int>(prepared_frame_size(C, J, K));
  T* xl = scratch;
  T* adam_scratch = xl + P * L;  // gradient, m, v
  T* prepared = adam_scratch + 3 * P * L;
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
  RefinerObjective<T, L> lanes;
  lanes.problem.C = C, lanes.problem.J = J, lanes.problem.K = K;
  lanes.problem.prepared = prepared;
  lanes.problem.num_bones = B;
  lanes.problem.bones = first.bones;
  lanes.problem.bone_reference = reference;
  lanes.problem.bone_weight = first.bone_weight;
  lanes.work = work;
  T value[L];
  auto record = [&](int index) {
    for (int l = 0; l < count; ++l) {
      for (int i = 0; i < P; ++i) history_x[l][P * index + i] = xl[i * L + l];
      history_objective[l][index] = value[l];
    }
  };
  adam_keras<T, L>(lanes, P, options, xl, value, adam_scratch, lane_ok, record);
  for (int l = 0; l < count; ++l) {
    for (int i = 0; i < P; ++i) x[l][i] = xl[i * L + l];
    *objective[l] = value[l];
    ok[l] = lane_ok[l];
  }
  return true;
}

// refine() at a lane width chosen at run time (refiner_lane_width: 4, 2 or 1), count <= width.
template <class T>
bool refine_group(int width, const RefinerProblem<T>* problems, int count, const RefinerOptions& options,
                  T* const* x, T* const* objective, T* const* history_x, T* const* history_objective, T* scratch,
                  bool* ok) {
  static_assert(kRefinerLanes == 4, "refine_group dispatches the widths refiner_lane_width returns");
  switch (width) {
    case 4: return refine<T, 4>(problems, count, options, x, objective, history_x, history_objective, scratch, ok);
    case 2: return refine<T, 2>(problems, count, options, x, objective, history_x, history_objective, scratch, ok);
    default: return refine<T, 1>(problems, count, options, x, objective, history_x, history_objective, scratch, ok);
  }
}

// softplus(v) = log(1 + e^v) as numpy's logaddexp(v, 0) computes it (layout.scale_from_raw), to the bit.
inline double softplus_as_numpy(double v) {
  if (v == 0) return v + 0.693147180559945309417232121458176568;  // numpy's NPY_LOGE2
  if (v > 0) return v + std::log1p(std::exp(-v));
  return 0.0 + std::log1p(std::exp(v));
}

// A solution x (P) of C cameras and J joints -> the pose (J 3), rotations (C 9), scales (C) and shifts
// (C 3) re-expressed where camera 0 has rotation I and scale 1: pose' = s_0 pose R_0, R_c' = R_0^T R_c,
// s_c' = s_c / s_0, shifts unchanged (layout.in_camera0, the solver's reference in numpy). The scales
// are softplus_as_numpy; each 3-term product is the fused multiply-add chain in index order that
// OpenBLAS's x86-64 FMA kernels compute for numpy's matmul, so the results are numpy's bits there
// (elsewhere they agree to rounding). Returns false where a rotation is undefined or a result is not
// finite, or a relative scale is 0 (the outputs are then partly written).
template <class T>
bool solution_in_camera0(const T* x, int C, int J, T* pose, T* rotation, T* scale, T* shift) {
  const T* x_rot6d = x + 3 * J;
  const T* x_scale_raw = x_rot6d + 6 * C;
  const T* x_shift = x_scale_raw + C;
  bool ok = true;
  for (int c = 0; c < C; ++c) ok = ok && rot6d_to_matrix(x_rot6d + 6 * c, rotation + 9 * c);
  if (!ok) return false;
  T R0[9];
  for (int i = 0; i < 9; ++i) R0[i] = rotation[i];
  const T s0 = softplus_as_numpy(x_scale_raw[0]);
  for (int j = 0; j < J; ++j) {
    const T a[3] = {s0 * x[3 * j], s0 * x[3 * j + 1], s0 * x[3 * j + 2]};
    for (int k = 0; k < 3; ++k) {
      const T value = std::fma(a[2], R0[6 + k], std::fma(a[1], R0[3 + k], a[0] * R0[k]));
      pose[3 * j + k] = value;
      ok = ok && std::isfinite(value);
    }
  }
  for (int c = 0; c < C; ++c) {
    T* R = rotation + 9 * c;
    T Rc[9];
    for (int i = 0; i < 9; ++i) Rc[i] = R[i];
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 3; ++k) {
        R[3 * i + k] = std::fma(R0[6 + i], Rc[6 + k], std::fma(R0[3 + i], Rc[3 + k], R0[i] * Rc[k]));
        ok = ok && std::isfinite(R[3 * i + k]);
      }
    scale[c] = softplus_as_numpy(x_scale_raw[c]) / s0;
    ok = ok && std::isfinite(scale[c]) && scale[c] > 0;
    for (int k = 0; k < 3; ++k) {
      shift[3 * c + k] = x_shift[3 * c + k];
      ok = ok && std::isfinite(shift[3 * c + k]);
    }
  }
  return ok;
}

}  // namespace metapose
