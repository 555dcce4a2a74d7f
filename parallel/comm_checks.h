// Argument checks and operation descriptions shared by the communicator backends, so that both
// reject the same misuse with the same words.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "parallel/communicator.h"

namespace cr::detail {

// "float32", "bfloat16", ...; the dtypes communicators accept.
const char* comm_dtype_name(at::ScalarType dtype);
bool is_floating_comm_dtype(at::ScalarType dtype);

// "all_reduce of 1,048,576 x float32 (sum)"
std::string describe(const char* operation, const at::Tensor& tensor, const std::string& detail = "");

// "data[0,2]": the base name and the members' global ranks, runs of consecutive ranks as "a-b".
std::string group_name(const std::string& base, const std::vector<int>& world_ranks);

// The context that starts every error message about an operation: "all_reduce on group 'world'
// (rank 1 of 4)".
std::string where(const char* operation, const Communicator& comm);

// Throws unless `tensor` is defined, contiguous, on the backend's device and of a supported dtype.
void check_tensor(const char* operation, const Communicator& comm, const at::Tensor& tensor, bool want_cuda);

// all_to_all's shapes: input and output of the same dtype and size, in equal parts per rank,
// not overlapping. Returns the elements of one part.
int64_t all_to_all_part(const char* operation, const Communicator& comm, const at::Tensor& input,
                        const at::Tensor& output);
void check_reduce_op(const char* operation, const Communicator& comm, const at::Tensor& tensor, ReduceOp op);
void check_same_dtype(const char* operation, const Communicator& comm, const at::Tensor& a,
                      const at::Tensor& b);
void check_peer(const char* operation, const Communicator& comm, int peer, const char* role);

// Element counts and offsets of each rank's part of `numel` (shard_range), as the int arrays the
// MPI calls take; throws when a count does not fit an int.
struct ShardLayout {
  std::vector<int> counts;
  std::vector<int> offsets;
};
ShardLayout shard_layout(const char* operation, const Communicator& comm, int64_t numel);

// Whether two tensors share any bytes.
bool overlaps(const at::Tensor& a, const at::Tensor& b);

// Adds `operation` on `tensor` (the whole tensor of reduce-scatter and all-gather) in a group of
// `group_size` to bytes_sent_by_process().
void count_sent(const char* operation, int group_size, const at::Tensor& tensor);

}  // namespace cr::detail
