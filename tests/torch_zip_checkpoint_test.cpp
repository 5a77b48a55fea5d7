// PyTorch zip checkpoints (.pth) read through Checkpoint::open, without
// Python. The files were written by torch.save of Debian's PyTorch 1.13
// (scripts/reference/wan_vae_reference.py, write_torch_zip_fixtures): a
// nested dict with fp32, bf16 and int64 tensors, a transposed (strided) view
// and a view with a storage offset; a flat one in fp16; the same in the
// legacy (pre-1.6) format. Wrong files must be refused naming the file and why.
#include "spdit/checkpoints/torch_zip_checkpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

#include "checkpoints/state_dict_pickle.h"
#include "spdit/checkpoints/checkpoint.h"
#include "support/temp_dir.h"

using namespace spdit;

namespace {

std::string fixture(const std::string& name) { return std::string(SPDIT_FIXTURES) + "/" + name; }

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string open_error(const std::string& path) {
  try {
    checkpoints::Checkpoint::open(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(TorchZipCheckpoint, NestedStateDictIsFlattenedUnderItsWrapper) {
  const auto ckpt = checkpoints::Checkpoint::open(fixture("torch_zip/nested.pth"));
  std::vector<std::string> names;
  for (const auto& [name, t] : ckpt.tensors()) names.push_back(name);
  // "state_dict" is dropped (the only key with tensors); "epoch" is not a
  // tensor.
  EXPECT_EQ(names, (std::vector<std::string>{"a.weight", "b.bias", "c", "t", "tail"}));
  const at::Tensor a = at::arange(12, at::kFloat).reshape({3, 4}) * 0.5 - 1;
  EXPECT_TRUE(at::equal(ckpt.tensor("a.weight"), a));
  EXPECT_EQ(ckpt.tensors().at("a.weight").dtype_name, "F32");
  const at::Tensor b = ckpt.tensor("b.bias");
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(b.to(at::kFloat), at::tensor({1.5, -2.0, 0.25, 3.0, 7.0}, at::kFloat)));
  const at::Tensor c = ckpt.tensor("c");
  EXPECT_EQ(c.scalar_type(), at::kLong);
  EXPECT_EQ(c[0].item<int64_t>(), 7);
  EXPECT_EQ(c[1].item<int64_t>(), -9);
  // A transposed view keeps its strides; a view with a storage offset its
  // start.
  EXPECT_TRUE(at::equal(ckpt.tensor("t"), a.t()));
  EXPECT_FALSE(ckpt.tensor("t").is_contiguous());
  EXPECT_TRUE(at::equal(ckpt.tensor("tail"), a.reshape({-1}).narrow(0, 4, 8)));
}

TEST(TorchZipCheckpoint, TensorsAreViewsOfTheMappedFile) {
  const std::string path = fixture("torch_zip/nested.pth");
  const auto ckpt = checkpoints::Checkpoint::open(path);
  const std::string bytes = read_bytes(path);
  // The stored range holds exactly the tensor's bytes: no copy was made to read
  // it.
  const auto& s = ckpt.tensors().at("a.weight");
  const at::Tensor a = ckpt.tensor("a.weight");
  ASSERT_EQ(s.bytes(), 48);
  EXPECT_EQ(std::memcmp(bytes.data() + s.begin, a.data_ptr(), 48), 0);
  // Torch's records are 64-byte aligned in the file.
  EXPECT_EQ(s.begin % 64, 0u);
  // The strided view and the base share the same bytes.
  EXPECT_EQ(ckpt.tensor("t").data_ptr(), a.data_ptr());
}

TEST(TorchZipCheckpoint, FlatHalfPrecisionFile) {
  const auto ckpt = checkpoints::Checkpoint::open(fixture("torch_zip/flat.pth"));
  const at::Tensor x = ckpt.tensor("x");
  EXPECT_EQ(x.scalar_type(), at::kHalf);
  EXPECT_TRUE(
      at::equal(x.to(at::kFloat), at::tensor({1.0, 2.0, 3.0, 4.0}, at::kFloat).reshape({2, 2})));
}

TEST(TorchZipCheckpoint, LegacyFormatIsRefusedSayingHowToResave) {
  const std::string msg = open_error(fixture("torch_zip/legacy.pth"));
  EXPECT_NE(msg.find("legacy.pth"), std::string::npos) << msg;
  EXPECT_NE(msg.find("legacy format"), std::string::npos) << msg;
  EXPECT_NE(msg.find("torch.save(torch.load(old), new)"), std::string::npos) << msg;
}

TEST(TorchZipCheckpoint, TruncatedFileIsRefused) {
  test::TempDir dir;
  const std::string bytes = read_bytes(fixture("torch_zip/nested.pth"));
  const std::string path = dir.path + "/cut.pth";
  write_bytes(path, bytes.substr(0, bytes.size() / 2));
  const std::string msg = open_error(path);
  EXPECT_NE(msg.find("cut.pth"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a readable zip archive (truncated or corrupt?)"), std::string::npos)
      << msg;
}

TEST(TorchZipCheckpoint, NotAZipIsRefused) {
  test::TempDir dir;
  const std::string path = dir.path + "/notes.pth";
  write_bytes(path, "these are not weights, only some text\n");
  const std::string msg = open_error(path);
  EXPECT_NE(msg.find("notes.pth"), std::string::npos) << msg;
  EXPECT_NE(msg.find("is not a PyTorch zip checkpoint"), std::string::npos) << msg;
}

TEST(TorchZipCheckpoint, ZipWithoutPickleIsRefused) {
  // A zip (the legacy check aside, any zip starts "PK\3\4") that torch.save
  // did not write: an empty archive's end-of-central-directory record only.
  test::TempDir dir;
  const std::string path = dir.path + "/other.pth";
  std::string zip = "PK\x03\x04";
  zip.append(26, '\0');
  write_bytes(path, zip);
  const std::string msg = open_error(path);
  EXPECT_NE(msg.find("other.pth"), std::string::npos) << msg;
  EXPECT_NE(msg.find("PyTorch checkpoint"), std::string::npos) << msg;
}

TEST(TorchZipCheckpoint, MagicBytesAreRecognised) {
  EXPECT_TRUE(checkpoints::is_torch_zip("PK\x03\x04rest", 8));
  EXPECT_FALSE(checkpoints::is_torch_zip("PK", 2));
  const std::string legacy = read_bytes(fixture("torch_zip/legacy.pth"));
  EXPECT_TRUE(checkpoints::is_legacy_torch_save(legacy.data(), legacy.size()));
  EXPECT_FALSE(checkpoints::is_torch_zip(legacy.data(), legacy.size()));
}

TEST(TorchZipCheckpoint, DamagedPicklesFailWithAMessageNeverACrash) {
  // The zip's CRC catches damage to a file's records before the unpickler
  // sees it, so the unpickler is fed damaged pickles directly: every
  // truncation, and single bytes changed at random, must end in a
  // runtime_error (or a result), never a crash or a hang.
  caffe2::serialize::PyTorchStreamReader reader(fixture("torch_zip/nested.pth"));
  const auto [data, size] = reader.getRecord("data.pkl");
  const std::string pickle(static_cast<const char*>(data.get()), size);
  auto storage = [](const std::string&) { return std::pair<uint64_t, uint64_t>{0, 4096}; };
  auto parse = [&](const std::string& bytes) {
    try {
      checkpoints::detail::read_state_dict_pickle(bytes.data(), bytes.size(), storage);
      return true;
    } catch (const std::runtime_error&) {
      return false;
    }
  };
  ASSERT_TRUE(parse(pickle));
  for (size_t n = 0; n < pickle.size(); ++n) EXPECT_FALSE(parse(pickle.substr(0, n))) << n;
  std::mt19937 gen(7);
  for (int i = 0; i < 3000; ++i) {
    std::string bytes = pickle;
    bytes[gen() % bytes.size()] = static_cast<char>(gen() % 256);
    parse(bytes);  // must return or throw runtime_error
  }
}
