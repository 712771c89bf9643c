// Bindings of camera.hpp.
#include "bind_common.hpp"
#include "metapose/camera.hpp"

namespace metapose::bind {

namespace {

constexpr std::size_t kWeakGrain = 256;           // poses
constexpr std::size_t kPerspectiveGrain = 8192;   // points

struct WeakInputs {
  Input pose, rotation, scale, shift;
  py::ssize_t cameras, joints;
};

WeakInputs take_weak(const py::object& pose, const py::object& rotation, const py::object& scale,
                     const py::object& shift) {
  WeakInputs in{take(pose, "pose", {-1, 3}, "(..., J, 3)"), take(rotation, "rotation", {-1, 3, 3}, "(..., C, 3, 3)"),
                take(scale, "scale", {-1}, "(..., C)"), take(shift, "shift", {-1, 3}, "(..., C, 3)"), 0, 0};
  same_batch(in.pose, in.rotation);
  same_batch(in.pose, in.scale);
  same_batch(in.pose, in.shift);
  same_size(in.rotation, 0, in.scale, 0, "C (cameras)");
  same_size(in.rotation, 0, in.shift, 0, "C (cameras)");
  in.cameras = in.rotation.dim(0);
  in.joints = in.pose.dim(0);
  return in;
}

Array project_weak_binding(const py::object& pose, const py::object& rotation, const py::object& scale,
                           const py::object& shift) {
  const WeakInputs in = take_weak(pose, rotation, scale, shift);
  const std::size_t C = static_cast<std::size_t>(in.cameras), J = static_cast<std::size_t>(in.joints);
  Array points = make_output(in.pose.leading(), {in.cameras, in.joints, 2});
  const double *X = in.pose.data(), *R = in.rotation.data(), *s = in.scale.data(), *t = in.shift.data();
  double* out = points.mutable_data();
  run_batch(in.pose.batch(), kWeakGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t b = begin; b < end; ++b)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t j = 0; j < J; ++j)
          project_weak_point(X + 3 * (b * J + j), R + 9 * (b * C + c), s[b * C + c], t + 3 * (b * C + c),
                             out + 2 * ((b * C + c) * J + j));
  });
  check_result(points, "pose, rotation, scale, shift");
  return points;
}

py::tuple project_weak_with_jacobian_binding(const py::object& pose, const py::object& rotation,
                                             const py::object& scale, const py::object& shift) {
  const WeakInputs in = take_weak(pose, rotation, scale, shift);
  const std::size_t C = static_cast<std::size_t>(in.cameras), J = static_cast<std::size_t>(in.joints);
  const Shape leading = in.pose.leading();
  Array points = make_output(leading, {in.cameras, in.joints, 2});
  Array d_pose = make_output(leading, {in.cameras, in.joints, 2, 3});
  Array d_rotation = make_output(leading, {in.cameras, in.joints, 2, 3, 3});
  Array d_scale = make_output(leading, {in.cameras, in.joints, 2});
  Array d_shift = make_output(leading, {in.cameras, in.joints, 2, 3});
  const double *X = in.pose.data(), *R = in.rotation.data(), *s = in.scale.data(), *t = in.shift.data();
  double *p = points.mutable_data(), *dX = d_pose.mutable_data(), *dR = d_rotation.mutable_data(),
         *ds = d_scale.mutable_data(), *dt = d_shift.mutable_data();
  run_batch(in.pose.batch(), kWeakGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t b = begin; b < end; ++b)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t j = 0; j < J; ++j) {
          const std::size_t point = (b * C + c) * J + j;
          const double* Xj = X + 3 * (b * J + j);
          const double* Rc = R + 9 * (b * C + c);
          project_weak_point(Xj, Rc, s[b * C + c], t + 3 * (b * C + c), p + 2 * point);
          project_weak_point_jacobian(Xj, Rc, s[b * C + c], dX + 6 * point, dR + 18 * point, ds + 2 * point,
                                      dt + 6 * point);
        }
  });
  for (const Array* result : {&points, &d_pose, &d_rotation, &d_scale})
    check_result(*result, "pose, rotation, scale, shift");
  return py::make_tuple(points, d_pose, d_rotation, d_scale, d_shift);
}

void check_intrinsics(const Input& intrinsics) {
  const double* k = intrinsics.data();
  for (std::size_t i = 0; i < intrinsics.batch(); ++i)
    if (!(k[4 * i] > 0) || !(k[4 * i + 1] > 0))
      throw py::value_error(std::string("intrinsics: focal lengths fx, fy must be > 0 at ") +
                            index_string(intrinsics.leading(), i));
}

py::object project_perspective_binding(const py::object& points_object, const py::object& rotation_object,
                                       const py::object& translation_object, const py::object& intrinsics_object,
                                       const py::object& distortion_object, bool with_jacobian) {
  const Input points = take(points_object, "points", {-1, 3}, "(..., N, 3)");
  const Input rotation = take(rotation_object, "rotation", {3, 3}, "(..., 3, 3)");
  const Input translation = take(translation_object, "translation", {3}, "(..., 3)");
  const Input intrinsics = take(intrinsics_object, "intrinsics", {4}, "(..., 4) [fx, fy, cx, cy]");
  const Input distortion = take(distortion_object, "distortion", {5}, "(..., 5) [k1, k2, p1, p2, k3]");
  for (const Input* other : {&rotation, &translation, &intrinsics, &distortion}) same_batch(points, *other);
  check_intrinsics(intrinsics);
  const std::size_t N = static_cast<std::size_t>(points.dim(0));
  Array pixels = make_output(points.leading(), {points.dim(0), 2});
  Array jacobian;
  double* jac = nullptr;
  if (with_jacobian) {
    jacobian = make_output(points.leading(), {points.dim(0), 2, 3});
    jac = jacobian.mutable_data();
  }
  const double *X = points.data(), *R = rotation.data(), *t = translation.data(), *K = intrinsics.data(),
               *d = distortion.data();
  double* uv = pixels.mutable_data();
  FirstFailure failure;
  run_batch(points.batch() * N, kPerspectiveGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t b = i / N;
      if (!project_perspective_point(X + 3 * i, R + 9 * b, t + 3 * b, K + 4 * b, d + 5 * b, uv + 2 * i,
                                     jac ? jac + 6 * i : nullptr))
        failure.record(i);
    }
  });
  if (failure.failed()) {
    Shape per_point = points.leading();
    per_point.push_back(points.dim(0));
    throw py::value_error(std::string("points: at or behind the camera (depth <= 0) at ") +
                          index_string(per_point, failure.index()));
  }
  const char* inputs = "points, rotation, translation, intrinsics, distortion";
  check_result(pixels, inputs);
  if (with_jacobian) {
    check_result(jacobian, inputs);
    return py::make_tuple(pixels, jacobian);
  }
  return std::move(pixels);
}

Array undistort_points_binding(const py::object& pixels_object, const py::object& intrinsics_object,
                               const py::object& distortion_object) {
  const Input pixels = take(pixels_object, "pixels", {-1, 2}, "(..., N, 2)");
  const Input intrinsics = take(intrinsics_object, "intrinsics", {4}, "(..., 4) [fx, fy, cx, cy]");
  const Input distortion = take(distortion_object, "distortion", {5}, "(..., 5) [k1, k2, p1, p2, k3]");
  same_batch(pixels, intrinsics);
  same_batch(pixels, distortion);
  check_intrinsics(intrinsics);
  const std::size_t N = static_cast<std::size_t>(pixels.dim(0));
  Array normalised = make_output(pixels.leading(), {pixels.dim(0), 2});
  const double *uv = pixels.data(), *K = intrinsics.data(), *d = distortion.data();
  double* xy = normalised.mutable_data();
  FirstFailure failure;
  run_batch(pixels.batch() * N, kPerspectiveGrain / 8, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t b = i / N;
      if (!undistort_point(uv + 2 * i, K + 4 * b, d + 5 * b, xy + 2 * i)) failure.record(i);
    }
  });
  if (failure.failed()) {
    Shape per_point = pixels.leading();
    per_point.push_back(pixels.dim(0));
    throw py::value_error(std::string("pixels: the distortion cannot be inverted there (no convergence) at ") +
                          index_string(per_point, failure.index()));
  }
  return normalised;
}

}  // namespace

void bind_camera(py::module_& m) {
  m.def("project_weak", &project_weak_binding, py::arg("pose"), py::arg("rotation"), py::arg("scale"),
        py::arg("shift"), "pose (..., J, 3), rotation (..., C, 3, 3), scale (..., C), shift (..., C, 3) -> (..., C, J, 2).");
  m.def("project_weak_with_jacobian", &project_weak_with_jacobian_binding, py::arg("pose"), py::arg("rotation"),
        py::arg("scale"), py::arg("shift"),
        "As project_weak, with d/dpose (..., C, J, 2, 3), d/drotation (..., C, J, 2, 3, 3), d/dscale (..., C, J, 2), "
        "d/dshift (..., C, J, 2, 3).");
  m.def(
      "project_perspective",
      [](const py::object& points, const py::object& rotation, const py::object& translation,
         const py::object& intrinsics, const py::object& distortion) {
        return project_perspective_binding(points, rotation, translation, intrinsics, distortion, false);
      },
      py::arg("points"), py::arg("rotation"), py::arg("translation"), py::arg("intrinsics"), py::arg("distortion"),
      "points (..., N, 3), rotation (..., 3, 3), translation (..., 3), intrinsics (..., 4), distortion (..., 5) -> "
      "pixels (..., N, 2).");
  m.def(
      "project_perspective_with_jacobian",
      [](const py::object& points, const py::object& rotation, const py::object& translation,
         const py::object& intrinsics, const py::object& distortion) {
        return project_perspective_binding(points, rotation, translation, intrinsics, distortion, true);
      },
      py::arg("points"), py::arg("rotation"), py::arg("translation"), py::arg("intrinsics"), py::arg("distortion"),
      "As project_perspective, also returning d pixels / d points (..., N, 2, 3).");
  m.def("undistort_points", &undistort_points_binding, py::arg("pixels"), py::arg("intrinsics"),
        py::arg("distortion"), "pixels (..., N, 2) -> normalised image coordinates (..., N, 2).");
}

}  // namespace metapose::bind
