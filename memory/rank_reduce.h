// Small host values combined over a group's ranks (gradient-norm partials, memory records):
// element-wise, in place, through a tensor on `device` (a NCCL group needs its device's memory).
#pragma once

#include <algorithm>
#include <vector>

#include <torch/torch.h>

#include "parallel/communicator.h"

namespace cr {

template <typename T>
void all_reduce_values(Communicator* group, std::vector<T>& values, ReduceOp op, torch::Device device = torch::kCPU) {
  if (group == nullptr || values.empty()) return;
  auto all = torch::tensor(values, torch::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value)).to(device);
  group->all_reduce(all, op);
  all = all.cpu();
  std::copy(all.template data_ptr<T>(), all.template data_ptr<T>() + all.numel(), values.begin());
}

inline double summed_over(Communicator* group, double value) {
  std::vector<double> values{value};
  all_reduce_values(group, values, ReduceOp::Sum);
  return values[0];
}

}  // namespace cr
