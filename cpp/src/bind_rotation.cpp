// Bindings of rotation.hpp.
#include "bind_common.hpp"
#include "metapose/rotation.hpp"

namespace metapose::bind {

namespace {

constexpr std::size_t kGrain = 8192;

Array rot6d_matrix(const py::object& rot6d_object, Array* jacobian_out) {
  const Input rot6d = take(rot6d_object, "rot6d", {6}, "(..., 6)");
  const std::size_t n = rot6d.batch();
  Array rotation = make_output(rot6d.leading(), {3, 3});
  double* jac = nullptr;
  if (jacobian_out != nullptr) {
    *jacobian_out = make_output(rot6d.leading(), {3, 3, 6});
    jac = jacobian_out->mutable_data();
  }
  const double* in = rot6d.data();
  double* out = rotation.mutable_data();
  FirstFailure failure;
  run_batch(n, kGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i)
      if (!rot6d_to_matrix(in + 6 * i, out + 9 * i, jac ? jac + 54 * i : nullptr)) failure.record(i);
  });
  raise_failure(failure, rot6d,
                "the two rows are zero or parallel, or have norms outside 1e-154 .. 1e154, so they define no "
                "rotation,");
  if (jacobian_out != nullptr) check_result(*jacobian_out, "rot6d");
  return rotation;
}

Array matrix_to_rot6d_binding(const py::object& rotation_object) {
  const Input rotation = take(rotation_object, "rotation", {3, 3}, "(..., 3, 3)");
  Array rot6d = make_output(rotation.leading(), {6});
  const double* in = rotation.data();
  double* out = rot6d.mutable_data();
  run_batch(rotation.batch(), kGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) matrix_to_rot6d(in + 9 * i, out + 6 * i);
  });
  return rot6d;
}

Array rodrigues_to_matrix_binding(const py::object& rotvec_object) {
  const Input rotvec = take(rotvec_object, "rotvec", {3}, "(..., 3)");
  Array rotation = make_output(rotvec.leading(), {3, 3});
  const double* in = rotvec.data();
  double* out = rotation.mutable_data();
  run_batch(rotvec.batch(), kGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) rodrigues_to_matrix(in + 3 * i, out + 9 * i);
  });
  check_result(rotation, "rotvec");
  return rotation;
}

Array matrix_to_rodrigues_binding(const py::object& rotation_object) {
  const Input rotation = take(rotation_object, "rotation", {3, 3}, "(..., 3, 3)");
  Array rotvec = make_output(rotation.leading(), {3});
  const double* in = rotation.data();
  double* out = rotvec.mutable_data();
  FirstFailure failure;
  run_batch(rotation.batch(), kGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i)
      if (!matrix_to_rodrigues(in + 9 * i, out + 3 * i)) failure.record(i);
  });
  raise_failure(failure, rotation, "not a rotation matrix (orthonormal with det +1, to 1e-6)");
  return rotvec;
}

}  // namespace

void bind_rotation(py::module_& m) {
  m.def(
      "rot6d_to_matrix", [](const py::object& rot6d) { return rot6d_matrix(rot6d, nullptr); }, py::arg("rot6d"),
      "(..., 6) first two rows -> (..., 3, 3) rotation by Gram-Schmidt.");
  m.def(
      "rot6d_to_matrix_with_jacobian",
      [](const py::object& rot6d) {
        Array jacobian;
        Array rotation = rot6d_matrix(rot6d, &jacobian);
        return py::make_tuple(rotation, jacobian);
      },
      py::arg("rot6d"), "(..., 6) -> rotation (..., 3, 3), d rotation / d rot6d (..., 3, 3, 6).");
  m.def("matrix_to_rot6d", &matrix_to_rot6d_binding, py::arg("rotation"), "(..., 3, 3) -> (..., 6) first two rows.");
  m.def("rodrigues_to_matrix", &rodrigues_to_matrix_binding, py::arg("rotvec"),
        "(..., 3) axis-angle -> (..., 3, 3) rotation (OpenCV convention).");
  m.def("matrix_to_rodrigues", &matrix_to_rodrigues_binding, py::arg("rotation"),
        "(..., 3, 3) rotation -> (..., 3) axis-angle, angle in [0, pi].");
}

}  // namespace metapose::bind
