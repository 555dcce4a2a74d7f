#include "parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>

#include "core/base/error.h"
#include "parallel/collective_watchdog.h"
#include "parallel/comm_checks.h"
#include "parallel/mpi_internal.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 10, 0)
#error "the NCCL backend needs NCCL 2.10 or newer (ncclAvg, ncclBfloat16)"
#endif

namespace cr {
namespace {

using detail::check_peer;
using detail::check_reduce_op;
using detail::check_same_dtype;
using detail::describe;
using detail::GroupState;
using detail::TrackedWork;
using detail::where;

void check_cuda(cudaError_t rc, const std::string& context, const char* call) {
  if (rc != cudaSuccess) fail("{}: {} failed: {}", context, call, cudaGetErrorString(rc));
}

void check_nccl(ncclResult_t rc, const std::string& context, const char* call) {
  if (rc != ncclSuccess) fail("{}: {} failed: {}", context, call, ncclGetErrorString(rc));
}

ncclDataType_t nccl_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kBFloat16: return ncclBfloat16;
    case at::kHalf: return ncclFloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default: fail("no NCCL datatype for {}", c10::toString(dtype));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}

// Makes `device` current for the scope and restores the caller's device after.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    cudaGetDevice(&previous_);
    if (previous_ != device) cudaSetDevice(device);
  }
  ~DeviceScope() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

// The NCCL communicator and its stream; shared with the operations in flight so that they stay
// valid when the communicator object goes first.
struct NcclState {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t inputs_ready = nullptr;  // recorded on the legacy stream before each operation
  int device = 0;

  ~NcclState() {
    DeviceScope scope(device);
    if (stream) cudaStreamSynchronize(stream);
    if (comm) ncclCommDestroy(comm);
    if (inputs_ready) cudaEventDestroy(inputs_ready);
    if (stream) cudaStreamDestroy(stream);
  }
};

// One operation queued on the group's stream: complete when the event recorded after it is.
class NcclEvent final : public detail::PendingOp {
 public:
  NcclEvent(std::shared_ptr<NcclState> state, std::vector<at::Tensor> tensors)
      : state_(std::move(state)), tensors_(std::move(tensors)) {
    check_cuda(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "NCCL", "cudaEventCreate");
    check_cuda(cudaEventRecord(event_, state_->stream), "NCCL", "cudaEventRecord");
  }
  ~NcclEvent() override { cudaEventDestroy(event_); }

  bool test() override {
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(state_->comm, &async);
    if (async != ncclSuccess && async != ncclInProgress) {
      fail("NCCL reports {}: {}", ncclGetErrorString(async), ncclGetLastError(state_->comm));
    }
    const cudaError_t rc = cudaEventQuery(event_);
    if (rc == cudaErrorNotReady) return false;
    check_cuda(rc, "NCCL", "cudaEventQuery");
    return true;
  }

 private:
  std::shared_ptr<NcclState> state_;
  std::vector<at::Tensor> tensors_;  // kept alive: the caching allocator must not reuse them early
  cudaEvent_t event_ = nullptr;
};

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `mpi`, which the communicator keeps for its bootstrap and splits.
  NcclCommunicator(std::unique_ptr<Communicator> mpi, int device)
      : mpi_(std::move(mpi)), group_(detail::mpi_group_state(*mpi_)), state_(std::make_shared<NcclState>()) {
    const std::string context = where("nccl_group", *this);
    state_->device = device;
    DeviceScope scope(device);
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (rank() == 0) check_nccl(ncclGetUniqueId(&id), context, "ncclGetUniqueId");
    mpi_->broadcast(at::from_blob(&id, {static_cast<int64_t>(sizeof id)}, at::kByte), 0);
    check_cuda(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking), context,
               "cudaStreamCreate");
    check_cuda(cudaEventCreateWithFlags(&state_->inputs_ready, cudaEventDisableTiming), context,
               "cudaEventCreate");
    check_nccl(ncclCommInitRank(&state_->comm, size(), id, rank()), context, "ncclCommInitRank");
  }

  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  const std::vector<int>& world_ranks() const override { return mpi_->world_ranks(); }
  const std::string& name() const override { return mpi_->name(); }

  std::unique_ptr<CommWork> all_reduce_async(at::Tensor tensor, ReduceOp op) override {
    static const char* kOp = "all_reduce";
    detail::count_sent(kOp, size(), tensor);
    check(kOp, tensor);
    check_reduce_op(kOp, *this, tensor, op);
    const int64_t seq = group_->begin_collective();
    DeviceScope scope(state_->device);
    order_after_legacy_stream(kOp);
    check_call(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                             nccl_dtype(tensor.scalar_type()), nccl_op(op), state_->comm, state_->stream),
               kOp, "ncclAllReduce");
    return track(describe(kOp, tensor, reduce_op_name(op)), seq, {tensor});
  }

  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor input, at::Tensor output, ReduceOp op) override {
    static const char* kOp = "reduce_scatter";
    detail::count_sent(kOp, size(), input);
    check(kOp, input);
    check(kOp, output);
    check_same_dtype(kOp, *this, input, output);
    check_reduce_op(kOp, *this, input, op);
    const auto [begin, end] = shard_range(input.numel(), rank(), size());
    if (output.numel() != end - begin) {
      fail("{}: output has {} elements, but this rank's part of {} is {}", where(kOp, *this), output.numel(),
           input.numel(), end - begin);
    }
    check_part_alias(kOp, output, input, begin);
    const int64_t seq = group_->begin_collective();
    DeviceScope scope(state_->device);
    order_after_legacy_stream(kOp);
    const ncclDataType_t type = nccl_dtype(input.scalar_type());
    const auto* in = static_cast<const char*>(input.data_ptr());
    if (input.numel() % size() == 0) {
      check_call(ncclReduceScatter(in, output.data_ptr(), output.numel(), type, nccl_op(op), state_->comm,
                                   state_->stream),
                 kOp, "ncclReduceScatter");
    } else {
      // ncclReduceScatter needs equal parts: one reduce per part, rooted at its owner.
      check_call(ncclGroupStart(), kOp, "ncclGroupStart");
      for (int r = 0; r < size(); ++r) {
        const auto [part_begin, part_end] = shard_range(input.numel(), r, size());
        check_call(ncclReduce(in + part_begin * input.element_size(), output.data_ptr(),
                              part_end - part_begin, type, nccl_op(op), r, state_->comm, state_->stream),
                   kOp, "ncclReduce");
      }
      check_call(ncclGroupEnd(), kOp, "ncclGroupEnd");
    }
    return track(describe(kOp, input, reduce_op_name(op)), seq, {input, output});
  }

  std::unique_ptr<CommWork> all_gather_async(at::Tensor input, at::Tensor output) override {
    static const char* kOp = "all_gather";
    detail::count_sent(kOp, size(), output);
    check(kOp, input);
    check(kOp, output);
    check_same_dtype(kOp, *this, input, output);
    const auto [begin, end] = shard_range(output.numel(), rank(), size());
    if (input.numel() != end - begin) {
      fail("{}: input has {} elements, but this rank's part of {} is {}", where(kOp, *this), input.numel(),
           output.numel(), end - begin);
    }
    check_part_alias(kOp, input, output, begin);
    const int64_t seq = group_->begin_collective();
    DeviceScope scope(state_->device);
    order_after_legacy_stream(kOp);
    const ncclDataType_t type = nccl_dtype(output.scalar_type());
    auto* out = static_cast<char*>(output.data_ptr());
    if (output.numel() % size() == 0) {
      check_call(ncclAllGather(input.data_ptr(), out, input.numel(), type, state_->comm, state_->stream), kOp,
                 "ncclAllGather");
    } else {
      // ncclAllGather needs equal parts: each owner broadcasts its part into place.
      check_call(ncclGroupStart(), kOp, "ncclGroupStart");
      for (int r = 0; r < size(); ++r) {
        const auto [part_begin, part_end] = shard_range(output.numel(), r, size());
        check_call(ncclBroadcast(input.data_ptr(), out + part_begin * output.element_size(),
                                 part_end - part_begin, type, r, state_->comm, state_->stream),
                   kOp, "ncclBroadcast");
      }
      check_call(ncclGroupEnd(), kOp, "ncclGroupEnd");
    }
    return track(describe(kOp, output), seq, {input, output});
  }

  std::unique_ptr<CommWork> all_to_all_async(at::Tensor input, at::Tensor output) override {
    static const char* kOp = "all_to_all";
    detail::count_sent(kOp, size(), input);
    check(kOp, input);
    check(kOp, output);
    const int64_t part = detail::all_to_all_part(kOp, *this, input, output);
    const int64_t seq = group_->begin_collective();
    DeviceScope scope(state_->device);
    order_after_legacy_stream(kOp);
    const ncclDataType_t type = nccl_dtype(input.scalar_type());
    const int64_t bytes = part * input.element_size();
    // NCCL has no all-to-all of its own: one send and one receive per peer, grouped.
    check_call(ncclGroupStart(), kOp, "ncclGroupStart");
    for (int r = 0; r < size(); ++r) {
      check_call(ncclSend(static_cast<const char*>(input.data_ptr()) + r * bytes, part, type, r, state_->comm,
                          state_->stream),
                 kOp, "ncclSend");
      check_call(ncclRecv(static_cast<char*>(output.data_ptr()) + r * bytes, part, type, r, state_->comm,
                          state_->stream),
                 kOp, "ncclRecv");
    }
    check_call(ncclGroupEnd(), kOp, "ncclGroupEnd");
    return track(describe(kOp, input), seq, {input, output});
  }

  std::unique_ptr<CommWork> broadcast_async(at::Tensor tensor, int root) override {
    static const char* kOp = "broadcast";
    detail::count_sent(kOp, size(), tensor);
    check(kOp, tensor);
    check_peer(kOp, *this, root, "root");
    const int64_t seq = group_->begin_collective();
    DeviceScope scope(state_->device);
    order_after_legacy_stream(kOp);
    check_call(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                             nccl_dtype(tensor.scalar_type()), root, state_->comm, state_->stream),
               kOp, "ncclBroadcast");
    return track(describe(kOp, tensor, fmt::format("from rank {}", root)), seq, {tensor});
  }

  std::unique_ptr<CommWork> send_async(at::Tensor tensor, int dst, int tag) override {
    static const char* kOp = "send";
    detail::count_sent(kOp, size(), tensor);
    check(kOp, tensor);
    check_peer(kOp, *this, dst, "destination");
    DeviceScope scope(state_->device);
    order_after_legacy_stream(kOp);
    check_call(ncclSend(tensor.data_ptr(), tensor.numel(), nccl_dtype(tensor.scalar_type()), dst,
                        state_->comm, state_->stream),
               kOp, "ncclSend");
    return track(describe(kOp, tensor, fmt::format("to rank {}, tag {}", dst, tag)), 0, {tensor});
  }

  std::unique_ptr<CommWork> recv_async(at::Tensor tensor, int src, int tag) override {
    static const char* kOp = "recv";
    check(kOp, tensor);
    check_peer(kOp, *this, src, "source");
    DeviceScope scope(state_->device);
    order_after_legacy_stream(kOp);
    check_call(ncclRecv(tensor.data_ptr(), tensor.numel(), nccl_dtype(tensor.scalar_type()), src,
                        state_->comm, state_->stream),
               kOp, "ncclRecv");
    return track(describe(kOp, tensor, fmt::format("from rank {}, tag {}", src, tag)), 0, {tensor});
  }

  void barrier() override {
    // Through the stream, so that the barrier also orders after this group's queued work.
    at::Tensor token = at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(at::kCUDA, state_->device));
    all_reduce(token, ReduceOp::Sum);
  }

  void barrier_untimed() override {
    DeviceScope scope(state_->device);
    check_cuda(cudaStreamSynchronize(state_->stream), "barrier_untimed", "cudaStreamSynchronize");
    mpi_->barrier_untimed();
  }

  std::unique_ptr<Communicator> split(int color, int key, std::string name) override {
    std::unique_ptr<Communicator> sub = mpi_->split(color, key, std::move(name));
    if (!sub) return nullptr;
    return std::make_unique<NcclCommunicator>(std::move(sub), state_->device);
  }

 private:
  void check(const char* operation, const at::Tensor& tensor) const {
    detail::check_tensor(operation, *this, tensor, true);
    if (tensor.device().index() != state_->device) {
      fail("{}: the tensor is on {}, this group runs on cuda:{}", where(operation, *this),
           tensor.device().str(), state_->device);
    }
  }

  // NCCL's in-place forms: `part` either does not overlap `whole` or is exactly this rank's part.
  void check_part_alias(const char* operation, const at::Tensor& part, const at::Tensor& whole,
                        int64_t begin) const {
    const char* expected = static_cast<const char*>(whole.data_ptr()) + begin * whole.element_size();
    if (part.data_ptr() != expected && detail::overlaps(part, whole)) {
      fail("{}: the part overlaps the full tensor without being exactly this rank's part of it",
           where(operation, *this));
    }
  }

  // The context is formatted only on failure: these checks sit on every operation's path.
  void check_call(ncclResult_t rc, const char* operation, const char* call) const {
    if (rc != ncclSuccess) check_nccl(rc, where(operation, *this), call);
  }

  void order_after_legacy_stream(const char* operation) {
    const cudaError_t recorded = cudaEventRecord(state_->inputs_ready, cudaStreamLegacy);
    if (recorded != cudaSuccess) check_cuda(recorded, where(operation, *this), "cudaEventRecord");
    const cudaError_t waited = cudaStreamWaitEvent(state_->stream, state_->inputs_ready, 0);
    if (waited != cudaSuccess) check_cuda(waited, where(operation, *this), "cudaStreamWaitEvent");
  }

  std::unique_ptr<CommWork> track(std::string what, int64_t seq, std::vector<at::Tensor> tensors) {
    return std::make_unique<TrackedWork>(group_, std::move(what), seq,
                                         std::make_unique<NcclEvent>(state_, std::move(tensors)));
  }

  std::unique_ptr<Communicator> mpi_;
  std::shared_ptr<GroupState> group_;
  std::shared_ptr<NcclState> state_;
};

}  // namespace

bool nccl_available() { return true; }

std::unique_ptr<Communicator> nccl_group(Communicator& mpi_group, int device) {
  return std::make_unique<NcclCommunicator>(detail::duplicate_mpi_group(mpi_group), device);
}

}  // namespace cr
