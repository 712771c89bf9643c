// C++ tests of the core's limits and a few of its values, called as a C++ caller would (no Python).
//
// Limits: refiner_objective, refine and stage1 must refuse out-of-range sizes (17 cameras, empty or
// huge dimensions, bad bones, counts, steps) by returning false before touching any array, their
// own stack arrays included; under the sanitizer build a missing check shows as a stack overflow.
// Values: the objective's gradient against central differences, lanes against single frames
// (bit-identical), stage 1 on rotated copies, the fast maths against the library, and the general-K
// mixture sums (a tile of components at a time) against a plain log-sum-exp.
// parallel_for: every item exactly once, also when threads cannot be started; an exception thrown
// on any thread reaches the caller once every thread is joined (not std::terminate).
// dense_rows: a row alone gives the bits it gives in a batch, and every value is the plain chain.
// Built only with METAPOSE_BUILD_TESTS=ON (the sanitizer build, .ci/sanitize); run by CTest.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <algorithm>
#include <atomic>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "check.hpp"
#include "metapose/dense.hpp"
#include "metapose/fastmath.hpp"
#include "metapose/mixture.hpp"
#include "metapose/objective.hpp"
#include "metapose/parallel.hpp"
#include "metapose/refiner.hpp"
#include "metapose/stage1.hpp"

namespace {


using metapose::RefinerProblem;
constexpr double kSentinel = 12345.678;

// One synthetic frame of C cameras, J joints, K components: mixtures near the weak projections of
// a random pose, prepared; bones along a chain; a stage-1-like start x near the truth.
struct Frame {
  int C, J, K;
  std::vector<double> mixtures, prepared, reference, x;
  std::vector<long long> bones;

  Frame(int cameras, int joints, int components, unsigned seed) : C(cameras), J(joints), K(components) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    x.assign(static_cast<std::size_t>(metapose::solution_size(C, J)), 0.0);
    for (auto& value : x) value = 0.3 * normal(rng);
    for (int c = 0; c < C; ++c) {  // rotations away from parallel rows; scales near 1
      double* r6 = x.data() + 3 * J + 6 * c;
      r6[0] += 1.0;
      r6[4] += 1.0;
      x[3 * J + 6 * C + c] = metapose::inverse_softplus(0.8 + 0.4 * uniform(rng));
    }
    mixtures.resize(static_cast<std::size_t>(4 * C * J * K));
    for (int i = 0; i < C * J * K; ++i) {
      double* m = mixtures.data() + 4 * i;
      m[0] = uniform(rng);
      m[1] = normal(rng);
      m[2] = normal(rng);
      m[3] = 0.05 + uniform(rng);
    }
    prepared.resize(static_cast<std::size_t>(metapose::prepared_frame_size(C, J, K)));
    metapose::prepare_frame(mixtures.data(), C, J, K, prepared.data());
    for (int j = 1; j < J; ++j) {
      bones.push_back(j - 1);
      bones.push_back(j);
    }
    std::vector<double> lengths(static_cast<std::size_t>(J - 1));
    for (auto& l : lengths) l = 0.5 + uniform(rng);
    reference.resize(lengths.size());
    metapose::normalise_bone_reference(lengths.data(), J - 1, reference.data());
  }

  RefinerProblem<double> problem(double bone_weight = 0.0) const {
    RefinerProblem<double> p;
    p.C = C, p.J = J, p.K = K;
    p.prepared = prepared.data();
    p.num_bones = J - 1;
    p.bones = bones.data();
    p.bone_reference = reference.data();
    p.bone_weight = bone_weight;
    return p;
  }
};

bool all_equal(const std::vector<double>& values, double expected) {
  for (double v : values)
    if (!(v == expected)) return false;
  return true;
}

// refiner_objective (one frame and 4 lanes) refuses every bad problem and writes nothing.
void test_objective_refuses() {
  const Frame frame(17, 5, 2, 1);  // 17 cameras: one more than kMaxCameras
  const Frame small(2, 5, 2, 2);
  std::vector<double> work(1 << 16), gradient(4 * frame.x.size(), kSentinel), value(4, kSentinel);
  auto refused = [&](const RefinerProblem<double>& problem, const double* x, double* w) {
    std::fill(gradient.begin(), gradient.end(), kSentinel);
    std::fill(value.begin(), value.end(), kSentinel);
    const bool single = metapose::refiner_objective(problem, x, value.data(), gradient.data(), w);
    metapose::RefinerLanes<double, 4> lanes;
    lanes.C = problem.C, lanes.J = problem.J, lanes.K = problem.K;
    lanes.prepared = problem.prepared;
    lanes.num_bones = problem.num_bones;
    lanes.bones = problem.bones;
    lanes.bone_reference = problem.bone_reference;
    bool ok[4] = {true, true, true, true};
    const bool four = metapose::refiner_objective(lanes, x, value.data(), gradient.data(), w, ok);
    return !single && !four && all_equal(gradient, kSentinel) && all_equal(value, kSentinel) && ok[0] && ok[3];
  };
  CHECK(refused(frame.problem(), frame.x.data(), work.data()));
  RefinerProblem<double> p = small.problem(0.5);
  const double* x = small.x.data();
  for (int C : {-1, 0, 1, 17, 1 << 30}) {
    p = small.problem(0.5);
    p.C = C;
    CHECK(refused(p, x, work.data()));
  }
  for (int J : {-5, 0, 1 << 30}) {
    p = small.problem(0.5);
    p.J = J;
    CHECK(refused(p, x, work.data()));
  }
  for (int K : {-1, 0, 1 << 28}) {
    p = small.problem(0.5);
    p.K = K;
    CHECK(refused(p, x, work.data()));
  }
  p = small.problem(0.5);
  p.num_bones = -1;
  CHECK(refused(p, x, work.data()));
  p = small.problem(0.5);
  p.bones = nullptr;
  CHECK(refused(p, x, work.data()));
  p = small.problem(0.5);
  p.bone_reference = nullptr;
  CHECK(refused(p, x, work.data()));
  p = small.problem(0.5);
  p.prepared = nullptr;
  CHECK(refused(p, x, work.data()));
  for (long long joint : {-1LL, 5LL, 1LL << 40}) {  // J = 5: joints 0 .. 4
    std::vector<long long> bones = small.bones;
    bones[3] = joint;
    p = small.problem(0.5);
    p.bones = bones.data();
    CHECK(refused(p, x, work.data()));
  }
  p = small.problem(0.5);
  CHECK(refused(p, nullptr, work.data()));
  CHECK(refused(p, x, nullptr));
  // The same problem with its sizes in range runs.
  CHECK(metapose::refiner_objective(p, x, value.data(), gradient.data(), work.data()));
  CHECK(std::isfinite(value[0]));
}

// refine (and refine_group) refuse bad calls and write nothing.
void test_refine_refuses() {
  const Frame big(17, 4, 2, 3);
  const Frame a(3, 4, 2, 4), b(3, 4, 2, 5), other(3, 5, 2, 6);
  metapose::RefinerOptions options;
  options.steps = 5;
  std::vector<double> scratch(1 << 16);
  std::vector<double> x0(big.x.size() * 5, kSentinel);
  double objective[5] = {kSentinel, kSentinel, kSentinel, kSentinel, kSentinel};
  std::vector<double> history(1 << 12, kSentinel);
  double* x_of[5];
  double* objective_of[5];
  double* history_x_of[5];
  double* history_objective_of[5];
  for (int l = 0; l < 5; ++l) {
    x_of[l] = x0.data() + big.x.size() * l;
    objective_of[l] = objective + l;
    history_x_of[l] = history.data() + 512 * l;
    history_objective_of[l] = history.data() + 3000 + 64 * l;
  }
  auto untouched = [&] {
    bool same = all_equal(x0, kSentinel) && all_equal(history, kSentinel);
    for (double v : objective) same = same && v == kSentinel;
    return same;
  };
  auto run = [&](int width, const RefinerProblem<double>* problems, int count, const metapose::RefinerOptions& o,
                 double* const* histories_x, double* const* histories_objective) {
    bool ok[5] = {true, true, true, true, true};
    const bool ran = metapose::refine_group(width, problems, count, o, x_of, objective_of, histories_x,
                                            histories_objective, scratch.data(), ok);
    return ran;
  };
  RefinerProblem<double> problems[5] = {big.problem(), big.problem(), big.problem(), big.problem(), big.problem()};
  CHECK(!run(4, problems, 4, options, history_x_of, history_objective_of) && untouched());
  CHECK(!run(1, problems, 1, options, history_x_of, history_objective_of) && untouched());
  for (auto& p : problems) p = a.problem(0.2);
  CHECK(!run(4, problems, 0, options, history_x_of, history_objective_of) && untouched());
  CHECK(!run(4, problems, 5, options, history_x_of, history_objective_of) && untouched());
  CHECK(!run(2, problems, 3, options, history_x_of, history_objective_of) && untouched());
  CHECK(!run(3, problems, 3, options, history_x_of, history_objective_of) && untouched());  // no 3-lane width
  CHECK(!run(4, nullptr, 1, options, history_x_of, history_objective_of) && untouched());
  problems[2] = other.problem(0.2);  // another J in the group
  CHECK(!run(4, problems, 4, options, history_x_of, history_objective_of) && untouched());
  problems[2] = b.problem(0.2);
  problems[2].K = 3;  // another K
  CHECK(!run(4, problems, 4, options, history_x_of, history_objective_of) && untouched());
  problems[2] = b.problem(0.2);
  std::vector<long long> bad_bones = b.bones;
  bad_bones[0] = 4;
  problems[2].bones = bad_bones.data();  // frames past the first are checked too
  CHECK(!run(4, problems, 4, options, history_x_of, history_objective_of) && untouched());
  problems[2] = b.problem(0.2);
  metapose::RefinerOptions bad = options;
  bad.steps = -1;
  CHECK(!run(4, problems, 4, bad, history_x_of, history_objective_of) && untouched());
  bad = options;
  bad.history_every = -2;
  CHECK(!run(4, problems, 4, bad, history_x_of, history_objective_of) && untouched());
  bad = options;
  bad.history_every = 2;  // histories asked for, none given
  CHECK(!run(4, problems, 4, bad, nullptr, nullptr) && untouched());
  // In range, the same call runs.
  for (int l = 0; l < 4; ++l) std::copy(a.x.begin(), a.x.end(), x_of[l]);
  CHECK(run(4, problems, 4, options, nullptr, nullptr));
  CHECK(std::isfinite(objective[0]) && objective[4] == kSentinel);
}

// stage1 refuses sizes out of range, and takes more than kMaxCameras views (no per-camera stack).
void test_stage1_limits() {
  std::vector<double> guesses(3 * 17 * 6), x(static_cast<std::size_t>(metapose::solution_size(17, 6)), kSentinel);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (auto& g : guesses) g = normal(rng);
  CHECK(!metapose::stage1(guesses.data(), 1, 6, x.data()) && all_equal(x, kSentinel));
  CHECK(!metapose::stage1(guesses.data(), 0, 6, x.data()) && all_equal(x, kSentinel));
  CHECK(!metapose::stage1(guesses.data(), -2, 6, x.data()) && all_equal(x, kSentinel));
  CHECK(!metapose::stage1(guesses.data(), 2, 0, x.data()) && all_equal(x, kSentinel));
  CHECK(!metapose::stage1(guesses.data(), 1 << 20, 1 << 20, x.data()) && all_equal(x, kSentinel));
  CHECK(!metapose::stage1(static_cast<const double*>(nullptr), 2, 6, x.data()) && all_equal(x, kSentinel));
  CHECK(!metapose::stage1_shape_ok(2, 1LL << 31));
  CHECK(metapose::stage1(guesses.data(), 17, 6, x.data()));
}

// Stage 1 on rotated, scaled, shifted copies of one pose recovers each view's rotation and scale.
void test_stage1_values() {
  const int C = 3, J = 7;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> pose(3 * J), guesses(3 * C * J), x(static_cast<std::size_t>(metapose::solution_size(C, J)));
  for (auto& v : pose) v = normal(rng);
  double rotations[C][9], scales[C] = {1.0, 1.7, 0.6};
  for (int c = 0; c < C; ++c) {
    double r6[6];
    for (double& v : r6) v = normal(rng);
    if (c == 0) {
      const double identity[6] = {1, 0, 0, 0, 1, 0};
      std::memcpy(r6, identity, sizeof r6);
    }
    CHECK(metapose::rot6d_to_matrix(r6, rotations[c]));
    const double shift[3] = {normal(rng), normal(rng), normal(rng)};
    for (int j = 0; j < J; ++j)
      for (int k = 0; k < 3; ++k) {
        double q = 0;
        for (int a = 0; a < 3; ++a) q += pose[3 * j + a] * rotations[c][3 * a + k];
        guesses[3 * (c * J + j) + k] = scales[c] * q + shift[k];
      }
  }
  CHECK(metapose::stage1(guesses.data(), C, J, x.data()));
  for (int c = 1; c < C; ++c) {
    double R[9];
    CHECK(metapose::rot6d_to_matrix(x.data() + 3 * J + 6 * c, R));
    for (int i = 0; i < 9; ++i) CHECK(std::fabs(R[i] - rotations[c][i]) < 1e-12);
    double s, slope;
    metapose::softplus_and_slope(x[3 * J + 6 * C + c], &s, &slope);
    CHECK(std::fabs(s - scales[c]) < 1e-12);
  }
}

// The objective's gradient (bone term on) against central differences.
void test_objective_gradient() {
  const Frame frame(3, 5, 3, 13);
  const RefinerProblem<double> problem = frame.problem(0.3);
  const std::size_t P = frame.x.size();
  std::vector<double> work(static_cast<std::size_t>(metapose::objective_workspace_size(3, 5, 3)));
  std::vector<double> gradient(P), x = frame.x;
  double value;
  CHECK(metapose::refiner_objective(problem, x.data(), &value, gradient.data(), work.data()));
  double worst = 0;
  for (std::size_t i = 0; i < P; ++i) {
    const double h = 1e-6 * std::fmax(1.0, std::fabs(x[i]));
    double plus, minus;
    x[i] = frame.x[i] + h;
    metapose::refiner_objective(problem, x.data(), &plus, static_cast<double*>(nullptr), work.data());
    x[i] = frame.x[i] - h;
    metapose::refiner_objective(problem, x.data(), &minus, static_cast<double*>(nullptr), work.data());
    x[i] = frame.x[i];
    const double numeric = (plus - minus) / (2 * h);
    worst = std::fmax(worst, std::fabs(numeric - gradient[i]) / std::fmax(1.0, std::fabs(gradient[i])));
  }
  if (!(worst < 1e-7)) std::fprintf(stderr, "gradient vs central differences: worst %.3g\n", worst);
  CHECK(worst < 1e-7);
}

// Frames refined 4 to a group give the same bits as each refined alone; the objective goes down.
void test_lanes_bit_identical() {
  const int C = 3, J = 6, K = 2;
  std::vector<Frame> frames;
  for (unsigned seed = 20; seed < 23; ++seed) frames.emplace_back(C, J, K, seed);  // 3 frames: a 4-lane group
  metapose::RefinerOptions options;
  options.steps = 40;
  options.history_every = 10;
  const std::size_t P = frames[0].x.size(), H = 5;
  std::vector<double> scratch(static_cast<std::size_t>(metapose::refine_workspace_size(C, J, K, J - 1)));
  auto refine = [&](int width, int first, int count, std::vector<double>& xs, std::vector<double>& objectives,
                    std::vector<double>& history_x, std::vector<double>& history_objective) {
    RefinerProblem<double> problems[4];
    double *x_of[4], *objective_of[4], *hx[4], *ho[4];
    bool ok[4];
    for (int l = 0; l < count; ++l) {
      const int f = first + l;
      problems[l] = frames[f].problem(0.1);
      std::copy(frames[f].x.begin(), frames[f].x.end(), xs.begin() + P * f);
      x_of[l] = xs.data() + P * f;
      objective_of[l] = objectives.data() + f;
      hx[l] = history_x.data() + H * P * f;
      ho[l] = history_objective.data() + H * f;
    }
    CHECK(metapose::refine_group(width, problems, count, options, x_of, objective_of, hx, ho, scratch.data(), ok));
    for (int l = 0; l < count; ++l) CHECK(ok[l]);
  };
  std::vector<double> x4(3 * P), o4(3), hx4(3 * H * P), ho4(3 * H), x1(3 * P), o1(3), hx1(3 * H * P), ho1(3 * H);
  refine(4, 0, 3, x4, o4, hx4, ho4);
  for (int f = 0; f < 3; ++f) refine(1, f, 1, x1, o1, hx1, ho1);
  CHECK(x4 == x1 && o4 == o1 && hx4 == hx1 && ho4 == ho1);
  for (int f = 0; f < 3; ++f) CHECK(o1[f] < ho1[H * f]);  // final below the start
}

// The fast maths against the library.
void test_fastmath() {
  double worst_exp = 0, worst_log = 0, worst_softplus = 0, worst_inverse = 0;
  for (int i = 0; i <= 100000; ++i) {
    const double x = -700.0 * i / 100000.0;
    worst_exp = std::fmax(worst_exp, std::fabs(metapose::exp_nonpositive(x) / std::exp(x) - 1));
    const double y = std::exp(1400.0 * i / 100000.0 - 700.0);
    worst_log = std::fmax(worst_log, std::fabs(metapose::log_positive(y) - std::log(y)) / std::fmax(1.0, std::fabs(std::log(y))));
    const double z = 60.0 * i / 100000.0 - 30.0;
    double s, slope;
    metapose::softplus_and_slope(z, &s, &slope);
    worst_softplus = std::fmax(worst_softplus, std::fabs(s / std::log1p(std::exp(z)) - 1));
    worst_softplus = std::fmax(worst_softplus, std::fabs(slope * (1 + std::exp(-z)) - 1));
    const double t = std::exp(8.0 * i / 100000.0 - 4.0);
    metapose::softplus_and_slope(metapose::inverse_softplus(t), &s, &slope);
    worst_inverse = std::fmax(worst_inverse, std::fabs(s / t - 1));
  }
  CHECK(worst_exp < 1e-15);
  CHECK(worst_log < 1e-15);
  CHECK(worst_softplus < 2e-15);
  CHECK(worst_inverse < 1e-14);
  CHECK(metapose::exp_nonpositive(-1000.0) == metapose::exp_nonpositive(-700.0));
  CHECK(metapose::log_positive(0.0) == -HUGE_VAL);
  CHECK(metapose::log_positive(HUGE_VAL) == HUGE_VAL);
  CHECK(std::isnan(metapose::log_positive(-1.0)));
  CHECK(std::fabs(metapose::log_positive(5e-324) - std::log(5e-324)) < 1e-12);
  CHECK(metapose::padded_count(5) == 8 && metapose::padded_count(8) == 8);
}

void test_shape_predicates() {
  CHECK(metapose::objective_shape_ok(16, 17, 4, 16));
  CHECK(!metapose::objective_shape_ok(17, 17, 4, 16));
  CHECK(!metapose::objective_shape_ok(1, 17, 4, 16));
  CHECK(!metapose::objective_shape_ok(4, 1LL << 40, 4, 16));
  CHECK(!metapose::objective_shape_ok(4, 17, 1LL << 40, 16));
  CHECK(!metapose::objective_shape_ok(4, 17, 4, 16, 0));
  CHECK(!metapose::objective_shape_ok(4, 17, 4, metapose::kMaxIndex / 2 + 1));  // 2 nB bone indices
  CHECK(metapose::refiner_shape_ok(16, 17, 4, 16));
  CHECK(!metapose::refiner_shape_ok(4, 1 << 24, 8, 16));  // past int indexing at 4 lanes
}

// Starts up to `allowed` threads, then throws as std::thread does when the system refuses one.
struct StartSome {
  int allowed;
  int* started;
  template <class Work>
  void operator()(std::vector<std::thread>& workers, Work& work) const {
    if (*started >= allowed) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    workers.emplace_back(work);
    ++*started;
  }
};

// Each item of [0, n) visited once, with `allowed` of the threads - 1 workers to be had.
bool covers_once(std::size_t n, std::size_t threads, int allowed) {
  std::vector<std::atomic<int>> visits(n);
  int started = 0;
  metapose::parallel_for_with(n, 1, threads, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) visits[i].fetch_add(1);
  }, StartSome{allowed, &started});
  for (auto& v : visits)
    if (v.load() != 1) return false;
  return started <= allowed;
}

void test_parallel_for() {
  for (std::size_t n : {1, 2, 7, 64, 1000})
    for (std::size_t threads : {1, 2, 3, 16})
      for (int allowed : {0, 1, 2, 100}) CHECK(covers_once(n, threads, allowed));
  // A body that throws on one range, on a worker or on the calling thread: the exception arrives
  // here, after the others have stopped; the other ranges' items are visited at most once.
  for (std::size_t failing : {0, 3, 15}) {
    bool caught = false;
    std::vector<std::atomic<int>> visits(16);
    try {
      metapose::parallel_for_with(16, 1, 16, [&](std::size_t begin, std::size_t end) {
        if (begin <= failing && failing < end) throw std::bad_alloc();
        for (std::size_t i = begin; i < end; ++i) visits[i].fetch_add(1);
      }, metapose::StartThread{});
    } catch (const std::bad_alloc&) {
      caught = true;
    }
    CHECK(caught);
    for (auto& v : visits) CHECK(v.load() <= 1);
  }
  // Several ranges throw: the lowest range's exception is the one raised.
  std::string message;
  try {
    metapose::parallel_for_with(8, 1, 8, [](std::size_t begin, std::size_t) {
      throw std::runtime_error("range " + std::to_string(begin));
    }, metapose::StartThread{});
  } catch (const std::runtime_error& error) {
    message = error.what();
  }
  CHECK(message.rfind("range ", 0) == 0);
  // Threads refused and a body that throws, together.
  int started = 0;
  bool caught = false;
  try {
    metapose::parallel_for_with(100, 1, 8, [](std::size_t begin, std::size_t) {
      if (begin >= 50) throw std::bad_alloc();
    }, StartSome{2, &started});
  } catch (const std::bad_alloc&) {
    caught = true;
  }
  CHECK(caught && started == 2);
}

// A plain log-sum-exp in long double: log-likelihood and gradient of point p under one mixture (K x 4).
void mixture_reference(const double* mixture, int K, double px, double py, double* value, double* gx, double* gy) {
  std::vector<long double> e(static_cast<std::size_t>(K));
  long double m = -std::numeric_limits<long double>::infinity();
  for (int k = 0; k < K; ++k) {
    const double* c = mixture + 4 * k;
    const long double dx = px - c[1], dy = py - c[2];
    constexpr long double kPi = 3.14159265358979323846264338327950288L;
    const long double log_weight = std::log(static_cast<long double>(c[0]) + 1e-8L);
    e[k] = log_weight - std::log(2 * kPi * c[3]) - (dx * dx + dy * dy) / (2 * c[3]);
    m = std::max(m, e[k]);
  }
  long double total = 0, sx = 0, sy = 0;
  for (int k = 0; k < K; ++k) {
    const double* c = mixture + 4 * k;
    const long double r = std::exp(e[k] - m);
    total += r;
    sx += r * (c[1] - px) / c[3];
    sy += r * (c[2] - py) / c[3];
  }
  *value = static_cast<double>(m + std::log(total));
  *gx = static_cast<double>(sx / total);
  *gy = static_cast<double>(sy / total);
}

// The general-K path sums kMixtureTile components at a time; K past one tile, and a mixture whose
// first tile is so far from the point that its e_k are -inf (its sums are dropped, not NaN).
void test_mixture_tiles() {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int K : {7, 64, 65, 200, 1000}) {
    const int N = 5;
    std::vector<double> mixtures(static_cast<std::size_t>(4 * N * K)), px(N), py(N);
    for (int i = 0; i < N * K; ++i) {
      double* c = mixtures.data() + 4 * i;
      c[0] = uniform(rng), c[1] = normal(rng), c[2] = normal(rng), c[3] = 0.01 + uniform(rng);
    }
    for (int n = 0; n < N; ++n) px[n] = normal(rng), py[n] = normal(rng);
    if (K == 200)  // point 0: the first tile's means at 1e200, beyond any e_k but -inf
      for (int k = 0; k < metapose::kMixtureTile; ++k) mixtures[4 * k + 1] = 1e200;
    std::vector<double> prepared(static_cast<std::size_t>(4 * K * N)), gx(N), gy(N), values(N),
        scratch(static_cast<std::size_t>(metapose::mixture_scratch_size(K, N)));
    metapose::prepare_mixtures(mixtures.data(), N, K, prepared.data(), N);
    metapose::evaluate_mixtures(px.data(), py.data(), N, prepared.data(), K, gx.data(), gy.data(), values.data(),
                                scratch.data());
    for (int n = 0; n < N; ++n) {
      double value, rx, ry;
      mixture_reference(mixtures.data() + 4 * K * n, K, px[n], py[n], &value, &rx, &ry);
      CHECK(std::isfinite(values[n]) && std::abs(values[n] - value) <= 1e-12 * (1 + std::abs(value)));
      const double scale = 1 + std::abs(rx) + std::abs(ry);
      CHECK(std::abs(gx[n] - rx) <= 1e-11 * scale && std::abs(gy[n] - ry) <= 1e-11 * scale);
    }
  }
}

// dense_rows: every row alone, and every row's value against the plain fixed-order chain
// bias + sum_i x_i w_io (METAPOSE_MADD), bit for bit, over shapes that reach every tile.
template <class T>
void check_dense(std::size_t M, std::size_t I, std::size_t O) {
  std::vector<T> x(M * I), w(I * O), b(O), y(M * O), one(O);
  std::mt19937 generator(static_cast<unsigned>(M * 131 + I * 7 + O));
  std::normal_distribution<double> normal;
  for (auto* values : {&x, &w, &b})
    for (auto& v : *values) v = static_cast<T>(normal(generator));
  metapose::dense_rows<T>(x.data(), I, w.data(), O, b.data(), M, metapose::Activation::kSelu, y.data(), 0, M);
  for (std::size_t m = 0; m < M; ++m) {
    metapose::dense_rows<T>(x.data() + m * I, I, w.data(), O, b.data(), 1, metapose::Activation::kSelu, one.data(), 0,
                            1);
    CHECK(std::memcmp(one.data(), y.data() + m * O, O * sizeof(T)) == 0);
    for (std::size_t o = 0; o < O; ++o) {
      T acc = b[o];
      for (std::size_t i = 0; i < I; ++i) acc = METAPOSE_MADD(x[m * I + i], w[i * O + o], acc);
      const T expected = metapose::selu(acc);
      CHECK(std::memcmp(&expected, &y[m * O + o], sizeof(T)) == 0);
    }
  }
}

void test_dense_bits() {
  for (std::size_t M : {1, 3, 4, 7, 70})
    for (std::size_t I : {0, 1, 17, 40})
      for (std::size_t O : {1, 5, 13, 30, 70}) {
        check_dense<double>(M, I, O);
        check_dense<float>(M, I, O);
      }
}

}  // namespace

int main() {
  test_objective_refuses();
  test_refine_refuses();
  test_stage1_limits();
  test_stage1_values();
  test_objective_gradient();
  test_lanes_bit_identical();
  test_fastmath();
  test_shape_predicates();
  test_parallel_for();
  test_mixture_tiles();
  test_dense_bits();
  if (check_failures() != 0) {
    std::fprintf(stderr, "test_limits: %d check(s) failed\n", check_failures());
    return 1;
  }
  std::printf("test_limits: all checks passed\n");
  return 0;
}
