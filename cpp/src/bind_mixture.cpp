// Bindings of mixture.hpp.
#include <algorithm>
#include <limits>
#include <vector>

#include "bind_common.hpp"
#include "metapose/mixture.hpp"

namespace metapose::bind {

namespace {

constexpr std::size_t kGrain = 4096;
constexpr double kMinVariance = 1e-300;  // below this 1 / (2 var) overflows

py::object mixture_binding(const py::object& points_object, const py::object& mixtures_object, bool with_gradient) {
  const Input points = take(points_object, "points", {2}, "(..., 2)");
  const Input mixtures = take(mixtures_object, "mixtures", {-1, 4}, "(..., K, 4) [weight, mu_x, mu_y, variance]");
  same_batch(points, mixtures);
  if (mixtures.dim(0) > std::numeric_limits<int>::max())
    throw py::value_error("mixtures: K = " + std::to_string(mixtures.dim(0)) +
                          " components is too many (at most 2^31 - 1)");
  const std::size_t K = static_cast<std::size_t>(mixtures.dim(0));
  const double* mix = mixtures.data();
  for (std::size_t i = 0; i < mixtures.batch() * K; ++i) {
    if (!(mix[4 * i] >= 0))
      throw py::value_error("mixtures: weights must be >= 0, got " + std::to_string(mix[4 * i]) + " at component " +
                            std::to_string(i % K) + " of " + index_string(mixtures.leading(), i / K));
    if (!(mix[4 * i + 3] >= kMinVariance))
      throw py::value_error("mixtures: variances must be > 0 (at least 1e-300), got " + std::to_string(mix[4 * i + 3]) +
                            " at component " + std::to_string(i % K) + " of " +
                            index_string(mixtures.leading(), i / K));
  }
  Array log_likelihood = make_output(points.leading(), {});
  Array gradient;
  double* grad = nullptr;
  if (with_gradient) {
    gradient = make_output(points.leading(), {2});
    grad = gradient.mutable_data();
  }
  const double* p = points.data();
  double* out = log_likelihood.mutable_data();
  const int components = static_cast<int>(K);
  run_batch(points.batch(), kGrain, [&](std::size_t begin, std::size_t end) {
    // Blocks of kBlock points: gather, prepare, evaluate, scatter. The scratch is bounded whatever
    // K is (a few hundred kB): up to kMixtureTile components are prepared at a time, and a larger
    // K is summed a tile at a time (MixtureSums, mixture.hpp).
    constexpr int kBlock = 64;
    const int tile = std::min(components, kMixtureTile);
    const std::size_t prepared_size = static_cast<std::size_t>(4 * tile * kBlock);
    const std::size_t scratch_size = static_cast<std::size_t>(mixture_scratch_size(components, kBlock));
    std::vector<double> work = allocate(prepared_size + 4 * kBlock + scratch_size,
                                        "mixture_log_likelihood's scratch of one thread", "lower set_num_threads");
    double *prepared = work.data(), *px = prepared + prepared_size, *py = px + kBlock, *gx = py + kBlock,
           *gy = gx + kBlock, *scratch = gy + kBlock;
    for (std::size_t first = begin; first < end; first += kBlock) {
      const int n = static_cast<int>(std::min<std::size_t>(kBlock, end - first));
      for (int i = 0; i < n; ++i) {
        px[i] = p[2 * (first + i)];
        py[i] = p[2 * (first + i) + 1];
      }
      const double* block = mix + 4 * K * first;
      if (components <= kMixtureTile) {  // one tile (the fixed-K kernels for the common sizes)
        prepare_mixtures(block, n, components, prepared, n);
        evaluate_mixtures(px, py, n, prepared, components, gx, gy, out + first, scratch);
      } else {
        MixtureSums<double> sums(px, py, n, gx, gy, scratch);
        for (int k = 0; k < components; k += kMixtureTile) {
          const int count = std::min(kMixtureTile, components - k);
          prepare_mixture_components(block, n, components, k, count, prepared, n);
          sums.add(prepared, count, static_cast<long long>(count) * n);
        }
        sums.finish(out + first);
      }
      if (grad != nullptr)
        for (int i = 0; i < n; ++i) {
          grad[2 * (first + i)] = gx[i];
          grad[2 * (first + i) + 1] = gy[i];
        }
    }
  });
  check_result(log_likelihood, "points, mixtures");
  if (!with_gradient) return std::move(log_likelihood);
  check_result(gradient, "points, mixtures");
  return py::make_tuple(log_likelihood, gradient);
}

}  // namespace

void bind_mixture(py::module_& m) {
  m.def(
      "mixture_log_likelihood",
      [](const py::object& points, const py::object& mixtures) { return mixture_binding(points, mixtures, false); },
      py::arg("points"), py::arg("mixtures"), "points (..., 2), mixtures (..., K, 4) -> log-likelihood (...).");
  m.def(
      "mixture_log_likelihood_with_gradient",
      [](const py::object& points, const py::object& mixtures) { return mixture_binding(points, mixtures, true); },
      py::arg("points"), py::arg("mixtures"),
      "points (..., 2), mixtures (..., K, 4) -> log-likelihood (...), gradient d/dpoints (..., 2).");
}

}  // namespace metapose::bind
