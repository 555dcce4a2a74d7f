#include "core/mesh_layout.h"

#include <optional>

namespace cr {

ProcessMesh mesh_for(const ParallelConfig& parallel, const ModelSpec& model, int world_size) {
  const std::optional<int> data =
      parallel.data > 0 ? std::optional<int>(static_cast<int>(parallel.data)) : std::nullopt;
  MeshShape shape = resolve_mesh_shape(data, static_cast<int>(parallel.pipeline), static_cast<int>(parallel.tensor),
                                       /*sequence=*/1, world_size);
  shape.order = parse_mesh_order(parallel.order);
  check_mesh_fits_model(shape, model.n_layer, model.n_head, model.d_model);
  return ProcessMesh(shape, world_size);
}

}  // namespace cr
