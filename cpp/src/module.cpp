// The extension module: one function per kernel, bound in the bind_*.cpp files. Its name comes from
// CMakeLists.txt through the generated metapose_build.hpp: _core for a native build, one module per
// instruction-set level for a portable one (_core_baseline, _core_x86_64_v3, ...), all from these
// sources; metapose_geom._core_loader picks one at import.
#include <algorithm>
#include <string>

#include "bind_common.hpp"
#include "metapose_build.hpp"

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#define METAPOSE_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

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

#if defined(METAPOSE_X86)

struct CpuidRegisters {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

CpuidRegisters cpuid(unsigned leaf, unsigned subleaf) {
  CpuidRegisters r;
#if defined(_MSC_VER)
  int out[4];
  __cpuidex(out, static_cast<int>(leaf), static_cast<int>(subleaf));
  r.a = static_cast<unsigned>(out[0]), r.b = static_cast<unsigned>(out[1]);
  r.c = static_cast<unsigned>(out[2]), r.d = static_cast<unsigned>(out[3]);
#else
  __cpuid_count(leaf, subleaf, r.a, r.b, r.c, r.d);
#endif
  return r;
}

// The register state the operating system saves (XCR0); call only where cpuid reports OSXSAVE.
unsigned long long enabled_state() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned low = 0, high = 0;
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (static_cast<unsigned long long>(high) << 32) | low;
#endif
}

bool bit(unsigned value, int index) { return ((value >> index) & 1u) != 0; }
#endif

// The instruction-set features of the running CPU that decide which level can run: cpuid's bits (read
// directly, so that any GCC or Clang builds this, whatever names its __builtin_cpu_supports knows),
// the AVX and AVX-512 ones only where the operating system saves those registers (XGETBV). Empty off x86.
pybind11::dict cpu_features() {
  pybind11::dict features;
#if defined(METAPOSE_X86)
  const unsigned max_leaf = cpuid(0, 0).a;
  const unsigned max_extended = cpuid(0x80000000u, 0).a;
  const CpuidRegisters one = max_leaf >= 1 ? cpuid(1, 0) : CpuidRegisters{};
  const CpuidRegisters seven = max_leaf >= 7 ? cpuid(7, 0) : CpuidRegisters{};
  const CpuidRegisters extended = max_extended >= 0x80000001u ? cpuid(0x80000001u, 0) : CpuidRegisters{};
  const unsigned long long state = bit(one.c, 27) ? enabled_state() : 0;  // OSXSAVE
  const bool avx_state = (state & 0x6) == 0x6;        // XMM and YMM
  const bool avx512_state = (state & 0xE6) == 0xE6;   // and the opmask and ZMM registers
  // The level names metapose_geom._build uses.
  features["sse3"] = bit(one.c, 0);
  features["ssse3"] = bit(one.c, 9);
  features["sse4.1"] = bit(one.c, 19);
  features["sse4.2"] = bit(one.c, 20);
  features["popcnt"] = bit(one.c, 23);
  features["avx"] = bit(one.c, 28) && avx_state;
  features["avx2"] = bit(seven.b, 5) && avx_state;
  features["fma"] = bit(one.c, 12) && avx_state;
  features["bmi1"] = bit(seven.b, 3);
  features["bmi2"] = bit(seven.b, 8);
  features["f16c"] = bit(one.c, 29) && avx_state;
  features["movbe"] = bit(one.c, 22);
  features["lzcnt"] = bit(extended.c, 5);
  features["avx512f"] = bit(seven.b, 16) && avx512_state;
  features["avx512bw"] = bit(seven.b, 30) && avx512_state;
  features["avx512cd"] = bit(seven.b, 28) && avx512_state;
  features["avx512dq"] = bit(seven.b, 17) && avx512_state;
  features["avx512vl"] = bit(seven.b, 31) && avx512_state;
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
