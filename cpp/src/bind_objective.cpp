// Bindings of objective.hpp.
#include "bind_frames.hpp"
#include "metapose/objective.hpp"

namespace metapose::bind {

namespace {

py::tuple objective_binding(const py::object& mixtures, const py::object& x, const py::object& bones,
                            const py::object& bone_reference, const py::object& bone_weight) {
  const Frames f = take_frames(mixtures, x, bones, bone_reference, bone_weight);
  ObjectiveValues result = objective_at(f, f.x.data());
  return py::make_tuple(result.value, result.gradient);
}

}  // namespace

void bind_objective(py::module_& m) {
  m.def("refiner_objective", &objective_binding, py::arg("mixtures"), py::arg("x"), py::arg("bones"),
        py::arg("bone_reference"), py::arg("bone_weight"),
        "mixtures (B, C, J, K, 4), x (B, P), bones (nB, 2) int64, bone_reference (B, nB), bone_weight -> "
        "objective (B,), gradient (B, P).");
}

}  // namespace metapose::bind
