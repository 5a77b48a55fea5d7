#include "spdit/runtime/comm.h"

#include <atomic>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "group_impl.h"

namespace spdit {
namespace {

int64_t nbytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  if (dim < -ndim || dim >= ndim) {
    std::ostringstream os;
    os << "spdit: " << op << ": dim " << dim << " is out of range for a " << ndim << "-d tensor";
    throw std::invalid_argument(os.str());
  }
  return dim < 0 ? dim + ndim : dim;
}

// Gloo moves bytes but knows only some dtypes (no bfloat16, no bool in 1.13):
// such tensors travel reinterpreted as a same-width type it knows, bit-exact.
at::Tensor to_wire(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kBFloat16:
      return t.contiguous().view(at::kHalf);  // copied bytewise, never computed on
    case at::kBool:
      return t.contiguous().view(at::kByte);
    default:
      return t;
  }
}

at::Tensor from_wire(const at::Tensor& t, at::ScalarType original) {
  return t.scalar_type() == original ? t : t.view(original);
}

// (P, ...) -> the P parts concatenated along `dim` of one part, in order: a
// view where the memory allows it (dim is the first non-unit dim), else a copy.
at::Tensor join_leading(const at::Tensor& parts, int64_t dim) {
  return parts.movedim(0, dim).flatten(dim, dim + 1);
}

// Ring peers use distinct tags per tensor so several in-flight steps never mix.
constexpr int kRingTagBase = 1000;

}  // namespace

at::Tensor all_to_all(const Group& group, const at::Tensor& x, int64_t scatter_dim,
                      int64_t gather_dim) {
  auto& g = group.impl();
  const int64_t p = group.size();
  scatter_dim = wrap_dim(scatter_dim, x.dim(), "all_to_all");
  gather_dim = wrap_dim(gather_dim, x.dim(), "all_to_all");
  if (x.size(scatter_dim) % p != 0) {
    std::ostringstream os;
    os << "spdit: all_to_all on group '" << g.name << "': size " << x.size(scatter_dim)
       << " of scatter dim " << scatter_dim << " is not divisible by the group size " << p;
    throw std::invalid_argument(os.str());
  }
  if (p == 1) return x;
  // Chunk j goes to rank j: the chunks become a new leading dim so the
  // backend's equal-split all-to-all moves exactly one chunk per peer. Where
  // the chunks already lie one after another (scatter along the first
  // non-unit dim) this is a view, not a copy.
  auto send = to_wire(
      x.unflatten(scatter_dim, {p, x.size(scatter_dim) / p}).movedim(scatter_dim, 0).contiguous());
  auto recv = at::empty_like(send);
  std::vector<int64_t> equal_splits;
  wait_work(g, g.pg->alltoall_base(recv, send, equal_splits, equal_splits), "all_to_all");
  const int64_t chunk = nbytes(send) / p;
  g.counters->record("all_to_all", chunk * (p - 1), chunk * (p - 1));
  return join_leading(from_wire(recv, x.scalar_type()), gather_dim);
}

at::Tensor all_gather(const Group& group, const at::Tensor& x, int64_t dim) {
  auto& g = group.impl();
  const int64_t p = group.size();
  dim = wrap_dim(dim, x.dim(), "all_gather");
  if (p == 1) return x;
  auto input = to_wire(x.contiguous());
  // Every rank's part lands in one buffer, so the result can be a view of it.
  auto shape = input.sizes().vec();
  shape.insert(shape.begin(), p);
  auto all = at::empty(shape, input.options());
  std::vector<std::vector<at::Tensor>> out_lists{all.unbind(0)};
  std::vector<at::Tensor> in_list{input};
  wait_work(g, g.pg->allgather(out_lists, in_list), "all_gather");
  g.counters->record("all_gather", nbytes(input) * (p - 1), nbytes(input) * (p - 1));
  return join_leading(from_wire(all, x.scalar_type()), dim);
}

std::vector<int64_t> all_gather_ints(const Group& group, const std::vector<int64_t>& values) {
  auto& g = group.impl();
  const int64_t p = group.size();
  auto t = at::tensor(values, at::kLong);
  if (p == 1) return values;
  std::vector<at::Tensor> outs;
  for (int64_t i = 0; i < p; ++i) outs.push_back(at::empty_like(t));
  std::vector<std::vector<at::Tensor>> out_lists{outs};
  std::vector<at::Tensor> in_list{t};
  wait_work(g, g.pg->allgather(out_lists, in_list), "metadata all_gather");
  g.counters->record("metadata", nbytes(t) * (p - 1), nbytes(t) * (p - 1));
  auto all = at::cat(out_lists[0]);
  return std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
}

at::Tensor all_gather_uneven(const Group& group, const at::Tensor& x, int64_t dim) {
  const int64_t p = group.size();
  dim = wrap_dim(dim, x.dim(), "all_gather_uneven");
  if (p == 1) return x;
  auto sizes = all_gather_ints(group, {x.size(dim)});
  int64_t max_size = 0;
  for (auto s : sizes) max_size = std::max(max_size, s);
  auto padded = x;
  if (x.size(dim) < max_size) {
    auto pad_shape = x.sizes().vec();
    pad_shape[dim] = max_size - x.size(dim);
    padded = at::cat({x, at::zeros(pad_shape, x.options())}, dim);
  }
  auto gathered = all_gather(group, padded, dim);
  std::vector<at::Tensor> pieces;
  for (int64_t r = 0; r < p; ++r) pieces.push_back(gathered.narrow(dim, r * max_size, sizes[r]));
  return at::cat(pieces, dim);
}

void all_reduce_sum(const Group& group, at::Tensor& x) {
  auto& g = group.impl();
  const int64_t p = group.size();
  if (p == 1) return;
  if (!x.is_contiguous()) {
    throw std::invalid_argument("spdit: all_reduce_sum needs a contiguous tensor");
  }
  std::vector<at::Tensor> ts{x};
  wait_work(g, g.pg->allreduce(ts), "all_reduce");
  // Logical volume of a ring all-reduce: 2 (P-1)/P of the tensor each way.
  const int64_t moved = 2 * nbytes(x) * (p - 1) / p;
  g.counters->record("all_reduce", moved, moved);
}

void broadcast(const Group& group, at::Tensor& x, int root) {
  auto& g = group.impl();
  const int64_t p = group.size();
  if (root < 0 || root >= p) {
    throw std::invalid_argument("spdit: broadcast on group '" + g.name + "': root " +
                                std::to_string(root) + " is not a rank of its " +
                                std::to_string(p));
  }
  if (p == 1) return;
  if (!x.is_contiguous()) throw std::invalid_argument("spdit: broadcast needs a contiguous tensor");
  std::vector<at::Tensor> ts{to_wire(x)};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  wait_work(g, g.pg->broadcast(ts, options), "broadcast");
  if (g.rank == root)
    g.counters->record("broadcast", nbytes(x) * (p - 1), 0);
  else
    g.counters->record("broadcast", 0, nbytes(x));
}

std::string broadcast_bytes(const Group& group, const std::string& bytes, int root) {
  if (group.size() == 1) return bytes;
  const bool sender = group.rank() == root;
  auto length = at::full({1}, sender ? static_cast<int64_t>(bytes.size()) : 0, at::kLong);
  broadcast(group, length, root);
  const int64_t n = length.item<int64_t>();
  if (n == 0) return {};
  auto data = at::empty({n}, at::kByte);
  if (sender) std::memcpy(data.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  broadcast(group, data, root);
  return std::string(reinterpret_cast<const char*>(data.data_ptr<uint8_t>()), n);
}

namespace {
std::atomic<int64_t> g_simulated_link_us{0};
}

void RingExchange::set_simulated_link_time(std::chrono::microseconds t) {
  g_simulated_link_us = t.count();
}

struct AllGatherInFlight::Impl {
  const Group::Impl* group = nullptr;
  at::Tensor sent, all;  // kept alive until the exchange completes
  at::ScalarType dtype = at::kFloat;
  c10::intrusive_ptr<c10d::Work> work;
  bool done = false;
};

AllGatherInFlight::AllGatherInFlight(const Group& group, const at::Tensor& x)
    : impl_(std::make_unique<Impl>()) {
  auto& g = group.impl();
  impl_->group = &g;
  impl_->dtype = x.scalar_type();
  const int64_t p = group.size();
  impl_->sent = to_wire(x.contiguous());
  auto shape = impl_->sent.sizes().vec();
  shape.insert(shape.begin(), p);
  impl_->all = at::empty(shape, impl_->sent.options());
  if (p == 1) {
    impl_->all.select(0, 0).copy_(impl_->sent);
    impl_->done = true;
    return;
  }
  std::vector<std::vector<at::Tensor>> out_lists{impl_->all.unbind(0)};
  std::vector<at::Tensor> in_list{impl_->sent};
  impl_->work = g.pg->allgather(out_lists, in_list);
  g.counters->record("all_gather", nbytes(impl_->sent) * (p - 1), nbytes(impl_->sent) * (p - 1));
}

AllGatherInFlight::~AllGatherInFlight() {
  if (impl_ && !impl_->done) {
    try {
      wait();
    } catch (...) {
    }
  }
}
AllGatherInFlight::AllGatherInFlight(AllGatherInFlight&&) noexcept = default;
AllGatherInFlight& AllGatherInFlight::operator=(AllGatherInFlight&&) noexcept = default;

at::Tensor AllGatherInFlight::wait() {
  if (!impl_->done) {
    impl_->done = true;
    wait_work(*impl_->group, impl_->work, "all_gather");
  }
  return join_leading(from_wire(impl_->all, impl_->dtype), 0);
}

struct RingExchange::Impl {
  const Group::Impl* group = nullptr;
  std::vector<at::Tensor> sent;  // kept alive until the sends complete
  std::vector<at::Tensor> received;
  std::vector<at::ScalarType> dtypes;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  bool done = false;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

RingExchange::RingExchange(const Group& group, const std::vector<at::Tensor>& tensors)
    : impl_(std::make_unique<Impl>()) {
  auto& g = group.impl();
  impl_->group = &g;
  const int p = group.size();
  if (p == 1) {
    impl_->received = tensors;
    impl_->done = true;
    return;
  }
  const int next = (g.rank + 1) % p;
  const int prev = (g.rank - 1 + p) % p;
  int64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto s = to_wire(tensors[i].contiguous());
    auto r = at::empty_like(s);
    impl_->dtypes.push_back(tensors[i].scalar_type());
    impl_->sent.push_back(s);
    impl_->received.push_back(r);
    std::vector<at::Tensor> sv{s}, rv{r};
    const int tag = kRingTagBase + static_cast<int>(i);
    // Post the receive first so a rendezvous-style backend never stalls the send.
    impl_->works.push_back(g.pg->recv(rv, prev, tag));
    impl_->works.push_back(g.pg->send(sv, next, tag));
    bytes += nbytes(s);
  }
  g.counters->record("ring_exchange", bytes, bytes);
}

RingExchange::~RingExchange() {
  // An exchange abandoned by an exception must not leave sends writing into
  // freed buffers: finish it, but never throw from a destructor.
  if (impl_ && !impl_->done) {
    try {
      wait();
    } catch (...) {
    }
  }
}
RingExchange::RingExchange(RingExchange&&) noexcept = default;
RingExchange& RingExchange::operator=(RingExchange&&) noexcept = default;

std::vector<at::Tensor> RingExchange::wait() {
  if (!impl_->done) {
    impl_->done = true;
    if (const int64_t us = g_simulated_link_us.load()) {
      std::this_thread::sleep_until(impl_->started + std::chrono::microseconds(us));
    }
    for (auto& w : impl_->works) wait_work(*impl_->group, w, "ring_exchange");
    impl_->works.clear();
    impl_->sent.clear();
    for (size_t i = 0; i < impl_->dtypes.size(); ++i) {
      impl_->received[i] = from_wire(impl_->received[i], impl_->dtypes[i]);
    }
    impl_->dtypes.clear();
  }
  return impl_->received;
}

}  // namespace spdit
