#include "parallel/mpi_communicator.h"

#include <mpi.h>

#include <chrono>
#include <climits>
#include <thread>
#include <mutex>

#include "core/base/error.h"
#include "core/base/log.h"
#include "parallel/collective_watchdog.h"
#include "parallel/comm_checks.h"
#include "parallel/mpi_internal.h"
#include "parallel/mpi_types.h"

namespace cr {
namespace {

using detail::check_peer;
using detail::check_reduce_op;
using detail::check_same_dtype;
using detail::check_tensor;
using detail::describe;
using detail::GroupState;
using detail::TrackedWork;
using detail::where;

void check_mpi(int rc, const std::string& context, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  fail("{}: {} failed: {}", context, call, std::string(text, length));
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// One MPI request, with everything the library reads or writes until it completes: the
// tensors and the count / offset arrays of the v-collectives.
class MpiRequest final : public detail::PendingOp {
 public:
  bool test() override {
    int flag = 0;
    check_mpi(MPI_Test(&request, &flag, &status), "MPI", "MPI_Test");
    return flag != 0;
  }

  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Status status{};
  std::vector<at::Tensor> tensors;
  detail::ShardLayout layout;
};

int element_count(const char* operation, const Communicator& comm, const at::Tensor& tensor) {
  if (tensor.numel() > INT_MAX) {
    fail("{}: {} elements exceed the {} one MPI call can move; split the tensor", where(operation, comm),
         tensor.numel(), INT_MAX);
  }
  return static_cast<int>(tensor.numel());
}

std::vector<int> world_ranks_of(MPI_Comm comm) {
  MPI_Group group, world;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  int size = 0;
  MPI_Group_size(group, &size);
  std::vector<int> ranks(size), world_ranks(size);
  for (int r = 0; r < size; ++r) ranks[r] = r;
  MPI_Group_translate_ranks(group, size, ranks.data(), world, world_ranks.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  return world_ranks;
}

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm`. Collective over it (creates the group's arrival board).
  MpiCommunicator(MPI_Comm comm, std::string name, double timeout_s) : comm_(comm) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    group_ = std::make_shared<GroupState>();
    group_->world_ranks = world_ranks_of(comm_);
    group_->name = std::move(name);
    group_->timeout_s = timeout_s;
    MPI_Comm_rank(comm_, &group_->rank);
    group_->board = detail::ArrivalBoard::create(comm_);
    static bool warned = false;  // the same for every group of the job: say it once
    if (!group_->board && !warned) {
      warned = true;
      warn0(
          "MPI offers no one-sided windows here (group '{}'), so collective timeouts will not "
          "name the ranks that never arrived",
          group_->name);
    }
  }

  ~MpiCommunicator() override {
    if (mpi_finalized()) return;
    // Collective, like the construction: free the window now rather than whenever the last
    // in-flight handle goes, which may differ between members.
    group_->board.reset();
    MPI_Comm_free(&comm_);
  }

  int rank() const override { return group_->rank; }
  int size() const override { return static_cast<int>(group_->world_ranks.size()); }
  const std::vector<int>& world_ranks() const override { return group_->world_ranks; }
  const std::string& name() const override { return group_->name; }

  std::unique_ptr<CommWork> all_reduce_async(at::Tensor tensor, ReduceOp op) override {
    static const char* kOp = "all_reduce";
    detail::count_sent(kOp, size(), tensor);
    check_tensor(kOp, *this, tensor, false);
    check_reduce_op(kOp, *this, tensor, op);
    const int count = element_count(kOp, *this, tensor);
    auto request = std::make_unique<MpiRequest>();
    request->tensors = {tensor};
    const int64_t seq = group_->begin_collective();
    const at::ScalarType dtype = tensor.scalar_type();
    check_call(MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(), count, detail::mpi_datatype(dtype),
                              detail::mpi_op(op, dtype), comm_, &request->request),
               kOp, "MPI_Iallreduce");
    return track(describe(kOp, tensor, reduce_op_name(op)), seq, std::move(request),
                 divide_if_avg(tensor, op));
  }

  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor input, at::Tensor output, ReduceOp op) override {
    static const char* kOp = "reduce_scatter";
    detail::count_sent(kOp, size(), input);
    check_tensor(kOp, *this, input, false);
    check_tensor(kOp, *this, output, false);
    check_same_dtype(kOp, *this, input, output);
    check_reduce_op(kOp, *this, input, op);
    auto request = std::make_unique<MpiRequest>();
    request->layout = detail::shard_layout(kOp, *this, input.numel());
    const int mine = request->layout.counts[rank()];
    if (output.numel() != mine) {
      fail("{}: output has {} elements, but this rank's part of {} is {}", where(kOp, *this), output.numel(),
           input.numel(), mine);
    }
    // MPI forbids overlapping send and receive buffers; the common in-place form (output is
    // this rank's part of input) goes through a temporary.
    at::Tensor target = detail::overlaps(input, output) ? at::empty_like(output) : output;
    request->tensors = {input, output, target};
    const int64_t seq = group_->begin_collective();
    const at::ScalarType dtype = input.scalar_type();
    check_call(
        MPI_Ireduce_scatter(input.data_ptr(), target.data_ptr(), request->layout.counts.data(),
                            detail::mpi_datatype(dtype), detail::mpi_op(op, dtype), comm_, &request->request),
        kOp, "MPI_Ireduce_scatter");
    auto divide = divide_if_avg(output, op);
    auto finish = [output, target, divide]() mutable {
      if (!target.is_same(output)) output.copy_(target);
      if (divide) divide();
    };
    return track(describe(kOp, input, reduce_op_name(op)), seq, std::move(request), finish);
  }

  std::unique_ptr<CommWork> all_gather_async(at::Tensor input, at::Tensor output) override {
    static const char* kOp = "all_gather";
    detail::count_sent(kOp, size(), output);
    check_tensor(kOp, *this, input, false);
    check_tensor(kOp, *this, output, false);
    check_same_dtype(kOp, *this, input, output);
    auto request = std::make_unique<MpiRequest>();
    request->layout = detail::shard_layout(kOp, *this, output.numel());
    const int mine = request->layout.counts[rank()];
    if (input.numel() != mine) {
      fail("{}: input has {} elements, but this rank's part of {} is {}", where(kOp, *this), input.numel(),
           output.numel(), mine);
    }
    const char* my_part = static_cast<const char*>(output.data_ptr()) +
                          int64_t{request->layout.offsets[rank()]} * output.element_size();
    const bool in_place = input.data_ptr() == my_part;
    if (!in_place && detail::overlaps(input, output)) {
      fail("{}: input overlaps output without being exactly this rank's part of it", where(kOp, *this));
    }
    request->tensors = {input, output};
    const int64_t seq = group_->begin_collective();
    const MPI_Datatype type = detail::mpi_datatype(input.scalar_type());
    check_call(MPI_Iallgatherv(in_place ? MPI_IN_PLACE : input.data_ptr(), mine, type, output.data_ptr(),
                               request->layout.counts.data(), request->layout.offsets.data(), type, comm_,
                               &request->request),
               kOp, "MPI_Iallgatherv");
    return track(describe(kOp, output), seq, std::move(request));
  }

  std::unique_ptr<CommWork> all_to_all_async(at::Tensor input, at::Tensor output) override {
    static const char* kOp = "all_to_all";
    detail::count_sent(kOp, size(), input);
    check_tensor(kOp, *this, input, false);
    check_tensor(kOp, *this, output, false);
    const int part = static_cast<int>(detail::all_to_all_part(kOp, *this, input, output));
    auto request = std::make_unique<MpiRequest>();
    request->tensors = {input, output};
    const int64_t seq = group_->begin_collective();
    const MPI_Datatype type = detail::mpi_datatype(input.scalar_type());
    check_call(MPI_Ialltoall(input.data_ptr(), part, type, output.data_ptr(), part, type, comm_, &request->request),
               kOp, "MPI_Ialltoall");
    return track(describe(kOp, input), seq, std::move(request));
  }

  std::unique_ptr<CommWork> broadcast_async(at::Tensor tensor, int root) override {
    static const char* kOp = "broadcast";
    detail::count_sent(kOp, size(), tensor);
    check_tensor(kOp, *this, tensor, false);
    check_peer(kOp, *this, root, "root");
    const int count = element_count(kOp, *this, tensor);
    auto request = std::make_unique<MpiRequest>();
    request->tensors = {tensor};
    const int64_t seq = group_->begin_collective();
    check_call(MPI_Ibcast(tensor.data_ptr(), count, detail::mpi_datatype(tensor.scalar_type()), root, comm_,
                          &request->request),
               kOp, "MPI_Ibcast");
    return track(describe(kOp, tensor, fmt::format("from rank {}", root)), seq, std::move(request));
  }

  std::unique_ptr<CommWork> send_async(at::Tensor tensor, int dst, int tag) override {
    static const char* kOp = "send";
    detail::count_sent(kOp, size(), tensor);
    check_tensor(kOp, *this, tensor, false);
    check_peer(kOp, *this, dst, "destination");
    check_tag(kOp, tag);
    const int count = element_count(kOp, *this, tensor);
    auto request = std::make_unique<MpiRequest>();
    request->tensors = {tensor};
    check_call(MPI_Isend(tensor.data_ptr(), count, detail::mpi_datatype(tensor.scalar_type()), dst, tag,
                         comm_, &request->request),
               kOp, "MPI_Isend");
    return track(describe(kOp, tensor, fmt::format("to rank {}, tag {}", dst, tag)), 0, std::move(request));
  }

  std::unique_ptr<CommWork> recv_async(at::Tensor tensor, int src, int tag) override {
    static const char* kOp = "recv";
    check_tensor(kOp, *this, tensor, false);
    check_peer(kOp, *this, src, "source");
    check_tag(kOp, tag);
    const int count = element_count(kOp, *this, tensor);
    auto request = std::make_unique<MpiRequest>();
    request->tensors = {tensor};
    const MPI_Datatype type = detail::mpi_datatype(tensor.scalar_type());
    check_call(MPI_Irecv(tensor.data_ptr(), count, type, src, tag, comm_, &request->request), kOp,
               "MPI_Irecv");
    // A shorter message than expected is a size mismatch between sender and receiver.
    const MPI_Status* status = &request->status;
    std::string context = fmt::format("{} from rank {}, tag {}", where(kOp, *this), src, tag);
    auto check_size = [status, type, count, context] {
      int received = 0;
      MPI_Get_count(status, type, &received);
      if (received != count) fail("{}: expected {} elements, the sender sent {}", context, count, received);
    };
    return track(describe(kOp, tensor, fmt::format("from rank {}, tag {}", src, tag)), 0, std::move(request),
                 check_size);
  }

  void barrier() override { tracked_barrier("barrier"); }

  void barrier_untimed() override {
    MPI_Request request = MPI_REQUEST_NULL;
    check_call(MPI_Ibarrier(comm_, &request), "barrier_untimed", "MPI_Ibarrier");
    // Polled rather than MPI_Wait: the watchdog thread keeps using MPI meanwhile.
    for (int done = 0;;) {
      check_call(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "barrier_untimed", "MPI_Test");
      if (done) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  std::unique_ptr<Communicator> duplicate() {
    MPI_Comm copy = MPI_COMM_NULL;
    check_call(MPI_Comm_dup(comm_, &copy), "duplicate", "MPI_Comm_dup");
    return std::make_unique<MpiCommunicator>(copy, group_->name, group_->timeout_s);
  }

  const std::shared_ptr<GroupState>& state() const { return group_; }

  std::unique_ptr<Communicator> split(int color, int key, std::string name) override {
    // Through a tracked barrier first, so that a member that never calls split is reported by
    // the timeout instead of hanging MPI_Comm_split.
    tracked_barrier(fmt::format("split into '{}'", name));
    MPI_Comm sub = MPI_COMM_NULL;
    check_call(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub), "split",
               "MPI_Comm_split");
    if (sub == MPI_COMM_NULL) return nullptr;
    return std::make_unique<MpiCommunicator>(sub, detail::group_name(name, world_ranks_of(sub)),
                                             group_->timeout_s);
  }

 private:
  std::unique_ptr<CommWork> track(std::string what, int64_t seq, std::unique_ptr<MpiRequest> request,
                                  std::function<void()> finish = {}) {
    return std::make_unique<TrackedWork>(group_, std::move(what), seq, std::move(request), std::move(finish));
  }

  std::function<void()> divide_if_avg(at::Tensor tensor, ReduceOp op) const {
    if (op != ReduceOp::Avg) return {};
    const int divisor = size();
    return [tensor, divisor]() mutable { tensor.div_(divisor); };
  }

  void tracked_barrier(const std::string& what) {
    auto request = std::make_unique<MpiRequest>();
    const int64_t seq = group_->begin_collective();
    check_call(MPI_Ibarrier(comm_, &request->request), "barrier", "MPI_Ibarrier");
    TrackedWork(group_, what, seq, std::move(request)).wait();
  }

  // The context is formatted only on failure: these checks sit on every operation's path.
  void check_call(int rc, const char* operation, const char* call) const {
    if (rc != MPI_SUCCESS) check_mpi(rc, where(operation, *this), call);
  }

  void check_tag(const char* operation, int tag) const {
    void* value = nullptr;
    int found = 0;
    MPI_Comm_get_attr(comm_, MPI_TAG_UB, &value, &found);
    const int upper = found ? *static_cast<int*>(value) : 32767;  // the least MPI guarantees
    if (tag < 0 || tag > upper) fail("{}: tag {} is outside [0, {}]", where(operation, *this), tag, upper);
  }

  MPI_Comm comm_;
  std::shared_ptr<GroupState> group_;
};

struct MpiRuntime {
  std::mutex mutex;
  bool started = false;
};

MpiRuntime& runtime() {
  static MpiRuntime instance;
  return instance;
}

void start_mpi() {
  MpiRuntime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  if (rt.started) return;
  if (mpi_finalized()) fail("MPI: mpi_world called after mpi_finalize");
  int initialized = 0, provided = MPI_THREAD_SINGLE;
  MPI_Initialized(&initialized);
  if (initialized) {
    MPI_Query_thread(&provided);
  } else {
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI", "MPI_Init_thread");
  }
  detail::create_mpi_types();
  const bool threads = provided == MPI_THREAD_MULTIPLE;
  detail::start_watchdog(threads);
  if (!threads) {
    warn0("MPI offers no MPI_THREAD_MULTIPLE: collective timeouts are enforced only while waiting");
  }
  rt.started = true;
}

MpiCommunicator& as_mpi(Communicator& comm) {
  auto* mpi = dynamic_cast<MpiCommunicator*>(&comm);
  if (!mpi) fail("group '{}' is not an MPI communicator (from mpi_world or its splits)", comm.name());
  return *mpi;
}

}  // namespace

namespace detail {

std::unique_ptr<Communicator> duplicate_mpi_group(Communicator& mpi_group) {
  return as_mpi(mpi_group).duplicate();
}

std::shared_ptr<GroupState> mpi_group_state(Communicator& mpi_group) { return as_mpi(mpi_group).state(); }

}  // namespace detail

std::unique_ptr<Communicator> mpi_world(double collective_timeout_s) {
  if (!(collective_timeout_s > 0)) {
    fail("runtime.collective_timeout_s must be positive, got {}", collective_timeout_s);
  }
  start_mpi();
  MPI_Comm comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI world", "MPI_Comm_dup");
  return std::make_unique<MpiCommunicator>(comm, "world", collective_timeout_s);
}

void mpi_finalize() {
  MpiRuntime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  if (!rt.started || mpi_finalized()) return;
  detail::stop_watchdog();
  detail::free_mpi_types();
  MPI_Finalize();
  rt.started = false;
}

void abort_job_if_distributed(int exit_code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
}

}  // namespace cr
