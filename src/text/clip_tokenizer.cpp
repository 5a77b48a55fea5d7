#include "spdit/text/clip_tokenizer.h"

#include <algorithm>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "byte_symbols.h"
#include "clip_text_normalize.h"
#include "pcre2_regex.h"
#include "text_files.h"

namespace spdit::text {
namespace {

// transformers reads at most this many merges (CLIP's 49152 tokens less the
// 256 bytes and the two special tokens), after the "#version" line.
constexpr size_t kMaxMerges = 49152 - 256 - 2;

// A special token as tokenizer_config.json writes it: "text" or {"content": "text", ...}.
void read_token(const nlohmann::json& j, const char* key, std::string& out,
                const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return;
  const auto& v = j[key];
  if (v.is_string()) {
    out = v.get<std::string>();
  } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    out = v["content"].get<std::string>();
  } else {
    throw std::runtime_error("spdit: " + file + ": '" + key +
                             "' should be a string or {\"content\": ...}, not " + v.dump());
  }
}

void read_special_tokens(const std::string& file, ClipTokenizerConfig& c) {
  const auto j = read_json_file(file);
  read_token(j, "bos_token", c.bos_token, file);
  read_token(j, "eos_token", c.eos_token, file);
  read_token(j, "unk_token", c.unk_token, file);
  read_token(j, "pad_token", c.pad_token, file);
  // Some configs say 1e30 ("no limit"); CLIP's position table has 77.
  if (j.contains("model_max_length") && j["model_max_length"].is_number() &&
      j["model_max_length"].get<double>() < 1e9) {
    c.model_max_length = static_cast<int64_t>(j["model_max_length"].get<double>());
  }
}

}  // namespace

ClipTokenizer ClipTokenizer::load(const std::string& folder) {
  const std::string hint =
      "; a CLIP tokenizer folder (tokenizer/ of a diffusers model) holds vocab.json, "
      "merges.txt and tokenizer_config.json";
  require_file(folder + "/vocab.json", hint);
  require_file(folder + "/merges.txt", hint);
  ClipTokenizerConfig c;
  // As transformers: the values of special_tokens_map.json override tokenizer_config.json's.
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    if (file_exists(folder + "/" + name)) read_special_tokens(folder + "/" + name, c);
  }
  return ClipTokenizer(folder + "/vocab.json", folder + "/merges.txt", c);
}

ClipTokenizer::ClipTokenizer(const std::string& vocab_json, const std::string& merges_txt,
                             ClipTokenizerConfig config)
    : config_(std::move(config)) {
  const auto vocab = read_json_file(vocab_json);
  if (!vocab.is_object() || vocab.empty()) {
    throw std::runtime_error("spdit: " + vocab_json + " should be a JSON object {token: id}");
  }
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer()) {
      throw std::runtime_error("spdit: " + vocab_json + ": the id of '" + token +
                               "' should be an integer, not " + id.dump());
    }
    vocab_[token] = id.get<int64_t>();
    inverse_[id.get<int64_t>()] = token;
  }
  // merges.txt: a "#version" line, then "first second" per line, rank = order.
  std::istringstream lines(read_text_file(merges_txt));
  std::string line;
  std::getline(lines, line);  // transformers skips the first line whatever it holds
  for (size_t rank = 0; rank < kMaxMerges && std::getline(lines, line); ++rank) {
    std::istringstream parts(line);
    std::string first, second, extra;
    // A line that is not a pair can never match two symbols; transformers keeps it unused too.
    if (!(parts >> first >> second) || (parts >> extra)) continue;
    ranks_[first + " " + second] =
        static_cast<int64_t>(rank);  // a repeated pair keeps its later rank
  }
  for (const auto* t :
       {&config_.bos_token, &config_.eos_token, &config_.unk_token, &config_.pad_token}) {
    if (t->empty())
      throw std::runtime_error("spdit: the CLIP tokenizer config names an empty special token");
    if (!vocab_.count(*t)) {
      throw std::runtime_error("spdit: " + vocab_json + " has no token '" + *t +
                               "', which the tokenizer config names as a special token");
    }
  }
}

int64_t ClipTokenizer::token_id(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end())
    throw std::runtime_error("spdit: the CLIP vocabulary has no token '" + token + "'");
  return it->second;
}

std::vector<std::string> ClipTokenizer::bpe(const std::string& piece) const {
  std::vector<std::string> word;
  for (unsigned char b : piece) word.push_back(byte_symbols()[b]);
  word.back() += "</w>";
  while (word.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    std::string best_first, best_second;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = ranks_.find(word[i] + " " + word[i + 1]);
      if (it != ranks_.end() && it->second < best) {
        best = it->second;
        best_first = word[i];
        best_second = word[i + 1];
      }
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    // Every occurrence of the pair, left to right.
    std::vector<std::string> merged;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == best_first && word[i + 1] == best_second) {
        merged.push_back(best_first + best_second);
        i += 2;
      } else {
        merged.push_back(word[i++]);
      }
    }
    word.swap(merged);
  }
  return word;
}

std::vector<std::string> ClipTokenizer::tokenize(const std::string& text) const {
  require_utf8(text, "the prompt");
  // The special tokens are split off first, whole, where the text spells
  // them (transformers' added-tokens trie: earliest, then longest match).
  std::vector<std::string> specials = {config_.bos_token, config_.eos_token, config_.unk_token,
                                       config_.pad_token};
  std::vector<std::string> out;
  auto run = [&](const std::string& part) {
    for (const auto& piece : clip_pre_tokenize(part)) {
      auto sub = bpe(piece);
      out.insert(out.end(), sub.begin(), sub.end());
    }
  };
  size_t start = 0;
  while (start < text.size()) {
    size_t at = std::string::npos, len = 0;
    for (const auto& s : specials) {
      const size_t p = text.find(s, start);
      if (p != std::string::npos && (p < at || (p == at && s.size() > len))) {
        at = p;
        len = s.size();
      }
    }
    if (at == std::string::npos) break;
    run(text.substr(start, at - start));
    out.push_back(text.substr(at, len));
    start = at + len;
  }
  if (start < text.size()) run(text.substr(start));
  return out;
}

std::vector<int64_t> ClipTokenizer::token_ids(const std::string& text) const {
  std::vector<int64_t> ids;
  const int64_t unk = token_id(config_.unk_token);
  for (const auto& t : tokenize(text)) {
    auto it = vocab_.find(t);
    ids.push_back(it == vocab_.end() ? unk : it->second);
  }
  return ids;
}

TokenizedPrompt ClipTokenizer::encode(const std::string& text, int64_t max_length,
                                      bool warn) const {
  if (max_length <= 0) max_length = config_.model_max_length;
  if (max_length < 2) {
    throw std::runtime_error(
        "spdit: CLIP max_length " + std::to_string(max_length) +
        " leaves no room for <|startoftext|> and <|endoftext|>; use at least 2");
  }
  const auto body = token_ids(text);
  const size_t room = static_cast<size_t>(max_length - 2);
  TokenizedPrompt out;
  out.ids.push_back(token_id(config_.bos_token));
  out.ids.insert(out.ids.end(), body.begin(), body.begin() + std::min(room, body.size()));
  out.ids.push_back(token_id(config_.eos_token));
  out.ids.resize(static_cast<size_t>(max_length), token_id(config_.pad_token));
  if (body.size() > room) {
    out.truncated = decode(std::vector<int64_t>(body.begin() + room, body.end()));
    if (warn) {
      std::cerr
          << "spdit: warning: the following part of your input was truncated because CLIP can only "
             "handle sequences up to "
          << max_length << " tokens: " << out.truncated << std::endl;
    }
  }
  return out;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string joined;
  for (int64_t id : ids) {
    auto it = inverse_.find(id);
    if (it == inverse_.end()) {
      throw std::runtime_error("spdit: id " + std::to_string(id) +
                               " is not in the CLIP vocabulary (" + std::to_string(vocab_.size()) +
                               " tokens)");
    }
    joined += it->second;
  }
  // Each symbol back to its byte (transformers maps every character; the
  // special tokens are plain ASCII symbols too).
  std::string bytes;
  const auto& inverse = symbol_bytes();
  for (size_t i = 0; i < joined.size();) {
    const auto c = static_cast<unsigned char>(joined[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
    auto it = inverse.find(joined.substr(i, n));
    if (it == inverse.end()) {
      throw std::runtime_error(
          "spdit: the CLIP vocabulary's token text '" + joined.substr(i, n) +
          "' is not a byte symbol; is vocab.json a byte-level BPE vocabulary?");
    }
    bytes += static_cast<char>(it->second);
    i += n;
  }
  static const Pcre2Regex word_end("</w>"), edges(R"(^\s+|\s+$)");
  return edges.replace_all(word_end.replace_all(utf8_with_replacement(bytes), " "), "");
}

}  // namespace spdit::text
