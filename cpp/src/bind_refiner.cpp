// Bindings of stage1.hpp, objective.hpp and refiner.hpp: stage 1, the refiner objective and the Adam refiner over frames.
#include <algorithm>
#include <limits>
#include <vector>

#include "bind_common.hpp"
#include "metapose/objective.hpp"
#include "metapose/refiner.hpp"
#include "metapose/stage1.hpp"

namespace metapose::bind {

namespace {

constexpr std::size_t kGrain = 1;  // a frame is heavy enough to go to its own thread

using IndexArray = py::array_t<long long, py::array::c_style>;

// mixtures (B, C, J, K, 4), x (B, P), bones (nB, 2) int64, bone_reference (B, nB): checked, and
// the per-frame constants (prepared mixtures, normalised bone references) computed.
struct Frames {
  Input mixtures, x, bone_reference;
  IndexArray bones;
  int C = 0, J = 0, K = 0, num_bones = 0;
  double bone_weight = 0;
  std::vector<double> prepared, reference;  // per frame

  RefinerProblem<double> problem(std::size_t frame) const {
    RefinerProblem<double> p;
    p.C = C, p.J = J, p.K = K;
    p.prepared = prepared.data() + frame * static_cast<std::size_t>(prepared_frame_size(C, J, K));
    p.num_bones = num_bones;
    p.bones = bones.data();
    p.bone_reference = reference.data() + frame * static_cast<std::size_t>(num_bones);
    p.bone_weight = bone_weight;
    return p;
  }
};

IndexArray take_bones(const py::object& object, int J) {
  if (!py::isinstance<py::array>(object))
    throw py::value_error("bones: expected a numpy int64 array of shape (nB, 2)");
  auto raw = py::reinterpret_borrow<py::array>(object);
  if (!raw.dtype().is(py::dtype::of<long long>()))
    throw py::value_error("bones: expected dtype int64, got " + std::string(py::str(raw.dtype())));
  if (raw.ndim() != 2 || raw.shape(1) != 2 || raw.shape(0) < 1)
    throw py::value_error("bones: expected shape (nB, 2) with nB >= 1, got " +
                          shape_string(Shape(raw.shape(), raw.shape() + raw.ndim())));
  IndexArray bones = IndexArray::ensure(raw);
  for (py::ssize_t i = 0; i < bones.size(); ++i)
    if (bones.data()[i] < 0 || bones.data()[i] >= J)
      throw py::value_error("bones: joint index " + std::to_string(bones.data()[i]) + " outside [0, " +
                            std::to_string(J) + ")");
  return bones;
}

double take_real(const py::object& object, const char* name, double low) {
  if (!(py::isinstance<py::float_>(object) || py::isinstance<py::int_>(object)) || py::isinstance<py::bool_>(object))
    throw py::value_error(std::string(name) + ": expected a number");
  const double value = object.cast<double>();
  if (!std::isfinite(value) || value < low)
    throw py::value_error(std::string(name) + ": expected a finite number >= " + std::to_string(low) + ", got " +
                          std::to_string(value));
  return value;
}

Frames take_frames(const py::object& mixtures, const py::object& x, const py::object& bones,
                   const py::object& bone_reference, const py::object& bone_weight) {
  Frames f{take(mixtures, "mixtures", {-1, -1, -1, 4}, "(B, C, J, K, 4)"), take(x, "x", {-1}, "(B, P)"),
           take(bone_reference, "bone_reference", {-1}, "(B, nB)"), IndexArray()};
  if (f.mixtures.shape.size() != 5) throw py::value_error("mixtures: expected shape (B, C, J, K, 4)");
  if (f.x.shape.size() != 2) throw py::value_error("x: expected shape (B, P)");
  if (f.bone_reference.shape.size() != 2) throw py::value_error("bone_reference: expected shape (B, nB)");
  same_batch(f.mixtures, f.x);
  same_batch(f.mixtures, f.bone_reference);
  for (int axis = 0; axis < 3; ++axis)
    if (f.mixtures.dim(axis) > std::numeric_limits<int>::max())
      throw py::value_error("mixtures: dimension " + std::to_string(f.mixtures.dim(axis)) + " is too large");
  f.C = static_cast<int>(f.mixtures.dim(0));
  f.J = static_cast<int>(f.mixtures.dim(1));
  f.K = static_cast<int>(f.mixtures.dim(2));
  if (f.C < 2) throw py::value_error("mixtures: at least two cameras are needed, got C = " + std::to_string(f.C));
  if (f.C > kMaxCameras)
    throw py::value_error("mixtures: at most " + std::to_string(kMaxCameras) + " cameras, got C = " + std::to_string(f.C));
  if (f.x.dim(0) != solution_size(f.C, f.J))
    throw py::value_error("x: expected P = 3 J + 10 C = " + std::to_string(solution_size(f.C, f.J)) + ", got " +
                          std::to_string(f.x.dim(0)));
  f.bones = take_bones(bones, f.J);
  f.num_bones = static_cast<int>(f.bones.shape(0));
  if (f.bone_reference.dim(0) != f.num_bones)
    throw py::value_error("bone_reference: nB = " + std::to_string(f.bone_reference.dim(0)) +
                          " does not match bones' nB = " + std::to_string(f.num_bones));
  f.bone_weight = take_real(bone_weight, "bone_weight", 0.0);
  // The kernels index their workspace with int: the widest (kRefinerLanes lanes) must fit (the
  // other limits of refiner_shape_ok are checked above, with their own messages).
  if (!refiner_shape_ok(f.C, f.J, f.K, f.num_bones))
    throw py::value_error("mixtures: C = " + std::to_string(f.C) + ", J = " + std::to_string(f.J) + ", K = " +
                          std::to_string(f.K) + " is too large for the refiner (more than 2^31 workspace values)");

  const std::size_t frames = f.mixtures.batch();
  const std::size_t per_frame = static_cast<std::size_t>(f.C * f.J * f.K);
  const double* mix = f.mixtures.data();
  for (std::size_t i = 0; i < frames * per_frame; ++i) {
    if (!(mix[4 * i] >= 0)) throw py::value_error("mixtures: weights must be >= 0");
    if (!(mix[4 * i + 3] >= 1e-300)) throw py::value_error("mixtures: variances must be > 0 (at least 1e-300)");
  }
  const std::size_t per_prepared = static_cast<std::size_t>(prepared_frame_size(f.C, f.J, f.K));
  f.prepared.resize(frames * per_prepared);
  for (std::size_t b = 0; b < frames; ++b)
    prepare_frame(mix + 4 * per_frame * b, f.C, f.J, f.K, f.prepared.data() + per_prepared * b);
  f.reference.assign(f.bone_reference.data(), f.bone_reference.data() + frames * f.num_bones);
  for (std::size_t b = 0; b < frames; ++b) {
    double* r = f.reference.data() + b * f.num_bones;
    double mean = 0;
    for (int i = 0; i < f.num_bones; ++i) mean += r[i];
    mean /= f.num_bones;
    if (!(mean > 0)) {
      if (f.bone_weight > 0)
        throw py::value_error("bone_reference: bone lengths must have a positive mean at frame " + std::to_string(b));
      mean = 1;
    }
    for (int i = 0; i < f.num_bones; ++i) r[i] /= mean;
  }
  return f;
}

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
  run_batch(frames, kGrain, [&](std::size_t begin, std::size_t end) {
    std::vector<double> work(static_cast<std::size_t>(objective_workspace_size(f.C, f.J, f.K)));
    for (std::size_t b = begin; b < end; ++b)
      if (!refiner_objective(f.problem(b), xs + P * b, out + b, grad + P * b, work.data())) failure.record(b);
  });
  raise_failure(failure, f.x, "a camera rotation is undefined (zero or parallel rot6d rows) or the objective overflows");
  check_result(gradient, "x, mixtures");
  return py::make_tuple(value, gradient);
}

int take_count(const py::object& object, const char* name) { return take_int(object, name, 0, 1 << 24); }

py::tuple refine_binding(const py::object& mixtures, const py::object& x0, const py::object& bones,
                         const py::object& bone_reference, const py::object& bone_weight, const py::object& steps,
                         const py::object& learning_rate, const py::object& beta1, const py::object& beta2,
                         const py::object& epsilon, const py::object& history_every) {
  const Frames f = take_frames(mixtures, x0, bones, bone_reference, bone_weight);
  RefinerOptions options;
  options.steps = take_count(steps, "steps");
  options.learning_rate = take_real(learning_rate, "learning_rate", 0.0);
  options.beta1 = take_real(beta1, "beta1", 0.0);
  options.beta2 = take_real(beta2, "beta2", 0.0);
  if (!(options.beta1 < 1)) throw py::value_error("beta1: expected a number in [0, 1)");
  if (!(options.beta2 < 1)) throw py::value_error("beta2: expected a number in [0, 1)");
  options.epsilon = take_real(epsilon, "epsilon", 0.0);
  if (!(options.epsilon > 0)) throw py::value_error("epsilon: expected a number > 0");
  options.history_every = take_count(history_every, "history_every");
  const std::size_t frames = f.x.batch();
  const py::ssize_t P = solution_size(f.C, f.J);
  const py::ssize_t H = options.history_every > 0 ? options.steps / options.history_every + 1 : 0;
  Array x = make_output(f.x.leading(), {P});
  Array objective = make_output(f.x.leading(), {});
  Array history_x = make_output(f.x.leading(), {H, P});
  Array history_objective = make_output(f.x.leading(), {H});
  std::copy(f.x.data(), f.x.data() + frames * P, x.mutable_data());
  double *xs = x.mutable_data(), *obj = objective.mutable_data(), *hx = history_x.mutable_data(),
         *hobj = history_objective.mutable_data();
  FirstFailure failure;
  // Each thread refines its frames in lane groups (refiner_lane_width); a frame's bits do not
  // depend on its group.
  run_batch(frames, kGrain, [&](std::size_t begin, std::size_t end) {
    constexpr int L = kRefinerLanes;
    std::vector<double> scratch(static_cast<std::size_t>(refine_workspace_size(f.C, f.J, f.K, f.num_bones, L)));
    for (std::size_t group = begin; group < end;) {
      const int width = refiner_lane_width(static_cast<long long>(end - group));
      const int count = static_cast<int>(std::min<std::size_t>(width, end - group));
      RefinerProblem<double> problems[L];
      double *x_of[L], *objective_of[L], *history_x_of[L], *history_objective_of[L];
      bool ok[L];
      for (int l = 0; l < count; ++l) {
        const std::size_t b = group + l;
        problems[l] = f.problem(b);
        x_of[l] = xs + P * b;
        objective_of[l] = obj + b;
        history_x_of[l] = hx + H * P * b;
        history_objective_of[l] = hobj + H * b;
      }
      // refine refuses nothing take_frames accepts; were it to, its frames would count as failed.
      const bool ran = refine_group(width, problems, count, options, x_of, objective_of, history_x_of,
                                    history_objective_of, scratch.data(), ok);
      for (int l = 0; l < count; ++l)
        if (!ran || !ok[l]) failure.record(group + l);
      group += count;
    }
  });
  raise_failure(failure, f.x,
                "refinement diverged (a rotation became undefined or the objective overflowed); lower learning_rate");
  check_result(x, "x0, mixtures");
  return py::make_tuple(x, objective, history_x, history_objective);
}

Array stage1_binding(const py::object& mono3d_object) {
  const Input mono3d = take(mono3d_object, "mono3d", {-1, -1, 3}, "(..., C, J, 3)");
  const int C = static_cast<int>(mono3d.dim(0)), J = static_cast<int>(mono3d.dim(1));
  if (C < 2) throw py::value_error("mono3d: at least two cameras are needed, got C = " + std::to_string(C));
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

void bind_refiner(py::module_& m) {
  m.def("stage1", &stage1_binding, py::arg("mono3d"),
        "mono3d (..., C, J, 3) box units -> stage-1 solution x (..., P), P = 3 J + 10 C.");
  m.def("refiner_objective", &objective_binding, py::arg("mixtures"), py::arg("x"), py::arg("bones"),
        py::arg("bone_reference"), py::arg("bone_weight"),
        "mixtures (B, C, J, K, 4), x (B, P), bones (nB, 2) int64, bone_reference (B, nB), bone_weight -> "
        "objective (B,), gradient (B, P).");
  m.def("refine", &refine_binding, py::arg("mixtures"), py::arg("x0"), py::arg("bones"), py::arg("bone_reference"),
        py::arg("bone_weight"), py::arg("steps"), py::arg("learning_rate"), py::arg("beta1"), py::arg("beta2"),
        py::arg("epsilon"), py::arg("history_every"),
        "Keras-form Adam on the refiner objective for each frame -> x (B, P), objective (B,), history_x (B, H, P), "
        "history_objective (B, H).");
}

}  // namespace metapose::bind
