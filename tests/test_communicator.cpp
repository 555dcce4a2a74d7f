// Communicator tests, run by CTest under mpirun with 2, 3 and 4 ranks (and alone as 1 rank).
// Every rank's contribution is a known function of (rank, index), so each rank computes every
// expected result locally. All ranks issue the same collectives whatever the checks find, so a
// failed check never turns into a hang.
// The listener below needs Catch's reporter interfaces.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"

using cr::Communicator;
using cr::ReduceOp;

namespace {

std::unique_ptr<Communicator> g_world;

Communicator& world() {
  if (!g_world) g_world = cr::mpi_world(30.0);
  return *g_world;
}

// MPI must be finalised on every rank before exit, after the last communicator is gone.
struct MpiFinalizer : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunEnded(const Catch::TestRunStats&) override {
    g_world.reset();
    cr::mpi_finalize();
  }
};
CATCH_REGISTER_LISTENER(MpiFinalizer)

// Rank `rank`'s value at global index offset + i: small integers, so sums over four ranks are
// exact in every dtype and the result does not depend on the reduction order.
at::Tensor pattern(int64_t n, int rank, at::ScalarType dtype, int64_t offset = 0) {
  at::Tensor i = at::arange(offset, offset + n, at::kLong);
  at::Tensor values = (i * 7 + rank * 3) % 11 - 5;
  if (dtype == at::kByte) values += 5;
  return values.to(dtype);
}

at::Tensor expected_reduction(int64_t n, int size, at::ScalarType dtype, ReduceOp op) {
  // Reduced exactly in int64, cast once.
  auto contribution = [&](int r) { return pattern(n, r, dtype).to(at::kLong); };
  at::Tensor acc = contribution(0);
  for (int r = 1; r < size; ++r) {
    acc = op == ReduceOp::Max ? at::maximum(acc, contribution(r)) : acc + contribution(r);
  }
  at::Tensor result = acc.to(dtype);
  if (op == ReduceOp::Avg) result.div_(size);
  return result;
}

const std::vector<at::ScalarType> kFloatTypes = {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf};
const std::vector<at::ScalarType> kAllTypes = {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf,
                                               at::kLong,  at::kInt,    at::kByte};

std::vector<ReduceOp> ops_for(at::ScalarType dtype) {
  if (dtype == at::kByte) return {ReduceOp::Max};  // sums of uint8 wrap
  const bool floating =
      dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 || dtype == at::kHalf;
  if (floating) return {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max};
  return {ReduceOp::Sum, ReduceOp::Max};
}

std::string label(at::ScalarType dtype, ReduceOp op, int64_t n) {
  return fmt::format("{} {} n={}", c10::toString(dtype), cr::reduce_op_name(op), n);
}

}  // namespace

TEST_CASE("shard_range covers numel with disjoint near-equal parts", "[shard]") {
  for (int size : {1, 2, 3, 4, 7, 16}) {
    for (int64_t numel : {0, 1, 2, 3, 7, 16, 1000, 1001, 1000003}) {
      int64_t next = 0, smallest = numel, largest = 0;
      for (int r = 0; r < size; ++r) {
        auto [begin, end] = cr::shard_range(numel, r, size);
        CHECK(begin == next);  // contiguous, in rank order, no gap and no overlap
        CHECK(end >= begin);
        smallest = std::min(smallest, end - begin);
        largest = std::max(largest, end - begin);
        next = end;
      }
      CHECK(next == numel);
      CHECK(largest - smallest <= 1);
      // The longer parts come first.
      auto [first_begin, first_end] = cr::shard_range(numel, 0, size);
      CHECK(first_end - first_begin == largest);
    }
  }
}

TEST_CASE("world reports rank, size and global ranks", "[mpi]") {
  Communicator& comm = world();
  CHECK(comm.name() == "world");
  REQUIRE(comm.world_ranks().size() == static_cast<size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) CHECK(comm.world_ranks()[r] == r);
  comm.barrier();
}

TEST_CASE("all_reduce matches its definition", "[mpi]") {
  Communicator& comm = world();
  for (at::ScalarType dtype :
       {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf, at::kLong, at::kInt, at::kByte}) {
    for (int64_t n : {1, 7, 1000, 1000003}) {
      for (ReduceOp op : ops_for(dtype)) {
        INFO(label(dtype, op, n) << " on rank " << comm.rank() << " of " << comm.size());
        at::Tensor t = pattern(n, comm.rank(), dtype);
        comm.all_reduce(t, op);
        CHECK(at::equal(t, expected_reduction(n, comm.size(), dtype, op)));
      }
    }
  }
}

TEST_CASE("16-bit sums round each step to nearest even in float32", "[mpi]") {
  Communicator& comm = world();
  if (comm.size() < 2) return;
  // Ranks 0 and 1 contribute a and b, the others zero (exact to add), so every reduction order
  // gives round(a + b). Truncation or round-half-up would give other values.
  struct Case {
    at::ScalarType dtype;
    float a, b, sum;
  };
  const std::vector<Case> cases = {
      {at::kBFloat16, 1.0f, 0.005859375f, 1.0078125f},    // 1 + 0.75 ulp rounds up
      {at::kBFloat16, 1.0f, 0.00390625f, 1.0f},           // 1 + 0.5 ulp: tie, to even (down)
      {at::kBFloat16, 1.0f, 0.01171875f, 1.015625f},      // 1 + 1.5 ulp: tie, to even (up)
      {at::kHalf, 1.0f, 0.000732421875f, 1.0009765625f},  // 1 + 0.75 ulp rounds up
      {at::kHalf, 1.0f, 0.00048828125f, 1.0f},            // tie, to even (down)
  };
  for (const Case& c : cases) {
    INFO(c10::toString(c.dtype) << " " << c.a << " + " << c.b);
    const float mine = comm.rank() == 0 ? c.a : comm.rank() == 1 ? c.b : 0.0f;
    at::Tensor t = at::full({3}, mine, at::TensorOptions().dtype(c.dtype));
    comm.all_reduce(t, ReduceOp::Sum);
    CHECK(at::equal(t, at::full({3}, c.sum, at::TensorOptions().dtype(c.dtype))));
  }
}

TEST_CASE("reduce_scatter gives each rank its part of the reduction", "[mpi]") {
  Communicator& comm = world();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf, at::kLong}) {
    for (int64_t n : {1, 7, 1000, 1001}) {
      for (ReduceOp op : ops_for(dtype)) {
        INFO(label(dtype, op, n) << " on rank " << comm.rank() << " of " << comm.size());
        auto [begin, end] = cr::shard_range(n, comm.rank(), comm.size());
        at::Tensor expected = expected_reduction(n, comm.size(), dtype, op).slice(0, begin, end);

        at::Tensor input = pattern(n, comm.rank(), dtype);
        at::Tensor output = at::full({end - begin}, 99, dtype);
        comm.reduce_scatter(input, output, op);
        CHECK(at::equal(output, expected));

        // In place: the output is this rank's part of the input.
        at::Tensor whole = pattern(n, comm.rank(), dtype);
        at::Tensor part = whole.slice(0, begin, end);
        comm.reduce_scatter(whole, part, op);
        CHECK(at::equal(part, expected));
      }
    }
  }
}

TEST_CASE("all_gather concatenates every rank's part", "[mpi]") {
  Communicator& comm = world();
  for (at::ScalarType dtype : kAllTypes) {
    for (int64_t n : {1, 7, 1000, 1001}) {
      INFO(c10::toString(dtype) << " n=" << n << " on rank " << comm.rank() << " of " << comm.size());
      at::Tensor expected = at::empty({n}, dtype);
      for (int r = 0; r < comm.size(); ++r) {
        auto [b, e] = cr::shard_range(n, r, comm.size());
        expected.slice(0, b, e).copy_(pattern(e - b, r, dtype, b));
      }
      auto [begin, end] = cr::shard_range(n, comm.rank(), comm.size());

      at::Tensor output = at::full({n}, 99, dtype);
      comm.all_gather(pattern(end - begin, comm.rank(), dtype, begin), output);
      CHECK(at::equal(output, expected));

      // In place: the input is this rank's part of the output.
      at::Tensor whole = at::full({n}, 99, dtype);
      whole.slice(0, begin, end).copy_(pattern(end - begin, comm.rank(), dtype, begin));
      comm.all_gather(whole.slice(0, begin, end), whole);
      CHECK(at::equal(whole, expected));
    }
  }
}

TEST_CASE("all_to_all sends part r to rank r and receives part r from it", "[mpi]") {
  Communicator& comm = world();
  const int size = comm.size();
  for (at::ScalarType dtype : kAllTypes) {
    for (int64_t part : {1, 7, 250}) {
      INFO(c10::toString(dtype) << " part=" << part << " on rank " << comm.rank() << " of " << size);
      // Rank r sends to rank q the values pattern(part, r, dtype, q * part).
      at::Tensor input = at::empty({size * part}, dtype), expected = at::empty({size * part}, dtype);
      for (int q = 0; q < size; ++q) {
        input.slice(0, q * part, (q + 1) * part).copy_(pattern(part, comm.rank(), dtype, q * part));
        expected.slice(0, q * part, (q + 1) * part).copy_(pattern(part, q, dtype, comm.rank() * part));
      }
      at::Tensor output = at::full({size * part}, 99, dtype);
      comm.all_to_all(input, output);
      CHECK(at::equal(output, expected));
    }
  }
  CHECK_THROWS_WITH(comm.all_to_all(at::zeros({size * 2 + 1}), at::zeros({size * 2 + 1})),
                    Catch::Contains("split into " + std::to_string(size) + " equal parts"));
  at::Tensor same = at::zeros({size * 2});
  CHECK_THROWS_WITH(comm.all_to_all(same, same), Catch::Contains("input and output overlap"));
}

TEST_CASE("broadcast copies the root's tensor, from every root", "[mpi]") {
  Communicator& comm = world();
  for (int root = 0; root < comm.size(); ++root) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kLong, at::kByte}) {
      INFO("root " << root << " " << c10::toString(dtype) << " on rank " << comm.rank());
      at::Tensor t = pattern(1001, comm.rank(), dtype).reshape({7, 143});
      comm.broadcast(t, root);
      CHECK(at::equal(t, pattern(1001, root, dtype).reshape({7, 143})));
    }
  }
}

TEST_CASE("send and recv pass tensors around a ring", "[mpi]") {
  Communicator& comm = world();
  const int next = (comm.rank() + 1) % comm.size();
  const int prev = (comm.rank() + comm.size() - 1) % comm.size();
  for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kInt}) {
    INFO(c10::toString(dtype) << " on rank " << comm.rank());
    at::Tensor outgoing = pattern(1000, comm.rank(), dtype);
    at::Tensor incoming = at::zeros({1000}, dtype);
    // Both directions in flight at once: blocking forms in a ring would deadlock.
    auto recv = comm.recv_async(incoming, prev, 7);
    auto send = comm.send_async(outgoing, next, 7);
    send->wait();
    recv->wait();
    CHECK(at::equal(incoming, pattern(1000, prev, dtype)));
  }
  // Tags keep two messages between the same pair apart, whatever order the recvs are posted in.
  at::Tensor first = at::zeros({5}), second = at::zeros({5});
  auto recv_second = comm.recv_async(second, prev, 2);
  auto recv_first = comm.recv_async(first, prev, 1);
  comm.send(at::full({5}, 1.0f), next, 1);
  comm.send(at::full({5}, 2.0f), next, 2);
  recv_first->wait();
  recv_second->wait();
  CHECK(at::equal(first, at::full({5}, 1.0f)));
  CHECK(at::equal(second, at::full({5}, 2.0f)));
}

TEST_CASE("a recv of the wrong size is an error naming it", "[mpi]") {
  Communicator& comm = world();
  if (comm.size() < 2) return;
  if (comm.rank() == 0) comm.send(at::ones({5}), 1, 3);
  if (comm.rank() == 1) {
    at::Tensor incoming = at::zeros({7});
    CHECK_THROWS_WITH(comm.recv(incoming, 0, 3),
                      Catch::Contains("recv") && Catch::Contains("expected 7 elements, the sender sent 5"));
  }
  comm.barrier();
}

TEST_CASE("async operations overlap and complete in any wait order", "[mpi]") {
  Communicator& comm = world();
  const int64_t n = 100003;
  at::Tensor a = pattern(n, comm.rank(), at::kFloat);
  at::Tensor full = at::zeros({n}, at::kDouble);
  auto [begin, end] = cr::shard_range(n, comm.rank(), comm.size());
  at::Tensor part = pattern(end - begin, comm.rank(), at::kDouble, begin);
  at::Tensor c = pattern(n, comm.rank(), at::kBFloat16);

  auto reduce = comm.all_reduce_async(a, ReduceOp::Sum);
  auto gather = comm.all_gather_async(part, full);
  auto maximum = comm.all_reduce_async(c, ReduceOp::Max);
  maximum->wait();
  while (!gather->test()) std::this_thread::yield();
  reduce->wait();
  CHECK(gather->test());  // stays complete

  CHECK(at::equal(a, expected_reduction(n, comm.size(), at::kFloat, ReduceOp::Sum)));
  CHECK(at::equal(c, expected_reduction(n, comm.size(), at::kBFloat16, ReduceOp::Max)));
  for (int r = 0; r < comm.size(); ++r) {
    auto [b, e] = cr::shard_range(n, r, comm.size());
    CHECK(at::equal(full.slice(0, b, e), pattern(e - b, r, at::kDouble, b)));
  }
}

TEST_CASE("avg divides in place after the operation completes", "[mpi]") {
  Communicator& comm = world();
  at::Tensor t = at::full({4}, static_cast<double>(comm.rank() + 1), at::kDouble);
  auto work = comm.all_reduce_async(t, ReduceOp::Avg);
  work.reset();  // dropping the handle completes the operation, division included
  CHECK(at::allclose(t, at::full({4}, (comm.size() + 1) / 2.0, at::kDouble)));
}

TEST_CASE("split makes independent groups", "[mpi]") {
  Communicator& comm = world();
  const int parity = comm.rank() % 2;
  std::unique_ptr<Communicator> half = comm.split(parity, comm.rank(), parity ? "odd" : "even");
  REQUIRE(half);
  std::vector<int> members;
  for (int r = parity; r < comm.size(); r += 2) members.push_back(r);
  CHECK(half->world_ranks() == members);
  CHECK(half->size() == static_cast<int>(members.size()));
  CHECK(half->rank() == comm.rank() / 2);
  CHECK(half->name() == fmt::format("{}[{}]", parity ? "odd" : "even", fmt::join(members, ",")));

  // Different collectives in the two groups at the same time.
  if (parity == 0) {
    at::Tensor t = at::full({1001}, static_cast<float>(comm.rank()));
    half->all_reduce(t, ReduceOp::Sum);
    float sum = 0;
    for (int r : members) sum += static_cast<float>(r);
    CHECK(at::equal(t, at::full({1001}, sum)));
  } else {
    at::Tensor t = at::full({17}, static_cast<int64_t>(comm.rank()), at::kLong);
    half->broadcast(t, half->size() - 1);
    CHECK(at::equal(t, at::full({17}, static_cast<int64_t>(members.back()), at::kLong)));
  }

  // Reversed key order, and ranks left out by a negative color.
  std::unique_ptr<Communicator> reversed = comm.split(0, -comm.rank(), "reversed");
  REQUIRE(reversed);
  CHECK(reversed->rank() == comm.size() - 1 - comm.rank());
  CHECK(reversed->world_ranks().front() == comm.size() - 1);
  std::unique_ptr<Communicator> first = comm.split(comm.rank() == 0 ? 0 : -1, 0, "first");
  CHECK((first != nullptr) == (comm.rank() == 0));
  if (first) CHECK(first->name() == "first[0]");
  comm.barrier();
}

TEST_CASE("misuse is rejected with the operation and group named", "[mpi]") {
  Communicator& comm = world();
  at::Tensor strided = at::zeros({4, 4}).t();
  CHECK_THROWS_WITH(comm.all_reduce(strided, ReduceOp::Sum),
                    Catch::Contains("all_reduce on group 'world'") && Catch::Contains("contiguous"));
  CHECK_THROWS_WITH(comm.all_reduce(at::zeros({3}, at::kLong), ReduceOp::Avg),
                    Catch::Contains("all_reduce") && Catch::Contains("avg needs a floating-point tensor"));
  CHECK_THROWS_WITH(comm.all_reduce(at::zeros({3}, at::kBool), ReduceOp::Max),
                    Catch::Contains("dtype Bool is not supported"));
  CHECK_THROWS_WITH(comm.reduce_scatter(at::zeros({10}), at::zeros({11}), ReduceOp::Sum),
                    Catch::Contains("reduce_scatter") && Catch::Contains("this rank's part of 10"));
  CHECK_THROWS_WITH(
      comm.all_gather(at::zeros({1}, at::kFloat), at::zeros({comm.size()}, at::kDouble)),
      Catch::Contains("all_gather") && Catch::Contains("input is float32 but output is float64"));
  CHECK_THROWS_WITH(comm.broadcast(at::zeros({1}), comm.size()), Catch::Contains("root rank"));
  CHECK_THROWS_WITH(comm.send(at::zeros({1}), 0, -1), Catch::Contains("tag -1"));
  // The rejected calls started nothing: the group still agrees on its sequence.
  comm.barrier();
}

// The NCCL backend runs where the build has it, LibTorch has CUDA and every rank has a GPU of its
// own (NCCL refuses two ranks on one device); elsewhere these cases only say why they skip.
bool nccl_usable(const Communicator& comm) {
  const bool usable =
      cr::nccl_available() && at::hasCUDA() && static_cast<int>(at::getNumGPUs()) >= comm.size();
  if (!usable && comm.rank() == 0) WARN("skipped: needs the NCCL backend and one CUDA device per rank");
  return usable;
}

at::Tensor on_gpu(const at::Tensor& t, int device) { return t.to(at::Device(at::kCUDA, device)); }

TEST_CASE("nccl collectives match their definitions", "[mpi][nccl]") {
  Communicator& mpi = world();
  if (!nccl_usable(mpi)) return;
  const int device = mpi.rank();
  std::unique_ptr<Communicator> comm = cr::nccl_group(mpi, device);
  CHECK(comm->name() == "world");
  CHECK(comm->rank() == mpi.rank());
  const int size = comm->size();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf, at::kLong}) {
    for (int64_t n : {1, 7, 1001}) {
      for (ReduceOp op : ops_for(dtype)) {
        INFO(label(dtype, op, n) << " on rank " << comm->rank() << " of " << size);
        const at::Tensor expected = expected_reduction(n, size, dtype, op);
        // NCCL averages floating types by scaling before the sum: equal up to rounding.
        auto matches = [&](const at::Tensor& result, const at::Tensor& want) {
          return op == ReduceOp::Avg ? at::allclose(result.to(at::kDouble), want.to(at::kDouble), 1e-2)
                                     : at::equal(result, want);
        };
        at::Tensor t = on_gpu(pattern(n, comm->rank(), dtype), device);
        comm->all_reduce(t, op);
        CHECK(matches(t.cpu(), expected));

        auto [begin, end] = cr::shard_range(n, comm->rank(), size);
        at::Tensor whole = on_gpu(pattern(n, comm->rank(), dtype), device);
        at::Tensor part = on_gpu(at::full({end - begin}, 99, dtype), device);
        comm->reduce_scatter(whole, part, op);
        CHECK(matches(part.cpu(), expected.slice(0, begin, end)));
        at::Tensor in_place = whole.slice(0, begin, end);
        comm->reduce_scatter(whole, in_place, op);
        CHECK(matches(in_place.cpu(), expected.slice(0, begin, end)));
      }
      INFO(c10::toString(dtype) << " all_gather n=" << n << " on rank " << comm->rank());
      at::Tensor expected = at::empty({n}, dtype);
      for (int r = 0; r < size; ++r) {
        auto [b, e] = cr::shard_range(n, r, size);
        expected.slice(0, b, e).copy_(pattern(e - b, r, dtype, b));
      }
      auto [begin, end] = cr::shard_range(n, comm->rank(), size);
      at::Tensor output = on_gpu(at::full({n}, 99, dtype), device);
      comm->all_gather(on_gpu(pattern(end - begin, comm->rank(), dtype, begin), device), output);
      CHECK(at::equal(output.cpu(), expected));
      at::Tensor whole = on_gpu(at::full({n}, 99, dtype), device);
      whole.slice(0, begin, end).copy_(pattern(end - begin, comm->rank(), dtype, begin));
      comm->all_gather(whole.slice(0, begin, end), whole);
      CHECK(at::equal(whole.cpu(), expected));
    }
  }
  {
    at::Tensor input = at::empty({size * 5}), expected = at::empty({size * 5});
    for (int q = 0; q < size; ++q) {
      input.slice(0, q * 5, (q + 1) * 5).copy_(pattern(5, comm->rank(), at::kFloat, q * 5));
      expected.slice(0, q * 5, (q + 1) * 5).copy_(pattern(5, q, at::kFloat, comm->rank() * 5));
    }
    at::Tensor output = on_gpu(at::zeros({size * 5}), device);
    comm->all_to_all(on_gpu(input, device), output);
    CHECK(at::equal(output.cpu(), expected));
  }
  for (int root = 0; root < size; ++root) {
    at::Tensor t = on_gpu(pattern(1001, comm->rank(), at::kFloat), device);
    comm->broadcast(t, root);
    CHECK(at::equal(t.cpu(), pattern(1001, root, at::kFloat)));
  }
  if (size >= 2) {
    const int next = (comm->rank() + 1) % size, prev = (comm->rank() + size - 1) % size;
    at::Tensor incoming = on_gpu(at::zeros({1000}), device);
    // NCCL matches point to point in issue order: the even ranks send first, the odd receive first.
    if (comm->rank() % 2 == 0) {
      comm->send(on_gpu(pattern(1000, comm->rank(), at::kFloat), device), next, 0);
      comm->recv(incoming, prev, 0);
    } else {
      comm->recv(incoming, prev, 0);
      comm->send(on_gpu(pattern(1000, comm->rank(), at::kFloat), device), next, 0);
    }
    CHECK(at::equal(incoming.cpu(), pattern(1000, prev, at::kFloat)));
  }
  std::unique_ptr<Communicator> half = comm->split(comm->rank() % 2, comm->rank(), "half");
  REQUIRE(half);
  at::Tensor ones = on_gpu(at::ones({3}), device);
  half->all_reduce(ones, ReduceOp::Sum);
  CHECK(at::equal(ones.cpu(), at::full({3}, static_cast<float>(half->size()))));
  comm->barrier();
  CHECK_THROWS_WITH(comm->all_reduce(at::zeros({3}), ReduceOp::Sum), Catch::Contains("needs CUDA tensors"));
}

// Run only by its own CTest entry (mpirun -np 3): rank 1 skips a collective, the others time out
// after 2 s and the job is aborted with one message naming rank 1.
TEST_CASE("a collective that a rank skips aborts the job, naming the rank", "[.timeout]") {
  std::unique_ptr<Communicator> comm = cr::mpi_world(2.0);
  at::Tensor t = at::ones({1048576});
  if (comm->rank() == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(60));  // stuck computing, not in MPI
  } else {
    comm->all_reduce(t, ReduceOp::Sum);
  }
  FAIL("the job was not aborted");
}

// Run only by its own CTest entry (mpirun -np 3): as above, but nobody waits on the operation,
// so the watchdog thread has to notice.
TEST_CASE("a collective nobody waits on still times out", "[.watchdog]") {
  std::unique_ptr<Communicator> comm = cr::mpi_world(2.0);
  at::Tensor t = at::ones({1048576});
  std::unique_ptr<cr::CommWork> work;
  if (comm->rank() != 1) work = comm->all_reduce_async(t, ReduceOp::Sum);
  std::this_thread::sleep_for(std::chrono::seconds(60));  // every rank computing, none in MPI
  FAIL("the job was not aborted");
}
