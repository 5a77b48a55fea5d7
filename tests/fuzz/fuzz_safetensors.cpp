// libFuzzer target: the safetensors reader must refuse any byte string with
// an exception, never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "spdit/models/weights.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    spdit::models::parse_safetensors(std::string(reinterpret_cast<const char*>(data), size),
                                     "fuzz");
  } catch (const std::exception&) {
  }
  return 0;
}
