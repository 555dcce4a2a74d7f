#include "parallel/communicator.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>

#include <fmt/ranges.h>
#include <torch/torch.h>

#include "core/base/error.h"
#include "core/base/strings.h"
#include "parallel/comm_checks.h"

namespace cr {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

std::pair<int64_t, int64_t> shard_range(int64_t numel, int rank, int size) {
  CR_CHECK(size > 0 && rank >= 0 && rank < size && numel >= 0, "shard_range({}, {}, {})", numel, rank, size);
  const int64_t base = numel / size;
  const int64_t longer = numel % size;  // the first `longer` ranks hold base + 1
  const int64_t begin = rank * base + std::min<int64_t>(rank, longer);
  return {begin, begin + base + (rank < longer ? 1 : 0)};
}

CommWork::~CommWork() = default;
Communicator::~Communicator() = default;

namespace {

std::atomic<int64_t> g_bytes_sent{0};

}  // namespace

int64_t bytes_sent_by_process() { return g_bytes_sent.load(std::memory_order_relaxed); }

namespace detail {

void count_sent(const char* operation, int group_size, const at::Tensor& tensor) {
  const double bytes = static_cast<double>(tensor.numel()) * static_cast<double>(tensor.element_size());
  const double share = static_cast<double>(group_size - 1) / static_cast<double>(group_size);
  double sent = bytes;  // send
  if (std::strcmp(operation, "all_reduce") == 0) {
    sent = 2.0 * share * bytes;
  } else if (std::strcmp(operation, "send") != 0) {
    sent = share * bytes;
  }
  g_bytes_sent.fetch_add(static_cast<int64_t>(sent + 0.5), std::memory_order_relaxed);
}

const char* comm_dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kByte: return "uint8";
    default: return nullptr;
  }
}

bool is_floating_comm_dtype(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 || dtype == at::kHalf;
}

std::string describe(const char* operation, const at::Tensor& tensor, const std::string& detail) {
  const char* dtype = comm_dtype_name(tensor.scalar_type());
  std::string text = fmt::format("{} of {} x {}", operation, with_thousands(tensor.numel()),
                                 dtype ? dtype : c10::toString(tensor.scalar_type()));
  if (!detail.empty()) text += " (" + detail + ")";
  return text;
}

std::string group_name(const std::string& base, const std::vector<int>& world_ranks) {
  std::string list;
  for (size_t i = 0; i < world_ranks.size();) {
    size_t run = i;
    while (run + 1 < world_ranks.size() && world_ranks[run + 1] == world_ranks[run] + 1) ++run;
    if (!list.empty()) list += ',';
    // Two consecutive ranks read better as "0,1" than as "0-1".
    list += run >= i + 2 ? fmt::format("{}-{}", world_ranks[i], world_ranks[run])
                         : fmt::format("{}", world_ranks[i]);
    if (run == i + 1) list += fmt::format(",{}", world_ranks[run]);
    i = run + 1;
  }
  return fmt::format("{}[{}]", base, list);
}

std::string where(const char* operation, const Communicator& comm) {
  return fmt::format("{} on group '{}' (rank {} of {})", operation, comm.name(), comm.rank(), comm.size());
}

void check_tensor(const char* operation, const Communicator& comm, const at::Tensor& tensor, bool want_cuda) {
  if (!tensor.defined()) fail("{}: the tensor is undefined", where(operation, comm));
  if (!comm_dtype_name(tensor.scalar_type())) {
    fail("{}: dtype {} is not supported (float32, float64, bfloat16, float16, int64, int32, uint8)",
         where(operation, comm), c10::toString(tensor.scalar_type()));
  }
  if (tensor.is_cuda() != want_cuda) {
    fail("{}: the tensor is on {}, this backend needs {} tensors", where(operation, comm),
         tensor.device().str(), want_cuda ? "CUDA" : "CPU");
  }
  if (!tensor.is_contiguous()) {
    fail("{}: the tensor (shape {}) must be contiguous", where(operation, comm),
         fmt::join(tensor.sizes(), "x"));
  }
}

void check_reduce_op(const char* operation, const Communicator& comm, const at::Tensor& tensor, ReduceOp op) {
  if (op == ReduceOp::Avg && !is_floating_comm_dtype(tensor.scalar_type())) {
    fail("{}: avg needs a floating-point tensor, got {}", where(operation, comm),
         comm_dtype_name(tensor.scalar_type()));
  }
}

void check_same_dtype(const char* operation, const Communicator& comm, const at::Tensor& a,
                      const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type()) {
    fail("{}: input is {} but output is {}", where(operation, comm), comm_dtype_name(a.scalar_type()),
         comm_dtype_name(b.scalar_type()));
  }
}

void check_peer(const char* operation, const Communicator& comm, int peer, const char* role) {
  if (peer < 0 || peer >= comm.size()) {
    fail("{}: {} rank {} is outside the group", where(operation, comm), role, peer);
  }
}

int64_t all_to_all_part(const char* operation, const Communicator& comm, const at::Tensor& input,
                        const at::Tensor& output) {
  check_same_dtype(operation, comm, input, output);
  if (input.numel() != output.numel() || input.numel() % comm.size() != 0) {
    fail("{}: input ({} elements) and output ({}) must be equal and split into {} equal parts", where(operation, comm),
         input.numel(), output.numel(), comm.size());
  }
  if (overlaps(input, output)) fail("{}: input and output overlap", where(operation, comm));
  const int64_t part = input.numel() / comm.size();
  if (part > INT_MAX) {
    fail("{}: parts of {} elements exceed the {} a single call can move; split the buffer", where(operation, comm),
         with_thousands(part), with_thousands(INT_MAX));
  }
  return part;
}

ShardLayout shard_layout(const char* operation, const Communicator& comm, int64_t numel) {
  if (numel > INT_MAX) {
    fail("{}: {} elements exceed the {} a single call can move; split the buffer", where(operation, comm),
         with_thousands(numel), with_thousands(INT_MAX));
  }
  ShardLayout layout;
  for (int r = 0; r < comm.size(); ++r) {
    auto [begin, end] = shard_range(numel, r, comm.size());
    layout.offsets.push_back(static_cast<int>(begin));
    layout.counts.push_back(static_cast<int>(end - begin));
  }
  return layout;
}

bool overlaps(const at::Tensor& a, const at::Tensor& b) {
  auto* a_begin = static_cast<const char*>(a.data_ptr());
  auto* b_begin = static_cast<const char*>(b.data_ptr());
  return a_begin < b_begin + b.nbytes() && b_begin < a_begin + a.nbytes();
}

}  // namespace detail
std::string broadcast_string(Communicator& group, const std::string& text) {
  auto length = torch::tensor({static_cast<int64_t>(text.size())}, torch::kLong);
  group.broadcast(length, 0);
  auto bytes = torch::zeros({length.item<int64_t>()}, torch::kUInt8);
  if (group.rank() == 0) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  group.broadcast(bytes, 0);
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
}

}  // namespace cr
