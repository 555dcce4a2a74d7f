#include "parallel/process_mesh.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"

namespace cr {
namespace {

// Canonical name for an axis name or its short alias; empty when neither.
std::string canonical_axis_or_empty(const std::string& name) {
  static const std::vector<std::pair<std::string, std::string>> aliases = {
      {"dp", "data"}, {"pp", "pipeline"}, {"sp", "sequence"}, {"tp", "tensor"}};
  for (const auto& [alias, axis] : aliases) {
    if (name == alias || name == axis) return axis;
  }
  return {};
}

std::string canonical_axis(const std::string& name) {
  std::string axis = canonical_axis_or_empty(name);
  if (axis.empty()) {
    fail("unknown mesh axis '{}': expected data, pipeline, sequence or tensor (or dp, pp, sp, tp)", name);
  }
  return axis;
}

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t");
  if (begin == std::string::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

std::string sizes_product(const MeshShape& shape) {
  return fmt::format("data {} x pipeline {} x sequence {} x tensor {}", shape.data, shape.pipeline, shape.sequence,
                     shape.tensor);
}

// Large jobs have thousands of groups: the first few show the pattern.
std::string format_groups(const std::vector<std::vector<int>>& groups) {
  constexpr size_t kShownGroups = 8, kShownMembers = 16;
  std::string text;
  for (size_t g = 0; g < std::min(groups.size(), kShownGroups); ++g) {
    const auto& group = groups[g];
    if (!text.empty()) text += ' ';
    if (group.size() <= kShownMembers) {
      text += fmt::format("[{}]", fmt::join(group, ","));
    } else {
      text += fmt::format("[{},...,{}] ({} ranks)", fmt::join(group.begin(), group.begin() + kShownMembers / 2, ","),
                          group.back(), group.size());
    }
  }
  if (groups.size() > kShownGroups) text += fmt::format(" ... ({} groups)", groups.size());
  return text;
}

}  // namespace

const std::vector<std::string>& mesh_axes() {
  static const std::vector<std::string> axes = {"data", "pipeline", "sequence", "tensor"};
  return axes;
}

int MeshShape::size(const std::string& axis) const {
  const std::string name = canonical_axis(axis);
  if (name == "data") return data;
  if (name == "pipeline") return pipeline;
  if (name == "sequence") return sequence;
  return tensor;
}

std::vector<std::string> parse_mesh_order(const std::string& text) {
  std::vector<std::string> order;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string name = trim(text.substr(start, comma - start));
    const std::string axis = canonical_axis_or_empty(name);
    if (axis.empty()) {
      fail("mesh order '{}': unknown axis '{}'; expected data, pipeline, sequence, tensor (or dp, pp, sp, tp)", text,
           name);
    }
    if (std::find(order.begin(), order.end(), axis) != order.end()) {
      fail("mesh order '{}': axis '{}' appears twice", text, axis);
    }
    order.push_back(axis);
    start = comma + 1;
  }
  return order;
}

ProcessMesh::ProcessMesh(const MeshShape& shape, int world_size) : shape_(shape), world_size_(world_size) {
  for (const auto& axis : mesh_axes()) {
    if (shape.size(axis) < 1) fail("process mesh: {} size must be at least 1, got {}", axis, shape.size(axis));
  }
  const int64_t product = int64_t{shape.data} * shape.pipeline * shape.sequence * shape.tensor;
  if (product != world_size) {
    fail("process mesh: {} = {} ranks, but the world has {} ranks", sizes_product(shape), product, world_size);
  }

  std::vector<std::string> given;
  for (const auto& name : shape.order) {
    const std::string axis = canonical_axis(name);
    if (std::find(given.begin(), given.end(), axis) != given.end()) {
      fail("process mesh order: axis '{}' appears twice", axis);
    }
    given.push_back(axis);
  }
  shape_.order.clear();
  for (const auto& axis : mesh_axes()) {
    if (std::find(given.begin(), given.end(), axis) != given.end()) continue;
    if (shape.size(axis) > 1) {
      fail("process mesh order '{}' leaves out axis '{}' of size {}", fmt::join(given, ","), axis, shape.size(axis));
    }
    shape_.order.push_back(axis);
  }
  shape_.order.insert(shape_.order.end(), given.begin(), given.end());
}

int ProcessMesh::stride(const std::string& axis) const {
  int stride = 1;
  for (auto it = shape_.order.rbegin(); *it != axis; ++it) stride *= shape_.size(*it);
  return stride;
}

void ProcessMesh::check_rank(int global_rank) const {
  if (global_rank < 0 || global_rank >= world_size_) {
    fail("process mesh: rank {} is outside the world of {} ranks", global_rank, world_size_);
  }
}

int ProcessMesh::coordinate(int global_rank, const std::string& axis) const {
  check_rank(global_rank);
  const std::string name = canonical_axis(axis);
  return global_rank / stride(name) % shape_.size(name);
}

int ProcessMesh::color(int global_rank, const std::string& axis) const {
  return color(global_rank, std::vector<std::string>{axis});
}

namespace {

bool contains_axis(const std::vector<std::string>& axes, const std::string& axis) {
  return std::any_of(axes.begin(), axes.end(), [&](const std::string& a) { return canonical_axis(a) == axis; });
}

}  // namespace

int ProcessMesh::color(int global_rank, const std::vector<std::string>& axes) const {
  check_rank(global_rank);
  // The rank's coordinates on the other axes, read as one number in the same order.
  int color = 0;
  for (const auto& other : shape_.order) {
    if (!contains_axis(axes, other)) color = color * shape_.size(other) + coordinate(global_rank, other);
  }
  return color;
}

int ProcessMesh::key(int global_rank, const std::vector<std::string>& axes) const {
  check_rank(global_rank);
  int key = 0;
  for (const auto& axis : shape_.order) {
    if (contains_axis(axes, axis)) key = key * shape_.size(axis) + coordinate(global_rank, axis);
  }
  return key;
}

std::vector<std::vector<int>> ProcessMesh::groups(const std::vector<std::string>& axes) const {
  int members = 1;
  for (const auto& axis : shape_.order) {
    if (contains_axis(axes, axis)) members *= shape_.size(axis);
  }
  std::vector<std::vector<int>> groups(world_size_ / members, std::vector<int>(members));
  for (int rank = 0; rank < world_size_; ++rank) groups[color(rank, axes)][key(rank, axes)] = rank;
  return groups;
}

std::vector<int> ProcessMesh::group_of(int global_rank, const std::string& axis) const {
  const std::string name = canonical_axis(axis);
  const int first = global_rank - coordinate(global_rank, name) * stride(name);
  std::vector<int> group;
  for (int i = 0; i < shape_.size(name); ++i) group.push_back(first + i * stride(name));
  return group;
}

std::vector<std::vector<int>> ProcessMesh::groups(const std::string& axis) const {
  return groups(std::vector<std::string>{axis});
}

std::string ProcessMesh::describe() const {
  std::string text = fmt::format("process mesh: {} ranks = {}\norder: {} (outermost first)", world_size_,
                                 sizes_product(shape_), fmt::join(shape_.order, ","));
  for (const auto& axis : mesh_axes()) {
    if (shape_.size(axis) == 1) {
      text += fmt::format("\n{} groups: none (size 1)", axis);
    } else {
      text += fmt::format("\n{} groups: {}", axis, format_groups(groups(axis)));
    }
  }
  // ZeRO and gradient averaging span data and sequence ranks, which hold the same parameters.
  if (shape_.sequence > 1 && shape_.data > 1) {
    text += fmt::format("\ndata x sequence groups: {}", format_groups(groups(std::vector<std::string>{"data", "sequence"})));
  }
  return text;
}

MeshShape resolve_mesh_shape(std::optional<int> data, int pipeline, int tensor, int sequence, int world_size) {
  MeshShape shape;
  shape.pipeline = pipeline;
  shape.tensor = tensor;
  shape.sequence = sequence;
  for (const auto& axis : {"pipeline", "tensor", "sequence"}) {
    if (shape.size(axis) < 1) fail("parallel: {} size must be at least 1, got {}", axis, shape.size(axis));
  }
  if (world_size < 1) fail("parallel: the world must have at least 1 rank, got {}", world_size);
  const int64_t model_parallel = int64_t{pipeline} * tensor * sequence;
  if (!data) {
    if (world_size % model_parallel != 0) {
      fail("parallel: data: auto needs the world size {} to be a multiple of "
           "pipeline {} x sequence {} x tensor {} = {}",
           world_size, pipeline, sequence, tensor, model_parallel);
    }
    shape.data = static_cast<int>(world_size / model_parallel);
    return shape;
  }
  shape.data = *data;
  if (shape.data < 1) fail("parallel: data size must be at least 1 (or auto), got {}", shape.data);
  if (shape.data * model_parallel != world_size) {
    fail("parallel: {} = {} ranks, but the world has {} ranks", sizes_product(shape), shape.data * model_parallel,
         world_size);
  }
  return shape;
}

void check_mesh_fits_model(const MeshShape& shape, int64_t n_layer, int64_t n_head, int64_t d_model) {
  CR_CHECK(shape.pipeline >= 1 && shape.tensor >= 1, "mesh sizes pipeline {} tensor {}", shape.pipeline, shape.tensor);
  std::vector<std::string> problems;
  if (shape.pipeline > n_layer) {
    problems.push_back(fmt::format("pipeline {} is more than n_layer {}: each pipeline stage needs at least one layer",
                                   shape.pipeline, n_layer));
  }
  if (n_head % shape.tensor != 0) {
    problems.push_back(fmt::format("n_head {} is not divisible by tensor {}: each tensor rank computes whole heads",
                                   n_head, shape.tensor));
  }
  if (d_model % shape.tensor != 0) {
    problems.push_back(fmt::format(
        "d_model {} is not divisible by tensor {}: tensor ranks split the hidden size evenly", d_model, shape.tensor));
  }
  if (!problems.empty()) fail("the parallel layout does not fit the model: {}", fmt::join(problems, "; "));
}

}  // namespace cr
