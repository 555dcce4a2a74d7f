#include "cmd/launch.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <fmt/format.h>

#include "cmd/mpirun_messages.h"
#include "core/base/error.h"

extern char** environ;

namespace cr {
namespace {

std::optional<std::string> lookup(const EnvironmentMap& env, const std::string& name) {
  const auto it = env.find(name);
  if (it == env.end()) return std::nullopt;
  return it->second;
}

bool has(const EnvironmentMap& env, const std::string& name) { return env.count(name) > 0; }

int parse_count(const std::string& text, const std::string& what) {
  size_t used = 0;
  long value = -1;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < 0 || value > std::numeric_limits<int>::max()) {
    fail("{}='{}': expected a non-negative integer", what, text);
  }
  return static_cast<int>(value);
}

std::optional<int> int_var(const EnvironmentMap& env, const std::string& name) {
  const auto value = lookup(env, name);
  if (!value) return std::nullopt;
  return parse_count(*value, "environment variable " + name);
}

// The first of `names` that is set.
std::optional<int> first_int_var(const EnvironmentMap& env, const std::vector<std::string>& names) {
  for (const auto& name : names) {
    if (auto value = int_var(env, name)) return value;
  }
  return std::nullopt;
}

// srun sets SLURM_STEP_ID for each task of a step. The batch script and an interactive salloc
// shell are either without one or carry one of Slurm's reserved ids (0xfffffff0 and above).
bool in_srun_step(const EnvironmentMap& env) {
  auto step = lookup(env, "SLURM_STEP_ID");
  if (!step) step = lookup(env, "SLURM_STEPID");
  if (!step || !has(env, "SLURM_PROCID")) return false;
  char* end = nullptr;
  const unsigned long long id = std::strtoull(step->c_str(), &end, 10);
  return !step->empty() && *end == '\0' && id < 0xfffffff0ULL;
}

int slurm_local_size(const EnvironmentMap& env) {
  for (const std::string name : {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"}) {
    const auto list = lookup(env, name);
    if (!list) continue;
    const std::vector<int> counts = parse_slurm_tasks_per_node(*list);
    const int node = int_var(env, "SLURM_NODEID").value_or(0);
    if (node >= static_cast<int>(counts.size())) {
      fail("{}='{}' lists {} nodes, but SLURM_NODEID is {}", name, *list, counts.size(), node);
    }
    return counts[node];
  }
  return int_var(env, "SLURM_NTASKS_PER_NODE").value_or(0);
}

void check_below(int index, int size, const std::string& index_name, const std::string& size_name,
                 const std::string& launcher) {
  if (size > 0 && index >= size) {
    fail("launch environment ({}): {} {} is not below {} {}", launcher, index_name, index, size_name, size);
  }
}

}  // namespace

std::vector<int> parse_slurm_tasks_per_node(const std::string& text) {
  std::vector<int> counts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    // "N" or "N(xR)": N tasks on each of R consecutive nodes.
    const size_t paren = item.find("(x");
    const bool repeated = paren != std::string::npos && !item.empty() && item.back() == ')';
    const std::string count_text = repeated ? item.substr(0, paren) : item;
    int repeat = 1;
    try {
      if (repeated) repeat = parse_count(item.substr(paren + 2, item.size() - paren - 3), "repeat");
      counts.insert(counts.end(), repeat, parse_count(count_text, "count"));
    } catch (const Error&) {
      fail("SLURM tasks per node '{}': cannot read '{}'; expected a list like 4(x2),3", text, item);
    }
    start = comma + 1;
  }
  return counts;
}

LaunchEnvironment detect_launch_environment(const EnvironmentMap& env) {
  LaunchEnvironment launch;
  launch.under_slurm = has(env, "SLURM_JOB_ID") || has(env, "SLURM_JOBID");
  if (launch.under_slurm) launch.cpus_per_task = int_var(env, "SLURM_CPUS_PER_TASK").value_or(0);
  const bool srun_step = launch.under_slurm && in_srun_step(env);

  std::optional<int> rank, world, local_rank, local_size;
  if (has(env, "OMPI_COMM_WORLD_RANK")) {
    launch.launcher = "openmpi";
    rank = int_var(env, "OMPI_COMM_WORLD_RANK");
    world = int_var(env, "OMPI_COMM_WORLD_SIZE");
    local_rank = int_var(env, "OMPI_COMM_WORLD_LOCAL_RANK");
    local_size = int_var(env, "OMPI_COMM_WORLD_LOCAL_SIZE");
  } else if (has(env, "PMIX_RANK")) {
    // PMIx publishes only the rank in the environment; srun's variables give the rest.
    launch.launcher = "pmix";
    rank = int_var(env, "PMIX_RANK");
  } else if (has(env, "PMI_RANK")) {
    launch.launcher = "pmi";
    rank = int_var(env, "PMI_RANK");
    world = int_var(env, "PMI_SIZE");
    local_rank = first_int_var(env, {"MPI_LOCALRANKID", "PMI_LOCAL_RANK"});
    local_size = first_int_var(env, {"MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"});
  } else if (srun_step) {
    launch.launcher = "slurm";
  } else {
    const int tasks = first_int_var(env, {"SLURM_NTASKS", "SLURM_NPROCS"}).value_or(1);
    if (launch.under_slurm && tasks > 1) {
      launch.warning = fmt::format(
          "this SLURM job has {} tasks (SLURM_NTASKS) but colossal-run was started without srun, so it runs as one "
          "process; start it with `srun --mpi=pmix colossal-run ...` (see scripts/slurm/README.md)",
          tasks);
    }
    return launch;
  }
  if (srun_step) {
    if (!rank) rank = int_var(env, "SLURM_PROCID");
    if (!world) world = first_int_var(env, {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"});
    if (!local_rank) local_rank = int_var(env, "SLURM_LOCALID");
    if (!local_size) local_size = slurm_local_size(env);
  }

  launch.under_mpi = launch.launcher != "slurm";
  launch.rank = *rank;
  launch.world_size = world.value_or(0);
  launch.local_size = local_size.value_or(0);
  launch.local_rank = launch.local_size > 0 ? local_rank.value_or(0) : 0;
  check_below(launch.rank, launch.world_size, "rank", "world size", launch.launcher);
  check_below(launch.local_rank, launch.local_size, "local rank", "local size", launch.launcher);
  return launch;
}

EnvironmentMap process_environment() {
  EnvironmentMap env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    const size_t equals = text.find('=');
    if (equals != std::string::npos) env.emplace(text.substr(0, equals), text.substr(equals + 1));
  }
  return env;
}

int ranks_on_this_node(const LaunchEnvironment& launch) { return std::max(1, launch.local_size); }

int ranks_sharing_cores(const LaunchEnvironment& launch, int cores) {
  if (launch.cpus_per_task > 0) return std::max(1, cores / launch.cpus_per_task);
  return ranks_on_this_node(launch);
}

bool needs_mpirun(const LaunchEnvironment& launch, int nprocs) {
  if (nprocs <= 1) return false;
  if (launch.launcher == "none") return true;
  if (launch.world_size > 0 && nprocs != launch.world_size) {
    fail("--nprocs {}: this process is already rank {} of {} started by {} ({}); drop --nprocs and let the launcher "
         "decide the number of ranks",
         nprocs, launch.rank, launch.world_size, launch.launcher, launch.under_slurm ? "srun" : "mpirun");
  }
  return false;
}

void check_mpi_matches_launch(const LaunchEnvironment& launch, int mpi_rank, int mpi_world_size) {
  if (launch.launcher == "none" || launch.world_size == 0) return;
  if (mpi_rank == launch.rank && mpi_world_size == launch.world_size) return;
  fail("the {} launcher started this process as rank {} of {}, but MPI sees rank {} of {}: MPI did not join the "
       "launcher's job{}",
       launch.launcher, launch.rank, launch.world_size, mpi_rank, mpi_world_size,
       launch.under_slurm ? "; start it with `srun --mpi=pmix` (srun --mpi=list shows what this cluster offers)" : "");
}

std::vector<std::string> mpirun_command(const std::string& self_exe, const std::vector<std::string>& original_args,
                                        int nprocs, int cores, bool is_root,
                                        const std::optional<std::string>& hostfile) {
  std::vector<std::string> command = {"mpirun", "-np", std::to_string(nprocs)};
  if (!hostfile) {
    // Slots counted in logical CPUs, the unit of `cores` (Open MPI's default is one slot per
    // physical core), so that `--oversubscribe` is needed exactly when nprocs > cores.
    command.push_back("--use-hwthread-cpus");
    if (nprocs > cores) command.push_back("--oversubscribe");
  } else {
    command.insert(command.end(), {"--hostfile", *hostfile});
  }
  if (is_root) command.push_back("--allow-run-as-root");
  // By slot: consecutive ranks fill a node before the next one, so the innermost mesh axis
  // (tensor parallel) stays inside a node. No binding: Open MPI would otherwise pin each rank
  // to one core (np <= 2) or one socket, while each rank runs its share of the node's cores as
  // threads (cores / ranks on the node). No stdin: training reads none, and mpirun runs in its
  // own process group, where reading the terminal would stop it.
  command.insert(command.end(), {"--map-by", "slot", "--bind-to", "none", "--stdin", "none", self_exe});

  // The value of these options is the next argument, passed on as is even when it looks like
  // an option of ours (`--set note=--nprocs`, a config file named "--hostfile").
  static const std::set<std::string> takes_value = {"-c", "--config", "--set"};
  for (size_t i = 0; i < original_args.size(); ++i) {
    const std::string& arg = original_args[i];
    if (arg == "--") {
      command.insert(command.end(), original_args.begin() + i, original_args.end());
      break;
    }
    if (arg == "--nprocs" || arg == "--hostfile") {
      ++i;  // and its value
      continue;
    }
    if (arg.rfind("--nprocs=", 0) == 0 || arg.rfind("--hostfile=", 0) == 0) continue;
    command.push_back(arg);
    if (takes_value.count(arg) && i + 1 < original_args.size()) command.push_back(original_args[++i]);
  }
  return command;
}

std::optional<std::string> find_executable(const std::string& name, const std::string& path_env) {
  const auto executable = [](const std::string& path) {
    struct stat info {};
    return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && access(path.c_str(), X_OK) == 0;
  };
  if (name.find('/') != std::string::npos) return executable(name) ? std::optional(name) : std::nullopt;
  size_t start = 0;
  while (start <= path_env.size()) {
    const size_t colon = std::min(path_env.find(':', start), path_env.size());
    const std::string dir = path_env.substr(start, colon - start);
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;  // an empty entry is the current directory
    if (executable(candidate)) return candidate;
    start = colon + 1;
  }
  return std::nullopt;
}

std::string self_executable() {
  std::error_code error;
  const auto path = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) fail("cannot find this program's path (/proc/self/exe): {}", error.message());
  return path.string();
}

namespace {

volatile sig_atomic_t g_child_pid = 0;
volatile sig_atomic_t g_forwarded_signal = 0;
volatile sig_atomic_t g_stop_request_signal = 0;

constexpr char kStoppingNote[] =
    "colossal-run: stopping after the current step (training saves a checkpoint, a server ends its iteration); "
    "interrupt again to end at once\n";

extern "C" void forward_stop_signal(int signal) {
  const bool first = g_forwarded_signal == 0;
  g_forwarded_signal = signal;
  if (g_child_pid <= 0) return;
  if (first && g_stop_request_signal != 0) {
    (void)!write(STDERR_FILENO, kStoppingNote, sizeof kStoppingNote - 1);
    kill(g_child_pid, g_stop_request_signal);
  } else {
    kill(g_child_pid, signal);
  }
}

void print_lines(const std::vector<std::string>& lines) {
  for (const auto& line : lines) std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

// Reads the child's stderr until every writer has closed it, passing it through `filter`.
void relay_stderr(int fd, MpirunMessages& filter) {
  std::string pending;
  char buffer[4096];
  for (;;) {
    const ssize_t got = read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    pending.append(buffer, static_cast<size_t>(got));
    for (size_t newline; (newline = pending.find('\n')) != std::string::npos;) {
      print_lines(filter.line(pending.substr(0, newline)));
      pending.erase(0, newline + 1);
    }
  }
  if (!pending.empty()) print_lines(filter.line(pending));
  print_lines(filter.finish());
}

}  // namespace

int run_forwarding_signals(const std::vector<std::string>& argv, const ForwardingOptions& options) {
  CR_CHECK(!argv.empty(), "empty command");
  std::vector<char*> c_argv;
  for (const auto& arg : argv) c_argv.push_back(const_cast<char*>(arg.c_str()));
  c_argv.push_back(nullptr);

  // Reports a failed exec: the child writes errno into the pipe, which closes unread when the
  // exec succeeds.
  int exec_error_pipe[2];
  if (pipe2(exec_error_pipe, O_CLOEXEC) != 0) fail("cannot run {}: pipe: {}", argv[0], std::strerror(errno));
  int stderr_pipe[2] = {-1, -1};
  if (options.stderr_filter && pipe2(stderr_pipe, O_CLOEXEC) != 0) {
    close(exec_error_pipe[0]);
    close(exec_error_pipe[1]);
    fail("cannot run {}: pipe: {}", argv[0], std::strerror(errno));
  }

  // Blocked until the child's pid is recorded, so that no signal falls between fork and forwarding.
  sigset_t stop_signals, previous_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop_signals, &previous_mask);
  g_forwarded_signal = 0;
  g_stop_request_signal = options.stop_request_signal;

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec. Own process group: a terminal's Ctrl-C, sent to
    // the whole foreground group, reaches the child once, through this process, not twice.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // no orphaned job when this process is killed
    if (getppid() != parent) _exit(127);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigprocmask(SIG_SETMASK, &previous_mask, nullptr);
    if (stderr_pipe[1] >= 0) dup2(stderr_pipe[1], STDERR_FILENO);  // dup2 clears close-on-exec
    execv(c_argv[0], c_argv.data());
    const int error = errno;
    (void)!write(exec_error_pipe[1], &error, sizeof error);
    _exit(127);
  }
  if (pid < 0) {
    const int error = errno;
    sigprocmask(SIG_SETMASK, &previous_mask, nullptr);
    for (int fd : {exec_error_pipe[0], exec_error_pipe[1], stderr_pipe[0], stderr_pipe[1]}) {
      if (fd >= 0) close(fd);
    }
    fail("cannot run {}: fork: {}", argv[0], std::strerror(error));
  }
  close(exec_error_pipe[1]);
  if (stderr_pipe[1] >= 0) close(stderr_pipe[1]);

  g_child_pid = pid;
  struct sigaction forward {}, previous_int {}, previous_term {};
  forward.sa_handler = forward_stop_signal;
  sigemptyset(&forward.sa_mask);
  forward.sa_flags = SA_RESTART;
  sigaction(SIGINT, &forward, &previous_int);
  sigaction(SIGTERM, &forward, &previous_term);
  sigprocmask(SIG_SETMASK, &previous_mask, nullptr);

  int exec_error = 0;
  ssize_t got;
  do {
    got = read(exec_error_pipe[0], &exec_error, sizeof exec_error);
  } while (got < 0 && errno == EINTR);
  close(exec_error_pipe[0]);
  if (stderr_pipe[0] >= 0) {
    relay_stderr(stderr_pipe[0], *options.stderr_filter);
    close(stderr_pipe[0]);
  }

  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  g_child_pid = 0;  // before the handlers go: the pid may be reused
  sigaction(SIGINT, &previous_int, nullptr);
  sigaction(SIGTERM, &previous_term, nullptr);

  if (got == static_cast<ssize_t>(sizeof exec_error)) fail("cannot run {}: {}", argv[0], std::strerror(exec_error));
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  // A job stopped on request reports "stopped by a signal", whatever mpirun made of it.
  if (code != 0 && g_forwarded_signal != 0) return 130;
  return code;
}

int relaunch_under_mpirun(const std::vector<std::string>& original_args, int nprocs, int cores,
                          const std::optional<std::string>& hostfile) {
  const char* path = std::getenv("PATH");
  const auto mpirun = find_executable("mpirun", path ? path : "");
  if (!mpirun) fail("mpirun not found: install openmpi-bin (scripts/install-deps.sh)");
  std::vector<std::string> command =
      mpirun_command(self_executable(), original_args, nprocs, cores, geteuid() == 0, hostfile);
  command.front() = *mpirun;
  // Ctrl-C asks the ranks to stop at the next step and save: mpirun forwards SIGUSR1 to every
  // rank on every node, while a SIGINT would make it kill them a second later, mid-save.
  MpirunMessages messages;
  ForwardingOptions options;
  options.stop_request_signal = SIGUSR1;
  options.stderr_filter = &messages;
  const int code = run_forwarding_signals(command, options);
  // mpirun passes on a rank's death by signal as 128 + signal; the filter has said which rank
  // died of what, and this process did not die: report a plain failure.
  return code > 128 && code != 130 ? 1 : code;
}

}  // namespace cr
