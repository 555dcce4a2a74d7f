#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "parallel/pipeline_ring.h"
#include "parallel/process_mesh.h"
#include "parallel/tensor_grid.h"

using Catch::Matchers::Contains;
using cr::MeshShape;
using cr::ProcessMesh;
using Groups = std::vector<std::vector<int>>;

namespace {

MeshShape shape_of(int data, int pipeline, int tensor, int sequence = 1) {
  MeshShape shape;
  shape.data = data;
  shape.pipeline = pipeline;
  shape.tensor = tensor;
  shape.sequence = sequence;
  return shape;
}

// Every rank appears in exactly one group of the axis, and group_of / color agree with groups.
void check_partition(const ProcessMesh& mesh, const std::string& axis) {
  const Groups groups = mesh.groups(axis);
  std::set<int> seen;
  for (size_t g = 0; g < groups.size(); ++g) {
    REQUIRE(static_cast<int>(groups[g].size()) == mesh.shape().size(axis));
    for (size_t i = 0; i < groups[g].size(); ++i) {
      const int rank = groups[g][i];
      CHECK(seen.insert(rank).second);
      CHECK(mesh.color(rank, axis) == static_cast<int>(g));
      CHECK(mesh.coordinate(rank, axis) == static_cast<int>(i));
      CHECK(mesh.group_of(rank, axis) == groups[g]);
    }
  }
  CHECK(static_cast<int>(seen.size()) == mesh.world_size());
}

}  // namespace

TEST_CASE("default order: tensor innermost, data outermost", "[mesh]") {
  const ProcessMesh mesh(shape_of(2, 2, 2), 8);
  CHECK(mesh.shape().order == std::vector<std::string>{"data", "pipeline", "sequence", "tensor"});
  CHECK(mesh.groups("tensor") == Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}});
  CHECK(mesh.groups("pipeline") == Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}});
  CHECK(mesh.groups("data") == Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}});
  CHECK(mesh.groups("sequence") == Groups{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}});
  // Rank 6 = data 1, pipeline 1, tensor 0.
  CHECK(mesh.coordinate(6, "data") == 1);
  CHECK(mesh.coordinate(6, "pipeline") == 1);
  CHECK(mesh.coordinate(6, "tensor") == 0);
  CHECK(mesh.coordinate(6, "sequence") == 0);
  CHECK(mesh.group_of(5, "pipeline") == std::vector<int>{5, 7});
  for (const auto& axis : cr::mesh_axes()) check_partition(mesh, axis);
}

TEST_CASE("aliases name the same axes", "[mesh]") {
  const ProcessMesh mesh(shape_of(2, 2, 2), 8);
  CHECK(mesh.groups("tp") == mesh.groups("tensor"));
  CHECK(mesh.coordinate(6, "dp") == 1);
  CHECK(mesh.shape().size("pp") == 2);
  CHECK_THROWS_WITH(mesh.groups("model"), Contains("unknown mesh axis 'model'"));
}

TEST_CASE("custom order puts data innermost", "[mesh]") {
  MeshShape shape = shape_of(2, 2, 2);
  shape.order = cr::parse_mesh_order("tp, pp ,dp");
  const ProcessMesh mesh(shape, 8);
  // sequence (size 1) was left out and goes outermost, where it changes nothing.
  CHECK(mesh.shape().order == std::vector<std::string>{"sequence", "tensor", "pipeline", "data"});
  CHECK(mesh.groups("data") == Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}});
  CHECK(mesh.groups("pipeline") == Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}});
  CHECK(mesh.groups("tensor") == Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}});
  for (const auto& axis : cr::mesh_axes()) check_partition(mesh, axis);
}

TEST_CASE("uneven sizes and four axes partition the world", "[mesh]") {
  const ProcessMesh mesh(shape_of(3, 2, 4, 2), 48);
  CHECK(mesh.groups("tensor").front() == std::vector<int>{0, 1, 2, 3});
  CHECK(mesh.groups("sequence").front() == std::vector<int>{0, 4});
  CHECK(mesh.groups("pipeline").front() == std::vector<int>{0, 8});
  CHECK(mesh.groups("data").front() == std::vector<int>{0, 16, 32});
  CHECK(mesh.groups("data").size() == 16);
  for (const auto& axis : cr::mesh_axes()) check_partition(mesh, axis);

  MeshShape reordered = shape_of(3, 2, 4, 2);
  reordered.order = cr::parse_mesh_order("pp,tp,dp,sp");
  const ProcessMesh other(reordered, 48);
  CHECK(other.groups("sequence").front() == std::vector<int>{0, 1});
  CHECK(other.groups("data").front() == std::vector<int>{0, 2, 4});
  CHECK(other.groups("pipeline").front() == std::vector<int>{0, 24});
  for (const auto& axis : cr::mesh_axes()) check_partition(other, axis);
}

TEST_CASE("a single rank is its own group on every axis", "[mesh]") {
  const ProcessMesh mesh(MeshShape{}, 1);
  for (const auto& axis : cr::mesh_axes()) {
    CHECK(mesh.groups(axis) == Groups{{0}});
    CHECK(mesh.color(0, axis) == 0);
  }
}

TEST_CASE("describe lists sizes, order and groups", "[mesh]") {
  const std::string text = ProcessMesh(shape_of(2, 2, 2), 8).describe();
  CHECK_THAT(text, Contains("8 ranks = data 2 x pipeline 2 x sequence 1 x tensor 2"));
  CHECK_THAT(text, Contains("order: data,pipeline,sequence,tensor"));
  CHECK_THAT(text, Contains("data groups: [0,4] [1,5] [2,6] [3,7]"));
  CHECK_THAT(text, Contains("tensor groups: [0,1] [2,3] [4,5] [6,7]"));
  CHECK_THAT(text, Contains("sequence groups: none (size 1)"));

  const std::string big = ProcessMesh(shape_of(64, 1, 32), 2048).describe();
  CHECK_THAT(big, Contains("... (64 groups)"));
  CHECK_THAT(big, Contains("[0,32,64,96,128,160,192,224,...,2016] (64 ranks)"));
}

TEST_CASE("impossible layouts name every number", "[mesh]") {
  CHECK_THROWS_WITH(ProcessMesh(shape_of(2, 2, 2), 6),
                    Contains("data 2 x pipeline 2 x sequence 1 x tensor 2 = 8 ranks, but the world has 6"));
  CHECK_THROWS_WITH(ProcessMesh(shape_of(0, 1, 1), 0), Contains("data size must be at least 1, got 0"));
  CHECK_THROWS_WITH(ProcessMesh(shape_of(2, 2, 2), 8).coordinate(8, "data"),
                    Contains("rank 8 is outside the world of 8"));

  MeshShape missing = shape_of(2, 2, 2);
  missing.order = cr::parse_mesh_order("dp,pp");
  CHECK_THROWS_WITH(ProcessMesh(missing, 8), Contains("order 'data,pipeline' leaves out axis 'tensor' of size 2"));
  CHECK_THROWS_WITH(cr::parse_mesh_order("dp,pp,dp"), Contains("axis 'data' appears twice"));
  CHECK_THROWS_WITH(cr::parse_mesh_order("dp,xp"), Contains("unknown axis 'xp'"));
  CHECK_THROWS_WITH(cr::parse_mesh_order("dp,,tp"), Contains("unknown axis ''"));
}

TEST_CASE("data: auto takes the rest of the world", "[mesh]") {
  const MeshShape shape = cr::resolve_mesh_shape(std::nullopt, 2, 2, 1, 16);
  CHECK(shape.data == 4);
  CHECK(shape.pipeline == 2);
  CHECK(shape.tensor == 2);
  CHECK(shape.order == cr::mesh_axes());
  CHECK(cr::resolve_mesh_shape(std::nullopt, 1, 1, 1, 1).data == 1);
  CHECK(cr::resolve_mesh_shape(3, 1, 2, 1, 6).data == 3);

  CHECK_THROWS_WITH(cr::resolve_mesh_shape(std::nullopt, 4, 1, 1, 6),
                    Contains("world size 6 to be a multiple of pipeline 4 x sequence 1 x tensor 1 = 4"));
  CHECK_THROWS_WITH(cr::resolve_mesh_shape(std::nullopt, 2, 4, 1, 4), Contains("world size 4"));
  CHECK_THROWS_WITH(cr::resolve_mesh_shape(3, 2, 2, 1, 8),
                    Contains("data 3 x pipeline 2 x sequence 1 x tensor 2 = 12 ranks, but the world has 8"));
  CHECK_THROWS_WITH(cr::resolve_mesh_shape(std::nullopt, 0, 1, 1, 8),
                    Contains("pipeline size must be at least 1, got 0"));
  CHECK_THROWS_WITH(cr::resolve_mesh_shape(0, 1, 1, 1, 8), Contains("data size must be at least 1"));
}

TEST_CASE("the mesh must fit the model", "[mesh]") {
  CHECK_NOTHROW(cr::check_mesh_fits_model(shape_of(2, 4, 4), 12, 12, 768));
  CHECK_NOTHROW(cr::check_mesh_fits_model(shape_of(1, 12, 1), 12, 12, 768));
  CHECK_THROWS_WITH(cr::check_mesh_fits_model(shape_of(1, 13, 1), 12, 12, 768),
                    Contains("pipeline 13 is more than n_layer 12"));
  CHECK_THROWS_WITH(cr::check_mesh_fits_model(shape_of(1, 1, 8), 12, 12, 768),
                    Contains("n_head 12 is not divisible by tensor 8"));
  // Both problems in one message, so one fix-and-retry cycle is enough.
  try {
    cr::check_mesh_fits_model(shape_of(1, 4, 3), 2, 12, 100);
    FAIL("expected an error");
  } catch (const cr::Error& e) {
    CHECK_THAT(e.what(), Contains("pipeline 4 is more than n_layer 2"));
    CHECK_THAT(e.what(), Contains("d_model 100 is not divisible by tensor 3"));
    CHECK_THAT(e.what(), !Contains("n_head"));
  }
}

TEST_CASE("data x sequence groups join the ranks that hold the same parameters", "[mesh]") {
  // 16 ranks = data 2 x pipeline 2 x sequence 2 x tensor 2, default order data,pipeline,sequence,tensor.
  MeshShape shape = shape_of(2, 2, 2, 2);
  shape.order = {"data", "pipeline", "sequence", "tensor"};
  const ProcessMesh mesh(shape, 16);
  const std::vector<std::string> both = {"data", "sequence"};
  // Members differ only in data and sequence; ordered by (data, sequence) coordinates.
  CHECK(mesh.groups(both) == Groups{{0, 2, 8, 10}, {1, 3, 9, 11}, {4, 6, 12, 14}, {5, 7, 13, 15}});
  CHECK(mesh.key(10, both) == 3);   // data 1, sequence 1
  CHECK(mesh.color(10, both) == 0);
  // One axis through the multi-axis form is the single-axis group.
  CHECK(mesh.groups(std::vector<std::string>{"data"}) == mesh.groups("data"));
  for (int rank = 0; rank < 16; ++rank) CHECK(mesh.key(rank, {"tensor"}) == mesh.coordinate(rank, "tensor"));
  CHECK_THAT(mesh.describe(), Contains("data x sequence groups: [0,2,8,10] [1,3,9,11] [4,6,12,14] [5,7,13,15]"));
}

TEST_CASE("pipeline ring: each stage's incoming and outgoing edges have different colours", "[mesh][pipeline]") {
  using cr::PipelineDirection;
  for (int stages = 2; stages <= 9; ++stages) {
    INFO("stages " << stages);
    CHECK(cr::pipeline_link_colours(stages) == (stages % 2 == 0 ? 2 : 3));
    for (int s = 0; s < stages; ++s) {
      INFO("stage " << s);
      const int next = cr::pipeline_neighbour(s, PipelineDirection::Next, stages);
      const int previous = cr::pipeline_neighbour(s, PipelineDirection::Previous, stages);
      CHECK(next == (s + 1) % stages);
      CHECK(previous == (s + stages - 1) % stages);
      for (const auto direction : {PipelineDirection::Next, PipelineDirection::Previous}) {
        const int out = cr::pipeline_link_colour(s, direction, stages);
        // What this stage receives in the same direction comes from its other neighbour.
        const int sender = direction == PipelineDirection::Next ? previous : next;
        const int in = cr::pipeline_link_colour(sender, direction, stages);
        CHECK(out >= 0);
        CHECK(out < cr::pipeline_link_colours(stages));
        CHECK(out != in);
      }
      // One edge, crossed either way: one colour.
      CHECK(cr::pipeline_link_colour(s, PipelineDirection::Next, stages) ==
            cr::pipeline_link_colour(next, PipelineDirection::Previous, stages));
    }
  }
}

using namespace cr;

TEST_CASE("tensor grids: shapes, positions and the row, column, depth and batch groups", "[mesh][grid]") {
  const TensorGridShape two_d = tensor_grid_shape("2d", 4, 1);
  CHECK(two_d.q == 2);
  CHECK(two_d.size() == 4);
  CHECK(two_d.batch_parts() == 2);
  CHECK(two_d.hidden_parts() == 2);
  const GridPosition three = grid_position(two_d, 3);
  CHECK((three.layer == 0 && three.row == 1 && three.column == 1));
  CHECK(grid_group(two_d, 1, GridGroup::Row) == std::vector<int>{0, 1});
  CHECK(grid_group(two_d, 1, GridGroup::Column) == std::vector<int>{1, 3});
  CHECK(grid_group(two_d, 1, GridGroup::Batch) == std::vector<int>{1, 3});
  CHECK(grid_group(two_d, 1, GridGroup::Depth) == std::vector<int>{1});

  // Tesseract: two stacked 2 x 2 grids; the batch splits over layers x rows.
  const TensorGridShape stacked = tensor_grid_shape("2.5d", 8, 2);
  CHECK((stacked.q == 2 && stacked.depth == 2 && stacked.batch_parts() == 4));
  const GridPosition six = grid_position(stacked, 6);
  CHECK((six.layer == 1 && six.row == 1 && six.column == 0));
  CHECK(grid_rank(stacked, six) == 6);
  CHECK(batch_part(stacked, six) == 3);
  CHECK(grid_group(stacked, 6, GridGroup::Row) == std::vector<int>{6, 7});
  CHECK(grid_group(stacked, 6, GridGroup::Column) == std::vector<int>{4, 6});
  CHECK(grid_group(stacked, 6, GridGroup::Depth) == std::vector<int>{2, 6});
  CHECK(grid_group(stacked, 6, GridGroup::Batch) == std::vector<int>{0, 2, 4, 6});
  CHECK(grid_color(stacked, 6, GridGroup::Batch) == 0);
  CHECK(grid_key(stacked, 6, GridGroup::Batch) == 3);
  CHECK(grid_color(stacked, 7, GridGroup::Batch) == 1);
  // Every rank is in exactly one group of each kind.
  for (const GridGroup group : {GridGroup::Row, GridGroup::Column, GridGroup::Depth, GridGroup::Batch}) {
    std::vector<int> seen(8, 0);
    for (int rank = 0; rank < 8; ++rank) {
      if (grid_group(stacked, rank, group).front() == rank) {
        for (const int member : grid_group(stacked, rank, group)) ++seen[static_cast<size_t>(member)];
      }
    }
    CHECK(seen == std::vector<int>(8, 1));
  }
  CHECK(tensor_grid_shape("2d", 9, 1).q == 3);

  // 3d: a 2 x 2 x 2 cube; between a block's paired layers rows and columns swap roles.
  const TensorGridShape cube = tensor_grid_shape("3d", 8, 1);
  CHECK((cube.q == 2 && cube.depth == 2 && cube.batch_parts() == 4 && cube.hidden_parts() == 2));
  CHECK(grid_group(cube, 5, GridGroup::Depth) == std::vector<int>{1, 5});
  CHECK(grid_group(cube, 5, GridGroup::Batch) == std::vector<int>{1, 3, 5, 7});
  CHECK(grid_group(cube, 5, GridGroup::TransposedBatch) == std::vector<int>{0, 1, 4, 5});  // row 0
  CHECK(grid_group(stacked, 5, GridGroup::TransposedBatch) == std::vector<int>{5});
  CHECK(tensor_grid_shape("3d", 27, 1).q == 3);
  CHECK(tensor_grid_shape("1d", 6, 1).batch_parts() == 1);
}

TEST_CASE("impossible tensor grids name the numbers", "[mesh][grid]") {
  CHECK_THROWS_WITH(tensor_grid_shape("2d", 8, 1), Catch::Contains("mode 2d needs size = q^2 with q >= 2"));
  CHECK_THROWS_WITH(tensor_grid_shape("2d", 1, 1), Catch::Contains("got size 1"));
  CHECK_THROWS_WITH(tensor_grid_shape("2.5d", 6, 3), Catch::Contains("size 6 / depth 3 = 2, not a square"));
  CHECK_THROWS_WITH(tensor_grid_shape("2.5d", 8, 3), Catch::Contains("size 8 is not a multiple of depth 3"));
  CHECK_THROWS_WITH(tensor_grid_shape("1d", 4, 2), Catch::Contains("depth 2 applies to mode 2.5d"));
  CHECK_THROWS_WITH(tensor_grid_shape("3d", 9, 1), Catch::Contains("mode 3d needs size = q^3 with q >= 2"));
  CHECK_THROWS_WITH(tensor_grid_shape("3d", 8, 2), Catch::Contains("depth 2 applies to mode 2.5d"));
  CHECK_THROWS_WITH(tensor_grid_shape("4d", 4, 1), Catch::Contains("unknown mode '4d' (1d, 2d, 2.5d, 3d)"));
}
