#include "cmd/serve_command.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <thread>

#include "cmd/config_source.h"
#include "cmd/job.h"
#include "core/base/error.h"
#include "core/base/log.h"
#include "core/base/strings.h"
#include "core/infer/inference_model.h"
#include "core/serve/engine_loop.h"
#include "core/serve/http_server.h"
#include "core/serve/serving_engine.h"
#include "core/text/tokenizer.h"
#include "core/train/runtime.h"
#include "parallel/communicator.h"

namespace cr {
namespace {

std::atomic<int> stop_signal{0};

void on_stop_signal(int signal) { stop_signal = signal; }

// Blocks of the KV cache: serve.kv_cache_memory's worth, or memory_utilization of what is
// free, no more than max_batch_size full-context sequences hold.
int64_t kv_cache_blocks(const ServeConfig& serve, const InferenceModel& loaded, int64_t block_bytes) {
  const int64_t per_sequence = KvBlockManager::blocks_for(loaded.spec.max_seq_len, serve.block_size);
  int64_t blocks = 0;
  if (serve.kv_cache_memory) {
    blocks = parse_byte_size(*serve.kv_cache_memory, "serve.kv_cache_memory") / block_bytes;
  } else {
    const auto free_bytes = static_cast<double>(free_memory_bytes(loaded.device));
    blocks = std::min(static_cast<int64_t>(serve.memory_utilization * free_bytes) / block_bytes,
                      serve.max_batch_size * per_sequence);
  }
  if (blocks < 1) {
    fail("serve: the KV cache holds no block: one block of {} tokens takes {} (serve.kv_cache_memory {})",
         serve.block_size, human_bytes(static_cast<double>(block_bytes)), serve.kv_cache_memory.value_or("null"));
  }
  return blocks;
}

std::string served_name(const Config& config, const std::string& weights_from) {
  if (config.model.init_from) return std::filesystem::path(*config.model.init_from).filename().string();
  const auto run = std::filesystem::path(config.runtime.run_dir).filename().string();
  return run.empty() ? std::filesystem::path(weights_from).filename().string() : run;
}

}  // namespace

int run_serve_command(const ServeCommandOptions& options, const LaunchEnvironment& launch) {
  announce_launch_rank(launch);
  Config config = inference_layout(load_command_config(options.config));
  if (options.host) config.serve.host = *options.host;
  if (options.port) config.serve.port = *options.port;
  JobMembership job(launch, config);
  configure_threads(config.runtime, ranks_on_this_node());
  const auto tokenizer = make_tokenizer(config.data.tokenizer, config.data.tokenizer_dir);
  return job.run(config, [&](const ParallelContext& context) {
    Communicator* world = context.control();
    check_inference_layout(config, world ? world->size() : 1);
    InferenceModel loaded = load_inference_model(config, context);
    if (tokenizer->vocab_size() > loaded.spec.vocab_size) {
      fail("data.tokenizer: the {} tokenizer has {} tokens but the model's vocab_size is {}", tokenizer->name(),
           tokenizer->vocab_size(), loaded.spec.vocab_size);
    }
    const int64_t block_bytes = kv_block_bytes(*loaded.model, config.serve.block_size);
    ServingOptions serving;
    serving.block_size = config.serve.block_size;
    serving.num_blocks = kv_cache_blocks(config.serve, loaded, block_bytes);
    // Every rank schedules alike only with the same pool: rank 0's size.
    if (world) serving.num_blocks = std::stoll(broadcast_string(*world, std::to_string(serving.num_blocks)));
    serving.limits = {config.serve.max_batch_size, config.serve.max_prefill_tokens};
    ServingEngine engine(loaded.model, serving);
    // SIGUSR1: the --nprocs launcher's stop request, passed on by mpirun to every rank.
    for (int signal : {SIGINT, SIGTERM, SIGUSR1}) std::signal(signal, on_stop_signal);
    if (world && world->rank() != 0) {
      // mpirun passes Ctrl-C to every rank; rank 0 alone decides, and its stop command ends this.
      follow_engine(engine, [world] { return broadcast_string(*world, ""); });
      return 0;
    }
    std::function<void(const std::string&)> replicate;
    if (world) replicate = [world](const std::string& commands) { broadcast_string(*world, commands); };
    EngineLoop loop(engine, config.serve.max_waiting, replicate);
    ServedModel served{served_name(config, loaded.weights_from), tokenizer.get(), loaded.spec.max_seq_len,
                       loaded.spec.vocab_size,
                       tokenizer->name() == "sentencepiece" ? ChatTemplate::Llama2 : ChatTemplate::Plain};
    HttpServer server(loop, served, config.serve);
    const int port = server.bind(config.serve.host, static_cast<int>(config.serve.port));
    print0("serve: {} ({}, weights {}) | {} rank(s) | KV cache {} blocks of {} tokens, {} per rank | batch {} | "
           "http://{}:{}/v1",
           served.name, loaded.spec.arch, loaded.weights_from, world ? world->size() : 1, serving.num_blocks,
           serving.block_size, human_bytes(static_cast<double>(serving.num_blocks * block_bytes)),
           config.serve.max_batch_size, config.serve.host, port);
    std::thread watcher([&] {
      while (stop_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      server.stop();
    });
    server.run();
    if (stop_signal == 0) stop_signal = -1;  // the server ended on its own: release the watcher
    watcher.join();
    const int signal = stop_signal;
    print0("serve: stopped ({})", signal == SIGINT    ? "SIGINT"
                                  : signal == SIGTERM ? "SIGTERM"
                                  : signal == SIGUSR1 ? "a stop request, SIGUSR1"
                                                      : "server ended");
    return 0;
  });
}

}  // namespace cr
