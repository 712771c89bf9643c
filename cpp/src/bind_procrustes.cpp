// Bindings of procrustes.hpp and metrics.hpp.
#include <vector>

#include "bind_common.hpp"
#include "metapose/metrics.hpp"
#include "metapose/procrustes.hpp"

namespace metapose::bind {

namespace {

constexpr std::size_t kGrain = 1024;

// Two point sets of equal shape (..., N, 3).
std::pair<Input, Input> take_pair(const py::object& a, const char* a_name, const py::object& b, const char* b_name) {
  Input first = take(a, a_name, {-1, 3}, "(..., N, 3)");
  Input second = take(b, b_name, {-1, 3}, "(..., N, 3)");
  same_batch(first, second);
  same_size(first, 0, second, 0, "N (points)");
  return {std::move(first), std::move(second)};
}

py::tuple procrustes_binding(const py::object& source_object, const py::object& target_object,
                             const py::object& mode_object) {
  const auto [source, target] = take_pair(source_object, "source", target_object, "target");
  const auto mode = static_cast<ProcrustesScale>(take_int(mode_object, "scale", 0, 1));
  const int N = static_cast<int>(source.dim(0));
  const Shape leading = source.leading();
  Array rotation = make_output(leading, {3, 3});
  Array scale = make_output(leading, {});
  Array translation = make_output(leading, {3});
  const double *A = source.data(), *B = target.data();
  double *R = rotation.mutable_data(), *s = scale.mutable_data(), *t = translation.mutable_data();
  run_batch(source.batch(), kGrain, [&](std::size_t begin, std::size_t end) {
    std::vector<double> unit(6 * static_cast<std::size_t>(N));
    for (std::size_t i = begin; i < end; ++i)
      procrustes(A + 3 * N * i, B + 3 * N * i, N, mode, R + 9 * i, s + i, t + 3 * i, unit.data());
  });
  for (const Array* result : {&rotation, &scale, &translation}) check_result(*result, "source, target");
  return py::make_tuple(rotation, scale, translation);
}

Array pmpjpe_binding(const py::object& prediction_object, const py::object& truth_object,
                     const py::object& mode_object) {
  const auto [prediction, truth] = take_pair(prediction_object, "prediction", truth_object, "ground_truth");
  const auto mode = static_cast<ProcrustesScale>(take_int(mode_object, "scale", 0, 1));
  const int J = static_cast<int>(prediction.dim(0));
  Array errors = make_output(prediction.leading(), {J});
  const double *P = prediction.data(), *G = truth.data();
  double* e = errors.mutable_data();
  run_batch(prediction.batch(), kGrain, [&](std::size_t begin, std::size_t end) {
    std::vector<double> unit(6 * static_cast<std::size_t>(J));
    for (std::size_t i = begin; i < end; ++i)
      pmpjpe_per_joint(P + 3 * J * i, G + 3 * J * i, J, mode, e + J * i, unit.data());
  });
  check_result(errors, "prediction, ground_truth");
  return errors;
}

Array nmpjpe_binding(const py::object& prediction_object, const py::object& truth_object,
                     const py::object& mirror_object) {
  const auto [prediction, truth] = take_pair(prediction_object, "prediction", truth_object, "ground_truth");
  const bool mirror_fix = take_bool(mirror_object, "mirror_fix");
  const int J = static_cast<int>(prediction.dim(0));
  Array errors = make_output(prediction.leading(), {J});
  const double *P = prediction.data(), *G = truth.data();
  double* e = errors.mutable_data();
  run_batch(prediction.batch(), kGrain, [&](std::size_t begin, std::size_t end) {
    std::vector<double> unit(6 * static_cast<std::size_t>(J));
    for (std::size_t i = begin; i < end; ++i)
      nmpjpe_per_joint(P + 3 * J * i, G + 3 * J * i, J, mirror_fix, e + J * i, unit.data());
  });
  check_result(errors, "prediction, ground_truth");
  return errors;
}

}  // namespace

void bind_procrustes(py::module_& m) {
  m.def("procrustes", &procrustes_binding, py::arg("source"), py::arg("target"), py::arg("scale"),
        "source, target (..., N, 3), scale 0 = Umeyama, 1 = norm ratio -> rotation (..., 3, 3), scale (...), "
        "translation (..., 3) with target ~ scale * source @ rotation + translation.");
  m.def("pmpjpe_per_joint", &pmpjpe_binding, py::arg("prediction"), py::arg("ground_truth"), py::arg("scale"),
        "prediction, ground_truth (..., J, 3), scale mode -> Procrustes-aligned per-joint errors (..., J).");
  m.def("nmpjpe_per_joint", &nmpjpe_binding, py::arg("prediction"), py::arg("ground_truth"), py::arg("mirror_fix"),
        "prediction, ground_truth (..., J, 3), mirror_fix -> normalised per-joint errors (..., J).");
}

}  // namespace metapose::bind
