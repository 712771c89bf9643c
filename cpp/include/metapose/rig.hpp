// The static-rig objective: C fixed cameras film one person over F frames ("calibration from people").
//
// Each camera's weak-perspective rotation R_c = rot6d_to_matrix(rot6d_c) is shared by every frame;
// frame f has its own pose X_f (J, 3) and, per camera, its own scale s_fc = softplus(scale_raw_fc)
// and shift t_fc (3): camera c sees frame f's pose as s_fc X_f R_c + t_fc (row vectors), the
// image point being the first two coordinates (the refiner's weak model, objective.hpp).
//
// Packed solution vector (RigLayout), N = 6 C + F (3 J + 4 C) values:
//   x = [rot6d C*6 | frame 0 | frame 1 | ... | frame F-1],  frame f = [pose J*3 | scale_raw C | shift C*3].
// Objective: frame f uses the cameras U_f = {c : used[f][c]} (in camera order), n_f = |U_f|. A frame
// with n_f < 2 or weight w_f = 0 does not enter. For one that does,
//   f_f = refiner_objective (objective.hpp, no bone term) of the sub-problem of its n_f cameras,
//         x_f = [X_f | rot6d of U_f | scale_raw_f,U_f | shift_f,U_f]: the mean NLL of its n_f J points,
//   total = sum_f a_f f_f,   a_f = w_f n_f / W,   W = sum_f w_f n_f   (each used view counts equally).
// Gradient: d total / d x_f = a_f d f_f / d x_f (objective.hpp), scattered back into the packed
// vector; camera c's rotation gradient is the sum over the entering frames that use it, taken in
// frame order from per-frame copies, so the result has the same bits on any number of threads.
// Everything of a frame that does not enter, and the scale and shift of a camera a frame does not
// use, has a zero gradient (Adam then leaves it where it is); their mixtures are never read.
// One frame that uses every camera with weight w > 0 has a_f = w C / (w C) = 1 exactly: total and
// gradient are then refiner_objective's bits, and Adam (elementwise) gives refine's bits.
//
// Singular cases: a camera whose rot6d rows are zero, parallel or out of range has no rotation,
// and a value that overflows is not finite; either clears ok and is reported (RigResult: the first
// failed frame, the first camera without a rotation). W must be finite (weights so large that it
// overflows are refused).
// Limits (rig_shape_ok): kMinCameras <= C <= kMaxCameras, J, K, F >= 1, a frame's sub-problem in
// kRefinerLanes lanes within the objective's int indexing (objective_shape_ok), and N within
// kMaxIndex (Adam indexes x with int); rig_problem_ok also wants the arrays given, finite weights
// >= 0 and a frame that enters. rig_objective and rig_refine refuse anything else (accepted = false)
// before touching it.
// Speed: the entering frames that use the same cameras are evaluated kRefinerLanes at a time in
// vector lanes (RigObjective), and the groups of one evaluation are spread over parallel_for
// (parallel.hpp) when there are enough of them (kRigFrameGrain frames per thread); each frame's
// arithmetic is the same in any lane and on any thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "config.hpp"
#include "objective.hpp"
#include "parallel.hpp"
#include "refiner.hpp"
#include "rotation.hpp"

namespace metapose {

// Frames per thread below which an evaluation is not split further: a frame is about 1 us at C = 4,
// and every split evaluation starts and joins its threads (tens of us).
inline constexpr std::size_t kRigFrameGrain = 128;

// Where each part of the packed vector sits (see the top).
struct RigLayout {
  long long C = 0, J = 0, F = 0;

  long long frame_size() const { return 3 * J + 4 * C; }
  long long size() const { return 6 * C + F * frame_size(); }
  long long pose(long long f) const { return 6 * C + f * frame_size(); }
  long long scale_raw(long long f) const { return pose(f) + 3 * J; }
  long long shift(long long f) const { return scale_raw(f) + C; }
};

// True when a rig of C cameras, J joints, K components and F frames can be evaluated and refined
// (limits at the top). No product is formed before it is bounded.
inline bool rig_shape_ok(long long C, long long J, long long K, long long F) {
  if (C < kMinCameras || C > kMaxCameras || J < 1 || K < 1 || F < 1) return false;
  if (!objective_shape_ok(C, J, K, 0, kRefinerLanes)) return false;  // bounds J and K: frame_size fits
  const long long frame = 3 * J + 4 * C;
  return F <= (kMaxIndex - 6 * C) / frame;  // N <= kMaxIndex
}

// The problem of a rig of C cameras, F frames, J joints and K components, for a shape rig_shape_ok
// accepts. The mixtures of a used view must be valid (finite, weights >= 0, variances >= 1e-300:
// the caller checks); those of the other views are never read.
template <class T>
struct RigProblem {
  int C = 0, J = 0, K = 0;
  long long F = 0;
  const T* mixtures = nullptr;       // F C J K 4, [weight, mu_x, mu_y, variance], box units
  const bool* used = nullptr;        // F C: which views enter
  const T* frame_weights = nullptr;  // F, finite and >= 0
};

// The number of cameras a frame uses, from its row of `used` (C).
inline int rig_used_count(const bool* used, int C) {
  int n = 0;
  for (int c = 0; c < C; ++c) n += used[c] ? 1 : 0;
  return n;
}

// True when frame f enters the objective: at least two used cameras and a weight > 0.
template <class T>
inline bool rig_frame_enters(const RigProblem<T>& problem, long long f) {
  return problem.frame_weights[f] > T(0) && rig_used_count(problem.used + f * problem.C, problem.C) >= 2;
}

// The index of the first camera of rot6d (C x 6) with no rotation (zero, parallel or out-of-range
// rows, or values that are not finite), or -1 when every camera has one.
template <class T>
inline int rig_first_undefined_rotation(const T* rot6d, int C) {
  for (int c = 0; c < C; ++c) {
    bool ok = true;
    for (int i = 0; i < 6; ++i) ok = ok && std::isfinite(rot6d[6 * c + i]);
    GramSchmidt<T, 1> frame;
    if (ok) frame.compute(rot6d + 6 * c, &ok);
    if (!ok) return c;
  }
  return -1;
}

// True when `problem` can be evaluated: its shape passes rig_shape_ok, its arrays are given, its
// weights are finite and >= 0, at least one frame enters and W = sum_f w_f n_f is finite.
template <class T>
bool rig_problem_ok(const RigProblem<T>& problem) {
  if (!rig_shape_ok(problem.C, problem.J, problem.K, problem.F) || problem.mixtures == nullptr ||
      problem.used == nullptr || problem.frame_weights == nullptr)
    return false;
  T total = 0;
  bool enters = false;
  for (long long f = 0; f < problem.F; ++f) {
    const T w = problem.frame_weights[f];
    if (!(std::isfinite(w) && w >= T(0))) return false;
    if (!rig_frame_enters(problem, f)) continue;
    enters = true;
    total += w * T(rig_used_count(problem.used + f * problem.C, problem.C));
  }
  return enters && std::isfinite(total);
}

// The objective over the packed vector (L = 1), as adam_keras (refiner.hpp) evaluates it:
// evaluate(x, value, gradient, ok) -> total (value[0]) and its gradient (N), each if given, and
// ok[0] cleared where an entering frame's objective is undefined (a rotation) or, when the value is
// asked for, not finite. Each evaluation also keeps every frame's f_f (frame_values, when the value
// was asked for; NaN for frames that do not enter) and whether it was defined (first_failed_frame).
//
// Lanes: the entering frames that use the same cameras are taken kRefinerLanes at a time, in frame
// order, and evaluated side by side (objective.hpp, "Lanes"; a last group of 3 runs in 4 lanes, the
// 4th repeating its first frame, one of 2 or 1 in 2 or 1); their mixtures are prepared once, here,
// in that lane-minor layout. A frame's bits do not depend on its lane, so neither does the result.
// The problem must pass rig_problem_ok (the caller checks); the constructor allocates O(F C J K)
// values (it may throw std::bad_alloc, and so may an evaluation on several threads, for their scratch).
template <class T>
class RigObjective {
 public:
  explicit RigObjective(const RigProblem<T>& problem)
      : problem_(problem),
        layout_{problem.C, problem.J, problem.F},
        scratch_size_(2 * kRefinerLanes * solution_size(problem.C, problem.J) +
                      objective_workspace_size(problem.C, problem.J, problem.K, kRefinerLanes)),
        count_(static_cast<std::size_t>(problem.F)),
        coefficient_(static_cast<std::size_t>(problem.F)),
        values_(static_cast<std::size_t>(problem.F), std::numeric_limits<T>::quiet_NaN()),
        rotation_gradients_(static_cast<std::size_t>(problem.F * 6 * problem.C)),
        frame_ok_(static_cast<std::size_t>(problem.F), 1),
        scratch_(static_cast<std::size_t>(scratch_size_)) {
    const int C = problem.C;
    T total = 0;
    for (long long f = 0; f < problem.F; ++f) {
      const bool enters = rig_frame_enters(problem, f);
      count_[f] = enters ? rig_used_count(problem.used + f * C, C) : 0;
      total += enters ? problem.frame_weights[f] * T(count_[f]) : T(0);
      if (!enters) idle_.push_back(f);
    }
    for (long long f = 0; f < problem.F; ++f) coefficient_[f] = problem.frame_weights[f] * T(count_[f]) / total;
    make_groups();
  }

  const RigLayout& layout() const { return layout_; }
  // f_f at the last evaluation that asked for the value (NaN for a frame that does not enter).
  const T* frame_values() const { return values_.data(); }
  // The first entering frame whose objective was undefined or not finite at the last evaluation, or -1.
  long long first_failed_frame() const {
    for (long long f = 0; f < problem_.F; ++f)
      if (!frame_ok_[f]) return f;
    return -1;
  }

  void evaluate(const T* x, T* value, T* gradient, bool* ok) const {
    const int C = problem_.C;
    if (gradient)  // frames that do not enter: a zero gradient
      for (long long f : idle_)
        for (long long i = 0; i < layout_.frame_size(); ++i) gradient[layout_.pose(f) + i] = T(0);
    const std::size_t G = groups_.size();
    parallel_for(G, kRigFrameGrain / kRefinerLanes, [&](std::size_t begin, std::size_t end) {
      // One range covering every group runs alone (on the calling thread) and uses the scratch
      // kept here; ranges on several threads each allocate their own.
      std::vector<T> own;
      T* scratch = scratch_.data();
      if (begin != 0 || end != G) {
        own.resize(static_cast<std::size_t>(scratch_size_));
        scratch = own.data();
      }
      for (std::size_t g = begin; g < end; ++g) {
        const Group& group = groups_[g];
        switch (group.width) {
          case 4: evaluate_group<4>(group, x, value != nullptr, gradient, scratch); break;
          case 2: evaluate_group<2>(group, x, value != nullptr, gradient, scratch); break;
          default: evaluate_group<1>(group, x, value != nullptr, gradient, scratch); break;
        }
      }
    });
    bool all_ok = true;
    for (long long f = 0; f < problem_.F; ++f) all_ok = all_ok && frame_ok_[f];
    ok[0] = ok[0] && all_ok;
    if (gradient) {
      // The rotations' gradient: the frames' shares summed in frame order.
      for (int i = 0; i < 6 * C; ++i) gradient[i] = T(0);
      for (long long f = 0; f < problem_.F; ++f) {
        if (count_[f] == 0) continue;
        const bool* used = problem_.used + f * C;
        const T* share = rotation_gradients_.data() + f * 6 * C;
        for (int c = 0; c < C; ++c)
          if (used[c])
            for (int i = 0; i < 6; ++i) gradient[6 * c + i] += share[6 * c + i];
      }
    }
    if (value) {
      T total = 0;
      for (long long f = 0; f < problem_.F; ++f)
        if (count_[f] > 0) total += coefficient_[f] * values_[f];
      value[0] = total;
      ok[0] = ok[0] && std::isfinite(total);
    }
  }

 private:
  static_assert(kRefinerLanes == 4, "evaluate dispatches the widths refiner_lane_width returns");

  // Up to kRefinerLanes entering frames that use the same cameras, and their prepared mixtures.
  struct Group {
    int width = 1, count = 1, cameras = 0;  // lanes, real frames (<= width), n_f
    long long frames[kRefinerLanes] = {};
    std::size_t prepared = 0;  // offset in prepared_ of prepared_frame_size(n, J, K) width values
  };

  void make_groups() {
    const int C = problem_.C, J = problem_.J, K = problem_.K;
    // Entering frames by camera subset (subsets in order of first appearance), each in frame order.
    std::vector<std::vector<long long>> subsets;
    std::vector<const bool*> masks;
    for (long long f = 0; f < problem_.F; ++f) {
      if (count_[f] == 0) continue;
      const bool* mask = problem_.used + f * C;
      std::size_t s = 0;
      while (s < masks.size() && !std::equal(mask, mask + C, masks[s])) ++s;
      if (s == masks.size()) {
        masks.push_back(mask);
        subsets.emplace_back();
      }
      subsets[s].push_back(f);
    }
    std::size_t prepared_size = 0;
    for (const auto& frames : subsets)
      for (std::size_t i = 0; i < frames.size();) {
        Group group;
        group.width = refiner_lane_width(static_cast<long long>(frames.size() - i));
        group.count = static_cast<int>(std::min<std::size_t>(group.width, frames.size() - i));
        group.cameras = count_[frames[i]];
        for (int l = 0; l < group.width; ++l) group.frames[l] = frames[i + (l < group.count ? l : 0)];
        group.prepared = prepared_size;
        prepared_size += static_cast<std::size_t>(prepared_frame_size(group.cameras, J, K) * group.width);
        groups_.push_back(group);
        i += static_cast<std::size_t>(group.count);
      }
    // Each frame's used views prepared as one frame of n cameras (objective.hpp), then interleaved.
    prepared_.resize(prepared_size);
    const int Jp = padded_count(J);
    std::vector<T> one(static_cast<std::size_t>(prepared_frame_size(C, J, K)));
    for (const Group& group : groups_) {
      const long long size = prepared_frame_size(group.cameras, J, K);
      T* out = prepared_.data() + group.prepared;
      for (int l = 0; l < group.width; ++l) {
        const long long f = group.frames[l];
        const bool* used = problem_.used + f * C;
        const T* mixtures = problem_.mixtures + f * C * (4LL * J * K);
        for (long long i = 0; i < size; ++i) one[i] = T(0);
        for (int c = 0, slot = 0; c < C; ++c)
          if (used[c])
            prepare_mixtures(mixtures + 4LL * J * K * c, J, K, one.data() + slot++ * Jp, group.cameras * Jp);
        for (long long i = 0; i < size; ++i) out[i * group.width + l] = one[i];
      }
    }
  }

  // One group of W lanes: gather its frames' sub-vectors (lane-minor), evaluate them side by side,
  // scatter a_f times each frame's gradient (the rotations' share into rotation_gradients_).
  // `scratch` holds scratch_size_ values.
  template <int W>
  void evaluate_group(const Group& group, const T* x, bool want_value, T* gradient, T* scratch) const {
    const int C = problem_.C, J = problem_.J, n = group.cameras;
    const long long P = solution_size(n, J);
    T* sub = scratch;
    T* sub_gradient = sub + P * W;
    T* work = sub_gradient + P * W;
    const bool* used = problem_.used + group.frames[0] * C;  // the same for every lane
    for (int l = 0; l < W; ++l) {
      const long long f = group.frames[l];
      const T* pose = x + layout_.pose(f);
      const T* scale_raw = x + layout_.scale_raw(f);
      const T* shift = x + layout_.shift(f);
      for (int i = 0; i < 3 * J; ++i) sub[i * W + l] = pose[i];
      T* sub_rot6d = sub + 3 * J * W;
      T* sub_scale_raw = sub_rot6d + 6 * n * W;
      T* sub_shift = sub_scale_raw + n * W;
      for (int c = 0, slot = 0; c < C; ++c) {
        if (!used[c]) continue;
        for (int i = 0; i < 6; ++i) sub_rot6d[(6 * slot + i) * W + l] = x[6 * c + i];
        sub_scale_raw[slot * W + l] = scale_raw[c];
        for (int i = 0; i < 3; ++i) sub_shift[(3 * slot + i) * W + l] = shift[3 * c + i];
        ++slot;
      }
    }
    RefinerLanes<T, W> lanes;
    lanes.C = n, lanes.J = J, lanes.K = problem_.K;
    lanes.prepared = prepared_.data() + group.prepared;
    bool ok[W];
    T value[W];
    for (int l = 0; l < W; ++l) ok[l] = true, value[l] = T(0);
    refiner_objective_unchecked<T, W>(lanes, sub, want_value ? value : nullptr, gradient ? sub_gradient : nullptr,
                                      work, ok);
    for (int l = 0; l < group.count; ++l) {
      const long long f = group.frames[l];
      frame_ok_[f] = ok[l] ? 1 : 0;
      if (want_value) values_[f] = value[l];
      if (!gradient) continue;
      const T a = coefficient_[f];
      T* pose_gradient = gradient + layout_.pose(f);
      T* scale_gradient = gradient + layout_.scale_raw(f);
      T* shift_gradient = gradient + layout_.shift(f);
      T* rotation_share = rotation_gradients_.data() + f * 6 * C;
      const T* g_rot6d = sub_gradient + 3 * J * W;
      const T* g_scale_raw = g_rot6d + 6 * n * W;
      const T* g_shift = g_scale_raw + n * W;
      for (int i = 0; i < 3 * J; ++i) pose_gradient[i] = a * sub_gradient[i * W + l];
      for (int c = 0, slot = 0; c < C; ++c) {
        if (!used[c]) {
          scale_gradient[c] = T(0);
          for (int i = 0; i < 3; ++i) shift_gradient[3 * c + i] = T(0);
          continue;
        }
        for (int i = 0; i < 6; ++i) rotation_share[6 * c + i] = a * g_rot6d[(6 * slot + i) * W + l];
        scale_gradient[c] = a * g_scale_raw[slot * W + l];
        for (int i = 0; i < 3; ++i) shift_gradient[3 * c + i] = a * g_shift[(3 * slot + i) * W + l];
        ++slot;
      }
    }
  }

  RigProblem<T> problem_;
  RigLayout layout_;
  long long scratch_size_;
  std::vector<int> count_;  // n_f, 0 for a frame that does not enter
  std::vector<T> coefficient_;
  std::vector<long long> idle_{};  // the frames that do not enter
  std::vector<Group> groups_{};
  std::vector<T> prepared_{};
  mutable std::vector<T> values_, rotation_gradients_;
  mutable std::vector<unsigned char> frame_ok_;  // one byte per frame: threads write distinct ones
  mutable std::vector<T> scratch_;               // for an evaluation that runs on one thread
};

// What rig_objective and rig_refine report.
struct RigResult {
  bool accepted = false;         // false: refused (rig_problem_ok, options), nothing touched
  bool ok = false;               // every entering frame's objective defined and finite, x finite
  long long failed_frame = -1;   // when not ok: the first entering frame whose objective failed, or -1
  int failed_camera = -1;        // when not ok: the first camera without a rotation at the final x, or -1
};

namespace detail {

template <class T>
void rig_diagnose(const RigObjective<T>& objective, const T* x, RigResult& result) {
  result.failed_camera = rig_first_undefined_rotation(x, static_cast<int>(objective.layout().C));
  result.failed_frame = objective.first_failed_frame();
  if (result.failed_frame >= 0) return;
  const RigLayout& layout = objective.layout();
  for (long long f = 0; f < layout.F && result.failed_frame < 0; ++f)
    for (long long i = 0; i < layout.frame_size(); ++i)
      if (!std::isfinite(x[layout.pose(f) + i])) {
        result.failed_frame = f;
        break;
      }
}

// What both entry points report after their run: total and frame_values (each if given) from the
// objective's last evaluation, ok, and when not ok where it failed.
template <class T>
void rig_report(const RigObjective<T>& objective, const T* x, bool ok, T value, T* total, T* frame_values,
                RigResult& result) {
  if (total) *total = value;
  if (frame_values)
    for (long long f = 0; f < objective.layout().F; ++f) frame_values[f] = objective.frame_values()[f];
  result.ok = ok;
  if (!ok) rig_diagnose(objective, x, result);
}

}  // namespace detail

// total (1), gradient (N) and frame_values (F: f_f, NaN for frames that do not enter), each if
// given, at x (N, RigLayout). Refuses (accepted false, nothing touched) a problem rig_problem_ok
// does not accept or a null x.
template <class T>
RigResult rig_objective(const RigProblem<T>& problem, const T* x, T* total, T* gradient, T* frame_values) {
  RigResult result;
  if (!rig_problem_ok(problem) || x == nullptr) return result;
  result.accepted = true;
  RigObjective<T> objective(problem);
  bool ok = true;
  T value = 0;
  objective.evaluate(x, &value, gradient, &ok);
  detail::rig_report(objective, x, ok, value, total, frame_values, result);
  return result;
}

// Keras-form Adam (refiner.hpp's adam_keras, options.steps steps) on the rig objective: x (N) is
// updated in place; total and frame_values (F), each if given, receive the objective at the final
// x. Parts of x with a zero gradient throughout (frames that do not enter, unused views' scales and
// shifts) keep their values. Refuses (accepted false, nothing touched) a problem rig_problem_ok does
// not accept, a null x, steps < 0 or history_every != 0 (no history here).
template <class T>
RigResult rig_refine(const RigProblem<T>& problem, const RefinerOptions& options, T* x, T* total, T* frame_values) {
  RigResult result;
  if (!rig_problem_ok(problem) || x == nullptr || options.steps < 0 || options.history_every != 0) return result;
  result.accepted = true;
  RigObjective<T> objective(problem);
  const long long N = objective.layout().size();
  std::vector<T> adam_scratch(static_cast<std::size_t>(3 * N));
  bool ok = true;
  T value = 0;
  adam_keras<T, 1>(objective, static_cast<int>(N), options, x, &value, adam_scratch.data(), &ok, [](int) {});
  detail::rig_report(objective, x, ok, value, total, frame_values, result);
  return result;
}

}  // namespace metapose
