// ParallelContext: a rank's place in the process mesh and one communicator per axis group,
// built once per job. Every component receives the groups it needs from here; nothing else
// uses the world communicator for training traffic.
//
//   data            ranks holding the same model slice on different data
//   tensor          ranks splitting the same layers (tensor parallelism)
//   pipeline        ranks holding consecutive stages
//   sequence        ranks splitting the same sequences (sequence parallelism with its own axis)
//   data_sequence   data x sequence: the ranks that hold the same parameters, over which ZeRO
//                   shards and gradients are averaged (= data when sequence is 1)
//   pipeline_tensor pipeline x tensor: the ranks holding the other parts of the model, over which
//                   the gradient norm is summed (= tensor when pipeline is 1)
//
// Each group has a host communicator (MPI, CPU tensors) and, on GPUs, a device twin (NCCL,
// CUDA tensors) for the axes with more than one rank; data x sequence is the data group itself
// when sequence has one rank (no second communicator for the same ranks). `control()` is the world's host
// communicator, for agreement between all ranks (stop requests, checkpoint rendezvous).
// Pipelines' point-to-point messages travel on `pipeline_links()`, copies of the pipeline group
// (pipeline_links.h).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/pipeline_links.h"
#include "parallel/process_mesh.h"

namespace cr {

enum class Axis { Data, Tensor, Pipeline, Sequence, DataSequence, PipelineTensor };
constexpr Axis kAllAxes[] = {Axis::Data,     Axis::Tensor,       Axis::Pipeline,
                             Axis::Sequence, Axis::DataSequence, Axis::PipelineTensor};

std::vector<std::string> mesh_axes_of(Axis axis);  // the mesh axes it spans: {"data", "sequence"}, ...
std::string axis_name(Axis axis);                  // "data", ..., "data x sequence"

class ParallelContext {
 public:
  // A job of one process: every axis of size 1, no communicators.
  ParallelContext();
  // Collective over `world` (which must stay alive): splits it into every axis group of
  // `mesh`. device_index >= 0: also creates NCCL twins on that CUDA device.
  ParallelContext(const ProcessMesh& mesh, Communicator* world, int device_index = -1);
  ~ParallelContext();
  ParallelContext(const ParallelContext&) = delete;
  ParallelContext& operator=(const ParallelContext&) = delete;

  const ProcessMesh& mesh() const { return mesh_; }
  int world_rank() const { return world_rank_; }
  int world_size() const { return mesh_.world_size(); }

  int rank(Axis axis) const;  // coordinate along the axis (position in its group)
  int size(Axis axis) const;
  // The axis group's host communicator; null when the axis has one rank.
  Communicator* host_group(Axis axis) const;
  // The group that carries tensors on the training device: the NCCL twin on GPUs, else the host
  // communicator; null when the axis has one rank.
  Communicator* device_group(Axis axis) const;
  // Every rank of the job, host side; null for a single process.
  Communicator* control() const { return world_; }
  // The communicators of the pipeline's point-to-point messages (none without a pipeline).
  const PipelineLinks& pipeline_links() const { return *pipeline_links_; }

 private:
  static constexpr size_t kAxes = 6;

  ProcessMesh mesh_;
  Communicator* world_ = nullptr;
  int world_rank_ = 0;
  std::array<Communicator*, kAxes> host_{}, device_{};  // by Axis; null for an axis of one rank
  std::vector<std::unique_ptr<Communicator>> owned_;    // device twins after their host groups
  std::unique_ptr<PipelineLinks> pipeline_links_;       // destroyed before the groups
};

}  // namespace cr
