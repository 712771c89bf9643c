// Bindings of stage1.hpp.
#include "bind_common.hpp"
#include "metapose/config.hpp"
#include "metapose/stage1.hpp"

namespace metapose::bind {

namespace {

Array stage1_binding(const py::object& mono3d_object) {
  const Input mono3d = take(mono3d_object, "mono3d", {-1, -1, 3}, "(..., C, J, 3)");
  const int C = static_cast<int>(mono3d.dim(0)), J = static_cast<int>(mono3d.dim(1));
  if (C < kMinCameras) throw py::value_error("mono3d: at least two cameras are needed, got C = " + std::to_string(C));
  const py::ssize_t P = solution_size(C, J);
  Array x = make_output(mono3d.leading(), {P});
  const double* G = mono3d.data();
  double* out = x.mutable_data();
  FirstFailure failure;
  run_batch(mono3d.batch(), 64, [&](std::size_t begin, std::size_t end) {
    for (std::size_t b = begin; b < end; ++b)
      if (!stage1(G + 3 * C * J * b, C, J, out + P * b)) failure.record(b);
  });
  raise_failure(failure, mono3d, "a view's guess has all joints at one point, so it has no scale,");
  check_result(x, "mono3d");
  return x;
}

}  // namespace

void bind_stage1(py::module_& m) {
  m.def("stage1", &stage1_binding, py::arg("mono3d"),
        "mono3d (..., C, J, 3) box units -> stage-1 solution x (..., P), P = 3 J + 10 C.");
}

}  // namespace metapose::bind
