#include "state_dict_pickle.h"

#include <c10/core/ScalarType.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace spdit::checkpoints::detail {
namespace {

using Kind = PickleValue::Kind;

PickleValuePtr make(Kind k) {
  auto v = std::make_shared<PickleValue>();
  v->kind = k;
  return v;
}

// torch.save names a storage's dtype by its legacy class (torch.FloatStorage).
at::ScalarType storage_dtype(const std::string& cls) {
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"torch.FloatStorage", at::kFloat}, {"torch.DoubleStorage", at::kDouble},
      {"torch.HalfStorage", at::kHalf},   {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.LongStorage", at::kLong},   {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort}, {"torch.CharStorage", at::kChar},
      {"torch.ByteStorage", at::kByte},   {"torch.BoolStorage", at::kBool}};
  auto it = kTypes.find(cls);
  if (it == kTypes.end())
    throw std::runtime_error("a storage of class '" + cls + "', which spdit does not read");
  return it->second;
}

std::vector<int64_t> int_tuple(const PickleValuePtr& v, const char* what) {
  if (v->kind != Kind::kTuple && v->kind != Kind::kList)
    throw std::runtime_error(std::string(what) + " is not a tuple");
  std::vector<int64_t> out;
  for (const auto& x : v->items) {
    if (x->kind != Kind::kInt) throw std::runtime_error(std::string(what) + " holds a non-integer");
    out.push_back(x->int_value);
  }
  return out;
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
// backward_hooks, ...)
PickleValuePtr rebuild_tensor(const PickleValuePtr& args) {
  if (args->kind != Kind::kTuple || args->items.size() < 4 ||
      args->items[0]->kind != Kind::kStorage || args->items[1]->kind != Kind::kInt) {
    throw std::runtime_error("_rebuild_tensor_v2 with arguments spdit does not understand");
  }
  const StoredTensor& storage = args->items[0]->tensor;
  const int64_t element = static_cast<int64_t>(c10::elementSize(storage.dtype));
  auto t = make(Kind::kTensor);
  t->tensor.dtype = storage.dtype;
  t->tensor.shape = int_tuple(args->items[2], "a tensor's size");
  const std::vector<int64_t> strides = int_tuple(args->items[3], "a tensor's stride");
  if (strides.size() != t->tensor.shape.size())
    throw std::runtime_error("a tensor's size and stride differ in length");
  // Sizes and strides come from the file: overflow-checked, since a crafted
  // one could wrap the byte range back inside the storage.
  int64_t span = 1, numel = 1,
          expected = 1;  // span: elements from the first to the last one addressed
  bool contiguous = true;
  for (size_t d = t->tensor.shape.size(); d-- > 0;) {
    const int64_t n = t->tensor.shape[d];
    if (n < 0 || strides[d] < 0)
      throw std::runtime_error("a tensor with a negative size or stride");
    int64_t reach = 0;
    if (n > 0 &&
        (__builtin_mul_overflow(n - 1, strides[d], &reach) ||
         __builtin_add_overflow(span, reach, &span) || __builtin_mul_overflow(numel, n, &numel))) {
      throw std::runtime_error("a tensor whose size and stride overflow (corrupt?)");
    }
    if (n == 0) numel = 0;
    if (n != 1 && strides[d] != expected) contiguous = false;
    if (__builtin_mul_overflow(expected, std::max<int64_t>(n, 1), &expected)) expected = -1;
  }
  if (numel == 0) {
    t->tensor.begin = t->tensor.end = storage.begin;
  } else {
    const int64_t offset = args->items[1]->int_value;
    const uint64_t capacity = (storage.end - storage.begin) / static_cast<uint64_t>(element);
    if (offset < 0 || static_cast<uint64_t>(offset) > capacity ||
        static_cast<uint64_t>(span) > capacity - static_cast<uint64_t>(offset)) {
      throw std::runtime_error("a tensor reaches past the end of its storage (corrupt?)");
    }
    t->tensor.begin = storage.begin + static_cast<uint64_t>(offset * element);
    t->tensor.end = t->tensor.begin + static_cast<uint64_t>(span * element);
  }
  if (!contiguous) t->tensor.strides = strides;
  return t;
}

class Reader {
 public:
  Reader(const char* data, size_t size, const StorageLocator& storage)
      : p_(data), end_(data + size), storage_(storage) {}

  PickleValuePtr run() {
    for (;;) {
      const uint8_t op = u8();
      switch (op) {
        case 0x80:
          u8();
          break;  // PROTO
        case 0x95:
          bytes(8);
          break;  // FRAME
        case '.':
          return pop();  // STOP
        case '(':
          marks_.push_back(stack_.size());
          break;
        case 'N':
          stack_.push_back(make(Kind::kNone));
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          auto v = make(Kind::kBool);
          v->int_value = op == 0x88;
          stack_.push_back(v);
          break;
        }
        case 'K':
          push_int(u8());
          break;  // BININT1
        case 'M':
          push_int(le(2));
          break;  // BININT2
        case 'J':
          push_int(static_cast<int32_t>(le(4)));
          break;  // BININT
        case 0x8a:
          push_long(u8());
          break;  // LONG1
        case 0x8b:
          push_long(le(4));
          break;     // LONG4
        case 'G': {  // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = bits << 8 | u8();
          auto v = make(Kind::kFloat);
          std::memcpy(&v->float_value, &bits, 8);
          stack_.push_back(v);
          break;
        }
        case 'X':
          push_string(le(4));
          break;  // BINUNICODE
        case 0x8c:
          push_string(u8());
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push_string(le(8));
          break;  // BINUNICODE8
        case 'T':
          push_string(le(4));
          break;  // BINSTRING
        case 'U':
          push_string(u8());
          break;  // SHORT_BINSTRING
        case 'B':
          push_string(le(4));
          break;  // BINBYTES
        case 'C':
          push_string(u8());
          break;     // SHORT_BINBYTES
        case 'c': {  // GLOBAL "module\nname\n"
          auto v = make(Kind::kGlobal);
          v->text = line();
          v->text += "." + line();
          stack_.push_back(v);
          break;
        }
        case 'q':
          memo_[u8()] = top();
          break;  // BINPUT
        case 'r':
          memo_[le(4)] = top();
          break;  // LONG_BINPUT
        case 0x94:
          memo_[memo_.size()] = top();
          break;  // MEMOIZE
        case 'h':
          stack_.push_back(memo(u8()));
          break;  // BINGET
        case 'j':
          stack_.push_back(memo(le(4)));
          break;  // LONG_BINGET
        case '}':
          stack_.push_back(make(Kind::kDict));
          break;
        case ']':
          stack_.push_back(make(Kind::kList));
          break;
        case ')':
          stack_.push_back(make(Kind::kTuple));
          break;
        case 't':
        case 'l':
        case 'd': {  // TUPLE, LIST, DICT from the mark
          auto v = make(op == 't' ? Kind::kTuple : op == 'l' ? Kind::kList : Kind::kDict);
          auto items = since_mark();
          if (op == 'd') {
            for (size_t i = 0; i + 1 < items.size(); i += 2)
              v->entries.emplace_back(items[i], items[i + 1]);
          } else {
            v->items = std::move(items);
          }
          stack_.push_back(v);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          auto v = make(Kind::kTuple);
          v->items.resize(op - 0x84);
          for (size_t i = v->items.size(); i-- > 0;) v->items[i] = pop();
          stack_.push_back(v);
          break;
        }
        case 'a': {  // APPEND
          auto x = pop();
          top()->items.push_back(x);
          break;
        }
        case 'e': {  // APPENDS
          auto items = since_mark();
          auto& list = top()->items;
          list.insert(list.end(), items.begin(), items.end());
          break;
        }
        case 's': {  // SETITEM
          auto value = pop();
          auto key = pop();
          set_item(top(), key, value);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = since_mark();
          for (size_t i = 0; i + 1 < items.size(); i += 2) set_item(top(), items[i], items[i + 1]);
          break;
        }
        case 'Q':
          stack_.push_back(persistent(pop()));
          break;     // BINPERSID
        case 'R': {  // REDUCE
          auto args = pop();
          auto callable = pop();
          stack_.push_back(reduce(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ
          pop();
          auto cls = pop();
          auto v = make(Kind::kObject);
          v->text = cls->text;
          stack_.push_back(v);
          break;
        }
        case 'b':
          pop();
          break;  // BUILD: an object's state, not needed
        case '0':
          pop();
          break;  // POP
        default:
          throw std::runtime_error("pickle opcode 0x" + hex(op) + " at byte " +
                                   std::to_string(pos() - 1) + ", which a state dict does not use");
      }
    }
  }

 private:
  const char* p_;
  const char* end_;
  const char* start_ = p_;
  const StorageLocator& storage_;
  std::vector<PickleValuePtr> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, PickleValuePtr> memo_;

  size_t pos() const { return static_cast<size_t>(p_ - start_); }
  static std::string hex(uint8_t b) {
    const char* d = "0123456789abcdef";
    return {d[b >> 4], d[b & 15]};
  }
  const char* bytes(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_))
      throw std::runtime_error("the pickle ends early (truncated?)");
    const char* at = p_;
    p_ += n;
    return at;
  }
  uint8_t u8() { return static_cast<uint8_t>(*bytes(1)); }
  uint64_t le(int n) {
    const char* b = bytes(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(b[i]);
    return v;
  }
  std::string line() {
    const char* b = p_;
    while (p_ < end_ && *p_ != '\n') ++p_;
    if (p_ == end_) throw std::runtime_error("the pickle ends early (truncated?)");
    return std::string(b, p_++);
  }
  void push_int(int64_t v) {
    auto x = make(Kind::kInt);
    x->int_value = v;
    stack_.push_back(x);
  }
  void push_long(uint64_t n) {
    if (n > 8) throw std::runtime_error("an integer of " + std::to_string(n) + " bytes");
    const char* b = bytes(n);
    uint64_t v = 0;
    for (uint64_t i = n; i-- > 0;) v = v << 8 | static_cast<uint8_t>(b[i]);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80))
      v -= uint64_t{1} << (8 * n);  // sign
    push_int(static_cast<int64_t>(v));
  }
  void push_string(uint64_t n) {
    auto v = make(Kind::kString);
    const char* b = bytes(n);
    v->text.assign(b, n);
    stack_.push_back(v);
  }
  PickleValuePtr pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      throw std::runtime_error("the pickle pops an empty stack at byte " + std::to_string(pos()) +
                               " (corrupt?)");
    }
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  const PickleValuePtr& top() {
    if (stack_.empty()) throw std::runtime_error("the pickle reads an empty stack (corrupt?)");
    return stack_.back();
  }
  PickleValuePtr memo(uint64_t k) {
    auto it = memo_.find(k);
    if (it == memo_.end())
      throw std::runtime_error("the pickle reads memo " + std::to_string(k) + ", never written");
    return it->second;
  }
  std::vector<PickleValuePtr> since_mark() {
    if (marks_.empty())
      throw std::runtime_error("the pickle closes a mark it never opened (corrupt?)");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PickleValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(m),
                                      stack_.end());
    stack_.resize(m);
    return items;
  }
  static void set_item(const PickleValuePtr& dict, const PickleValuePtr& key,
                       const PickleValuePtr& value) {
    if (dict->kind != Kind::kDict)
      throw std::runtime_error("the pickle sets an item of something not a dict");
    dict->entries.emplace_back(key, value);
  }
  // ('storage', storage class, key, location, numel)
  PickleValuePtr persistent(const PickleValuePtr& id) {
    if (id->kind != Kind::kTuple || id->items.size() < 5 || id->items[0]->text != "storage" ||
        id->items[1]->kind != Kind::kGlobal || id->items[2]->kind != Kind::kString ||
        id->items[4]->kind != Kind::kInt) {
      throw std::runtime_error("a persistent id that is not a torch.save storage");
    }
    auto v = make(Kind::kStorage);
    v->tensor.dtype = storage_dtype(id->items[1]->text);
    const auto [offset, record_bytes] = storage_(id->items[2]->text);
    const uint64_t bytes_needed =
        static_cast<uint64_t>(id->items[4]->int_value) * c10::elementSize(v->tensor.dtype);
    if (bytes_needed > record_bytes) {
      throw std::runtime_error("storage '" + id->items[2]->text + "' needs " +
                               std::to_string(bytes_needed) + " bytes but its record has " +
                               std::to_string(record_bytes) + " (truncated?)");
    }
    v->tensor.begin = offset;
    v->tensor.end = offset + bytes_needed;
    return v;
  }
  static PickleValuePtr reduce(const PickleValuePtr& callable, const PickleValuePtr& args) {
    const std::string& name = callable->text;
    if (callable->kind == Kind::kGlobal) {
      if (name == "collections.OrderedDict") return make(Kind::kDict);
      if (name == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args);
      // nn.Parameter: its data is the tensor.
      if ((name == "torch._utils._rebuild_parameter" ||
           name == "torch._utils._rebuild_parameter_with_state") &&
          args->kind == Kind::kTuple && !args->items.empty() &&
          args->items[0]->kind == Kind::kTensor) {
        return args->items[0];
      }
    }
    auto v = make(Kind::kObject);
    v->text = name;
    return v;
  }
};

}  // namespace

PickleValuePtr read_state_dict_pickle(const char* data, size_t size,
                                      const StorageLocator& storage) {
  return Reader(data, size, storage).run();
}

}  // namespace spdit::checkpoints::detail
