// C++ tests of rig.hpp, called as a C++ caller would (no Python).
//
// Limits: rig_objective and rig_refine refuse (accepted false) every problem rig_problem_ok does
// not take (camera counts, empty or huge sizes, null arrays, bad weights, no frame entering) and
// bad options, before touching any output. Values: a frame's objective is refiner_objective's on
// its used cameras, bit for bit, in whichever lane group it runs; one frame with every camera
// refines to refine's bits; the gradient matches central differences; 1 and 2 threads agree bit
// for bit. Built only with METAPOSE_BUILD_TESTS=ON (the sanitizer build, .ci/sanitize); run by CTest.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "check.hpp"
#include "metapose/parallel.hpp"
#include "metapose/refiner.hpp"
#include "metapose/rig.hpp"

namespace {


constexpr double kSentinel = 12345.678;
double* const kNone = nullptr;  // an output not asked for

// A random rig of F frames, C cameras, J joints, K components: every view used, weights 1,
// mixtures near the origin's scale, rotations away from parallel rows, scales near 1.
struct Rig {
  int C, J, K;
  long long F;
  std::vector<double> mixtures, weights, x;
  std::vector<char> used_storage;  // bool as bytes (std::vector<bool> has no data())
  bool* used() { return reinterpret_cast<bool*>(used_storage.data()); }

  Rig(long long frames, int cameras, int joints, int components, unsigned seed)
      : C(cameras), J(joints), K(components), F(frames) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    mixtures.resize(static_cast<std::size_t>(F * C * J * K * 4));
    for (std::size_t i = 0; i < mixtures.size(); i += 4) {
      mixtures[i] = uniform(rng);
      mixtures[i + 1] = 0.5 * normal(rng);
      mixtures[i + 2] = 0.5 * normal(rng);
      mixtures[i + 3] = 0.05 + uniform(rng);
    }
    weights.assign(static_cast<std::size_t>(F), 1.0);
    used_storage.assign(static_cast<std::size_t>(F * C), 1);
    const metapose::RigLayout layout{C, J, F};
    x.resize(static_cast<std::size_t>(layout.size()));
    for (auto& value : x) value = 0.3 * normal(rng);
    for (int c = 0; c < C; ++c) {
      x[6 * c] += 1.0;
      x[6 * c + 4] += 1.0;
    }
    for (long long f = 0; f < F; ++f)
      for (int c = 0; c < C; ++c) x[layout.scale_raw(f) + c] = metapose::inverse_softplus(0.8 + 0.4 * uniform(rng));
  }

  metapose::RigProblem<double> problem() {
    metapose::RigProblem<double> p;
    p.C = C, p.J = J, p.K = K, p.F = F;
    p.mixtures = mixtures.data();
    p.used = used();
    p.frame_weights = weights.data();
    return p;
  }

  // Frame f's sub-problem on its used cameras: x in the refiner's layout and prepared mixtures.
  void frame(long long f, std::vector<double>& sub, std::vector<double>& prepared) {
    const metapose::RigLayout layout{C, J, F};
    const bool* mask = used() + f * C;
    const int n = metapose::rig_used_count(mask, C);
    sub.assign(static_cast<std::size_t>(metapose::solution_size(n, J)), 0.0);
    std::vector<double> views;
    for (int i = 0; i < 3 * J; ++i) sub[i] = x[layout.pose(f) + i];
    for (int c = 0, slot = 0; c < C; ++c) {
      if (!mask[c]) continue;
      for (int i = 0; i < 6; ++i) sub[3 * J + 6 * slot + i] = x[6 * c + i];
      sub[3 * J + 6 * n + slot] = x[layout.scale_raw(f) + c];
      for (int i = 0; i < 3; ++i) sub[3 * J + 7 * n + 3 * slot + i] = x[layout.shift(f) + 3 * c + i];
      const double* m = mixtures.data() + (f * C + c) * J * K * 4;
      views.insert(views.end(), m, m + J * K * 4);
      ++slot;
    }
    prepared.assign(static_cast<std::size_t>(metapose::prepared_frame_size(n, J, K)), 0.0);
    metapose::prepare_frame(views.data(), n, J, K, prepared.data());
  }
};

// Every refusal leaves the outputs alone.
void test_refusals() {
  Rig rig(3, 3, 4, 2, 1);
  std::vector<double> gradient(rig.x.size() + 64, kSentinel), frames(16, kSentinel), x = rig.x;
  double total = kSentinel;
  metapose::RefinerOptions options;
  options.steps = 3;
  auto refused = [&](const metapose::RigProblem<double>& p, const double* xs) {
    std::fill(gradient.begin(), gradient.end(), kSentinel);
    std::fill(frames.begin(), frames.end(), kSentinel);
    total = kSentinel;
    x = rig.x;
    const metapose::RigResult a = metapose::rig_objective(p, xs, &total, gradient.data(), frames.data());
    const metapose::RigResult b = metapose::rig_refine(p, options, xs ? x.data() : nullptr, &total, frames.data());
    bool untouched = total == kSentinel && x == rig.x;
    for (double v : gradient) untouched = untouched && v == kSentinel;
    for (double v : frames) untouched = untouched && v == kSentinel;
    return !a.accepted && !b.accepted && untouched;
  };
  for (int C : {-1, 0, 1, 17, 1 << 30}) {
    auto p = rig.problem();
    p.C = C;
    CHECK(refused(p, rig.x.data()));
  }
  for (int J : {-2, 0, 1 << 30}) {
    auto p = rig.problem();
    p.J = J;
    CHECK(refused(p, rig.x.data()));
  }
  for (int K : {-1, 0, 1 << 29}) {
    auto p = rig.problem();
    p.K = K;
    CHECK(refused(p, rig.x.data()));
  }
  for (long long F : {-1LL, 0LL, 1LL << 40, std::numeric_limits<long long>::max()}) {
    auto p = rig.problem();
    p.F = F;
    CHECK(refused(p, rig.x.data()));
  }
  {
    auto p = rig.problem();
    p.mixtures = nullptr;
    CHECK(refused(p, rig.x.data()));
    p = rig.problem();
    p.used = nullptr;
    CHECK(refused(p, rig.x.data()));
    p = rig.problem();
    p.frame_weights = nullptr;
    CHECK(refused(p, rig.x.data()));
    CHECK(refused(rig.problem(), nullptr));
  }
  for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    rig.weights[1] = bad;
    CHECK(refused(rig.problem(), rig.x.data()));
  }
  rig.weights.assign(3, 1e308);  // W = 9e308 overflows
  CHECK(refused(rig.problem(), rig.x.data()));
  rig.weights.assign(3, 0.0);  // no frame enters
  CHECK(refused(rig.problem(), rig.x.data()));
  rig.weights.assign(3, 1.0);
  for (auto& u : rig.used_storage) u = 0;  // one camera per frame: none enters
  for (long long f = 0; f < 3; ++f) rig.used_storage[f * 3 + f] = 1;
  CHECK(refused(rig.problem(), rig.x.data()));
  rig.used_storage.assign(9, 1);
  // Options: steps < 0, a history.
  metapose::RefinerOptions bad = options;
  bad.steps = -1;
  x = rig.x;
  CHECK(!metapose::rig_refine(rig.problem(), bad, x.data(), &total, frames.data()).accepted && x == rig.x);
  bad = options;
  bad.history_every = 2;
  CHECK(!metapose::rig_refine(rig.problem(), bad, x.data(), &total, frames.data()).accepted && x == rig.x);
  // And the sizes the predicate takes: up to kMaxCameras, nothing beyond kMaxIndex.
  CHECK(metapose::rig_shape_ok(16, 17, 4, 1000));
  CHECK(!metapose::rig_shape_ok(16, 17, 4, metapose::kMaxIndex));
}

// Frames with 4, 3, 2, 4, 4, 4, 4 and 1 used cameras: the full ones run in a lane group of 4 and one
// alone; every frame's value is refiner_objective's on its own cameras, bit for bit.
void test_frames_are_refiner_objectives() {
  Rig rig(8, 4, 5, 3, 2);
  const bool masks[8][4] = {{1, 1, 1, 1}, {1, 0, 1, 1}, {0, 1, 0, 1}, {1, 1, 1, 1},
                            {1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1, 1, 1}, {0, 0, 1, 0}};
  for (int f = 0; f < 8; ++f)
    for (int c = 0; c < 4; ++c) {
      rig.used_storage[f * 4 + c] = masks[f][c];
      // NaN where the mixtures must not be read: unused views, and every view of frame 7 (one camera)
      if (!masks[f][c] || f == 7) rig.mixtures[(f * 4 + c) * 5 * 3 * 4 + 1] = std::nan("");
    }
  std::vector<double> gradient(rig.x.size()), frames(8);
  double total = 0;
  const metapose::RigResult result = metapose::rig_objective(rig.problem(), rig.x.data(), &total, gradient.data(),
                                                             frames.data());
  CHECK(result.accepted && result.ok);
  double numerator = 0, denominator = 0;
  std::vector<double> sub, prepared, work(1 << 16);
  for (long long f = 0; f < 7; ++f) {
    rig.frame(f, sub, prepared);
    metapose::RefinerProblem<double> p;
    p.C = metapose::rig_used_count(rig.used() + f * 4, 4), p.J = 5, p.K = 3;
    p.prepared = prepared.data();
    double value = 0;
    CHECK(metapose::refiner_objective(p, sub.data(), &value, kNone, work.data()));
    CHECK(frames[f] == value);
    numerator += p.C * value;
    denominator += p.C;
  }
  CHECK(std::isnan(frames[7]));
  CHECK(std::fabs(total - numerator / denominator) <= 1e-14 * std::fabs(total));
  // Central differences of the total.
  const double h = 1e-6;
  double worst = 0;
  for (std::size_t i = 0; i < rig.x.size(); i += 3) {
    std::vector<double> plus = rig.x, minus = rig.x;
    plus[i] += h;
    minus[i] -= h;
    double fp = 0, fm = 0;
    metapose::rig_objective(rig.problem(), plus.data(), &fp, kNone, kNone);
    metapose::rig_objective(rig.problem(), minus.data(), &fm, kNone, kNone);
    worst = std::max(worst, std::fabs((fp - fm) / (2 * h) - gradient[i]));
  }
  CHECK(worst < 1e-7);
}

// One frame with every camera: rig_refine gives refine's bits.
void test_one_frame_is_the_refiner() {
  Rig rig(1, 4, 6, 2, 3);
  std::vector<double> sub, prepared;
  rig.frame(0, sub, prepared);
  metapose::RefinerOptions options;
  options.steps = 50;
  metapose::RefinerProblem<double> p;
  p.C = 4, p.J = 6, p.K = 2;
  p.prepared = prepared.data();
  std::vector<double> scratch(static_cast<std::size_t>(metapose::refine_workspace_size(4, 6, 2, 0, 1)));
  double objective = 0, total = 0, frame_value = 0;
  double* xs[1] = {sub.data()};
  double* objectives[1] = {&objective};
  bool ok[1] = {false};
  const bool ran = metapose::refine<double, 1>(&p, 1, options, xs, objectives, nullptr, nullptr, scratch.data(), ok);
  CHECK(ran && ok[0]);
  const metapose::RigResult result = metapose::rig_refine(rig.problem(), options, rig.x.data(), &total, &frame_value);
  CHECK(result.accepted && result.ok);
  std::vector<double> again, unused;
  rig.frame(0, again, unused);
  CHECK(again == sub);
  CHECK(total == objective && frame_value == objective);
}

// 1 and 2 threads: the same bits (enough frames to split, two camera subsets, a partial group).
void test_threads() {
  Rig rig(603, 4, 7, 2, 4);
  for (long long f = 0; f < rig.F; f += 5) rig.used_storage[f * 4 + 1] = 0;
  metapose::RefinerOptions options;
  options.steps = 4;
  std::vector<std::vector<double>> xs;
  std::vector<double> totals;
  const int before = metapose::get_num_threads();
  for (int threads : {1, 2}) {
    metapose::set_num_threads(threads);
    std::vector<double> x = rig.x, frames(static_cast<std::size_t>(rig.F));
    double total = 0;
    CHECK(metapose::rig_refine(rig.problem(), options, x.data(), &total, frames.data()).ok);
    xs.push_back(x);
    totals.push_back(total);
  }
  metapose::set_num_threads(before);
  CHECK(xs[0] == xs[1] && totals[0] == totals[1]);
}

// A rotation that becomes undefined is reported with its camera.
void test_failure_is_reported() {
  Rig rig(2, 3, 4, 2, 5);
  for (int i = 0; i < 6; ++i) rig.x[6 + i] = 0.0;  // camera 1: zero rows
  double total = 0;
  const metapose::RigResult result = metapose::rig_objective(rig.problem(), rig.x.data(), &total, kNone, kNone);
  CHECK(result.accepted && !result.ok && result.failed_camera == 1 && result.failed_frame == 0);
}

}  // namespace

int main() {
  test_refusals();
  test_frames_are_refiner_objectives();
  test_one_frame_is_the_refiner();
  test_threads();
  test_failure_is_reported();
  if (check_failures() != 0) {
    std::fprintf(stderr, "test_rig: %d check(s) failed\n", check_failures());
    return 1;
  }
  std::printf("test_rig: all checks passed\n");
  return 0;
}
