// Sizes and limits shared by stage 1, the refiner objective and the refiner.
//
// The solution vector (design.md) of C cameras and J joints is
//   x = [pose J*3 | rot6d C*6 | scale_raw C | shift C*3],   P = 3 J + 10 C values.
// The objective keeps per-camera values in arrays on the stack, so C is at most kMaxCameras;
// the refiner runs kRefinerLanes frames side by side in vector lanes. Sizes are computed in 64 bits,
// so that they can be checked against the int indexing of the kernels (kMaxIndex).
#pragma once

#include <limits>

namespace metapose {

inline constexpr int kMinCameras = 2;   // stage 1 maps every other view onto view 0
inline constexpr int kMaxCameras = 16;  // stack arrays of the objective
inline constexpr long long kMaxIndex = std::numeric_limits<int>::max();

inline long long solution_size(long long C, long long J) { return 3 * J + 10 * C; }

// Lanes. The objective and Adam run L frames of one shape (C, J, K) side by side, so that the
// per-camera work (Gram-Schmidt, its reverse, the reductions over joints) and Adam fill vector
// registers as the per-point work does. Every per-frame array of n values is stored lane-minor,
// n x L (value i of frame l at [i L + l]); L = 1 is one frame in its plain layout. No value ever
// mixes lanes, so a frame's result is the same bits whichever lane, group or thread it runs in.
// Four lanes measured as fast per frame as eight (0.091 against 0.089 ms) and waste less on a
// batch's last, partial group (see refiner_lane_width).
inline constexpr int kRefinerLanes = 4;

// The lane width for a group when `left` frames remain: kRefinerLanes, or for the last few the
// narrowest width that holds them (3 -> 4, 2 -> 2, 1 -> 1), so that one frame alone does not pay
// for four.
inline int refiner_lane_width(long long left) { return left >= 3 ? kRefinerLanes : static_cast<int>(left); }

}  // namespace metapose
