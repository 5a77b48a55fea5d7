#include "spdit/text/qwen2_tokenizer.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "byte_symbols.h"
#include "clip_text_normalize.h"
#include "pcre2_regex.h"
#include "qwen2_pre_tokenizer.h"
#include "text_files.h"

namespace spdit::text {
namespace {

// Qwen2's pre-tokenizer (tokenization_qwen2.PRETOKENIZE_REGEX; tokenizer.json's
// Split pattern): contractions, letters with one leading non-letter, single
// digits, runs of other symbols, newlines, whitespace. It covers every
// character, so the matches are the pieces.
const Pcre2Regex& pre_tokenizer() {
  static const Pcre2Regex re(
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  return re;
}

void read_vocab(const nlohmann::json& vocab, const std::string& where,
                std::unordered_map<std::string, int64_t>& out) {
  if (!vocab.is_object() || vocab.empty())
    throw std::runtime_error("spdit: " + where + " should be a JSON object {token: id}");
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer()) {
      throw std::runtime_error("spdit: " + where + ": the id of '" + token +
                               "' should be an integer, not " + id.dump());
    }
    out[token] = id.get<int64_t>();
  }
}

// tokenizer.json's added_tokens [{id, content, special, ...}] or
// tokenizer_config.json's added_tokens_decoder {"id": {content, special, ...}}.
Qwen2AddedToken added_token(const nlohmann::json& entry, int64_t id, const std::string& where) {
  if (!entry.is_object() || !entry.contains("content") || !entry["content"].is_string() ||
      entry["content"].get<std::string>().empty()) {
    throw std::runtime_error("spdit: " + where +
                             ": an added token should be {\"content\": ...}, not " + entry.dump());
  }
  return {entry["content"].get<std::string>(), id,
          entry.value("special", true)};  // a token without the flag is treated as special
}

}  // namespace

std::vector<std::string> qwen2_pre_tokenize(const std::string& text) {
  return pre_tokenizer().find_all(text);
}

void Qwen2Tokenizer::add_merge(const std::string& first, const std::string& second,
                               const std::string& where) {
  if (first.empty() || second.empty())
    throw std::runtime_error("spdit: " + where + ": a merge should be two tokens");
  // A repeated pair keeps its first rank (tokenizers builds the map once, in order).
  ranks_.emplace(first + " " + second, static_cast<int64_t>(ranks_.size()));
}

void Qwen2Tokenizer::finish(const std::string& where) {
  for (const auto& a : added_) vocab_[a.content] = a.id;
  for (const auto& [token, id] : vocab_) inverse_[id] = token;
  // Every byte must have a token, or some text would have no ids at all.
  for (const auto& symbol : byte_symbols()) {
    if (!vocab_.count(symbol)) {
      throw std::runtime_error("spdit: " + where + " has no token for the byte symbol '" + symbol +
                               "'; is it a byte-level BPE vocabulary (Qwen2 / GPT-2 style)?");
    }
  }
}

Qwen2Tokenizer Qwen2Tokenizer::from_tokenizer_json(const std::string& file) {
  const auto j = read_json_file(file);
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    throw std::runtime_error("spdit: " + file +
                             " has no \"model\"; is it a tokenizers tokenizer.json?");
  }
  const auto& model = j["model"];
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") {
    throw std::runtime_error("spdit: " + file + ": the model is '" + type +
                             "'; Qwen2's tokenizer is a byte-level 'BPE'");
  }
  if (!model.contains("vocab") || !model.contains("merges") || !model["merges"].is_array()) {
    throw std::runtime_error("spdit: " + file + ": the BPE model should have vocab and merges");
  }
  Qwen2Tokenizer t;
  read_vocab(model["vocab"], file + " (model.vocab)", t.vocab_);
  t.ignore_merges_ = model.value("ignore_merges", false);
  // Merges as "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs (newer).
  for (const auto& m : model["merges"]) {
    if (m.is_string()) {
      const auto s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        throw std::runtime_error("spdit: " + file + ": the merge '" + s + "' is not two tokens");
      t.add_merge(s.substr(0, space), s.substr(space + 1), file);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      t.add_merge(m[0].get<std::string>(), m[1].get<std::string>(), file);
    } else {
      throw std::runtime_error("spdit: " + file +
                               ": a merge should be \"a b\" or [\"a\", \"b\"], not " + m.dump());
    }
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& a : j["added_tokens"]) {
      if (!a.contains("id") || !a["id"].is_number_integer())
        throw std::runtime_error("spdit: " + file +
                                 ": an added token has no integer id: " + a.dump());
      t.added_.push_back(added_token(a, a["id"].get<int64_t>(), file));
    }
  }
  t.finish(file);
  return t;
}

Qwen2Tokenizer Qwen2Tokenizer::from_vocab_and_merges(const std::string& vocab_json,
                                                     const std::string& merges_txt,
                                                     const std::string& tokenizer_config_json) {
  Qwen2Tokenizer t;
  read_vocab(read_json_file(vocab_json), vocab_json, t.vocab_);
  std::istringstream lines(read_text_file(merges_txt));
  std::string line;
  for (size_t i = 0; std::getline(lines, line); ++i) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // As Qwen2Tokenizer: the "#version" first line and empty lines are skipped.
    if ((i == 0 && line.rfind("#version", 0) == 0) || line.empty()) continue;
    std::istringstream parts(line);
    std::string first, second, extra;
    if (!(parts >> first >> second) || (parts >> extra)) {
      throw std::runtime_error("spdit: " + merges_txt + " line " + std::to_string(i + 1) +
                               " is not two tokens: '" + line + "'");
    }
    t.add_merge(first, second, merges_txt);
  }
  if (!tokenizer_config_json.empty()) {
    const auto c = read_json_file(tokenizer_config_json);
    if (c.contains("added_tokens_decoder") && c["added_tokens_decoder"].is_object()) {
      for (const auto& [id, entry] : c["added_tokens_decoder"].items()) {
        int64_t n = 0;
        try {
          n = std::stoll(id);
        } catch (const std::exception&) {
          throw std::runtime_error("spdit: " + tokenizer_config_json +
                                   ": added_tokens_decoder's key '" + id + "' is not an id");
        }
        t.added_.push_back(added_token(entry, n, tokenizer_config_json));
      }
    }
  }
  t.finish(vocab_json);
  return t;
}

Qwen2Tokenizer Qwen2Tokenizer::load(const std::string& folder) {
  Qwen2Tokenizer t;
  const std::string config = folder + "/tokenizer_config.json";
  const bool has_config = file_exists(config);
  if (file_exists(folder + "/tokenizer.json")) {
    t = from_tokenizer_json(folder + "/tokenizer.json");
  } else {
    const std::string hint =
        "; a Qwen2 tokenizer folder (tokenizer/ of Qwen-Image) holds tokenizer.json, or "
        "vocab.json + merges.txt + tokenizer_config.json";
    require_file(folder + "/vocab.json", hint);
    require_file(folder + "/merges.txt", hint);
    t = from_vocab_and_merges(folder + "/vocab.json", folder + "/merges.txt",
                              has_config ? config : "");
    // added_tokens.json {content: id}: the slow tokenizer's older place for them.
    if (file_exists(folder + "/added_tokens.json")) {
      const auto extra = read_json_file(folder + "/added_tokens.json");
      for (const auto& [content, id] : extra.items()) {
        if (!id.is_number_integer() || t.vocab_.count(content)) continue;
        t.added_.push_back({content, id.get<int64_t>(), true});
        t.vocab_[content] = id.get<int64_t>();
        t.inverse_[id.get<int64_t>()] = content;
      }
    }
  }
  if (has_config) {
    const auto c = read_json_file(config);
    if (c.contains("pad_token")) {
      const auto& p = c["pad_token"];
      if (p.is_string()) t.set_pad_token(p.get<std::string>());
      if (p.is_object() && p.contains("content")) t.set_pad_token(p["content"].get<std::string>());
    }
  }
  if (!t.vocab_.count(t.pad_token_)) {
    throw std::runtime_error("spdit: the tokenizer in " + folder + " has no pad token '" +
                             t.pad_token_ + "'; name one as pad_token in tokenizer_config.json");
  }
  return t;
}

void Qwen2Tokenizer::set_pad_token(const std::string& token) {
  token_id(token);  // throws when absent
  pad_token_ = token;
}

int64_t Qwen2Tokenizer::token_id(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end())
    throw std::runtime_error("spdit: the Qwen2 vocabulary has no token '" + token + "'");
  return it->second;
}

int64_t Qwen2Tokenizer::size() const {
  int64_t highest = -1;
  for (const auto& [id, token] : inverse_) highest = std::max(highest, id);
  return highest + 1;
}

std::vector<std::string> Qwen2Tokenizer::bpe(const std::string& piece) const {
  std::vector<std::string> word;
  std::string whole;
  for (unsigned char b : piece) {
    word.push_back(byte_symbols()[b]);
    whole += word.back();
  }
  if (ignore_merges_ && vocab_.count(whole)) return {whole};
  while (word.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    size_t at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = ranks_.find(word[i] + " " + word[i + 1]);
      if (it != ranks_.end() && it->second < best) {
        best = it->second;
        at = i;
      }
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    // Every occurrence of the pair, left to right.
    const std::string first = word[at], second = word[at + 1];
    std::vector<std::string> merged;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i++]);
      }
    }
    word.swap(merged);
  }
  return word;
}

std::vector<std::string> Qwen2Tokenizer::tokenize(const std::string& text) const {
  require_utf8(text, "the prompt");
  std::vector<std::string> out;
  auto run = [&](const std::string& part) {
    if (part.empty()) return;
    for (const auto& piece : qwen2_pre_tokenize(unicode_nfc(part))) {
      auto sub = bpe(piece);
      out.insert(out.end(), sub.begin(), sub.end());
    }
  };
  // The added tokens first, whole, where the text spells them: the earliest
  // match, the longest of those starting there (transformers' trie,
  // tokenizers' leftmost-longest).
  size_t start = 0;
  while (start < text.size()) {
    size_t at = std::string::npos, len = 0;
    for (const auto& a : added_) {
      const size_t p = text.find(a.content, start);
      if (p != std::string::npos && (p < at || (p == at && a.content.size() > len))) {
        at = p;
        len = a.content.size();
      }
    }
    if (at == std::string::npos) break;
    run(text.substr(start, at - start));
    out.push_back(text.substr(at, len));
    start = at + len;
  }
  run(text.substr(start));
  return out;
}

std::vector<int64_t> Qwen2Tokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& t : tokenize(text)) {
    auto it = vocab_.find(t);
    if (it == vocab_.end()) {
      // Cannot happen with a byte-level vocabulary (finish() checked the bytes),
      // unless a merge makes a token the vocabulary lacks.
      throw std::runtime_error(
          "spdit: the Qwen2 BPE made the token '" + t +
          "', which the vocabulary lacks; do vocab and merges belong together?");
    }
    ids.push_back(it->second);
  }
  return ids;
}

std::string Qwen2Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out, bytes;
  const auto& inverse = symbol_bytes();
  auto flush = [&] {
    out += utf8_with_replacement(bytes);
    bytes.clear();
  };
  for (int64_t id : ids) {
    auto it = inverse_.find(id);
    if (it == inverse_.end()) {
      throw std::runtime_error("spdit: id " + std::to_string(id) +
                               " is not in the Qwen2 vocabulary (" + std::to_string(size()) +
                               " ids)");
    }
    const std::string& token = it->second;
    bool added = false;
    for (const auto& a : added_) added = added || a.id == id;
    if (added) {
      flush();
      out += token;
      continue;
    }
    for (size_t i = 0; i < token.size();) {
      const auto c = static_cast<unsigned char>(token[i]);
      const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
      auto b = inverse.find(token.substr(i, n));
      if (b == inverse.end()) {
        throw std::runtime_error(
            "spdit: the Qwen2 vocabulary's token '" + token +
            "' is not made of byte symbols; is it a byte-level BPE vocabulary?");
      }
      bytes += static_cast<char>(b->second);
      i += n;
    }
  }
  flush();
  return out;
}

}  // namespace spdit::text
