// The typed run configuration: YAML in, validated structs out, resolved YAML back.
// The schema (every key, its type, default, range and meaning) lives in config_schema.cpp and
// is the single source for parsing, --set overrides, the resolved dump and docs/config.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace cr {

struct ModelConfig {
  std::optional<std::string> arch;  // gpt2 | opt | llama; null: the preset's (gpt2 without one)
  std::optional<std::string> preset = "gpt2";  // null: every dimension given explicitly
  // Explicit dimensions override the preset's.
  std::optional<int64_t> n_layer, n_head, n_kv_head, d_model, d_ff, vocab_size, max_seq_len;
  double dropout = 0.0;
  std::optional<std::string> init_from;  // checkpoint directory to start from
};

struct DataConfig {
  std::string format = "tokens";           // tokens | text | synthetic
  std::vector<std::string> train;          // file paths or globs
  std::vector<std::string> val;            // empty: hold out val_fraction of train
  double val_fraction = 0.05;
  int64_t seq_len = 256;
  std::string tokenizer = "byte";          // byte | gpt2 | sentencepiece (text format only)
  std::optional<std::string> tokenizer_dir;  // encoder.json + vocab.bpe, or vocab.json + merges.txt
};

struct TrainConfig {
  int64_t micro_batch_size = 4;
  int64_t global_batch_size = 0;  // 0: micro_batch_size x data-parallel ranks (no accumulation)
  int64_t steps = 1000;
  int64_t seed = 42;
  double clip_grad_norm = 1.0;  // 0: no clipping
  int64_t log_every = 10;
  int64_t eval_every = 200;     // 0: no periodic evaluation
  int64_t eval_batches = 20;
  double peak_flops = 0.0;      // FLOP/s for MFU; 0: datasheet peak of a known GPU, else a measured GEMM
  bool time_breakdown = false;  // GPUs: wait for each phase's kernels so its time is exact
  std::string activation_checkpointing = "none";  // none | full | selective
};

struct OptimizerConfig {
  std::string name = "adamw";  // adamw | adam
  double lr = 6.0e-4;
  std::vector<double> betas = {0.9, 0.95};
  double eps = 1.0e-8;
  double weight_decay = 0.1;
};

struct LrScheduleConfig {
  std::string kind = "cosine";  // cosine | linear | constant
  int64_t warmup_steps = 100;
  double min_lr = 6.0e-5;
  int64_t decay_steps = 0;  // 0: decay over train.steps
};

struct PrecisionConfig {
  std::string dtype = "fp32";  // fp32 | bf16 | fp16
  bool master_weights = true;  // bf16 / fp16: fp32 master weights for the optimizer
  // fp16's dynamic loss scaler, with Colossal-AI's names and defaults.
  double initial_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 1000;
  int64_t hysteresis = 2;
  double min_scale = 1.0;
  double max_scale = 4294967296.0;
};

struct SequenceParallelConfig {
  std::string mode = "none";  // none | split_gather | all_to_all | ring_attn
  int64_t size = 1;           // all_to_all, ring_attn: ranks of the sequence axis

  bool own_axis() const { return mode == "all_to_all" || mode == "ring_attn"; }
  int64_t axis_size() const { return own_axis() ? size : 1; }  // the mesh's sequence axis
};

struct PipelineConfig {
  int64_t size = 1;                       // stages
  std::string schedule = "1f1b";          // gpipe | 1f1b | interleaved | zero_bubble
  int64_t microbatches = 0;               // per step and data rank; 0: the gradient accumulation steps
  std::vector<int64_t> layers_per_stage;  // blocks of each (virtual) stage; empty: balanced by cost
  int64_t chunks = 1;                     // interleaved: model chunks per stage (V)
};

struct TensorConfig {
  int64_t size = 1;         // tensor-parallel ranks per group
  std::string mode = "1d";  // 1d (Megatron) | 2d (q x q grid) | 2.5d (depth x q x q grids) | 3d (q^3 cube)
  int64_t depth = 1;        // 2.5d: stacked grids
};

struct ParallelConfig {
  int64_t data = 0;          // data-parallel ranks; 0: what tensor x pipeline leave of the job
  TensorConfig tensor;
  PipelineConfig pipeline;
  SequenceParallelConfig sequence;
  std::string order = "data,pipeline,sequence,tensor";  // mesh axes, outermost first
  double bucket_mb = 25.0;   // gradient all-reduce bucket size
};

struct ZeroConfig {
  int64_t stage = 0;  // 0: replicated; 1: + optimizer states sharded; 2: + gradients; 3: + parameters
  bool overlap_communication = true;  // reduce gradients during backward; stage 3: prefetch layers
  // Gemini (memory/gemini): null keeps ZeRO's flat buffers; static | cuda | cpu | auto places chunks.
  std::optional<std::string> placement_policy;
  double shard_param_frac = 1.0;    // static: chunks whose compute weights are sharded (the rest stay gathered)
  double offload_optim_frac = 0.0;  // static: chunks whose fp32 state (master, gradients, moments) is on the host
  double offload_param_frac = 0.0;  // static: chunks whose compute weights are on the host
  double gpu_margin_mem_ratio = 0.0;         // auto: share of the device margin given to fp32 state
  double warmup_non_model_data_ratio = 0.8;  // auto: device share kept for activations in warm-up
  double steady_cuda_cap_ratio = 0.9;        // auto: device share usable after warm-up
  int64_t max_prefetch = 0;                  // auto: chunks fetched ahead of their use
  double chunk_size_m = 0;       // elements per chunk in 2^20s; 0: searched
  double search_range_m = 32;    // search: sizes tried above the largest parameter, in 2^20 elements
  double min_chunk_size_m = 32;  // search: smallest chunk; a smaller model stays one gathered chunk
  double nvme_offload_fraction = 0.0;  // share of host-placed fp32 state kept in files under nvme_path
  std::optional<std::string> nvme_path;
};

struct CheckpointConfig {
  std::optional<std::string> dir;  // null: <runtime.run_dir>/checkpoints
  int64_t every = 0;               // 0: only at the end
  int64_t keep = 3;                // newest checkpoints kept; 0 keeps all
  std::string resume = "auto";     // auto | none | a checkpoint directory
  bool save_final = true;
};

struct RuntimeConfig {
  std::string run_dir = "runs/default";
  std::string device = "auto";  // auto | cpu | cuda
  int64_t threads = 0;          // 0: this rank's share of the cores
  bool progress_bar = true;     // only drawn when stdout is a terminal
  bool tensorboard = false;     // also write <run_dir>/tensorboard/ event files
  double collective_timeout_s = 300.0;  // a collective not done by then aborts the job
  // Gemini's device tier: bytes or a size ("512MiB"); null: the device's memory (CPU: unlimited).
  std::optional<std::string> device_memory_limit;
};

struct ServeConfig {
  int64_t block_size = 16;                     // token slots per KV-cache block
  std::optional<std::string> kv_cache_memory;  // bytes or a size ("2GiB"); null: memory_utilization
  double memory_utilization = 0.9;             // share of free device (host) memory for the KV cache
  int64_t max_batch_size = 32;                 // sequences per model iteration
  int64_t max_prefill_tokens = 512;            // prompt positions computed per iteration
  int64_t max_waiting = 256;                   // queued requests; beyond: HTTP 429
  std::string host = "127.0.0.1";
  int64_t port = 8000;
};

struct Config {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  OptimizerConfig optimizer;
  LrScheduleConfig lr_schedule;
  PrecisionConfig precision;
  ParallelConfig parallel;
  ZeroConfig zero;
  CheckpointConfig checkpoint;
  RuntimeConfig runtime;
  ServeConfig serve;

  std::string source;  // where it came from, for messages
};

// Parses a YAML file, applies `--set key.path=value` overrides, validates. Throws ConfigError
// with "file:line:column: key.path: what is wrong" (or "--set key.path: ..." for overrides).
// Relative paths in the file resolve against its directory, those in overrides against the
// working directory; both become absolute.
Config load_config_file(const std::string& path, const std::vector<std::string>& overrides = {});
// As load_config_file for text read from `directory` (the built-in quickstart: configs/); without
// one, paths stay as written.
Config load_config_text(const std::string& yaml, const std::string& source_name,
                        const std::vector<std::string>& overrides = {},
                        const std::optional<std::string>& directory = std::nullopt);

// The resolved config as YAML: every key, defaults filled in; loads back to an equal Config.
std::string dump_config(const Config& config);

// One key's value as the dump writes it ("8", "[0.9, 0.95]", "null").
std::string config_value_text(const Config& config, const std::string& path);

// The reference page for docs/config.md, generated from the schema.
std::string config_reference_markdown();

// Checks every key's range or choices and the rules across keys (config_rules()); the loaders
// call it, and code that builds a Config by hand can too. Throws ConfigError "source: ...".
void validate_config(const Config& config);

// ---- The schema (config_schema.cpp) ----

// Reads or writes one field of a Config; the field's C++ type is the key's value type.
template <typename T>
using ConfigFieldAccess = T& (*)(Config&);
using ConfigField =
    std::variant<ConfigFieldAccess<int64_t>, ConfigFieldAccess<double>, ConfigFieldAccess<bool>,
                 ConfigFieldAccess<std::string>, ConfigFieldAccess<std::optional<std::string>>,
                 ConfigFieldAccess<std::optional<int64_t>>,
                 ConfigFieldAccess<std::vector<std::string>>,
                 ConfigFieldAccess<std::vector<double>>, ConfigFieldAccess<std::vector<int64_t>>>;

// What a key accepts beyond its type. No string, list item included, may be empty: null, or an
// empty list, is how a key says "none".
struct ConfigValueRule {
  std::optional<double> min, max;  // numbers, each item of a number list, set optional integers
  bool min_exclusive = false, max_exclusive = false;
  std::vector<std::string> choices;  // strings: the allowed values; empty: any
  size_t length = 0;                 // lists: the exact number of items; 0: any
  // Strings are file paths: relative ones resolve against the config file's directory (--set:
  // the working directory), except these words, which keep their own meaning.
  bool path = false;
  std::vector<std::string> path_keywords;
};

struct ConfigKey {
  std::string path;     // "section.key", also the --set name
  ConfigField field;
  std::string meaning;  // one line, for docs/config.md
  ConfigValueRule rule = {};
};

struct ConfigSection {
  std::string name;
  std::string meaning;
};

// A check that involves several keys; `violation` returns "" when the config satisfies it.
struct ConfigRule {
  std::string description;
  std::string (*violation)(const Config&);
};

// In dump and docs order; the keys of a section are contiguous and in section order.
const std::vector<ConfigSection>& config_sections();
const std::vector<ConfigKey>& config_keys();
// Nested keys whose parent also takes a bare value, as short for one of them:
// `parallel.pipeline: 4` means `parallel.pipeline.size: 4` (and `parallel.tensor: 4`
// `parallel.tensor.size: 4`). {parent path, key path}.
const std::vector<std::pair<std::string, std::string>>& config_shorthands();
const std::vector<ConfigRule>& config_rules();

}  // namespace cr
