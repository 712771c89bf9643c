// Shared by the bindings: take numpy arrays in, check them, make outputs, report failures.
//
// Every argument arrives as a plain Python object and is checked here, so that anything a
// caller can pass ends in a result or a ValueError that names the argument, never a crash.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "metapose/refiner.hpp"

#include "metapose/parallel.hpp"

namespace metapose::bind {

namespace py = pybind11;
using Array = py::array_t<double, py::array::c_style>;
using Shape = std::vector<py::ssize_t>;

inline std::string shape_string(const Shape& shape) {
  std::ostringstream out;
  out << '(';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) out << ',';
  out << ')';
  return out.str();
}

inline std::string index_string(const Shape& leading, std::size_t flat) {
  Shape index(leading.size());
  for (std::size_t i = leading.size(); i-- > 0;) {
    index[i] = static_cast<py::ssize_t>(flat % static_cast<std::size_t>(leading[i]));
    flat /= static_cast<std::size_t>(leading[i]);
  }
  return "index " + shape_string(index);
}

// True when no value is NaN or inf: a value is not finite exactly when its exponent bits are all
// set. Integer operations and an OR reduction, so the loop vectorises (a check on every input).
inline bool all_finite(const double* data, std::size_t size) {
  constexpr std::uint64_t kExponent = 0x7ff0000000000000ULL;
  std::uint64_t any = 0;
  for (std::size_t i = 0; i < size; ++i) {
    std::uint64_t bits;
    std::memcpy(&bits, data + i, sizeof bits);
    any |= static_cast<std::uint64_t>((bits & kExponent) == kExponent);
  }
  return any == 0;
}

// A checked float64, C-contiguous, finite, non-empty input with `trailing` core dimensions.
struct Input {
  const char* name;
  Array array;
  Shape shape;
  std::size_t core_ndim;

  Shape leading() const { return Shape(shape.begin(), shape.end() - static_cast<std::ptrdiff_t>(core_ndim)); }
  // Size of core dimension i, counted from the first core axis.
  py::ssize_t dim(std::size_t i) const { return shape[shape.size() - core_ndim + i]; }
  std::size_t batch() const {
    std::size_t n = 1;
    for (std::size_t i = 0; i + core_ndim < shape.size(); ++i) n *= static_cast<std::size_t>(shape[i]);
    return n;
  }
  const double* data() const { return array.data(); }
};

// take() below without the check that every value is finite, for an argument some of whose
// values are never read (the mixtures of a rig's unused views): the caller checks the values it uses.
inline Input take_any_values(const py::object& object, const char* name, std::initializer_list<py::ssize_t> core,
                             const char* expected) {
  if (!py::isinstance<py::array>(object))
    throw py::value_error(std::string(name) + ": expected a numpy array of float64, got " +
                          std::string(py::str(py::type::of(object).attr("__name__"))));
  auto raw = py::reinterpret_borrow<py::array>(object);
  if (!py::array_t<double>::check_(raw))  // dtype equality (an unpickled float64 is another dtype object)
    throw py::value_error(std::string(name) + ": expected dtype float64, got " + std::string(py::str(raw.dtype())));
  Shape shape(raw.shape(), raw.shape() + raw.ndim());
  const std::size_t ndim = static_cast<std::size_t>(raw.ndim());
  bool ok = ndim >= core.size();
  if (ok) {
    std::size_t i = ndim - core.size();
    for (py::ssize_t want : core) {
      if (want >= 0 && shape[i] != want) ok = false;
      ++i;
    }
  }
  if (!ok)
    throw py::value_error(std::string(name) + ": expected shape " + expected + ", got " + shape_string(shape));
  if (raw.size() == 0)
    throw py::value_error(std::string(name) + ": is empty, shape " + shape_string(shape) + "; expected " + expected +
                          " with every size >= 1");
  Array array = Array::ensure(raw);
  if (!array) throw py::error_already_set();
  return Input{name, std::move(array), std::move(shape), core.size()};
}

// `core` lists the core dimensions, -1 for a size fixed by another argument; `expected` spells
// the shape for messages, e.g. "(..., J, 3)".
inline Input take(const py::object& object, const char* name, std::initializer_list<py::ssize_t> core,
                  const char* expected) {
  Input input = take_any_values(object, name, core, expected);
  const double* data = input.data();
  const std::size_t size = static_cast<std::size_t>(input.array.size());
  if (!all_finite(data, size)) {
    std::size_t i = 0;
    while (std::isfinite(data[i])) ++i;
    throw py::value_error(std::string(name) + ": contains NaN or inf (first at flat position " + std::to_string(i) +
                          ")");
  }
  return input;
}

// Both inputs must share their leading (batch) shape exactly.
inline void same_batch(const Input& reference, const Input& other) {
  if (reference.leading() != other.leading())
    throw py::value_error(std::string(other.name) + ": leading (batch) shape " + shape_string(other.leading()) +
                          " does not match " + reference.name + "'s " + shape_string(reference.leading()));
}

// Core dimension `i` of `a` and `j` of `b` are the same named size (J, C, K, N...).
inline void same_size(const Input& a, std::size_t i, const Input& b, std::size_t j, const char* what) {
  if (a.dim(i) != b.dim(j))
    throw py::value_error(std::string(b.name) + ": " + what + " = " + std::to_string(b.dim(j)) + " does not match " +
                          a.name + "'s " + what + " = " + std::to_string(a.dim(i)));
}

inline Array make_output(const Shape& leading, std::initializer_list<py::ssize_t> core) {
  Shape shape = leading;
  shape.insert(shape.end(), core.begin(), core.end());
  return Array(shape);
}

inline int take_int(const py::object& object, const char* name, int low, int high) {
  if (!py::isinstance<py::int_>(object) || py::isinstance<py::bool_>(object))
    throw py::value_error(std::string(name) + ": expected an integer, got " +
                          std::string(py::str(py::type::of(object).attr("__name__"))));
  long long value = 0;
  bool in_range = true;
  try {
    value = object.cast<long long>();
  } catch (const py::cast_error&) {
    in_range = false;  // beyond 64 bits
  }
  if (!in_range || value < low || value > high)
    throw py::value_error(std::string(name) + ": expected an integer in [" + std::to_string(low) + ", " +
                          std::to_string(high) + "], got " + std::string(py::str(object)));
  return static_cast<int>(value);
}

// A finite real number >= low (a Python float or int, not a bool).
inline double take_real(const py::object& object, const char* name, double low) {
  if (!(py::isinstance<py::float_>(object) || py::isinstance<py::int_>(object)) || py::isinstance<py::bool_>(object))
    throw py::value_error(std::string(name) + ": expected a number");
  const double value = object.cast<double>();
  if (!std::isfinite(value) || value < low)
    throw py::value_error(std::string(name) + ": expected a finite number >= " + std::to_string(low) + ", got " +
                          std::to_string(value));
  return value;
}

// Keras-form Adam's settings (refiner.hpp) from the bindings' arguments: steps in [0, 2^24],
// learning_rate >= 0, beta1 and beta2 in [0, 1), epsilon > 0; history_every 0 (the caller sets it).
inline RefinerOptions take_adam_options(const py::object& steps, const py::object& learning_rate,
                                        const py::object& beta1, const py::object& beta2,
                                        const py::object& epsilon) {
  RefinerOptions options;
  options.steps = take_int(steps, "steps", 0, 1 << 24);
  options.learning_rate = take_real(learning_rate, "learning_rate", 0.0);
  options.beta1 = take_real(beta1, "beta1", 0.0);
  options.beta2 = take_real(beta2, "beta2", 0.0);
  if (!(options.beta1 < 1)) throw py::value_error("beta1: expected a number in [0, 1)");
  if (!(options.beta2 < 1)) throw py::value_error("beta2: expected a number in [0, 1)");
  options.epsilon = take_real(epsilon, "epsilon", 0.0);
  if (!(options.epsilon > 0)) throw py::value_error("epsilon: expected a number > 0");
  options.history_every = 0;
  return options;
}

inline bool take_bool(const py::object& object, const char* name) {
  if (!py::isinstance<py::bool_>(object))
    throw py::value_error(std::string(name) + ": expected a bool, got " +
                          std::string(py::str(py::type::of(object).attr("__name__"))));
  return object.cast<bool>();
}

// Runs body(begin, end) over the batch with the GIL released, on up to get_num_threads() threads.
// An exception from the body on any thread (std::bad_alloc for its scratch, say) is raised here
// after every thread has stopped (parallel.hpp); pybind11 makes std::bad_alloc a MemoryError.
template <class Body>
void run_batch(std::size_t n, std::size_t grain, Body&& body) {
  py::gil_scoped_release release;
  parallel_for(n, grain, body);
}

// A std::bad_alloc that says what could not be allocated (pybind11 raises MemoryError with what()).
// The message is shared, so copying the exception cannot throw.
class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(const std::string& message) : message_(std::make_shared<const std::string>(message)) {}
  const char* what() const noexcept override { return message_->c_str(); }

 private:
  std::shared_ptr<const std::string> message_;
};

inline std::string megabytes(std::size_t values) {
  std::ostringstream out;
  out.precision(1);
  out << std::fixed << static_cast<double>(values) * sizeof(double) / 1e6 << " MB";
  return out.str();
}

// `values` doubles, zeroed, for `what`; when they cannot be had, an OutOfMemory naming what they
// were for and how much, with `advice`. Used for the per-call arrays and for each thread's scratch.
inline std::vector<double> allocate(std::size_t values, const std::string& what, const char* advice) {
  try {
    return std::vector<double>(values);
  } catch (const std::bad_alloc&) {
    throw OutOfMemory("not enough memory for " + what + ": " + megabytes(values) + "; " + advice);
  }
}

inline void raise_failure(const FirstFailure& failure, const Input& input, const std::string& problem) {
  if (failure.failed())
    throw py::value_error(std::string(input.name) + ": " + problem + " at " +
                          index_string(input.leading(), failure.index()));
}

}  // namespace metapose::bind

namespace metapose::bind {

// Finite inputs can still overflow (a pose of 1e200 squared); such a result is an error, not a
// silent inf or NaN. `inputs` names the arguments to look at.
inline void check_result(const Array& result, const char* inputs) {
  const double* data = result.data();
  const std::size_t size = static_cast<std::size_t>(result.size());
  if (all_finite(data, size)) return;
  for (std::size_t i = 0; i < size; ++i)
    if (!std::isfinite(data[i]))
      throw py::value_error(std::string(inputs) +
                            ": values too large or too small for float64 (the result overflows at flat position " +
                            std::to_string(i) + ")");
}

}  // namespace metapose::bind
