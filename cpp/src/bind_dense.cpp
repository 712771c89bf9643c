// Bindings of dense.hpp: dense(rows, weight, bias, activation, threads) in float64 or float32.
//
// Unlike the geometry kernels, the arrays are not checked for NaN or inf (the stage-2 network calls
// this a dozen times a frame, on values it made itself; IEEE arithmetic carries them through), and
// empty sizes are allowed: M = 0 rows give an empty (0, O) result, I = 0 gives the bias.
#include <algorithm>
#include <limits>
#include <string>

#include "bind_common.hpp"
#include "metapose/dense.hpp"

namespace metapose::bind {

namespace {

// Rows per thread at least: about 2^21 multiply-adds (a fraction of a millisecond), so that a
// thread is started only for work well above its start-up cost.
constexpr std::size_t kWorkPerGrain = std::size_t{1} << 21;

std::string type_name(const py::object& object) {
  return std::string(py::str(py::type::of(object).attr("__name__")));
}

py::array as_array(const py::object& object, const char* name) {
  if (!py::isinstance<py::array>(object))
    throw py::value_error(std::string(name) + ": expected a numpy array of float64 or float32, got " +
                          type_name(object));
  return py::reinterpret_borrow<py::array>(object);
}

// The array as a C-contiguous array of T (a copy only when it is not one already), once its dtype
// is checked to be exactly T's (rows' dtype).
template <class T>
py::array_t<T, py::array::c_style> as_typed(const py::array& raw, const char* name, const char* dtype_name) {
  if (!py::array_t<T>::check_(raw))
    throw py::value_error(std::string(name) + ": expected dtype " + dtype_name + " (rows' dtype), got " +
                          std::string(py::str(raw.dtype())));
  auto array = py::array_t<T, py::array::c_style>::ensure(raw);
  if (!array) throw py::error_already_set();
  return array;
}

Shape shape_of(const py::array& array) { return Shape(array.shape(), array.shape() + array.ndim()); }

Activation take_activation(const py::object& object) {
  if (py::isinstance<py::str>(object)) {
    const std::string name = object.cast<std::string>();
    if (name == "none") return Activation::kNone;
    if (name == "selu") return Activation::kSelu;
  }
  throw py::value_error("activation: expected 'none' or 'selu', got " + std::string(py::repr(object)));
}

// None: the core's thread count (get_num_threads); else a count for this call.
std::size_t take_threads(const py::object& object) {
  if (object.is_none()) return static_cast<std::size_t>(get_num_threads());
  return static_cast<std::size_t>(take_int(object, "threads", 1, 1 << 16));
}

template <class T>
py::array dense_typed(const py::array& rows_raw, const py::array& weight_raw, const py::array& bias_raw,
                      Activation activation, std::size_t threads, const char* dtype_name) {
  const Shape rows_shape = shape_of(rows_raw), weight_shape = shape_of(weight_raw), bias_shape = shape_of(bias_raw);
  if (rows_shape.size() != 2)
    throw py::value_error("rows: expected shape (M, I), got " + shape_string(rows_shape));
  const std::size_t M = static_cast<std::size_t>(rows_shape[0]), I = static_cast<std::size_t>(rows_shape[1]);
  if (weight_shape.size() != 2 || static_cast<std::size_t>(weight_shape[0]) != I)
    throw py::value_error("weight: expected shape (I, O) with I = " + std::to_string(I) + " (rows' width), got " +
                          shape_string(weight_shape));
  const std::size_t O = static_cast<std::size_t>(weight_shape[1]);
  // bias (O,): one for every row; (G, O): one per group of M / G consecutive rows
  std::size_t groups = 1;
  bool bias_ok = bias_shape.size() == 1 && static_cast<std::size_t>(bias_shape[0]) == O;
  if (bias_shape.size() == 2 && static_cast<std::size_t>(bias_shape[1]) == O) {
    groups = static_cast<std::size_t>(bias_shape[0]);
    bias_ok = groups == 0 ? M == 0 : M % groups == 0;
  }
  if (!bias_ok)
    throw py::value_error("bias: expected shape (" + std::to_string(O) + ",) (O, weight's width) or (G, " +
                          std::to_string(O) + ") with G dividing M = " + std::to_string(M) +
                          " (one bias per group of M / G consecutive rows), got " + shape_string(bias_shape));
  if (O > 0 && M > static_cast<std::size_t>(std::numeric_limits<py::ssize_t>::max()) / sizeof(T) / O)
    throw py::value_error("rows, weight: the result (M, O) = (" + std::to_string(M) + ", " + std::to_string(O) +
                          ") is too large to allocate");
  const auto rows = as_typed<T>(rows_raw, "rows", dtype_name);
  const auto weight = as_typed<T>(weight_raw, "weight", dtype_name);
  const auto bias = as_typed<T>(bias_raw, "bias", dtype_name);
  py::array_t<T, py::array::c_style> result({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(O)});
  if (M == 0 || O == 0) return std::move(result);
  const T *x = rows.data(), *w = weight.data(), *b = bias.data();
  T* y = result.mutable_data();
  const std::size_t group = M / groups;
  const std::size_t grain = std::max<std::size_t>(1, kWorkPerGrain / std::max<std::size_t>(1, I * O));
  {
    py::gil_scoped_release release;
    parallel_for_with(
        M, grain, threads,
        [&](std::size_t begin, std::size_t end) { dense_rows<T>(x, I, w, O, b, group, activation, y, begin, end); },
        StartThread{});
  }
  return std::move(result);
}

py::array dense_binding(const py::object& rows_object, const py::object& weight_object, const py::object& bias_object,
                        const py::object& activation_object, const py::object& threads_object) {
  const py::array rows = as_array(rows_object, "rows");
  const py::array weight = as_array(weight_object, "weight");
  const py::array bias = as_array(bias_object, "bias");
  const Activation activation = take_activation(activation_object);
  const std::size_t threads = take_threads(threads_object);
  if (py::array_t<double>::check_(rows)) return dense_typed<double>(rows, weight, bias, activation, threads, "float64");
  if (py::array_t<float>::check_(rows)) return dense_typed<float>(rows, weight, bias, activation, threads, "float32");
  throw py::value_error("rows: expected dtype float64 or float32, got " + std::string(py::str(rows.dtype())));
}

}  // namespace

void bind_dense(py::module_& m) {
  m.def("dense", &dense_binding, py::arg("rows"), py::arg("weight"), py::arg("bias"), py::arg("activation") = "none",
        py::arg("threads") = py::none(),
        "rows (M, I), weight (I, O), bias (O,) or (G, O) (one per group of M / G consecutive rows), activation "
        "'none' or 'selu' -> activation(rows @ weight + bias) (M, O), float64 or float32 (all three alike); rows "
        "are split over `threads` threads (None: the core's count) when M is large. Each row's values are the same "
        "bits whatever M, the row's position and the thread count.");
}

}  // namespace metapose::bind
