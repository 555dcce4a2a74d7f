#include "parallel/pipeline_ring.h"

namespace cr {

int pipeline_link_colours(int stages) { return stages % 2 == 0 ? 2 : 3; }

int pipeline_neighbour(int sender, PipelineDirection direction, int stages) {
  return direction == PipelineDirection::Next ? (sender + 1) % stages : (sender + stages - 1) % stages;
}

int pipeline_link_colour(int sender, PipelineDirection direction, int stages) {
  const int edge = direction == PipelineDirection::Next ? sender : pipeline_neighbour(sender, direction, stages);
  return stages % 2 == 1 && edge == stages - 1 ? 2 : edge % 2;
}

}  // namespace cr
