// parallel/ owns communication between ranks (MPI for CPU tensors and bootstrap, NCCL for CUDA
// tensors), the process mesh and the parallel layouts built on them. This header is the one
// interface the rest of the code talks to: a group of ranks and collectives on tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

namespace cr {

enum class ReduceOp { Sum, Avg, Max };

const char* reduce_op_name(ReduceOp op);  // "sum", "avg", "max"

// Rank `rank`'s part [begin, end) of `numel` elements split over `size` ranks: near-equal
// contiguous chunks, the first numel % size of them one element longer. Every sharded layout
// (reduce_scatter, all_gather, ZeRO) uses this one rule.
std::pair<int64_t, int64_t> shard_range(int64_t numel, int rank, int size);

// Handle of an operation in flight. The tensors involved must not be touched until wait()
// returns or test() returns true; destroying a handle waits for the operation first.
class CommWork {
 public:
  virtual ~CommWork();
  virtual void wait() = 0;
  virtual bool test() = 0;  // true once complete (and then the result is in place)
};

// One group of ranks: the world, or one axis of the process mesh. Every member issues the same
// collectives in the same order; one thread uses a communicator at a time. A collective that
// does not complete within the group's timeout aborts the job with a message naming the
// operation, the group and the members that never arrived.
//
// reduce_scatter and all_gather treat tensors as flat: with N = the full tensor's numel, rank
// r's part is shard_range(N, r, size()). Reductions on bfloat16 / float16 compute each step in
// float32 and round to nearest even; Avg is Sum followed by a division (floating types only).
class Communicator {
 public:
  virtual ~Communicator();

  virtual int rank() const = 0;  // rank within the group
  virtual int size() const = 0;
  virtual const std::vector<int>& world_ranks() const = 0;  // global rank of each member
  virtual const std::string& name() const = 0;              // "world", "data[0,2]"

  virtual std::unique_ptr<CommWork> all_reduce_async(at::Tensor tensor, ReduceOp op) = 0;  // in place
  // input: the full tensor; output: this rank's part. output may be that part of input itself.
  virtual std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor input, at::Tensor output,
                                                         ReduceOp op) = 0;
  // input: this rank's part; output: the full tensor. input may be that part of output itself.
  virtual std::unique_ptr<CommWork> all_gather_async(at::Tensor input, at::Tensor output) = 0;
  // input and output: size() equal parts each; part r of input goes to rank r, part r of output
  // comes from rank r. They must not overlap.
  virtual std::unique_ptr<CommWork> all_to_all_async(at::Tensor input, at::Tensor output) = 0;
  virtual std::unique_ptr<CommWork> broadcast_async(at::Tensor tensor, int root) = 0;
  // Point to point, by group rank; a recv must name the sender's tensor size and dtype exactly.
  virtual std::unique_ptr<CommWork> send_async(at::Tensor tensor, int dst, int tag) = 0;
  virtual std::unique_ptr<CommWork> recv_async(at::Tensor tensor, int src, int tag) = 0;
  virtual void barrier() = 0;
  // A barrier that no collective timeout applies to, for waits whose length is legitimately
  // unbounded (every rank writing its part of a large checkpoint). A member that dies still ends
  // the job through the launcher.
  virtual void barrier_untimed() = 0;

  // Collective over this group: members with the same color form a new group, ordered by key
  // (then by rank). color < 0 leaves this rank out and returns null. The new group's name is
  // `name` followed by its members' global ranks, e.g. "data[0,2]".
  virtual std::unique_ptr<Communicator> split(int color, int key, std::string name) = 0;

  void all_reduce(at::Tensor tensor, ReduceOp op) { all_reduce_async(std::move(tensor), op)->wait(); }
  void reduce_scatter(at::Tensor input, at::Tensor output, ReduceOp op) {
    reduce_scatter_async(std::move(input), std::move(output), op)->wait();
  }
  void all_gather(at::Tensor input, at::Tensor output) {
    all_gather_async(std::move(input), std::move(output))->wait();
  }
  void all_to_all(at::Tensor input, at::Tensor output) {
    all_to_all_async(std::move(input), std::move(output))->wait();
  }
  void broadcast(at::Tensor tensor, int root) { broadcast_async(std::move(tensor), root)->wait(); }
  void send(at::Tensor tensor, int dst, int tag) { send_async(std::move(tensor), dst, tag)->wait(); }
  void recv(at::Tensor tensor, int src, int tag) { recv_async(std::move(tensor), src, tag)->wait(); }
};

// Bytes this process has sent through every group since it started, by the ring model of each
// operation: an all-reduce sends 2 (n-1)/n of its buffer, a reduce-scatter, all-gather or
// all-to-all (n-1)/n of the whole tensor, a broadcast (n-1)/n of its buffer (scatter, then
// all-gather), a send its buffer. A model of what the operations must move, not of the wire
// (MPI and NCCL pick their own algorithms): what `plan` predicts and benchmarks compare.
int64_t bytes_sent_by_process();

// Rank 0's `text` on every rank of `group` (what the others pass is ignored).
std::string broadcast_string(Communicator& group, const std::string& text);

}  // namespace cr
