// The process mesh: how the global ranks of a job are arranged into data, pipeline, sequence
// and tensor parallel groups. Pure arithmetic on rank numbers (no MPI), so the layout of any
// job can be computed, printed and tested without starting one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cr {

// The four axes, by their canonical names. Configs and orders may also use dp, pp, sp, tp.
const std::vector<std::string>& mesh_axes();

struct MeshShape {
  int data = 1, pipeline = 1, tensor = 1, sequence = 1;
  // Outermost first: consecutive global ranks differ in the last (innermost) axis. Tensor is
  // innermost by default because its all-reduces run every layer and want the fastest links
  // (ranks of one node); data parallel, outermost, communicates once per step.
  std::vector<std::string> order = mesh_axes();

  int size(const std::string& axis) const;  // any axis name or alias
};

// "dp,pp,tp" or "data, pipeline, tensor" -> canonical names, outermost first. Throws cr::Error
// on an unknown or repeated axis.
std::vector<std::string> parse_mesh_order(const std::string& text);

class ProcessMesh {
 public:
  // Throws cr::Error when data * pipeline * sequence * tensor != world_size, or when the order
  // leaves out an axis of size > 1 (left-out axes of size 1 are placed outermost, where they
  // change nothing).
  ProcessMesh(const MeshShape& shape, int world_size);

  int world_size() const { return world_size_; }
  // The shape with its order completed to all four canonical axis names.
  const MeshShape& shape() const { return shape_; }

  // This rank's position along `axis`, in [0, size(axis)).
  int coordinate(int global_rank, const std::string& axis) const;
  // Every group of global ranks that differ only along `axis`, each ordered by coordinate,
  // the groups ordered by their first rank. Group i is the one with color i.
  std::vector<std::vector<int>> groups(const std::string& axis) const;
  std::vector<int> group_of(int global_rank, const std::string& axis) const;
  // Index of the rank's group along `axis`: the color for MPI_Comm_split, whose key is then
  // coordinate(rank, axis) so that the rank in the sub-communicator equals the coordinate.
  int color(int global_rank, const std::string& axis) const;

  // The same for ranks that differ only along several axes together (data x sequence: the
  // ranks that hold the same parameters). A rank's key, its position in its group, reads its
  // coordinates on `axes` as one number in mesh order.
  std::vector<std::vector<int>> groups(const std::vector<std::string>& axes) const;
  int color(int global_rank, const std::vector<std::string>& axes) const;
  int key(int global_rank, const std::vector<std::string>& axes) const;

  // Multi-line: sizes, order, and the groups of each axis, e.g. "data groups: [0,2] [1,3]"
  // (and "data x sequence groups" when sequence parallelism has its own axis).
  std::string describe() const;

 private:
  int stride(const std::string& axis) const;
  void check_rank(int global_rank) const;

  MeshShape shape_;
  int world_size_;
};

// parallel.data: null (auto) takes what is left: world / (pipeline * tensor * sequence).
// Throws cr::Error naming every number when the sizes cannot fill the world exactly.
MeshShape resolve_mesh_shape(std::optional<int> data, int pipeline, int tensor, int sequence, int world_size);

// Throws cr::Error listing every disagreement between the mesh and the model's dimensions:
// a pipeline stage needs at least one layer, and tensor parallelism splits attention heads
// and the hidden size evenly.
void check_mesh_fits_model(const MeshShape& shape, int64_t n_layer, int64_t n_head, int64_t d_model);

}  // namespace cr
