#pragma once
// Communication primitives on a Group, device-agnostic. Each one records the
// bytes it moves in the group's CommCounters under the kind named here.
#include <ATen/ATen.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "spdit/runtime/world.h"

namespace spdit {

/// Splits `x` into group.size() equal chunks along `scatter_dim`, sends chunk
/// j to group rank j, and concatenates what arrives along `gather_dim` in rank
/// order. The Ulysses exchange: (B, S/P, H, D) with scatter 2, gather 1 gives
/// (B, S, H/P, D); scatter 1, gather 2 reverses it. Kind "all_to_all".
/// The result may be a non-contiguous view of the receive buffer (never of x);
/// with B = 1 the Ulysses exchange needs no copy beyond the send buffer.
at::Tensor all_to_all(const Group& group, const at::Tensor& x, int64_t scatter_dim,
                      int64_t gather_dim);

/// Concatenates every rank's `x` along `dim`, in rank order. All ranks must
/// pass the same shape. Kind "all_gather". The result may be a view of the
/// receive buffer.
at::Tensor all_gather(const Group& group, const at::Tensor& x, int64_t dim);

/// Like all_gather, but the ranks' sizes along `dim` may differ (other dims
/// must agree). Sizes are exchanged first (kind "metadata"), then the shards
/// are padded to the largest, gathered, and trimmed.
at::Tensor all_gather_uneven(const Group& group, const at::Tensor& x, int64_t dim);

/// An all_gather that runs while the caller computes: started at
/// construction, joined by wait(), which returns every rank's `x` (all the
/// same shape) concatenated along dim 0 in rank order. Kind "all_gather",
/// counted when it starts. The destructor waits for an exchange never joined.
///
///   AllGatherInFlight next(group, shard);   // starts
///   compute();                              // overlaps with the transfer
///   at::Tensor full = next.wait();
class AllGatherInFlight {
 public:
  struct Impl;
  AllGatherInFlight(const Group& group, const at::Tensor& x);
  ~AllGatherInFlight();
  AllGatherInFlight(AllGatherInFlight&&) noexcept;
  AllGatherInFlight& operator=(AllGatherInFlight&&) noexcept;
  at::Tensor wait();

 private:
  std::unique_ptr<Impl> impl_;
};

/// Sums `x` over the group in place. Kind "all_reduce".
void all_reduce_sum(const Group& group, at::Tensor& x);

/// Gathers one int64 per rank (cheap agreement checks). Kind "metadata".
std::vector<int64_t> all_gather_ints(const Group& group, const std::vector<int64_t>& values);

/// Copies the group rank `root`'s `x` into every rank's `x`, in place; all
/// ranks pass the same shape and dtype. Kind "broadcast" (the bytes the root
/// sends to each peer).
void broadcast(const Group& group, at::Tensor& x, int root = 0);

/// The group rank `root`'s `bytes`, on every rank (what the others pass is
/// ignored): the length, then the bytes (both kind "broadcast"). For small
/// control messages, such as a request that every rank of a server must run.
std::string broadcast_bytes(const Group& group, const std::string& bytes, int root = 0);

/// An in-flight ring step: the tensors sent to the next rank and the buffers
/// receiving from the previous one. wait() returns the received tensors.
///
///   RingExchange step(ring, {k, v});   // starts send/recv
///   compute(k, v);                     // overlaps with the transfer
///   auto next = step.wait();           // k, v of the previous rank
class RingExchange {
 public:
  struct Impl;
  RingExchange(const Group& group, const std::vector<at::Tensor>& tensors);
  ~RingExchange();
  RingExchange(RingExchange&&) noexcept;
  RingExchange& operator=(RingExchange&&) noexcept;
  std::vector<at::Tensor> wait();

  /// Benchmarks only: every exchange takes at least this long, as over a
  /// slower link (the wait sleeps, using no CPU). 0, the default, disables it.
  static void set_simulated_link_time(std::chrono::microseconds t);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace spdit
