// Starting the ranks of a job: recognising an outer launcher (mpirun, srun, Hydra) from the
// environment, or re-executing this program under mpirun for `--nprocs N`. The decisions are
// pure functions of an environment map and the arguments, so they are tested without MPI.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cr {

class MpirunMessages;

using EnvironmentMap = std::map<std::string, std::string>;

struct LaunchEnvironment {
  bool under_mpi = false;    // an MPI launcher started this process: MPI_Init joins its job
  bool under_slurm = false;  // inside a SLURM job (batch script, salloc shell or srun step)
  int rank = 0;
  int world_size = 1;  // 0: the launcher does not say (PMIx outside SLURM); MPI_Init knows
  int local_rank = 0;  // among the ranks of this node; meaningful when local_size > 0
  int local_size = 1;  // ranks on this node; 0: the launcher does not say
  int cpus_per_task = 0;  // SLURM's --cpus-per-task (SLURM_CPUS_PER_TASK); 0 when not given
  // openmpi (mpirun), pmix (srun --mpi=pmix), pmi (MPICH Hydra, srun --mpi=pmi2),
  // slurm (srun with no MPI plugin: MPI_Init will not see the other tasks), none.
  std::string launcher = "none";
  // Set when the environment looks like a mistake, e.g. a SLURM batch script that runs
  // colossal-run without srun, so that one process would do the job of many.
  std::string warning;
};

// Throws cr::Error naming the variable when a launcher's variable is not a valid number.
LaunchEnvironment detect_launch_environment(const EnvironmentMap& env);
EnvironmentMap process_environment();

// "4(x2),3" -> {4, 4, 3}: SLURM's compressed tasks-per-node list.
std::vector<int> parse_slurm_tasks_per_node(const std::string& text);

// Ranks running on this node, at least 1.
int ranks_on_this_node(const LaunchEnvironment& launch);

// The divisor of this rank's thread share: `cores` (the CPUs in this process's affinity mask)
// divided by it is the rank's share. Under mpirun every rank sees the whole node, so it is
// ranks_on_this_node. srun may instead bind each task to its own --cpus-per-task CPUs, or
// confine the step to its allocation: with --cpus-per-task known, cores / cpus_per_task is
// right in every case.
int ranks_sharing_cores(const LaunchEnvironment& launch, int cores);

// Whether `--nprocs nprocs` asks this process to start the job under mpirun. Never under an
// outer launcher, which has already started every rank; throws cr::Error when nprocs > 1
// disagrees with that launcher's world size.
bool needs_mpirun(const LaunchEnvironment& launch, int nprocs);

// After MPI_Init: throws cr::Error when MPI's rank or world size differs from what the
// launcher announced, which means MPI did not join the launcher's job (srun without PMIx).
void check_mpi_matches_launch(const LaunchEnvironment& launch, int mpi_rank, int mpi_world_size);

// The mpirun command line that starts nprocs copies of self_exe with the original arguments
// minus --nprocs and --hostfile. `cores`: logical CPUs of this machine, for oversubscription.
std::vector<std::string> mpirun_command(const std::string& self_exe, const std::vector<std::string>& original_args,
                                        int nprocs, int cores, bool is_root,
                                        const std::optional<std::string>& hostfile);

// Runs mpirun_command (mpirun found on PATH, self from /proc/self/exe) and returns its exit
// status: 0 when every rank succeeded, 130 after a forwarded SIGINT/SIGTERM, else non-zero.
int relaunch_under_mpirun(const std::vector<std::string>& original_args, int nprocs, int cores,
                          const std::optional<std::string>& hostfile);

// The pieces of relaunch_under_mpirun, separately testable.
std::optional<std::string> find_executable(const std::string& name, const std::string& path_env);
std::string self_executable();
struct ForwardingOptions {
  // Sent instead of the first SIGINT / SIGTERM (0: that signal itself); later ones pass as they are.
  int stop_request_signal = 0;
  // When set, the child's stderr is read through it and what it returns is printed.
  MpirunMessages* stderr_filter = nullptr;
};
// Runs argv (argv[0] a path) as a child, forwarding SIGINT/SIGTERM to it; returns its exit
// status, 128 + signal when a signal killed it, and 130 when it failed after a forwarded one.
int run_forwarding_signals(const std::vector<std::string>& argv, const ForwardingOptions& options = {});

}  // namespace cr
