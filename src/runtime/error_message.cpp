#include "spdit/runtime/error_message.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>

namespace spdit {

bool backtraces_requested() {
  const char* v = std::getenv("SPDIT_BACKTRACE");
  return v && std::strcmp(v, "0") != 0 && *v != '\0';
}

std::string error_message(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e); c && !backtraces_requested()) {
    return c->what_without_backtrace();
  }
  return e.what();
}

}  // namespace spdit
