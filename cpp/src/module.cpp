// The extension module: one function per kernel, bound in the bind_*.cpp files. Its name comes from
// CMakeLists.txt through the generated metapose_build.hpp: _core for a native build, one module per
// instruction-set level for a portable one (_core_baseline, _core_x86_64_v3, ...), all from these
// sources; metapose_geom._core_loader picks one at import.
#include <algorithm>
#include <string>

#include "bind_common.hpp"
#include "metapose_build.hpp"

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

namespace {

// The instruction-set features of the running CPU that decide which level can run, as cpuid reports
// them and the operating system enables them (libgcc's / compiler-rt's __builtin_cpu_supports checks
// XGETBV for the AVX and AVX-512 register state). Empty off x86.
pybind11::dict cpu_features() {
  pybind11::dict features;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // The level names metapose_geom._build uses, and the name __builtin_cpu_supports knows.
  features["sse3"] = __builtin_cpu_supports("sse3") != 0;
  features["ssse3"] = __builtin_cpu_supports("ssse3") != 0;
  features["sse4.1"] = __builtin_cpu_supports("sse4.1") != 0;
  features["sse4.2"] = __builtin_cpu_supports("sse4.2") != 0;
  features["popcnt"] = __builtin_cpu_supports("popcnt") != 0;
  features["avx"] = __builtin_cpu_supports("avx") != 0;
  features["avx2"] = __builtin_cpu_supports("avx2") != 0;
  features["fma"] = __builtin_cpu_supports("fma") != 0;
  features["bmi1"] = __builtin_cpu_supports("bmi") != 0;
  features["bmi2"] = __builtin_cpu_supports("bmi2") != 0;
  features["f16c"] = __builtin_cpu_supports("f16c") != 0;
  features["movbe"] = __builtin_cpu_supports("movbe") != 0;
  features["lzcnt"] = __builtin_cpu_supports("lzcnt") != 0;
  features["avx512f"] = __builtin_cpu_supports("avx512f") != 0;
  features["avx512bw"] = __builtin_cpu_supports("avx512bw") != 0;
  features["avx512cd"] = __builtin_cpu_supports("avx512cd") != 0;
  features["avx512dq"] = __builtin_cpu_supports("avx512dq") != 0;
  features["avx512vl"] = __builtin_cpu_supports("avx512vl") != 0;
#endif
  return features;
}

// How this module was built: the values CMakeLists.txt wrote into metapose_build.hpp.
pybind11::dict build_config() {
  pybind11::dict config;
  pybind11::list levels;
  const std::string all = METAPOSE_BUILD_LEVELS;
  for (std::size_t start = 0; start <= all.size();) {
    const std::size_t end = std::min(all.find(';', start), all.size());
    if (end > start) levels.append(all.substr(start, end - start));
    start = end + 1;
  }
  config["module"] = PYBIND11_TOSTRING(METAPOSE_MODULE_NAME);
  config["level"] = METAPOSE_BUILD_LEVEL;
  config["levels"] = pybind11::tuple(levels);
  config["compiler"] = METAPOSE_BUILD_COMPILER;
  config["flags"] = METAPOSE_BUILD_FLAGS;
  config["cuda_requested"] = METAPOSE_BUILD_CUDA_REQUESTED != 0;
  config["cuda_found"] = METAPOSE_BUILD_CUDA_FOUND != 0;
  return config;
}

}  // namespace

PYBIND11_MODULE(METAPOSE_MODULE_NAME, m) {
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
  m.def("cpu_features", &cpu_features,
        "dict feature -> bool: the instruction-set features of the running CPU (empty off x86).");
  m.def("build_config", &build_config,
        "dict: this module's name and instruction-set level, the levels its build made, compiler, flags, CUDA.");
}
