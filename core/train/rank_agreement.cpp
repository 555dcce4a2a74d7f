#include "core/train/rank_agreement.h"

#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "core/base/crc32.h"
#include "core/base/error.h"

namespace cr {
namespace {

int64_t checksum(const std::string& text) { return crc32(text.data(), text.size()); }

}  // namespace

void check_ranks_agree(Communicator* control, const StartupChoice& choice) {
  if (!control || control->size() == 1) return;
  constexpr int kFields = 3;  // config hash, checkpoint path hash, resume step
  auto mine = torch::tensor({checksum(choice.config_text), checksum(choice.checkpoint.value_or("")), choice.resume_step},
                            torch::kLong);
  auto all = torch::empty({kFields * control->size()}, torch::kLong);
  control->all_gather(mine, all);
  const auto* v = all.data_ptr<int64_t>();
  std::vector<std::string> problems;
  for (int r = 1; r < control->size(); ++r) {
    const int64_t* theirs = v + kFields * r;
    if (theirs[0] != v[0]) problems.push_back(fmt::format("rank {} has a different config", r));
    if (theirs[1] != v[1] || theirs[2] != v[2]) {
      problems.push_back(fmt::format("rank {} resumes from another checkpoint (step {}) than rank 0 (step {})", r,
                                     theirs[2], v[2]));
    }
  }
  if (!problems.empty()) {
    fail("the ranks disagree at start-up: {}; this rank ({}) {}. Give every rank the same config and a checkpoint "
         "directory they all see",
         fmt::join(problems, "; "), control->rank(),
         choice.checkpoint ? "resumes from " + *choice.checkpoint : std::string("starts from scratch"));
  }
}

}  // namespace cr
