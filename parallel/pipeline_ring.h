// The ring of pipeline stages that point-to-point messages travel around, as plain arithmetic:
// which stage a message goes to and which communicator colour its edge has (pipeline_links.h
// says why each directed edge needs one of its own). Edge i joins stage i and i + 1 (mod the
// ring); colours alternate, and an odd ring's closing edge takes a third, so that every stage's
// incoming and outgoing edges differ.
#pragma once

namespace cr {

enum class PipelineDirection { Next, Previous };

int pipeline_link_colours(int stages);  // 2, or 3 for an odd ring
// The stage a message from `sender` in `direction` goes to.
int pipeline_neighbour(int sender, PipelineDirection direction, int stages);
// The colour of the edge that message crosses.
int pipeline_link_colour(int sender, PipelineDirection direction, int stages);

}  // namespace cr
