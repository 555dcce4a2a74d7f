#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cmd/launch.h"
#include "cmd/mpirun_messages.h"
#include "core/base/error.h"
#include "tests/shared_data.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using cr::EnvironmentMap;
using Args = std::vector<std::string>;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("cr_test_launch_" + std::to_string(getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Everything after the self executable in an mpirun command.
Args forwarded(const Args& command, const std::string& self = "/opt/cr/colossal-run") {
  const auto it = std::find(command.begin(), command.end(), self);
  REQUIRE(it != command.end());
  return Args(it + 1, command.end());
}

bool contains(const Args& args, const std::string& item) {
  return std::find(args.begin(), args.end(), item) != args.end();
}

}  // namespace

// ---- Environment detection ----

TEST_CASE("no launcher: a single process", "[launch]") {
  const auto launch = cr::detect_launch_environment(EnvironmentMap{{"HOME", "/root"}, {"PATH", "/usr/bin"}});
  CHECK(launch.launcher == "none");
  CHECK_FALSE(launch.under_mpi);
  CHECK_FALSE(launch.under_slurm);
  CHECK(launch.rank == 0);
  CHECK(launch.world_size == 1);
  CHECK(launch.local_size == 1);
  CHECK(launch.warning.empty());
  CHECK(cr::ranks_on_this_node(launch) == 1);
}

TEST_CASE("Open MPI's mpirun", "[launch]") {
  const EnvironmentMap env = {{"OMPI_COMM_WORLD_RANK", "5"},       {"OMPI_COMM_WORLD_SIZE", "8"},
                              {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                              {"PMIX_RANK", "5"}};
  const auto launch = cr::detect_launch_environment(env);
  CHECK(launch.launcher == "openmpi");
  CHECK(launch.under_mpi);
  CHECK_FALSE(launch.under_slurm);
  CHECK(launch.rank == 5);
  CHECK(launch.world_size == 8);
  CHECK(launch.local_rank == 1);
  CHECK(launch.local_size == 4);
  CHECK(cr::ranks_on_this_node(launch) == 4);
}

TEST_CASE("mpirun inside a SLURM allocation is still mpirun", "[launch]") {
  const EnvironmentMap env = {{"SLURM_JOB_ID", "77"},        {"SLURM_PROCID", "0"},
                              {"SLURM_NTASKS", "16"},        {"OMPI_COMM_WORLD_RANK", "9"},
                              {"OMPI_COMM_WORLD_SIZE", "16"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                              {"OMPI_COMM_WORLD_LOCAL_SIZE", "8"}};
  const auto launch = cr::detect_launch_environment(env);
  CHECK(launch.launcher == "openmpi");
  CHECK(launch.under_slurm);
  CHECK(launch.rank == 9);
  CHECK(launch.world_size == 16);
  CHECK(launch.warning.empty());
}

TEST_CASE("srun --mpi=pmix: rank from PMIx, sizes from SLURM", "[launch]") {
  const EnvironmentMap env = {{"SLURM_JOB_ID", "1234"},          {"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "11"},
                              {"SLURM_NTASKS", "16"},            {"SLURM_LOCALID", "3"}, {"SLURM_NODEID", "1"},
                              {"SLURM_TASKS_PER_NODE", "8(x2)"}, {"PMIX_RANK", "11"},
                              {"PMIX_NAMESPACE", "slurm.pmix.1234.0"}};
  const auto launch = cr::detect_launch_environment(env);
  CHECK(launch.launcher == "pmix");
  CHECK(launch.under_mpi);
  CHECK(launch.under_slurm);
  CHECK(launch.rank == 11);
  CHECK(launch.world_size == 16);
  CHECK(launch.local_rank == 3);
  CHECK(launch.local_size == 8);
}

TEST_CASE("the thread share follows srun's --cpus-per-task", "[launch]") {
  EnvironmentMap env = {{"SLURM_JOB_ID", "1"},  {"SLURM_STEP_ID", "0"},  {"SLURM_PROCID", "3"},
                        {"SLURM_NTASKS", "8"},  {"SLURM_LOCALID", "3"},  {"SLURM_TASKS_PER_NODE", "8"},
                        {"PMIX_RANK", "3"}};
  auto launch = cr::detect_launch_environment(env);
  CHECK(launch.cpus_per_task == 0);
  CHECK(cr::ranks_sharing_cores(launch, 64) == 8);  // everyone sees the whole node

  env["SLURM_CPUS_PER_TASK"] = "8";
  launch = cr::detect_launch_environment(env);
  CHECK(launch.cpus_per_task == 8);
  CHECK(cr::ranks_on_this_node(launch) == 8);
  CHECK(cr::ranks_sharing_cores(launch, 64) == 8);  // unbound: 64 / 8 = 8 threads each
  CHECK(cr::ranks_sharing_cores(launch, 8) == 1);   // bound to its own 8 CPUs: all of them
  CHECK(cr::ranks_sharing_cores(launch, 4) == 1);   // fewer than asked for: still all of them
}

TEST_CASE("PMIx outside SLURM leaves the sizes to MPI", "[launch]") {
  const auto launch = cr::detect_launch_environment(EnvironmentMap{{"PMIX_RANK", "2"}});
  CHECK(launch.launcher == "pmix");
  CHECK(launch.rank == 2);
  CHECK(launch.world_size == 0);
  CHECK(launch.local_size == 0);
  CHECK(cr::ranks_on_this_node(launch) == 1);
  CHECK_NOTHROW(cr::check_mpi_matches_launch(launch, 2, 4));
}

TEST_CASE("plain srun: the step's tasks per node, on this node", "[launch]") {
  EnvironmentMap env = {{"SLURM_JOBID", "99"},   {"SLURM_STEPID", "2"},
                        {"SLURM_PROCID", "9"},   {"SLURM_STEP_NUM_TASKS", "10"},
                        {"SLURM_NTASKS", "12"},  {"SLURM_LOCALID", "0"},
                        {"SLURM_NODEID", "2"},   {"SLURM_STEP_TASKS_PER_NODE", "4(x2),2"},
                        {"SLURM_TASKS_PER_NODE", "4(x3)"}};
  auto launch = cr::detect_launch_environment(env);
  CHECK(launch.launcher == "slurm");
  CHECK_FALSE(launch.under_mpi);
  CHECK(launch.under_slurm);
  CHECK(launch.rank == 9);
  CHECK(launch.world_size == 10);  // the step's, not the allocation's
  CHECK(launch.local_size == 2);   // node 2 of the step runs 2 tasks

  env.erase("SLURM_STEP_TASKS_PER_NODE");
  env.erase("SLURM_TASKS_PER_NODE");
  env["SLURM_NTASKS_PER_NODE"] = "4";
  CHECK(cr::detect_launch_environment(env).local_size == 4);

  env.erase("SLURM_NTASKS_PER_NODE");
  CHECK(cr::detect_launch_environment(env).local_size == 0);
}

TEST_CASE("MPICH Hydra and srun --mpi=pmi2", "[launch]") {
  const EnvironmentMap hydra = {
      {"PMI_RANK", "3"}, {"PMI_SIZE", "6"}, {"MPI_LOCALRANKID", "0"}, {"MPI_LOCALNRANKS", "3"}};
  auto launch = cr::detect_launch_environment(hydra);
  CHECK(launch.launcher == "pmi");
  CHECK(launch.under_mpi);
  CHECK(launch.rank == 3);
  CHECK(launch.world_size == 6);
  CHECK(launch.local_rank == 0);
  CHECK(launch.local_size == 3);

  const EnvironmentMap pmi2 = {{"PMI_RANK", "5"},    {"PMI_SIZE", "8"},       {"PMI_FD", "7"},
                               {"SLURM_JOB_ID", "5"}, {"SLURM_STEP_ID", "1"}, {"SLURM_PROCID", "5"},
                               {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_TASKS_PER_NODE", "4(x2)"},
                               {"SLURM_NODEID", "1"}};
  launch = cr::detect_launch_environment(pmi2);
  CHECK(launch.launcher == "pmi");
  CHECK(launch.under_slurm);
  CHECK(launch.rank == 5);
  CHECK(launch.local_rank == 1);
  CHECK(launch.local_size == 4);
}

TEST_CASE("a SLURM batch script without srun runs one process, with a warning", "[launch]") {
  // sbatch sets SLURM_PROCID=0 for the script itself, but no step id.
  EnvironmentMap env = {{"SLURM_JOB_ID", "42"}, {"SLURM_PROCID", "0"},         {"SLURM_LOCALID", "0"},
                        {"SLURM_NTASKS", "16"}, {"SLURM_TASKS_PER_NODE", "8(x2)"}};
  auto launch = cr::detect_launch_environment(env);
  CHECK(launch.launcher == "none");
  CHECK(launch.under_slurm);
  CHECK(launch.world_size == 1);
  CHECK_THAT(launch.warning, Contains("16 tasks") && Contains("srun"));

  // An interactive step (salloc with use_interactive_step) carries one of Slurm's reserved ids.
  env["SLURM_STEP_ID"] = "4294967290";
  CHECK(cr::detect_launch_environment(env).launcher == "none");

  env["SLURM_NTASKS"] = "1";
  CHECK(cr::detect_launch_environment(env).warning.empty());
}

TEST_CASE("inconsistent launcher variables are errors naming them", "[launch]") {
  CHECK_THROWS_WITH(cr::detect_launch_environment(EnvironmentMap{{"OMPI_COMM_WORLD_RANK", "x"}}),
                    Contains("environment variable OMPI_COMM_WORLD_RANK='x'"));
  CHECK_THROWS_WITH(cr::detect_launch_environment(EnvironmentMap{{"PMI_RANK", "4"}, {"PMI_SIZE", "4"}}),
                    Contains("rank 4 is not below world size 4"));
  CHECK_THROWS_WITH(cr::detect_launch_environment(EnvironmentMap{{"SLURM_JOB_ID", "1"},
                                                                 {"SLURM_STEP_ID", "0"},
                                                                 {"SLURM_PROCID", "0"},
                                                                 {"SLURM_NTASKS", "2"},
                                                                 {"SLURM_LOCALID", "0"},
                                                                 {"SLURM_NODEID", "3"},
                                                                 {"SLURM_TASKS_PER_NODE", "1(x2)"}}),
                    Contains("SLURM_TASKS_PER_NODE='1(x2)' lists 2 nodes, but SLURM_NODEID is 3"));
}

TEST_CASE("SLURM's compressed tasks-per-node lists", "[launch]") {
  CHECK(cr::parse_slurm_tasks_per_node("4") == std::vector<int>{4});
  CHECK(cr::parse_slurm_tasks_per_node("4(x2)") == std::vector<int>{4, 4});
  CHECK(cr::parse_slurm_tasks_per_node("2(x3),1,4(x2)") == std::vector<int>{2, 2, 2, 1, 4, 4});
  CHECK_THROWS_WITH(cr::parse_slurm_tasks_per_node("4(y2)"), Contains("cannot read '4(y2)'"));
  CHECK_THROWS_WITH(cr::parse_slurm_tasks_per_node("4,,2"), Contains("cannot read ''"));
  CHECK_THROWS_WITH(cr::parse_slurm_tasks_per_node("4(x2"), Contains("cannot read '4(x2'"));
}

// ---- What to do with --nprocs ----

TEST_CASE("nprocs > 1 relaunches only outside a launcher", "[launch]") {
  const cr::LaunchEnvironment alone;
  CHECK_FALSE(cr::needs_mpirun(alone, 1));
  CHECK(cr::needs_mpirun(alone, 4));

  const auto ranked = cr::detect_launch_environment(EnvironmentMap{
      {"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
      {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}});
  CHECK_FALSE(cr::needs_mpirun(ranked, 1));
  CHECK_FALSE(cr::needs_mpirun(ranked, 4));
  CHECK_THROWS_WITH(cr::needs_mpirun(ranked, 8), Contains("--nprocs 8: this process is already rank 0 of 4"));
}

TEST_CASE("MPI must see the world the launcher announced", "[launch]") {
  const auto launch = cr::detect_launch_environment(EnvironmentMap{{"SLURM_JOB_ID", "1"},
                                                                   {"SLURM_STEP_ID", "0"},
                                                                   {"SLURM_PROCID", "3"},
                                                                   {"SLURM_NTASKS", "16"},
                                                                   {"SLURM_LOCALID", "3"},
                                                                   {"SLURM_NTASKS_PER_NODE", "8"}});
  CHECK_NOTHROW(cr::check_mpi_matches_launch(launch, 3, 16));
  CHECK_THROWS_WITH(cr::check_mpi_matches_launch(launch, 0, 1),
                    Contains("rank 3 of 16, but MPI sees rank 0 of 1") && Contains("srun --mpi=pmix"));
  CHECK_NOTHROW(cr::check_mpi_matches_launch(cr::LaunchEnvironment{}, 0, 1));
}

// ---- The mpirun command line ----

TEST_CASE("mpirun flags for a workstation", "[launch]") {
  const std::string self = "/opt/cr/colossal-run";
  const Args args = {"--config", "a.yaml", "--nprocs", "4"};

  const Args user = cr::mpirun_command(self, args, 4, 8, false, std::nullopt);
  CHECK(Args(user.begin(), user.begin() + 3) == Args{"mpirun", "-np", "4"});
  CHECK_FALSE(contains(user, "--oversubscribe"));
  CHECK_FALSE(contains(user, "--allow-run-as-root"));
  CHECK_FALSE(contains(user, "--hostfile"));
  CHECK(contains(user, "--use-hwthread-cpus"));
  CHECK(forwarded(user) == Args{"--config", "a.yaml"});
  const auto bind = std::find(user.begin(), user.end(), "--bind-to");
  REQUIRE(bind != user.end());
  CHECK(*(bind + 1) == "none");

  const Args root = cr::mpirun_command(self, args, 4, 2, true, std::nullopt);
  CHECK(contains(root, "--oversubscribe"));
  CHECK(contains(root, "--allow-run-as-root"));
  CHECK(contains(cr::mpirun_command(self, args, 2, 2, false, std::nullopt), "--use-hwthread-cpus"));
  CHECK_FALSE(contains(cr::mpirun_command(self, args, 2, 2, false, std::nullopt), "--oversubscribe"));
}

TEST_CASE("mpirun with a hostfile leaves slots to the hostfile", "[launch]") {
  const Args command = cr::mpirun_command("/opt/cr/colossal-run", {"--hostfile", "hosts.txt", "-c", "x.yaml"}, 16, 2,
                                          false, std::string("hosts.txt"));
  const auto hostfile = std::find(command.begin(), command.end(), "--hostfile");
  REQUIRE(hostfile != command.end());
  CHECK(*(hostfile + 1) == "hosts.txt");
  CHECK_FALSE(contains(command, "--oversubscribe"));
  CHECK_FALSE(contains(command, "--use-hwthread-cpus"));
  CHECK(forwarded(command) == Args{"-c", "x.yaml"});
}

TEST_CASE("arguments are forwarded unchanged, minus --nprocs and --hostfile", "[launch]") {
  const Args args = {"train",
                     "--config",
                     "my configs/run 1.yaml",
                     "--nprocs=8",
                     "--set",
                     "train.note=a b=c",
                     "--hostfile=hosts",
                     "--set",
                     "data.train=[\"x y.bin\", 'z.bin']",
                     "--set=optimizer.lr=1e-3",
                     "--nprocs",
                     "8",
                     "--set",
                     "--nprocs",  // the value of --set, not an option
                     "--hostfile",
                     "h2",
                     "-c",
                     "--hostfile",  // a config file with an odd name
                     "--set",
                     "",
                     "--",
                     "--nprocs",
                     "2"};
  const Args expected = {"train",
                         "--config",
                         "my configs/run 1.yaml",
                         "--set",
                         "train.note=a b=c",
                         "--set",
                         "data.train=[\"x y.bin\", 'z.bin']",
                         "--set=optimizer.lr=1e-3",
                         "--set",
                         "--nprocs",
                         "-c",
                         "--hostfile",
                         "--set",
                         "",
                         "--",
                         "--nprocs",
                         "2"};
  CHECK(forwarded(cr::mpirun_command("/opt/cr/colossal-run", args, 8, 8, false, std::nullopt)) == expected);
}

// ---- Running a child ----

TEST_CASE("find_executable searches PATH like a shell", "[launch]") {
  TempDir dir;
  const fs::path tool = dir.path / "mpirun";
  std::ofstream(tool) << "#!/bin/sh\n";
  CHECK_FALSE(cr::find_executable("mpirun", dir.path.string()));  // not executable yet
  fs::permissions(tool, fs::perms::owner_all);
  CHECK(cr::find_executable("mpirun", "/nonexistent:" + dir.path.string()) == tool.string());
  CHECK_FALSE(cr::find_executable("mpirun", "/nonexistent"));
  CHECK(cr::find_executable(tool.string(), "") == tool.string());
  CHECK(cr::find_executable("sh", "/nonexistent:/bin") == std::string("/bin/sh"));
}

TEST_CASE("self_executable is this test program", "[launch]") {
  CHECK(fs::path(cr::self_executable()).filename() == "test_launch");
}

TEST_CASE("run_forwarding_signals returns the child's exit status", "[launch]") {
  CHECK(cr::run_forwarding_signals({"/bin/sh", "-c", "exit 0"}) == 0);
  CHECK(cr::run_forwarding_signals({"/bin/sh", "-c", "exit 3"}) == 3);
  CHECK(cr::run_forwarding_signals({"/bin/sh", "-c", "kill -9 $$"}) == 128 + 9);
  CHECK_THROWS_WITH(cr::run_forwarding_signals({"/nonexistent/mpirun"}),
                    Contains("cannot run /nonexistent/mpirun: No such file or directory"));
}

TEST_CASE("run_forwarding_signals forwards SIGTERM to the child", "[launch]") {
  TempDir dir;
  const fs::path ready = dir.path / "ready", got = dir.path / "got";
  const std::string script = "trap 'echo TERM > \"" + got.string() + "\"; exit 5' TERM; touch \"" + ready.string() +
                             "\"; while :; do sleep 0.05; done";
  std::thread sender([&] {
    for (int i = 0; i < 200 && !fs::exists(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    kill(getpid(), SIGTERM);
  });
  const int status = cr::run_forwarding_signals({"/bin/sh", "-c", script});
  sender.join();
  CHECK(status == 130);  // failed after a forwarded stop signal: "stopped"
  CHECK(read_text(got) == "TERM\n");
}

TEST_CASE("mpirun passes tricky arguments through unchanged", "[launch][mpirun]") {
  const char* path = std::getenv("PATH");
  const auto mpirun = cr::find_executable("mpirun", path ? path : "");
  if (!cr::test::available_or_skip(mpirun.has_value(), "mpirun (on PATH)")) return;
  TempDir dir;
  // Each rank writes its arguments, one per line, to a file named after its rank.
  const std::string script = "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"" + dir.path.string() +
                             "/rank$OMPI_COMM_WORLD_RANK\"";
  const Args args = {"-c", script, "sh", "--set", "note=it's \"quoted\" = x y", "--nprocs", "2", "--set", "a="};
  Args command = cr::mpirun_command("/bin/sh", args, 2, 1, geteuid() == 0, std::nullopt);
  command.front() = *mpirun;
  REQUIRE(cr::run_forwarding_signals(command) == 0);
  const std::string expected = "--set\nnote=it's \"quoted\" = x y\n--set\na=\n";
  CHECK(read_text(dir.path / "rank0") == expected);
  CHECK(read_text(dir.path / "rank1") == expected);
}

namespace {

// What the filter prints for mpirun's stderr `lines`, in order.
Args filtered(cr::MpirunMessages& messages, const Args& lines) {
  Args out;
  for (const auto& line : lines) {
    for (auto& printed : messages.line(line)) out.push_back(printed);
  }
  for (auto& printed : messages.finish()) out.push_back(printed);
  return out;
}

const std::string kRule(74, '-');

}  // namespace

TEST_CASE("mpirun's notices become one line naming the rank, its boilerplate goes", "[launch]") {
  cr::MpirunMessages messages;
  // Regression: a SIGKILLed rank showed only Open MPI's box, with no line of ours naming the rank.
  const Args out = filtered(
      messages, {"step 1/10 | loss 6.2", kRule, "Primary job  terminated normally, but 1 process returned",
                 "a non-zero exit code. Per user-direction, the job has been aborted.", kRule, kRule,
                 "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed).", kRule,
                 "mpirun: Forwarding signal 10 to job"});
  REQUIRE(out.size() == 2);
  CHECK(out[0] == "step 1/10 | loss 6.2");
  CHECK_THAT(out[1], Catch::StartsWith("error: rank 1 (on vm) was killed by signal 9 (Killed), so the job stopped"));

  cr::MpirunMessages other;
  const Args aborted = filtered(
      other, {"error: [rank 0] data.train: no files match", kRule, "MPI_ABORT was invoked on rank 0 in communicator",
              "MPI_COMM_WORLD", "with errorcode 1.", kRule, kRule,
              "mpirun detected that one or more processes exited with non-zero status, thus causing",
              "the job to be terminated. The first process to do so was:", "", "  Process name: [[10485,1],1]",
              "  Exit code:    3", kRule, kRule, "Some other notice", kRule, kRule, "unclosed"});
  CHECK(aborted == Args{"error: [rank 0] data.train: no files match",
                        "error: rank 1 exited with status 3, so the job stopped", kRule, "Some other notice", kRule,
                        kRule, "unclosed"});
}
