// Bindings of refiner.hpp: Keras-form Adam on the refiner objective, frames in lane groups, and
// solve_weak, the solver's core work on a chunk in one call (start objective, refiner, camera 0's frame, pixels).
#include <algorithm>
#include <vector>

#include "bind_frames.hpp"
#include "metapose/camera.hpp"
#include "metapose/refiner.hpp"

namespace metapose::bind {

namespace {

int take_count(const py::object& object, const char* name) { return take_int(object, name, 0, 1 << 24); }

// Refines the frames of `f` in place: xs (B P) holds the starts and receives the results, obj (B)
// f(final x), hx (B H P) and hobj (B H) the history when options.history_every > 0. Each thread
// refines its frames in lane groups (refiner_lane_width); a frame's bits do not depend on its group.
void refine_frames(const Frames& f, const RefinerOptions& options, py::ssize_t H, double* xs, double* obj, double* hx,
                   double* hobj) {
  const std::size_t frames = f.x.batch();
  const py::ssize_t P = solution_size(f.C, f.J);
  FirstFailure failure;
  run_batch(frames, kFrameGrain, [&](std::size_t begin, std::size_t end) {
    constexpr int L = kRefinerLanes;
    // Scratch for the range's first group, the widest (widths only shrink towards the end): one
    // frame alone needs one lane of prepared mixtures, not four.
    const int widest = refiner_lane_width(static_cast<long long>(end - begin));
    const auto size = static_cast<std::size_t>(refine_workspace_size(f.C, f.J, f.K, f.num_bones, widest));
    std::vector<double> scratch =
        allocate(size, "refine's scratch of one thread at " + f.sizes(), kThreadScratchAdvice);
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
}

RefinerOptions take_refiner_options(const py::object& steps, const py::object& learning_rate, const py::object& beta1,
                                    const py::object& beta2, const py::object& epsilon,
                                    const py::object& history_every) {
  RefinerOptions options = take_adam_options(steps, learning_rate, beta1, beta2, epsilon);
  options.history_every = take_count(history_every, "history_every");
  return options;
}

py::ssize_t history_size(const RefinerOptions& options) {
  return options.history_every > 0 ? options.steps / options.history_every + 1 : 0;
}

py::tuple refine_binding(const py::object& mixtures, const py::object& x0, const py::object& bones,
                         const py::object& bone_reference, const py::object& bone_weight, const py::object& steps,
                         const py::object& learning_rate, const py::object& beta1, const py::object& beta2,
                         const py::object& epsilon, const py::object& history_every) {
  const Frames f = take_frames(mixtures, x0, bones, bone_reference, bone_weight);
  const RefinerOptions options = take_refiner_options(steps, learning_rate, beta1, beta2, epsilon, history_every);
  const py::ssize_t P = solution_size(f.C, f.J), H = history_size(options);
  Array x = make_output(f.x.leading(), {P});
  Array objective = make_output(f.x.leading(), {});
  Array history_x = make_output(f.x.leading(), {H, P});
  Array history_objective = make_output(f.x.leading(), {H});
  std::copy(f.x.data(), f.x.data() + f.x.batch() * P, x.mutable_data());
  refine_frames(f, options, H, x.mutable_data(), objective.mutable_data(), history_x.mutable_data(),
                history_objective.mutable_data());
  check_result(x, "x0, mixtures");
  return py::make_tuple(x, objective, history_x, history_objective);
}

// The solver's whole core work on B frames after their start x0: the objective at x0 (as
// refiner_objective computes it, with its checks), then, with `refine`, the refiner (as refine),
// then each result in camera 0's frame (solution_in_camera0), its reprojection (as project_weak)
// and that in pixels through `boxes` (B, C, 4) px, or a copy without boxes.
py::tuple solve_weak_binding(const py::object& mixtures, const py::object& x0, const py::object& bones,
                             const py::object& bone_reference, const py::object& bone_weight, const py::object& steps,
                             const py::object& learning_rate, const py::object& beta1, const py::object& beta2,
                             const py::object& epsilon, const py::object& history_every, const py::object& refine,
                             const py::object& boxes_object) {
  const Frames f = take_frames(mixtures, x0, bones, bone_reference, bone_weight);
  const RefinerOptions options = take_refiner_options(steps, learning_rate, beta1, beta2, epsilon, history_every);
  const bool refining = take_bool(refine, "refine");
  const bool boxed = !boxes_object.is_none();
  Input boxes = boxed ? take(boxes_object, "boxes", {-1, 4}, "(B, C, 4)") : Input{"boxes", Array(), Shape(), 0};
  if (boxed) {
    if (boxes.shape.size() != 3) throw py::value_error("boxes: expected shape (B, C, 4)");
    same_batch(f.x, boxes);
    if (boxes.dim(0) != f.C)
      throw py::value_error("boxes: C = " + std::to_string(boxes.dim(0)) + " does not match mixtures' C = " +
                            std::to_string(f.C));
  }
  const std::size_t frames = f.x.batch();
  const int C = f.C, J = f.J;
  const py::ssize_t P = solution_size(C, J), H = refining ? history_size(options) : 0;
  const Shape leading = f.x.leading();

  const double* x0s = f.x.data();
  const Array start = objective_at(f, x0s).value;
  const double* start_of = start.data();

  Array x = make_output(leading, {P});
  Array objective = make_output(leading, {});
  Array history_x = make_output(leading, {H, P});
  Array history_objective = make_output(leading, {H});
  double* xs = x.mutable_data();
  std::copy(x0s, x0s + frames * P, xs);
  if (refining) {
    refine_frames(f, options, H, xs, objective.mutable_data(), history_x.mutable_data(),
                  history_objective.mutable_data());
    check_result(x, "x0, mixtures");
  } else {
    std::copy(start_of, start_of + frames, objective.mutable_data());
  }

  Array pose = make_output(leading, {J, 3});
  Array rotation = make_output(leading, {C, 3, 3});
  Array scale = make_output(leading, {C});
  Array shift = make_output(leading, {C, 3});
  Array reprojection = make_output(leading, {C, J, 2});
  Array pixels = make_output(leading, {C, J, 2});
  double *X = pose.mutable_data(), *R = rotation.mutable_data(), *s = scale.mutable_data(),
         *t = shift.mutable_data(), *p = reprojection.mutable_data(), *px = pixels.mutable_data();
  const double* box = boxed ? boxes.data() : nullptr;
  // The problem to report, of the lowest kind, then the lowest frame: kind 1, a frame whose camera-0
  // expression is not finite (a camera's scale relative to camera 0's is 0 or infinite); kind 2,
  // camera c's reprojection overflows; kind 3, camera c's pixels overflow through its box.
  int kind = 0;
  std::size_t problem_frame = 0;
  int problem_camera = 0;
  auto report = [&](int k, std::size_t b, int c) {
    if (kind == 0 || k < kind) kind = k, problem_frame = b, problem_camera = c;
  };
  for (std::size_t b = 0; b < frames; ++b) {
    if (!solution_in_camera0(xs + P * b, C, J, X + 3 * J * b, R + 9 * C * b, s + C * b, t + 3 * C * b)) {
      report(1, b, 0);
      continue;
    }
    for (int c = 0; c < C; ++c) {
      const std::size_t camera = b * C + c;
      const double* box_c = boxed ? box + 4 * camera : nullptr;
      const double size = boxed ? std::max(box_c[2], box_c[3]) : 1.0;
      bool reprojected = true, placed = true;
      for (int j = 0; j < J; ++j) {
        double* point = p + 2 * (camera * J + j);
        double* pixel = px + 2 * (camera * J + j);
        project_weak_point(X + 3 * (J * b + j), R + 9 * camera, s[camera], t + 3 * camera, point);
        for (int k = 0; k < 2; ++k) {
          pixel[k] = boxed ? point[k] * size + box_c[k] : point[k];
          reprojected = reprojected && std::isfinite(point[k]);
          placed = placed && std::isfinite(pixel[k]);
        }
      }
      if (!reprojected) report(2, b, c);
      else if (!placed) report(3, b, c);
    }
  }
  const py::object problem = kind == 0 ? py::object(py::none()) : py::object(py::make_tuple(kind, problem_frame, problem_camera));
  return py::make_tuple(x, objective, start, history_x, history_objective, pose, rotation, scale, shift, reprojection,
                        pixels, problem);
}

}  // namespace

void bind_refiner(py::module_& m) {
  m.def("refine", &refine_binding, py::arg("mixtures"), py::arg("x0"), py::arg("bones"), py::arg("bone_reference"),
        py::arg("bone_weight"), py::arg("steps"), py::arg("learning_rate"), py::arg("beta1"), py::arg("beta2"),
        py::arg("epsilon"), py::arg("history_every"),
        "Keras-form Adam on the refiner objective for each frame -> x (B, P), objective (B,), history_x (B, H, P), "
        "history_objective (B, H).");
  m.def("solve_weak", &solve_weak_binding, py::arg("mixtures"), py::arg("x0"), py::arg("bones"),
        py::arg("bone_reference"), py::arg("bone_weight"), py::arg("steps"), py::arg("learning_rate"),
        py::arg("beta1"), py::arg("beta2"), py::arg("epsilon"), py::arg("history_every"), py::arg("refine"),
        py::arg("boxes"),
        "The solver's core work after the start x0 (B, P): the objective at x0, the refiner when refine is True "
        "(else x = x0), each x in camera 0's frame, its reprojection and its pixels through boxes (B, C, 4) or None "
        "-> x, objective (at x), start_objective (at x0), history_x (B, H, P), history_objective (B, H), pose "
        "(B, J, 3), rotation (B, C, 3, 3), scale (B, C), shift (B, C, 3), reprojection (B, C, J, 2), pixels "
        "(B, C, J, 2), problem: None or (kind, frame, camera) of what cannot be expressed, the lowest kind first, "
        "then the lowest frame (1: a relative camera scale is 0 or infinite, 2: the reprojection overflows, 3: the "
        "pixels overflow).");
}

}  // namespace metapose::bind
