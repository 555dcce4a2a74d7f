#include "parallel/parallel_context.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"
#include "parallel/nccl_communicator.h"

namespace cr {
std::vector<std::string> mesh_axes_of(Axis axis) {
  switch (axis) {
    case Axis::Data: return {"data"};
    case Axis::Tensor: return {"tensor"};
    case Axis::Pipeline: return {"pipeline"};
    case Axis::Sequence: return {"sequence"};
    case Axis::DataSequence: return {"data", "sequence"};
    case Axis::PipelineTensor: return {"pipeline", "tensor"};
  }
  fail("unknown parallel axis {}", static_cast<int>(axis));
}

std::string axis_name(Axis axis) { return fmt::format("{}", fmt::join(mesh_axes_of(axis), " x ")); }

ParallelContext::ParallelContext() : mesh_(MeshShape{}, 1), pipeline_links_(std::make_unique<PipelineLinks>()) {}

ParallelContext::ParallelContext(const ProcessMesh& mesh, Communicator* world, int device_index)
    : mesh_(mesh),
      world_(world),
      world_rank_(world ? world->rank() : 0),
      pipeline_links_(std::make_unique<PipelineLinks>()) {
  if (!world) {
    CR_CHECK(mesh.world_size() == 1, "a mesh of {} ranks needs a world communicator", mesh.world_size());
    return;
  }
  if (world->size() != mesh.world_size()) {
    fail("the process mesh has {} ranks but the job has {}", mesh.world_size(), world->size());
  }
  // Every rank splits every axis in the same order (splits are collective over the world).
  for (const Axis axis : kAllAxes) {
    const auto index = static_cast<size_t>(axis);
    // A two-axis group whose second axis has one rank is the first axis's group.
    const Axis alias = axis == Axis::DataSequence && size(Axis::Sequence) == 1     ? Axis::Data
                       : axis == Axis::PipelineTensor && size(Axis::Pipeline) == 1 ? Axis::Tensor
                                                                                   : axis;
    if (alias != axis) {
      host_[index] = host_[static_cast<size_t>(alias)];
      device_[index] = device_[static_cast<size_t>(alias)];
      continue;
    }
    const auto axes = mesh_axes_of(axis);
    const std::string name = fmt::format("{}", fmt::join(axes, "_"));  // "data", ..., "pipeline_tensor"
    auto host = world->split(mesh_.color(world_rank_, axes), mesh_.key(world_rank_, axes), name);
    if (host->size() == 1) continue;
    host_[index] = device_[index] = host.get();
    owned_.push_back(std::move(host));
    if (device_index >= 0) {
      owned_.push_back(nccl_group(*host_[index], device_index));
      device_[index] = owned_.back().get();
    }
  }
  if (Communicator* pipeline = host_group(Axis::Pipeline)) {
    pipeline_links_ = std::make_unique<PipelineLinks>(*pipeline, device_index);
  }
}

ParallelContext::~ParallelContext() {
  // Newest first: device twins before the host groups they were created from.
  pipeline_links_.reset();
  while (!owned_.empty()) owned_.pop_back();
}

int ParallelContext::rank(Axis axis) const { return mesh_.key(world_rank_, mesh_axes_of(axis)); }

int ParallelContext::size(Axis axis) const {
  int size = 1;
  for (const auto& name : mesh_axes_of(axis)) size *= mesh_.shape().size(name);
  return size;
}

Communicator* ParallelContext::host_group(Axis axis) const { return host_[static_cast<size_t>(axis)]; }

Communicator* ParallelContext::device_group(Axis axis) const { return device_[static_cast<size_t>(axis)]; }

}  // namespace cr
