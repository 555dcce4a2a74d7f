// The parts every ZeRO stage is built from, tested alone: the fp16 dynamic loss scaler's rules,
// the shard layout, and the thread-count-independent sum of squares behind the gradient norm.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <torch/torch.h>

#include "core/config/config.h"
#include "core/base/error.h"
#include "memory/loss_scaler.h"
#include "kernels/reduction.h"
#include "memory/shard_layout.h"

using namespace cr;

namespace {

PrecisionConfig scaler_config() {
  PrecisionConfig config;
  config.dtype = "fp16";
  config.initial_scale = 1024.0;
  config.growth_factor = 2.0;
  config.backoff_factor = 0.5;
  config.growth_interval = 3;
  config.hysteresis = 2;
  config.min_scale = 1.0;
  config.max_scale = 65536.0;
  return config;
}

}  // namespace

// =============================================================================================
// 1. DynamicLossScaler

TEST_CASE("loss scaler: hysteresis delays the first backoff, later overflows keep halving", "[zero][scaler]") {
  DynamicLossScaler scaler(scaler_config());
  CHECK(scaler.scale() == 1024.0);
  // First overflow: skipped, the scale stays (hysteresis 2).
  CHECK_FALSE(scaler.update(true));
  CHECK(scaler.scale() == 1024.0);
  CHECK(scaler.state().hysteresis_step == 1);
  // Second: halved.
  CHECK(scaler.update(true));
  CHECK(scaler.scale() == 512.0);
  // Every further overflow halves again until the scale grows.
  CHECK(scaler.update(true));
  CHECK(scaler.scale() == 256.0);
  CHECK(scaler.update(true));
  CHECK(scaler.scale() == 128.0);
  CHECK(scaler.state().hysteresis_step == 4);
}

TEST_CASE("loss scaler: growth_interval clean steps double the scale and reset hysteresis", "[zero][scaler]") {
  DynamicLossScaler scaler(scaler_config());
  CHECK_FALSE(scaler.update(true));  // hysteresis 1 of 2
  CHECK_FALSE(scaler.update(false));
  CHECK_FALSE(scaler.update(false));
  CHECK(scaler.state().growth_step == 2);
  CHECK(scaler.update(false));  // third clean step in a row
  CHECK(scaler.scale() == 2048.0);
  CHECK(scaler.state().growth_step == 0);
  CHECK(scaler.state().hysteresis_step == 0);
  // Hysteresis was reset: one overflow is tolerated again.
  CHECK_FALSE(scaler.update(true));
  CHECK(scaler.scale() == 2048.0);
  CHECK(scaler.update(true));
  CHECK(scaler.scale() == 1024.0);
}

TEST_CASE("loss scaler: an overflow resets the growth count", "[zero][scaler]") {
  auto config = scaler_config();
  config.hysteresis = 5;  // overflows here never back off
  DynamicLossScaler scaler(config);
  CHECK_FALSE(scaler.update(false));
  CHECK_FALSE(scaler.update(false));
  CHECK_FALSE(scaler.update(true));  // would have been the growth step's predecessor
  CHECK(scaler.state().growth_step == 0);
  CHECK_FALSE(scaler.update(false));
  CHECK_FALSE(scaler.update(false));
  CHECK(scaler.scale() == 1024.0);
  CHECK(scaler.update(false));  // three clean steps after the overflow
  CHECK(scaler.scale() == 2048.0);
}

TEST_CASE("loss scaler: min_scale and max_scale clamp", "[zero][scaler]") {
  auto config = scaler_config();
  config.initial_scale = 4.0;
  config.min_scale = 3.0;
  config.max_scale = 10.0;
  config.hysteresis = 1;
  config.growth_interval = 1;
  DynamicLossScaler scaler(config);
  CHECK(scaler.update(false));
  CHECK(scaler.scale() == 8.0);
  CHECK(scaler.update(false));
  CHECK(scaler.scale() == 10.0);  // 16 clamped
  CHECK_FALSE(scaler.update(false));
  CHECK(scaler.scale() == 10.0);
  CHECK(scaler.update(true));
  CHECK(scaler.scale() == 5.0);
  CHECK(scaler.update(true));
  CHECK(scaler.scale() == 3.0);  // 2.5 clamped
  CHECK_FALSE(scaler.update(true));
  CHECK(scaler.scale() == 3.0);
}

TEST_CASE("loss scaler: state round-trips through set_state", "[zero][scaler]") {
  DynamicLossScaler a(scaler_config());
  for (bool overflow : {false, false, false, true, false, true, true, false}) a.update(overflow);
  const auto state = a.state();
  CHECK(state.scale == 512.0);  // 1024 -> 2048 (growth) -> 1024 -> 512 (two backoffs)
  CHECK(state.growth_step == 1);
  CHECK(state.hysteresis_step == 3);

  DynamicLossScaler b(scaler_config());
  b.set_state(state);
  CHECK(b.state().scale == state.scale);
  CHECK(b.state().growth_step == state.growth_step);
  CHECK(b.state().hysteresis_step == state.hysteresis_step);
  // Both now behave identically.
  for (bool overflow : {false, false, true, false, false, false, true}) {
    CHECK(a.update(overflow) == b.update(overflow));
    CHECK(a.scale() == b.scale());
    CHECK(a.state().growth_step == b.state().growth_step);
    CHECK(a.state().hysteresis_step == b.state().hysteresis_step);
  }
}

TEST_CASE("loss scaler: inconsistent bounds are refused naming the keys", "[zero][scaler]") {
  auto config = scaler_config();
  config.min_scale = 100.0;
  config.max_scale = 10.0;
  config.initial_scale = 50.0;
  CHECK_THROWS_AS(DynamicLossScaler(config), Error);
  CHECK_THROWS_WITH(DynamicLossScaler(config),
                    Catch::Contains("precision.min_scale") && Catch::Contains("precision.max_scale"));

  config = scaler_config();
  config.initial_scale = 1e6;  // above max_scale 65536
  CHECK_THROWS_AS(DynamicLossScaler(config), Error);
  CHECK_THROWS_WITH(DynamicLossScaler(config), Catch::Contains("precision.initial_scale"));
  config.initial_scale = 0.5;  // below min_scale 1
  CHECK_THROWS_WITH(DynamicLossScaler(config), Catch::Contains("precision.initial_scale"));

  config.initial_scale = 1.0;  // the bounds themselves are allowed
  CHECK_NOTHROW(DynamicLossScaler(config));
  config.initial_scale = 65536.0;
  CHECK_NOTHROW(DynamicLossScaler(config));
}

// =============================================================================================
// 2. ShardLayout

TEST_CASE("shard layout: uneven buckets split over 1 to 4 ranks", "[zero][layout]") {
  // Bucket sizes chosen so that some are smaller than the rank count and none divide evenly by all.
  const std::vector<int64_t> sizes = {5, 1, 7, 2, 10, 3};
  std::vector<BucketRange> buckets;
  int64_t total = 0;
  for (int64_t n : sizes) {
    buckets.push_back({total, total + n});
    total += n;
  }
  REQUIRE(total == 28);
  const auto full = torch::arange(total, torch::kFloat) * 10 + 1;  // distinct values

  for (int size = 1; size <= 4; ++size) {
    std::vector<int> owner(static_cast<size_t>(total), -1);
    int64_t sum_of_shards = 0;
    for (int rank = 0; rank < size; ++rank) {
      INFO("rank " << rank << " of " << size);
      const ShardLayout layout(buckets, rank, size);
      CHECK(layout.total_numel() == total);
      CHECK(layout.sharded() == (size > 1));
      REQUIRE(layout.slices().size() == sizes.size());
      int64_t running = 0;
      std::vector<float> expected_values;
      for (size_t b = 0; b < sizes.size(); ++b) {
        // The near-equal split: the first n % size ranks hold one element more.
        const int64_t n = sizes[b], base = n / size, longer = n % size;
        const int64_t begin = rank * base + std::min<int64_t>(rank, longer);
        const int64_t numel = base + (rank < longer ? 1 : 0);
        const auto& slice = layout.slices()[b];
        INFO("bucket " << b);
        CHECK(slice.flat_begin == buckets[b].begin + begin);
        CHECK(slice.numel == numel);
        CHECK(slice.shard_begin == running);
        running += numel;
        for (int64_t i = 0; i < numel; ++i) {
          const int64_t flat = buckets[b].begin + begin + i;
          CHECK(owner[flat] == -1);
          owner[flat] = rank;
          expected_values.push_back(static_cast<float>(flat * 10 + 1));
        }
      }
      CHECK(layout.shard_numel() == running);
      sum_of_shards += layout.shard_numel();
      const auto shard = layout.shard_of(full);
      REQUIRE(shard.numel() == layout.shard_numel());
      const auto expected = torch::tensor(expected_values, torch::kFloat);
      CHECK(torch::equal(shard, expected));
    }
    CHECK(sum_of_shards == total);
    for (int64_t i = 0; i < total; ++i) CHECK(owner[i] >= 0);  // every element owned exactly once
  }

  // Spot checks of the rule by hand: bucket 2 (7 elements at [6, 13)) over 3 ranks is 3 + 2 + 2;
  // bucket 1 (1 element) over 4 ranks belongs to rank 0 alone.
  const ShardLayout r1_of_3(buckets, 1, 3);
  CHECK(r1_of_3.slices()[2].flat_begin == 9);
  CHECK(r1_of_3.slices()[2].numel == 2);
  CHECK(ShardLayout(buckets, 0, 4).slices()[1].numel == 1);
  CHECK(ShardLayout(buckets, 3, 4).slices()[1].numel == 0);
  // Rank 3 of 4: 1 (of 5) + 0 (of 1) + 1 (of 7) + 0 (of 2) + 2 (of 10) + 0 (of 3).
  CHECK(ShardLayout(buckets, 3, 4).shard_numel() == 4);
  CHECK(ShardLayout(buckets, 0, 4).shard_numel() == 2 + 1 + 2 + 1 + 3 + 1);
  // One rank: shard space is flat space.
  const ShardLayout whole(buckets, 0, 1);
  CHECK(whole.shard_numel() == total);
  CHECK(torch::equal(whole.shard_of(full), full));
}

TEST_CASE("shard layout: buckets that do not tile the buffer are rejected", "[zero][layout]") {
  using Buckets = std::vector<BucketRange>;
  CHECK_THROWS_AS(ShardLayout(Buckets{{1, 5}}, 0, 2), Error);                  // does not start at 0
  CHECK_THROWS_AS(ShardLayout(Buckets{{0, 5}, {6, 9}}, 0, 2), Error);          // gap
  CHECK_THROWS_AS(ShardLayout(Buckets{{0, 5}, {4, 9}}, 1, 2), Error);          // overlap
  CHECK_THROWS_AS(ShardLayout(Buckets{{0, 5}, {5, 5}, {5, 8}}, 0, 1), Error);  // empty bucket
  CHECK_THROWS_AS(ShardLayout(Buckets{{5, 8}, {0, 5}}, 0, 2), Error);          // out of order
  CHECK_THROWS_AS(ShardLayout(Buckets{{0, 5}}, 2, 2), Error);                  // rank outside the group
  CHECK_NOTHROW(ShardLayout(Buckets{{0, 5}, {5, 8}}, 1, 2));
  // shard_of refuses a tensor of another size.
  const ShardLayout layout(Buckets{{0, 5}, {5, 8}}, 1, 2);
  CHECK_THROWS_AS(layout.shard_of(torch::zeros({7})), Error);
}

// =============================================================================================
// 3. sum_of_squares

TEST_CASE("sum_of_squares: matches a long double reference, independent of the thread count",
          "[zero][reduction]") {
  const int saved_threads = omp_get_max_threads();
  std::mt19937_64 rng(1234);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{65537}, int64_t{1000003}}) {
    INFO("n = " << n);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& value : x) value = normal(rng);
    long double reference = 0.0L;
    for (float value : x) reference += static_cast<long double>(value) * static_cast<long double>(value);

    omp_set_num_threads(1);
    const double one = sum_of_squares(x.data(), n);
    omp_set_num_threads(2);
    const double two = sum_of_squares(x.data(), n);
    omp_set_num_threads(3);
    const double three = sum_of_squares(x.data(), n);
    omp_set_num_threads(saved_threads);

    if (n == 0) {
      CHECK(one == 0.0);
    } else {
      const double relative = std::fabs(static_cast<double>((one - reference) / reference));
      INFO("relative error " << relative);
      CHECK(relative <= 1e-12);
    }
    CHECK(std::memcmp(&one, &two, sizeof(double)) == 0);  // bitwise
    CHECK(std::memcmp(&one, &three, sizeof(double)) == 0);
  }
}

TEST_CASE("sum_of_squares: accumulates in double and propagates inf and NaN", "[zero][reduction]") {
  // Squares far beyond float's range are still exact sums in double.
  const std::vector<float> big = {1e30f, -1e30f, 3.0f};
  CHECK(sum_of_squares(big.data(), 3) == Approx(2e60).epsilon(1e-6));
  CHECK(std::isfinite(sum_of_squares(big.data(), 3)));

  std::vector<float> x(200003, 0.5f);
  CHECK(sum_of_squares(x.data(), static_cast<int64_t>(x.size())) == 0.25 * 200003);
  for (size_t position : {size_t{0}, size_t{65536}, size_t{200002}}) {
    INFO("position " << position);
    auto y = x;
    y[position] = std::numeric_limits<float>::infinity();
    const double with_inf = sum_of_squares(y.data(), static_cast<int64_t>(y.size()));
    CHECK_FALSE(std::isfinite(with_inf));
    y[position] = -std::numeric_limits<float>::infinity();
    CHECK_FALSE(std::isfinite(sum_of_squares(y.data(), static_cast<int64_t>(y.size()))));
    y[position] = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(sum_of_squares(y.data(), static_cast<int64_t>(y.size()))));
  }
}

