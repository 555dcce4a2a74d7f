// A fatal signal (segmentation fault, abort, ...) prints which signal, on which rank, and a
// backtrace before the process dies, so that a crash on one rank of a job is diagnosable. The
// report runs on an alternate stack (of the installing thread), so a stack overflow reports too.
#pragma once

namespace cr {

void install_crash_report();

}  // namespace cr
