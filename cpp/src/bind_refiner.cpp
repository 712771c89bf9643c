// Bindings of refiner.hpp: Keras-form Adam on the refiner objective, frames in lane groups.
#include <algorithm>
#include <vector>

#include "bind_frames.hpp"
#include "metapose/refiner.hpp"

namespace metapose::bind {

namespace {

int take_count(const py::object& object, const char* name) { return take_int(object, name, 0, 1 << 24); }

py::tuple refine_binding(const py::object& mixtures, const py::object& x0, const py::object& bones,
                         const py::object& bone_reference, const py::object& bone_weight, const py::object& steps,
                         const py::object& learning_rate, const py::object& beta1, const py::object& beta2,
                         const py::object& epsilon, const py::object& history_every) {
  const Frames f = take_frames(mixtures, x0, bones, bone_reference, bone_weight);
  RefinerOptions options = take_adam_options(steps, learning_rate, beta1, beta2, epsilon);
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
  check_result(x, "x0, mixtures");
  return py::make_tuple(x, objective, history_x, history_objective);
}

}  // namespace

void bind_refiner(py::module_& m) {
  m.def("refine", &refine_binding, py::arg("mixtures"), py::arg("x0"), py::arg("bones"), py::arg("bone_reference"),
        py::arg("bone_weight"), py::arg("steps"), py::arg("learning_rate"), py::arg("beta1"), py::arg("beta2"),
        py::arg("epsilon"), py::arg("history_every"),
        "Keras-form Adam on the refiner objective for each frame -> x (B, P), objective (B,), history_x (B, H, P), "
        "history_objective (B, H).");
}

}  // namespace metapose::bind
