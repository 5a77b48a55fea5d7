#pragma once
// Sharded weights (`--shard-weights`): each rank keeps 1/P of every block's
// parameters, so a model P times larger than one rank's memory runs. Just
// before a block runs, its whole parameters are all-gathered (the next
// block's gather already in flight while this one computes) and released
// after it, so a rank holds its shards, the weights outside the blocks, and
// at most two blocks whole.
//
// The blocks are the modules of the model's top-level ModuleLists
// (Flux's transformer_blocks and single_transformer_blocks, Wan's blocks,
// Qwen-Image's transformer_blocks), in the order the forward runs them; each
// model's block loop marks a block's run with a BlockWeightsGuard.
//
//   ShardedWeights shards(model, group);   // shards now; every rank of `group`
//   model.call(...);                       // gathers each block as it runs
//   shards.unshard();                      // whole weights again (collective)
//
// Loading a checkpoint sharded: the blocks' parameters are left as skeleton
// pages (checkpoints::load_checkpoint's `leave`), and the constructor reads
// each rank's slice straight from the file's tensors, converting only that
// slice, so no rank ever holds a block's converted weights whole.
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "spdit/runtime/world.h"

namespace spdit {

class ShardedWeights {
 public:
  /// Shards the blocks of `model` over `group` (no communication: every rank
  /// holds the whole weights when this runs, and keeps its slice). Every
  /// rank of the group must run the same forwards. Throws when the model
  /// has no blocks. Keep `model` alive as long as this object.
  ShardedWeights(torch::nn::Module& model, const Group& group);
  /// As above, but the block parameters named in `stored` (by their names in
  /// `model`, as block_parameter_names() lists them) are read from there
  /// instead: a tensor of the parameter's shape in any dtype (e.g. a view of
  /// a checkpoint's mapped file), of which this rank reads and converts to
  /// the parameter's dtype only the slice it keeps. The parameter itself is
  /// never read (a skeleton's unbacked pages stay untouched). Bit-identical
  /// to loading whole and then sharding. `done_with(tensor)`, when given, is
  /// called for each stored tensor once its slice is read (a checkpoint's
  /// release_pages: the file pages read stay resident otherwise, and add to
  /// the rank's peak).
  ShardedWeights(torch::nn::Module& model, const Group& group,
                 const std::map<std::string, at::Tensor>& stored,
                 const std::function<void(const at::Tensor&)>& done_with = {});
  /// Unregisters the blocks, without communication: blocks still sharded
  /// are left without weights (a forward then fails on their shapes), so
  /// call unshard() first to go on using the model.
  ~ShardedWeights();
  ShardedWeights(const ShardedWeights&) = delete;
  ShardedWeights& operator=(const ShardedWeights&) = delete;

  /// Gathers every block's whole weights and keeps them (collective); later
  /// forwards need no communication. For a one-rank reference run.
  void unshard();

  /// The blocks' parameter bytes (unpadded), and what this rank keeps of them.
  int64_t block_bytes() const;
  int64_t kept_bytes() const;
  /// Bytes each rank receives per forward, as the counters count them
  /// ("all_gather": (P - 1) shards of every block).
  int64_t received_bytes_per_forward() const;
  size_t blocks() const;

  /// The names in `model` of the parameters a ShardedWeights shards (those
  /// of its blocks): what a sharded load leaves for the constructor to read.
  static std::vector<std::string> block_parameter_names(torch::nn::Module& model);

  /// Bytes one rank keeps of the blocks of `model` sharded over `ranks`, in
  /// the dtypes `dtype_of(name)` gives (a skeleton's own dtypes may not be
  /// the run's): what loading sharded holds per rank, beside the rest.
  static int64_t predict_kept_bytes(
      torch::nn::Module& model, int ranks,
      const std::function<at::ScalarType(const std::string&)>& dtype_of);

  /// What received_bytes_per_forward() will be for `model` sharded over
  /// `ranks` ranks, from its parameters' shapes alone (a skeleton does).
  static int64_t predict_received_bytes_per_forward(torch::nn::Module& model, int ranks);

  /// For BlockWeightsGuard: block `index` is about to run / has run.
  void before_block(size_t index);
  void after_block(size_t index);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Every rank of `world`, as a group of its own (collective: every rank calls
/// it), so that gathers in flight never queue behind the SP collectives.
Group new_shard_group(World& world);

/// Marks one run of a block in a model's forward: when the block belongs to
/// a ShardedWeights, its whole parameters are in place for the guard's life
/// (and released after); otherwise it does nothing.
class BlockWeightsGuard {
 public:
  explicit BlockWeightsGuard(const torch::nn::Module& block);
  ~BlockWeightsGuard();
  BlockWeightsGuard(const BlockWeightsGuard&) = delete;
  BlockWeightsGuard& operator=(const BlockWeightsGuard&) = delete;

 private:
  ShardedWeights* owner_ = nullptr;
  size_t index_ = 0;
};

}  // namespace spdit
