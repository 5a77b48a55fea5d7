#pragma once
// Private: 2^t for t <= 0 on a GCC vector of floats, the vector form of
// online_softmax_cpu.cpp's exp2_nonpositive (same coefficients, same
// branch-free range reduction; see there), for kernels that compute the
// exponentials inside their own target-specific code.
#include <cstring>

namespace spdit::detail {

// V: a vector of floats; IV: a vector of int32 of the same lane count. Always
// inlined into a caller compiled for the vector width, so no call ever
// passes a vector by value (the ABI note GCC would give is moot).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
template <class V, class IV>
__attribute__((always_inline)) inline V exp2_nonpositive_lanes(V t) {
  const V lo = V{} - 127.0f;
  const V tc = t > lo ? t : lo;
  const V n = (tc + 12582912.0f) - 12582912.0f;
  const V f = tc - n;
  V p = f * 1.535336188319500e-4f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const IV bits = (__builtin_convertvector(n, IV) + 127) << 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
#pragma GCC diagnostic pop

}  // namespace spdit::detail
