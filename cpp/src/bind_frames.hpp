// Shared by the bindings of objective.hpp and refiner.hpp: a batch of frames taken in and checked,
// with the per-frame constants (prepared mixtures, normalised bone references) made once.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "bind_common.hpp"
#include "metapose/objective.hpp"

namespace metapose::bind {

inline constexpr std::size_t kFrameGrain = 1;  // a frame is heavy enough to go to its own thread

// What a MemoryError for one thread's scratch advises (each thread has its own).
inline constexpr const char* kThreadScratchAdvice =
    "each thread has its own: use fewer threads (set_num_threads) or fewer mixture components";

using IndexArray = py::array_t<long long, py::array::c_style>;

// mixtures (B, C, J, K, 4), x (B, P), bones (nB, 2) int64, bone_reference (B, nB): checked, and
// the per-frame constants (prepared mixtures, normalised bone references) computed.
struct Frames {
  Input mixtures, x, bone_reference;
  IndexArray bones;
  int C = 0, J = 0, K = 0, num_bones = 0;
  double bone_weight = 0;
  std::vector<double> prepared{}, reference{};  // per frame

  // "C = 4, J = 17, K = 4", for messages.
  std::string sizes() const {
    return "C = " + std::to_string(C) + ", J = " + std::to_string(J) + ", K = " + std::to_string(K);
  }

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

Frames take_frames(const py::object& mixtures, const py::object& x, const py::object& bones,
                   const py::object& bone_reference, const py::object& bone_weight);

// The refiner's objective (B) and its gradient (B, P) of every frame of f at xs (B x P values), over
// the core's threads; a frame where it is undefined is a ValueError naming it.
struct ObjectiveValues {
  Array value, gradient;
};
ObjectiveValues objective_at(const Frames& f, const double* xs);

}  // namespace metapose::bind
