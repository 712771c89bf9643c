// Bindings of objective.hpp.
#include <vector>

#include "bind_frames.hpp"
#include "metapose/objective.hpp"

namespace metapose::bind {

namespace {

py::tuple objective_binding(const py::object& mixtures, const py::object& x, const py::object& bones,
                            const py::object& bone_reference, const py::object& bone_weight) {
  const Frames f = take_frames(mixtures, x, bones, bone_reference, bone_weight);
  const std::size_t frames = f.x.batch();
  const std::size_t P = static_cast<std::size_t>(solution_size(f.C, f.J));
  Array value = make_output(f.x.leading(), {});
  Array gradient = make_output(f.x.leading(), {static_cast<py::ssize_t>(P)});
  double *out = value.mutable_data(), *grad = gradient.mutable_data();
  const double* xs = f.x.data();
  FirstFailure failure;
  run_batch(frames, kFrameGrain, [&](std::size_t begin, std::size_t end) {
    std::vector<double> work = allocate(static_cast<std::size_t>(objective_workspace_size(f.C, f.J, f.K)),
                                        "refiner_objective's scratch of one thread at " + f.sizes(),
                                        kThreadScratchAdvice);
    for (std::size_t b = begin; b < end; ++b)
      if (!refiner_objective(f.problem(b), xs + P * b, out + b, grad + P * b, work.data())) failure.record(b);
  });
  raise_failure(failure, f.x, "a camera rotation is undefined (zero or parallel rot6d rows) or the objective overflows");
  check_result(gradient, "x, mixtures");
  return py::make_tuple(value, gradient);
}

}  // namespace

void bind_objective(py::module_& m) {
  m.def("refiner_objective", &objective_binding, py::arg("mixtures"), py::arg("x"), py::arg("bones"),
        py::arg("bone_reference"), py::arg("bone_weight"),
        "mixtures (B, C, J, K, 4), x (B, P), bones (nB, 2) int64, bone_reference (B, nB), bone_weight -> "
        "objective (B,), gradient (B, P).");
}

}  // namespace metapose::bind
