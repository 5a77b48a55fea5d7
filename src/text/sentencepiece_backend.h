#pragma once
// SentencePiece behind an interface, in its own module
// (libspdit_sentencepiece.so) that spdit loads with dlopen(RTLD_LOCAL |
// RTLD_DEEPBIND). Why: Debian's libsentencepiece carries its own copy of
// protobuf-lite and exports its symbols; linked into the same process as
// LibTorch (which needs libprotobuf.so.32) the two copies interpose each
// other and the process crashes while loading. Loaded locally and bound to
// itself first, sentencepiece keeps its copy and LibTorch keeps its own.
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace spdit::text {

/// One SentencePiece model. Methods return "" on success, else the error.
class SentencePieceBackend {
 public:
  virtual ~SentencePieceBackend() = default;
  virtual std::string load(const std::string& path) = 0;
  virtual std::string encode(const std::string& text, std::vector<int>* ids) const = 0;
  virtual std::string decode(const std::vector<int>& ids, std::string* text) const = 0;
  virtual int eos_id() const = 0;
  virtual int pad_id() const = 0;
  virtual int piece_size() const = 0;
  /// SentencePieceTrainer::Train with `args` (name, value) over `lines`;
  /// the model's serialized bytes in `model`.
  virtual std::string train(const std::vector<std::pair<std::string, std::string>>& args,
                            const std::vector<std::string>& lines, std::string* model) const = 0;
};

/// A new backend from the module (loaded once); throws saying which file
/// could not be loaded and why.
std::unique_ptr<SentencePieceBackend> make_sentencepiece_backend();

}  // namespace spdit::text

/// The module's one entry point (C linkage, so that dlsym finds it by name).
extern "C" spdit::text::SentencePieceBackend* spdit_sentencepiece_backend_new();
