// mpirun's own messages, made to speak colossal-run: the launcher passes mpirun's stderr (which
// carries the ranks' stderr too) through this filter line by line. Boxed notices about a rank
// that died by a signal become one line naming the rank; the MPI_ABORT and "non-zero exit code"
// boilerplate after a rank's own error message, and signal-forwarding notes, are dropped;
// everything else passes unchanged.
#pragma once

#include <string>
#include <vector>

namespace cr {

class MpirunMessages {
 public:
  // The lines to print for one line of input (without its newline); none while a box is open.
  std::vector<std::string> line(const std::string& text);
  // At the end of input: what an unclosed box held.
  std::vector<std::string> finish();

 private:
  std::vector<std::string> close_box();

  bool in_box_ = false;
  std::vector<std::string> box_;
};

}  // namespace cr
