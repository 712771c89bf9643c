// Bindings of rig.hpp: the static-rig objective and its Keras-form Adam refiner.
//
// Every argument is checked here (shape, dtype, values) with an error naming it; the arrays are
// then packed into rig.hpp's vector (RigLayout) and the core runs with the GIL released.
#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "bind_common.hpp"
#include "metapose/rig.hpp"

namespace metapose::bind {

namespace {

using BoolArray = py::array_t<bool, py::array::c_style>;

std::string spelled(const Shape& shape) { return shape_string(shape); }

// An argument of exactly the shape `expected` (named `symbols` in messages, e.g. "(F, J, 3)"),
// float64, converted to C order; its values all finite unless `finite` is false.
Input take_shaped(const py::object& object, const char* name, const Shape& expected, const char* symbols,
                  bool finite = true) {
  Input input = take_any_values(object, name, {}, symbols);
  if (input.shape != expected)
    throw py::value_error(std::string(name) + ": expected shape " + symbols + " = " + spelled(expected) + ", got " +
                          spelled(input.shape));
  if (finite && !all_finite(input.data(), static_cast<std::size_t>(input.array.size()))) {
    std::size_t i = 0;
    while (std::isfinite(input.data()[i])) ++i;
    throw py::value_error(std::string(name) + ": contains NaN or inf (first at flat position " + std::to_string(i) +
                          ")");
  }
  return input;
}

BoolArray take_used(const py::object& object, const Shape& expected) {
  if (!py::isinstance<py::array>(object))
    throw py::value_error("used: expected a numpy bool array of shape (F, C), got " +
                          std::string(py::str(py::type::of(object).attr("__name__"))));
  auto raw = py::reinterpret_borrow<py::array>(object);
  if (!raw.dtype().equal(py::dtype::of<bool>()))
    throw py::value_error("used: expected dtype bool, got " + std::string(py::str(raw.dtype())));
  const Shape shape(raw.shape(), raw.shape() + raw.ndim());
  if (shape != expected)
    throw py::value_error("used: expected shape (F, C) = " + spelled(expected) + ", got " + spelled(shape));
  BoolArray used = BoolArray::ensure(raw);
  if (!used) throw py::error_already_set();
  return used;
}

// The checked arguments of one call and the packed x.
struct Rig {
  Input mixtures, frame_weights, rot6d, poses, scale_raw, shifts;
  BoolArray used;
  int C = 0, J = 0, K = 0;
  long long F = 0;
  std::vector<double> x{};

  RigLayout layout() const { return RigLayout{C, J, F}; }

  RigProblem<double> problem() const {
    RigProblem<double> p;
    p.C = C, p.J = J, p.K = K, p.F = F;
    p.mixtures = mixtures.data();
    p.used = used.data();
    p.frame_weights = frame_weights.data();
    return p;
  }

  std::string sizes() const {
    return "F = " + std::to_string(F) + ", C = " + std::to_string(C) + ", J = " + std::to_string(J) +
           ", K = " + std::to_string(K);
  }
};

// mixtures (F, C, J, K, 4): the sizes; dtype and shape, not the values (unused views may hold anything).
Input take_rig_mixtures(const py::object& object, long long& F, int& C, int& J, int& K) {
  Input mixtures = take_any_values(object, "mixtures", {-1, -1, -1, -1, 4}, "(F, C, J, K, 4)");
  if (mixtures.shape.size() != 5)
    throw py::value_error("mixtures: expected shape (F, C, J, K, 4), got " + spelled(mixtures.shape));
  for (int axis = 1; axis < 4; ++axis)
    if (mixtures.shape[axis] > std::numeric_limits<int>::max())
      throw py::value_error("mixtures: dimension " + std::to_string(mixtures.shape[axis]) + " is too large");
  F = mixtures.shape[0];
  C = static_cast<int>(mixtures.shape[1]);
  J = static_cast<int>(mixtures.shape[2]);
  K = static_cast<int>(mixtures.shape[3]);
  if (C < kMinCameras)
    throw py::value_error("mixtures: a rig needs at least two cameras, got C = " + std::to_string(C));
  if (C > kMaxCameras)
    throw py::value_error("mixtures: at most " + std::to_string(kMaxCameras) + " cameras, got C = " +
                          std::to_string(C));
  if (!rig_shape_ok(C, J, K, F))
    throw py::value_error("mixtures: F = " + std::to_string(F) + ", C = " + std::to_string(C) + ", J = " +
                          std::to_string(J) + ", K = " + std::to_string(K) +
                          " is too large for the rig objective (more than 2^31 values in x or a frame's workspace)");
  return mixtures;
}

std::string view_string(long long f, int c) {
  return "(frame " + std::to_string(f) + ", camera " + std::to_string(c) + ")";
}

Rig take_rig(const py::object& mixtures, const py::object& used, const py::object& frame_weights,
             const py::object& rot6d, const py::object& poses, const py::object& scale_raw,
             const py::object& shifts) {
  long long F = 0;
  int C = 0, J = 0, K = 0;
  Input mix = take_rig_mixtures(mixtures, F, C, J, K);
  BoolArray used_array = take_used(used, {F, C});
  Rig rig{std::move(mix),
          take_shaped(frame_weights, "frame_weights", {F}, "(F,)"),
          take_shaped(rot6d, "rot6d", {C, 6}, "(C, 6)"),
          take_shaped(poses, "poses", {F, J, 3}, "(F, J, 3)"),
          take_shaped(scale_raw, "scale_raw", {F, C}, "(F, C)"),
          take_shaped(shifts, "shifts", {F, C, 3}, "(F, C, 3)"),
          std::move(used_array)};
  rig.C = C, rig.J = J, rig.K = K, rig.F = F;

  const double* weights = rig.frame_weights.data();
  for (long long f = 0; f < F; ++f)
    if (!(weights[f] >= 0))
      throw py::value_error("frame_weights: must be >= 0, got " + std::to_string(weights[f]) + " at frame " +
                            std::to_string(f));
  // The used views' mixtures: finite, weights >= 0, variances > 0 (what prepare_mixtures needs).
  const bool* in_use = rig.used.data();
  const double* mix_data = rig.mixtures.data();
  const long long per_view = 4LL * J * K;
  for (long long f = 0; f < F; ++f)
    for (int c = 0; c < C; ++c) {
      if (!in_use[f * C + c]) continue;
      const double* view = mix_data + (f * C + c) * per_view;
      if (!all_finite(view, static_cast<std::size_t>(per_view)))
        throw py::value_error("mixtures: contains NaN or inf in a used view " + view_string(f, c));
      for (long long i = 0; i < per_view; i += 4) {
        if (!(view[i] >= 0)) throw py::value_error("mixtures: weights must be >= 0 " + view_string(f, c));
        if (!(view[i + 3] >= 1e-300))
          throw py::value_error("mixtures: variances must be > 0 (at least 1e-300) " + view_string(f, c));
      }
    }
  const RigProblem<double> problem = rig.problem();
  bool enters = false;
  for (long long f = 0; f < F && !enters; ++f) enters = rig_frame_enters(problem, f);
  if (!enters) throw py::value_error("used, frame_weights: no frame has two used cameras with weight > 0");
  const int camera = rig_first_undefined_rotation(rig.rot6d.data(), C);
  if (camera >= 0)
    throw py::value_error("rot6d: camera " + std::to_string(camera) +
                          " has no rotation (its two rows are zero, parallel or out of range)");

  if (!rig_problem_ok(problem))  // everything else was checked above: W overflows
    throw py::value_error("frame_weights: too large (the sum over frames of weight x used cameras overflows float64)");
  // Pack x (RigLayout).
  const RigLayout layout = rig.layout();
  rig.x = allocate(static_cast<std::size_t>(layout.size()), "the rig's solution vector at " + rig.sizes(),
                   "pass fewer frames");
  double* x = rig.x.data();
  std::copy(rig.rot6d.data(), rig.rot6d.data() + 6 * C, x);
  for (long long f = 0; f < F; ++f) {
    std::copy(rig.poses.data() + 3 * J * f, rig.poses.data() + 3 * J * (f + 1), x + layout.pose(f));
    std::copy(rig.scale_raw.data() + C * f, rig.scale_raw.data() + C * (f + 1), x + layout.scale_raw(f));
    std::copy(rig.shifts.data() + 3 * C * f, rig.shifts.data() + 3 * C * (f + 1), x + layout.shift(f));
  }
  return rig;
}

// The packed vector's parts as arrays (C, 6), (F, J, 3), (F, C), (F, C, 3).
py::tuple unpack(const Rig& rig, const double* x) {
  const RigLayout layout = rig.layout();
  const long long C = rig.C, J = rig.J, F = rig.F;
  Array rot6d(Shape{C, 6}), poses(Shape{F, J, 3}), scale_raw(Shape{F, C}), shifts(Shape{F, C, 3});
  std::copy(x, x + 6 * C, rot6d.mutable_data());
  for (long long f = 0; f < F; ++f) {
    std::copy(x + layout.pose(f), x + layout.pose(f) + 3 * J, poses.mutable_data() + 3 * J * f);
    std::copy(x + layout.scale_raw(f), x + layout.scale_raw(f) + C, scale_raw.mutable_data() + C * f);
    std::copy(x + layout.shift(f), x + layout.shift(f) + 3 * C, shifts.mutable_data() + 3 * C * f);
  }
  return py::make_tuple(rot6d, poses, scale_raw, shifts);
}

py::tuple rig_objective_binding(const py::object& mixtures, const py::object& used, const py::object& frame_weights,
                                const py::object& rot6d, const py::object& poses, const py::object& scale_raw,
                                const py::object& shifts) {
  Rig rig = take_rig(mixtures, used, frame_weights, rot6d, poses, scale_raw, shifts);
  std::vector<double> gradient = allocate(rig.x.size(), "the rig's gradient at " + rig.sizes(), "pass fewer frames");
  Array per_frame(Shape{rig.F});
  double total = 0;
  RigResult result;
  {
    py::gil_scoped_release release;
    result = rig_objective(rig.problem(), rig.x.data(), &total, gradient.data(), per_frame.mutable_data());
  }
  if (!result.accepted) throw py::value_error("mixtures: the rig objective refused the problem at " + rig.sizes());
  if (!result.ok)
    throw py::value_error("poses, scale_raw, shifts, rot6d: the objective overflows at frame " +
                          std::to_string(result.failed_frame) + " (values too large or too small for float64)");
  py::tuple parts = unpack(rig, gradient.data());
  for (const py::handle part : parts) check_result(part.cast<Array>(), "poses, scale_raw, shifts, rot6d, mixtures");
  return py::make_tuple(total, parts[0], parts[1], parts[2], parts[3], per_frame);
}

py::tuple rig_refine_binding(const py::object& mixtures, const py::object& used, const py::object& frame_weights,
                             const py::object& rot6d, const py::object& poses, const py::object& scale_raw,
                             const py::object& shifts, const py::object& steps, const py::object& learning_rate,
                             const py::object& beta1, const py::object& beta2, const py::object& epsilon) {
  Rig rig = take_rig(mixtures, used, frame_weights, rot6d, poses, scale_raw, shifts);
  const RefinerOptions options = take_adam_options(steps, learning_rate, beta1, beta2, epsilon);
  Array per_frame(Shape{rig.F});
  double total = 0;
  RigResult result;
  {
    py::gil_scoped_release release;
    result = rig_refine(rig.problem(), options, rig.x.data(), &total, per_frame.mutable_data());
  }
  if (!result.accepted) throw py::value_error("mixtures: the rig refiner refused the problem at " + rig.sizes());
  if (!result.ok) {
    if (result.failed_camera >= 0)
      throw py::value_error("rot6d: the rotation of camera " + std::to_string(result.failed_camera) +
                            " became undefined during the refinement (rows parallel, zero or out of range); lower "
                            "learning_rate");
    throw py::value_error("poses, scale_raw, shifts: the refinement diverged" +
                          (result.failed_frame >= 0 ? " at frame " + std::to_string(result.failed_frame) : "") +
                          " (the objective overflowed or x stopped being finite); lower learning_rate");
  }
  py::tuple parts = unpack(rig, rig.x.data());
  return py::make_tuple(parts[0], parts[1], parts[2], parts[3], per_frame, total);
}

}  // namespace

void bind_rig(py::module_& m) {
  m.def("rig_objective", &rig_objective_binding, py::arg("mixtures"), py::arg("used"), py::arg("frame_weights"),
        py::arg("rot6d"), py::arg("poses"), py::arg("scale_raw"), py::arg("shifts"),
        "Static-rig objective: mixtures (F, C, J, K, 4), used (F, C) bool, frame_weights (F,), rot6d (C, 6), "
        "poses (F, J, 3), scale_raw (F, C), shifts (F, C, 3) -> (total, d_rot6d (C, 6), d_poses (F, J, 3), "
        "d_scale_raw (F, C), d_shifts (F, C, 3), per_frame (F,), NaN for frames that do not enter).");
  m.def("rig_refine", &rig_refine_binding, py::arg("mixtures"), py::arg("used"), py::arg("frame_weights"),
        py::arg("rot6d"), py::arg("poses"), py::arg("scale_raw"), py::arg("shifts"), py::arg("steps"),
        py::arg("learning_rate"), py::arg("beta1"), py::arg("beta2"), py::arg("epsilon"),
        "Keras-form Adam on the static-rig objective -> (rot6d (C, 6), poses (F, J, 3), scale_raw (F, C), "
        "shifts (F, C, 3), per_frame (F,), total) at the final x.");
}

}  // namespace metapose::bind
