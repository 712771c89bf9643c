// Fast maths for the vectorised kernels: compiler hints, and branch-free exp, log and softplus.
//
// The library's exp and log are scalar calls, so a loop that uses them does not vectorise; the
// functions here are written out in plain arithmetic (a polynomial and bit manipulation of the
// exponent), which the compiler puts in vector registers, and are accurate to a few ulp:
//   exp_nonpositive(x), x <= 0:  x = n ln2 + r, |r| <= ln2 / 2, e^x = 2^n e^r, e^r by its Taylor
//                                series to degree 13 (truncation below 4e-18 relative);
//   log_positive(x):             x = 2^k f, f in [sqrt(1/2), sqrt(2)), log f = 2 atanh((f - 1) / (f + 1))
//                                by its series, plus k ln2 (ln2 split in two so k ln2_hi is exact);
//   log1p_unit(y), 0 <= y <= 1:  log(1 + y) from the log of u = 1 + y rounded, plus the rounding
//                                error y - (u - 1) to first order, divided by u;
//   softplus_and_slope(x):       softplus(x) = max(x, 0) + log(1 + e^-|x|) and its derivative
//                                sigmoid(x), from one exp.
// Singular cases: exp_nonpositive holds arguments below -700 at -700 (e^-700 ~ 1e-304, negligible
// beside the e^0 = 1 of every log-sum-exp here, and in softplus an absolute error under 1e-304);
// log_positive returns -inf at 0, inf at inf and NaN for negative x or NaN, as the library's log,
// and scales subnormals by 2^54 first. Scalar types other than double use the library's exp and log.
//
// Also here: the lane helpers (padded counts), the a * b + c that is fused only where the target has
// FMA, and clean_vector_state, to call before the maths library from vectorised code.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define METAPOSE_RESTRICT __restrict
#else
#define METAPOSE_RESTRICT
#endif
// Tells the compiler the next loop's iterations are independent (no run-time alias check).
#if defined(__clang__)
#define METAPOSE_VECTORIZE _Pragma("clang loop vectorize(enable)")
#elif defined(__GNUC__)
#define METAPOSE_VECTORIZE _Pragma("GCC ivdep")
#else
#define METAPOSE_VECTORIZE
#endif
// Unrolls the next (short, fixed-length) loop fully, so that an enclosing loop can vectorise.
#if defined(__clang__)
#define METAPOSE_UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define METAPOSE_UNROLL _Pragma("GCC unroll 16")
#else
#define METAPOSE_UNROLL
#endif
// a * b + c, fused where the target has FMA (then exact to one rounding, and the same in scalar and
// vector code), plain otherwise.
#if defined(__FMA__)
#define METAPOSE_MADD(a, b, c) std::fma((a), (b), (c))
#else
#define METAPOSE_MADD(a, b, c) ((a) * (b) + (c))
#endif

namespace metapose {

// Call before the maths library (log, exp, sin, atan2, ...) from vectorised code: the library's
// scalar SSE code runs many times slower while the upper halves of the AVX registers are dirty, and
// the compiler does not always clear them before such a call (measured: the refiner took 1.7x
// longer). A no-op without AVX.
inline void clean_vector_state() {
#if defined(__AVX__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_ia32_vzeroupper();
#endif
}

// Rounds a count of points up to a whole number of 4-double vectors, so that the evaluation
// loops have no scalar remainder.
template <class Int>
inline Int padded_count(Int n) {
  return (n + 3) & ~Int(3);
}

// exp(x) for x <= 0 to about 1 ulp; arguments below -700 give exp(-700) (~1e-304), which is
// negligible beside the largest term exp(0) = 1 that every log-sum-exp here contains.
inline double exp_nonpositive(double x) {
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2 split so n * kLn2Hi is exact
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kShifter = 6755399441055744.0;          // 1.5 * 2^52: adding it rounds to an integer
  x = x < -700.0 ? -700.0 : x;
  const double shifted = METAPOSE_MADD(x, kLog2e, kShifter);
  const double n = shifted - kShifter;
  const double r = METAPOSE_MADD(-n, kLn2Lo, METAPOSE_MADD(-n, kLn2Hi, x));  // |r| <= ln(2) / 2
  // Taylor series of e^r to degree 13: truncation below 4e-18 relative on |r| <= 0.347.
  double p = 1.0 / 6227020800.0;
  p = METAPOSE_MADD(p, r, 1.0 / 479001600.0);
  p = METAPOSE_MADD(p, r, 1.0 / 39916800.0);
  p = METAPOSE_MADD(p, r, 1.0 / 3628800.0);
  p = METAPOSE_MADD(p, r, 1.0 / 362880.0);
  p = METAPOSE_MADD(p, r, 1.0 / 40320.0);
  p = METAPOSE_MADD(p, r, 1.0 / 5040.0);
  p = METAPOSE_MADD(p, r, 1.0 / 720.0);
  p = METAPOSE_MADD(p, r, 1.0 / 120.0);
  p = METAPOSE_MADD(p, r, 1.0 / 24.0);
  p = METAPOSE_MADD(p, r, 1.0 / 6.0);
  p = METAPOSE_MADD(p, r, 0.5);
  p = METAPOSE_MADD(p, r, 1.0);
  p = METAPOSE_MADD(p, r, 1.0);
  // 2^n from the integer left in the low bits of `shifted`.
  std::int64_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  const std::int64_t exponent = (bits - std::int64_t{0x4338000000000000}) + 1023;
  const std::uint64_t scale_bits = static_cast<std::uint64_t>(exponent) << 52;
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

// log(x) to about 2 ulp, branch-free so that loops over it vectorise (the library's log is a
// scalar call). x = 2^k f with f in [sqrt(1/2), sqrt(2)), and log f = 2 atanh(s), s = (f - 1) /
// (f + 1), |s| < 0.172, summed to s^23 (the first term left out is below 1e-17 relative); k ln 2
// is added in two parts. Subnormals are scaled by 2^54 first; 0 gives -inf, inf gives inf, and a
// negative x or NaN gives NaN, as the library's log.
inline double log_positive(double x) {
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kSqrt2 = 1.41421356237309504880;
  constexpr double kSmallest = std::numeric_limits<double>::min();  // smallest normal
  constexpr double kLargest = std::numeric_limits<double>::max();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const bool subnormal = x < kSmallest;
  const double y = subnormal ? x * 18014398509481984.0 : x;  // 2^54
  std::int64_t bits;
  std::memcpy(&bits, &y, sizeof bits);
  const std::int64_t exponent = ((bits >> 52) & 0x7ff) - 1023;
  const std::uint64_t mantissa_bits =
      (static_cast<std::uint64_t>(bits) & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;  // f in [1, 2)
  double f;
  std::memcpy(&f, &mantissa_bits, sizeof f);
  const bool halve = f >= kSqrt2;
  f = halve ? 0.5 * f : f;
  const double k = static_cast<double>(exponent) + (halve ? 1.0 : 0.0) - (subnormal ? 54.0 : 0.0);
  const double s = (f - 1.0) / (f + 1.0);
  const double z = s * s;
  double p = 1.0 / 23;
  p = METAPOSE_MADD(p, z, 1.0 / 21);
  p = METAPOSE_MADD(p, z, 1.0 / 19);
  p = METAPOSE_MADD(p, z, 1.0 / 17);
  p = METAPOSE_MADD(p, z, 1.0 / 15);
  p = METAPOSE_MADD(p, z, 1.0 / 13);
  p = METAPOSE_MADD(p, z, 1.0 / 11);
  p = METAPOSE_MADD(p, z, 1.0 / 9);
  p = METAPOSE_MADD(p, z, 1.0 / 7);
  p = METAPOSE_MADD(p, z, 1.0 / 5);
  p = METAPOSE_MADD(p, z, 1.0 / 3);
  const double log_f = METAPOSE_MADD(2.0 * s * z, p, 2.0 * s);
  const double result = METAPOSE_MADD(k, kLn2Hi, METAPOSE_MADD(k, kLn2Lo, log_f));
  // Outside (0, largest]: 0 -> -inf, inf -> inf, negative or NaN -> NaN (x - x is NaN for both).
  const double special = x == 0.0 ? -kInf : (x == kInf ? kInf : (x - x) / 0.0);
  return x > 0.0 && x <= kLargest ? result : special;
}

template <class T>
inline T log_positive(T x) {
  return std::log(x);  // other scalar types: the library log
}

template <class T>
inline T exp_nonpositive(T x) {
  return std::exp(x);  // other scalar types: the library exp
}

// log(1 + y) for 0 <= y <= 1 to about 3 ulp, vectorisable (the library's log1p is a scalar call):
// the log of u = 1 + y rounded, plus that rounding's error y - (u - 1) to first order, divided by u.
template <class T>
inline T log1p_unit(T y) {
  const T u = T(1) + y;
  return log_positive(u) + (y - (u - T(1))) / u;
}

// s = softplus(x) = log(1 + e^x) and its derivative sigmoid(x), from one exp: with e = e^-|x|,
// s = max(x, 0) + log(1 + e) and sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) below; to about
// 3 ulp. Below x = -700 exp_nonpositive holds e at e^-700, so s and sigmoid(x) are 1e-304 there
// rather than e^x (an absolute error under 1e-304).
template <class T>
inline void softplus_and_slope(T x, T* s, T* slope) {
  const T e = exp_nonpositive(-std::fabs(x));
  const T inverse = T(1) / (T(1) + e);
  *s = (x > T(0) ? x : T(0)) + log1p_unit(e);
  *slope = x >= T(0) ? inverse : e * inverse;
}

// The raw value whose softplus is s > 0 (scalar code: the library's log1p, exp and expm1).
template <class T>
inline T inverse_softplus(T s) {
  clean_vector_state();
  return s > T(30) ? s + std::log1p(-std::exp(-s)) : std::log(std::expm1(s));
}

}  // namespace metapose
