#include "models/rotary.h"

namespace cr {

torch::Tensor apply_rotary(const torch::Tensor& x, int64_t first_position, double theta) {
  return apply_rotary(x, torch::arange(first_position, first_position + x.size(2), x.options().dtype(torch::kLong)),
                      theta);
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& token_positions, double theta) {
  const int64_t D = x.size(3);
  const auto fp32 = x.options().dtype(torch::kFloat);
  auto inv_freq = 1.0 / torch::pow(theta, torch::arange(0, D, 2, fp32) / static_cast<double>(D));
  auto positions = token_positions.to(fp32);
  auto angles = torch::outer(positions, inv_freq);  // (T, D / 2)
  auto both_halves = torch::cat({angles, angles}, -1);
  auto cos = both_halves.cos().to(x.scalar_type());
  auto sin = both_halves.sin().to(x.scalar_type());
  auto halves = x.chunk(2, -1);
  auto rotated = torch::cat({-halves[1], halves[0]}, -1);
  return x * cos + rotated * sin;
}

}  // namespace cr
