// The extension module metapose_geom._core: one function per kernel, bound in the bind_*.cpp files.
#include "bind_common.hpp"

namespace metapose::bind {
void bind_rotation(py::module_& m);
void bind_camera(py::module_& m);
void bind_mixture(py::module_& m);
void bind_procrustes(py::module_& m);
void bind_stage1(py::module_& m);
void bind_objective(py::module_& m);
void bind_refiner(py::module_& m);
void bind_rig(py::module_& m);
void bind_dense(py::module_& m);
}  // namespace metapose::bind

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  using namespace metapose::bind;
  m.doc() = "metapose-geom compiled core: float64 geometry kernels over any leading batch dimensions, and the dense layers of stage-2 inference (float64 or float32).";
  bind_rotation(m);
  bind_camera(m);
  bind_mixture(m);
  bind_procrustes(m);
  bind_stage1(m);
  bind_objective(m);
  bind_refiner(m);
  bind_rig(m);
  bind_dense(m);
  m.def(
      "set_num_threads",
      [](const py::object& count) { metapose::set_num_threads(take_int(count, "count", 0, 1 << 16)); },
      py::arg("count"), "Threads for large batches; 0 = one per hardware core.");
  m.def("get_num_threads", &metapose::get_num_threads, "Threads used for large batches.");
}
