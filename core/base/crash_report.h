// A fatal signal (segmentation fault, abort, ...) prints which signal, on which rank, and a
// backtrace before the process dies, so that a crash on one rank of a job is diagnosable.
#pragma once

namespace cr {

void install_crash_report();

}  // namespace cr
