// take_frames (bind_frames.hpp): mixtures, x, bones, bone references and the bone weight checked,
// the frames' mixtures prepared and their bone references normalised; objective_at, the objective
// and gradient of every frame (refiner_objective and the solver's start).
#include <limits>
#include <string>

#include "bind_frames.hpp"
#include "metapose/refiner.hpp"

namespace metapose::bind {

namespace {

IndexArray take_bones(const py::object& object, int J) {
  if (!py::isinstance<py::array>(object))
    throw py::value_error("bones: expected a numpy int64 array of shape (nB, 2)");
  auto raw = py::reinterpret_borrow<py::array>(object);
  if (!py::array_t<long long>::check_(raw))  // dtype equality, not identity
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

}  // namespace

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
  if (f.C < kMinCameras) throw py::value_error("mixtures: at least two cameras are needed, got C = " + std::to_string(f.C));
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
  f.prepared = allocate(frames * per_prepared,
                        "the prepared mixtures of " + std::to_string(frames) + " frames at " + f.sizes(),
                        "pass fewer frames at a time or fewer mixture components");
  for (std::size_t b = 0; b < frames; ++b)
    prepare_frame(mix + 4 * per_frame * b, f.C, f.J, f.K, f.prepared.data() + per_prepared * b);
  f.reference.resize(frames * f.num_bones);
  for (std::size_t b = 0; b < frames; ++b)
    if (!normalise_bone_reference(f.bone_reference.data() + b * f.num_bones, f.num_bones,
                                  f.reference.data() + b * f.num_bones) &&
        f.bone_weight > 0)
      throw py::value_error("bone_reference: bone lengths must have a positive mean at frame " + std::to_string(b));
  return f;
}

ObjectiveValues objective_at(const Frames& f, const double* xs) {
  const std::size_t frames = f.x.batch();
  const std::size_t P = static_cast<std::size_t>(solution_size(f.C, f.J));
  ObjectiveValues result{make_output(f.x.leading(), {}), make_output(f.x.leading(), {static_cast<py::ssize_t>(P)})};
  double *out = result.value.mutable_data(), *grad = result.gradient.mutable_data();
  FirstFailure failure;
  run_batch(frames, kFrameGrain, [&](std::size_t begin, std::size_t end) {
    std::vector<double> work = allocate(static_cast<std::size_t>(objective_workspace_size(f.C, f.J, f.K)),
                                        "refiner_objective's scratch of one thread at " + f.sizes(),
                                        kThreadScratchAdvice);
    for (std::size_t b = begin; b < end; ++b)
      if (!refiner_objective(f.problem(b), xs + P * b, out + b, grad + P * b, work.data())) failure.record(b);
  });
  raise_failure(failure, f.x, "a camera rotation is undefined (zero or parallel rot6d rows) or the objective overflows");
  check_result(result.gradient, "x, mixtures");
  return result;
}

}  // namespace metapose::bind
