#include <dlfcn.h>

#include <mutex>
#include <stdexcept>
#include <string>

#include "sentencepiece_backend.h"

namespace spdit::text {
namespace {

using Factory = SentencePieceBackend* (*)();

// The module lies beside libspdit.so, in the build tree and where installed.
std::string module_path() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&make_sentencepiece_backend), &info) == 0 || !info.dli_fname) {
    return "libspdit_sentencepiece.so";
  }
  std::string self = info.dli_fname;
  const auto slash = self.rfind('/');
  return (slash == std::string::npos ? std::string() : self.substr(0, slash + 1)) +
         "libspdit_sentencepiece.so";
}

Factory load_factory() {
  const std::string path = module_path();
  // RTLD_LOCAL keeps its protobuf symbols out of the process' global scope;
  // RTLD_DEEPBIND makes it bind to its own copies before LibTorch's.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (!handle) {
    throw std::runtime_error(
        "spdit: cannot load the SentencePiece module " + path + ": " + dlerror() +
        "; it is built and installed beside libspdit.so (needs libsentencepiece0)");
  }
  auto factory = reinterpret_cast<Factory>(dlsym(handle, "spdit_sentencepiece_backend_new"));
  if (!factory)
    throw std::runtime_error("spdit: " + path + " has no spdit_sentencepiece_backend_new");
  return factory;  // the module stays loaded for the life of the process
}

}  // namespace

std::unique_ptr<SentencePieceBackend> make_sentencepiece_backend() {
  static std::once_flag once;
  static Factory factory = nullptr;
  std::call_once(once, [] { factory = load_factory(); });
  return std::unique_ptr<SentencePieceBackend>(factory());
}

}  // namespace spdit::text
