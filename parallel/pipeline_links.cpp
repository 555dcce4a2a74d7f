#include "parallel/pipeline_links.h"

#include <fmt/format.h>

#include "core/base/error.h"
#include "parallel/nccl_communicator.h"

namespace cr {

PipelineLinks::PipelineLinks(Communicator& pipeline_host, int device_index) : stages_(pipeline_host.size()) {
  const int colours = pipeline_link_colours(stages_);
  for (const char* direction : {"next", "previous"}) {
    for (int colour = 0; colour < colours; ++colour) {
      owned_.push_back(pipeline_host.split(0, pipeline_host.rank(), fmt::format("pipeline_{}{}", direction, colour)));
      if (device_index >= 0) owned_.push_back(nccl_group(*owned_.back(), device_index));
      links_.push_back(owned_.back().get());
    }
  }
}

PipelineLinks::~PipelineLinks() {
  while (!owned_.empty()) owned_.pop_back();
}

Communicator& PipelineLinks::from(int sender, PipelineDirection direction) const {
  CR_CHECK(stages_ > 1 && sender >= 0 && sender < stages_, "no pipeline link from stage {} of {}", sender, stages_);
  const int first = direction == PipelineDirection::Next ? 0 : pipeline_link_colours(stages_);
  return *links_[static_cast<size_t>(first + pipeline_link_colour(sender, direction, stages_))];
}

}  // namespace cr
