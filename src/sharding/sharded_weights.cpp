#include "spdit/sharding/sharded_weights.h"

#include <torch/nn/modules/container/modulelist.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "spdit/runtime/comm.h"

namespace spdit {
namespace {

// One dtype's parameters of a block as one flat buffer, padded to a multiple
// of the group size; this rank keeps its slice of it.
struct FlatBuffer {
  std::vector<at::Tensor> params;  // the block's parameters; their data is swapped
  std::vector<std::vector<int64_t>> shapes;
  std::vector<int64_t> offsets, numels;
  int64_t total = 0;
  at::Tensor shard;
};

struct Block {
  const torch::nn::Module* module = nullptr;
  std::vector<FlatBuffer> buffers;
  std::vector<AllGatherInFlight> in_flight;  // one per buffer while a gather runs
  bool whole = true;
};

std::mutex registry_mutex;
std::map<const torch::nn::Module*, std::pair<ShardedWeights*, size_t>>& registry() {
  static std::map<const torch::nn::Module*, std::pair<ShardedWeights*, size_t>> r;
  return r;
}

int64_t bytes_of(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// The blocks: every module of the model's top-level ModuleLists, in
// registration order (the order the models' forwards run them), with the
// prefix of their parameters' names in the model ("transformer_blocks.3.").
struct NamedBlock {
  std::string prefix;
  std::shared_ptr<torch::nn::Module> module;
};

std::vector<NamedBlock> blocks_of(torch::nn::Module& model) {
  std::vector<NamedBlock> out;
  for (const auto& child : model.named_children()) {
    if (auto list = std::dynamic_pointer_cast<torch::nn::ModuleListImpl>(child.value())) {
      for (size_t i = 0; i < list->size(); ++i) {
        out.push_back({child.key() + "." + std::to_string(i) + ".", list->ptr(i)});
      }
    }
  }
  return out;
}

// This rank's slice of a flat buffer (`part` elements from r * part) filled
// from the parameters' sources: only the elements that fall in the slice are
// read and converted, so a source of another dtype is never converted whole.
at::Tensor slice_of(const FlatBuffer& buf, const std::vector<at::Tensor>& sources, int64_t part,
                    int64_t r) {
  at::Tensor shard = at::zeros({part}, buf.params.front().options());
  const int64_t begin = r * part, end = begin + part;
  for (size_t j = 0; j < sources.size(); ++j) {
    const int64_t lo = std::max(begin, buf.offsets[j]);
    const int64_t hi = std::min(end, buf.offsets[j] + buf.numels[j]);
    if (lo >= hi) continue;
    // A view for the contiguous tensors of every published layout; a strided
    // source is copied whole here (one parameter, transiently).
    const at::Tensor flat = sources[j].reshape(-1);
    shard.narrow(0, lo - begin, hi - lo).copy_(flat.narrow(0, lo - buf.offsets[j], hi - lo));
  }
  return shard;
}

}  // namespace

struct ShardedWeights::Impl {
  Group group;
  std::vector<Block> blocks;

  // Starts gathering block i's whole weights unless they are in place or coming.
  void start(size_t i) {
    Block& b = blocks[i];
    if (b.whole || !b.in_flight.empty()) return;
    for (auto& buf : b.buffers) b.in_flight.emplace_back(group, buf.shard);
  }

  void install(size_t i) {
    Block& b = blocks[i];
    if (b.whole) return;
    start(i);
    for (size_t k = 0; k < b.buffers.size(); ++k) {
      FlatBuffer& buf = b.buffers[k];
      const at::Tensor full = b.in_flight[k].wait();
      for (size_t j = 0; j < buf.params.size(); ++j) {
        buf.params[j].set_data(full.narrow(0, buf.offsets[j], buf.numels[j]).view(buf.shapes[j]));
      }
    }
    b.in_flight.clear();
    b.whole = true;
  }

  void release(size_t i) {
    Block& b = blocks[i];
    for (auto& buf : b.buffers) {
      for (auto& p : buf.params) p.set_data(at::empty({0}, p.options()));
    }
    b.whole = false;
  }
};

ShardedWeights::ShardedWeights(torch::nn::Module& model, const Group& group)
    : ShardedWeights(model, group, {}) {}

ShardedWeights::ShardedWeights(torch::nn::Module& model, const Group& group,
                               const std::map<std::string, at::Tensor>& stored,
                               const std::function<void(const at::Tensor&)>& done_with)
    : impl_(std::make_unique<Impl>()) {
  impl_->group = group;
  const auto named = blocks_of(model);
  if (named.empty()) {
    throw std::invalid_argument(
        "spdit: --shard-weights shards a model's blocks (the modules of its top-level "
        "ModuleLists), and '" +
        model.name() + "' has none");
  }
  at::NoGradGuard no_grad;
  const int64_t p = group.size(), r = group.rank();
  impl_->blocks.resize(named.size());
  for (size_t i = 0; i < named.size(); ++i) {
    Block& b = impl_->blocks[i];
    b.module = named[i].module.get();
    std::map<at::ScalarType, size_t> by_dtype;
    std::vector<std::vector<at::Tensor>> sources;  // per buffer, per parameter
    for (const auto& param : named[i].module->named_parameters(true)) {
      auto [it, fresh] = by_dtype.emplace(param.value().scalar_type(), b.buffers.size());
      if (fresh) b.buffers.emplace_back(), sources.emplace_back();
      FlatBuffer& buf = b.buffers[it->second];
      auto from = stored.find(named[i].prefix + param.key());
      if (from != stored.end() && from->second.sizes() != param.value().sizes()) {
        throw std::invalid_argument(
            "spdit: sharding '" + from->first + "': the stored tensor has shape " +
            std::string(c10::str(from->second.sizes())) + " but the parameter " +
            std::string(c10::str(param.value().sizes())));
      }
      sources[it->second].push_back(from != stored.end() ? from->second : param.value().detach());
      buf.params.push_back(param.value());
      buf.shapes.push_back(param.value().sizes().vec());
      buf.offsets.push_back(buf.total);
      buf.numels.push_back(param.value().numel());
      buf.total += param.value().numel();
    }
    for (size_t k = 0; k < b.buffers.size(); ++k) {
      FlatBuffer& buf = b.buffers[k];
      buf.shard = slice_of(buf, sources[k], (buf.total + p - 1) / p, r);
    }
    if (done_with) {
      for (const auto& param : named[i].module->named_parameters(true)) {
        auto from = stored.find(named[i].prefix + param.key());
        if (from != stored.end()) done_with(from->second);
      }
    }
    impl_->release(i);  // the whole weights (file pages or converted copies) go now
  }
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (size_t i = 0; i < impl_->blocks.size(); ++i) registry()[impl_->blocks[i].module] = {this, i};
}

ShardedWeights::~ShardedWeights() {
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (const auto& b : impl_->blocks) registry().erase(b.module);
}

void ShardedWeights::unshard() {
  for (size_t i = 0; i < impl_->blocks.size(); ++i) impl_->install(i);
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (const auto& b : impl_->blocks) registry().erase(b.module);
}

int64_t ShardedWeights::block_bytes() const {
  int64_t n = 0;
  for (const auto& b : impl_->blocks) {
    for (const auto& buf : b.buffers)
      n += buf.total * static_cast<int64_t>(buf.shard.element_size());
  }
  return n;
}

int64_t ShardedWeights::kept_bytes() const {
  int64_t n = 0;
  for (const auto& b : impl_->blocks) {
    for (const auto& buf : b.buffers) n += bytes_of(buf.shard);
  }
  return n;
}

int64_t ShardedWeights::received_bytes_per_forward() const {
  return kept_bytes() * (impl_->group.size() - 1);
}

std::vector<std::string> ShardedWeights::block_parameter_names(torch::nn::Module& model) {
  std::vector<std::string> names;
  for (const auto& block : blocks_of(model)) {
    for (const auto& param : block.module->named_parameters(true))
      names.push_back(block.prefix + param.key());
  }
  return names;
}

int64_t ShardedWeights::predict_kept_bytes(
    torch::nn::Module& model, int ranks,
    const std::function<at::ScalarType(const std::string&)>& dtype_of) {
  int64_t bytes = 0;
  for (const auto& block : blocks_of(model)) {
    std::map<at::ScalarType, int64_t> total;  // elements per dtype, as the flat buffers group them
    for (const auto& param : block.module->named_parameters(true))
      total[dtype_of(block.prefix + param.key())] += param.value().numel();
    for (const auto& [dtype, n] : total)
      bytes += (n + ranks - 1) / ranks * static_cast<int64_t>(c10::elementSize(dtype));
  }
  return bytes;
}

int64_t ShardedWeights::predict_received_bytes_per_forward(torch::nn::Module& model, int ranks) {
  int64_t bytes = 0;
  for (const auto& block : blocks_of(model)) {
    std::map<at::ScalarType, int64_t> total;  // elements per dtype, as the flat buffers group them
    for (const auto& param : block.module->parameters())
      total[param.scalar_type()] += param.numel();
    for (const auto& [dtype, n] : total) {
      bytes +=
          (n + ranks - 1) / ranks * static_cast<int64_t>(c10::elementSize(dtype)) * (ranks - 1);
    }
  }
  return bytes;
}

size_t ShardedWeights::blocks() const { return impl_->blocks.size(); }

void ShardedWeights::before_block(size_t index) {
  impl_->install(index);
  // The next block's gather runs while this one computes. Not past the last
  // block: a gather for a forward that may never come would hold a block
  // whole between forwards and move bytes nobody uses; the first block's
  // gather of each forward is the one not hidden.
  if (index + 1 < impl_->blocks.size()) impl_->start(index + 1);
}

void ShardedWeights::after_block(size_t index) { impl_->release(index); }

Group new_shard_group(World& world) {
  std::vector<int> all(world.size());
  for (int i = 0; i < world.size(); ++i) all[i] = i;
  return world.new_group(all, "shard-weights-" + std::to_string(world.next_generation()));
}

BlockWeightsGuard::BlockWeightsGuard(const torch::nn::Module& block) {
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto it = registry().find(&block);
    if (it == registry().end()) return;
    std::tie(owner_, index_) = it->second;
  }
  owner_->before_block(index_);
}

BlockWeightsGuard::~BlockWeightsGuard() {
  if (owner_) owner_->after_block(index_);
}

}  // namespace spdit
