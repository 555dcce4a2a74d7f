// The config schema: every section, key and cross-key rule, in dump and docs order.
// Parsing, --set overrides, unknown-key detection, dump_config and docs/config.md all read
// these tables; defaults are the initialisers in config.h.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/base/error.h"
#include "core/base/size_limits.h"
#include "core/base/strings.h"
#include "core/config/config.h"

namespace cr {
namespace {

// The key path and its accessor from one spelling, so that the two cannot disagree.
#define CR_FIELD(section, name) \
  #section "." #name, +[](Config& config) -> auto& { return config.section.name; }

ConfigValueRule at_least(double min) {
  ConfigValueRule rule;
  rule.min = min;
  return rule;
}

ConfigValueRule greater_than(double min) {
  ConfigValueRule rule = at_least(min);
  rule.min_exclusive = true;
  return rule;
}

// [min, max]
ConfigValueRule between(double min, double max) {
  ConfigValueRule rule = at_least(min);
  rule.max = max;
  return rule;
}

// (min, max]
ConfigValueRule above_up_to(double min, double max) {
  ConfigValueRule rule = between(min, max);
  rule.min_exclusive = true;
  return rule;
}

// [min, max)
ConfigValueRule below(double min, double max) {
  ConfigValueRule rule = between(min, max);
  rule.max_exclusive = true;
  return rule;
}

ConfigValueRule one_of(std::vector<std::string> choices) {
  ConfigValueRule rule;
  rule.choices = std::move(choices);
  return rule;
}

ConfigValueRule a_path(std::vector<std::string> keywords = {}) {
  ConfigValueRule rule;
  rule.path = true;
  rule.path_keywords = std::move(keywords);
  return rule;
}

ConfigValueRule with_length(size_t length, ConfigValueRule rule) {
  rule.length = length;
  return rule;
}

using namespace limits;

}  // namespace

const std::vector<ConfigSection>& config_sections() {
  static const std::vector<ConfigSection> sections = {
      {"model",
       "The network: a named preset from the model zoo, optionally overridden per "
       "dimension, or every dimension given explicitly."},
      {"data", "Where training and validation tokens come from."},
      {"train", "Batch sizes, run length, logging and evaluation cadence."},
      {"optimizer", "The optimizer and its hyper-parameters."},
      {"lr_schedule", "Learning rate over the run: linear warm-up, then decay towards min_lr."},
      {"precision", "Numeric precision of the forward and backward passes."},
      {"parallel", "How the job's ranks are arranged: world = data x pipeline x sequence x tensor, and the gradient "
                   "buckets of data parallelism."},
      {"zero", "ZeRO: sharding training state over the data-parallel ranks instead of replicating it."},
      {"checkpoint", "Saving and resuming training state."},
      {"runtime", "Where the run writes its files and what it runs on."},
      {"serve", "`colossal-run serve`: the paged KV cache, continuous batching and the HTTP server (docs/serving.md)."},
  };
  return sections;
}

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = {
      {CR_FIELD(model, arch), "model architecture; null: the preset's (gpt2 without a preset); if given, must match it",
       one_of({"gpt2", "opt", "llama"})},
      {CR_FIELD(model, preset),
       "model zoo preset (gpt2, gpt2-mini, opt-125m, opt-mini, llama2-7b, llama-mini, ...); left out with a "
       "Hugging Face directory in model.init_from: that model, from its config.json; null: that model, else "
       "every dimension below"},
      {CR_FIELD(model, n_layer), "transformer blocks; null: from the preset", between(1, kMaxLayers)},
      {CR_FIELD(model, n_head), "attention heads per block; null: from the preset", between(1, kMaxHeads)},
      {CR_FIELD(model, n_kv_head),
       "key/value heads (fewer than n_head: grouped-query attention, llama); null: from the preset, "
       "else n_head", between(1, kMaxHeads)},
      {CR_FIELD(model, d_model), "hidden width; null: from the preset", between(1, kMaxWidth)},
      {CR_FIELD(model, d_ff), "MLP hidden width; null: from the preset, else 4 * d_model",
       between(1, 4 * kMaxWidth)},
      {CR_FIELD(model, vocab_size), "token vocabulary size; null: from the preset", between(1, kMaxTokens)},
      {CR_FIELD(model, max_seq_len), "longest sequence the model accepts; null: from the preset",
       between(1, kMaxTokens)},
      {CR_FIELD(model, dropout), "dropout probability", below(0, 1)},
      {CR_FIELD(model, init_from),
       "checkpoint directory whose weights start the run; null: random initialisation", a_path()},

      {CR_FIELD(data, format),
       "tokens: token shard files; text: text files tokenized at start-up; synthetic: "
       "pseudo-random tokens, no files",
       one_of({"tokens", "text", "synthetic"})},
      {CR_FIELD(data, train), "training files: paths or globs (one string or a list)", a_path()},
      {CR_FIELD(data, val), "validation files, like train; empty: hold out val_fraction of train",
       a_path()},
      {CR_FIELD(data, val_fraction), "share of train held out for validation when val is empty",
       between(0, 0.5)},
      {CR_FIELD(data, seq_len), "tokens per training sequence", between(1, kMaxTokens)},
      {CR_FIELD(data, tokenizer), "tokenizer for the text format",
       one_of({"byte", "gpt2", "sentencepiece"})},
      {CR_FIELD(data, tokenizer_dir),
       "directory with the gpt2 tokenizer: encoder.json + vocab.bpe, or vocab.json + merges.txt", a_path()},

      {CR_FIELD(train, micro_batch_size), "sequences per forward/backward pass", between(1, kMaxSequences)},
      {CR_FIELD(train, global_batch_size),
       "sequences per optimizer step over all ranks; 0: micro_batch_size x data-parallel ranks",
       between(0, kMaxSequences)},
      {CR_FIELD(train, steps), "optimizer steps to run", at_least(1)},
      {CR_FIELD(train, seed), "seed for initialisation, data order and dropout", at_least(0)},
      {CR_FIELD(train, clip_grad_norm), "clip the global gradient norm to this; 0: no clipping",
       at_least(0)},
      {CR_FIELD(train, log_every), "steps between log lines", at_least(1)},
      {CR_FIELD(train, eval_every), "steps between validation runs; 0: no periodic evaluation",
       at_least(0)},
      {CR_FIELD(train, eval_batches), "micro-batches per validation run", between(1, kMaxSequences)},
      {CR_FIELD(train, peak_flops), "device peak FLOP/s for MFU; 0: a known GPU's datasheet peak (H100 / H200 SXM), else a GEMM measured at start-up",
       at_least(0)},
      {CR_FIELD(train, time_breakdown),
       "on GPUs, wait for each phase's kernels (forward, backward, communication, optimizer) so the per-step "
       "breakdown is exact, at the cost of overlap; CPUs always measure it exactly"},
      {CR_FIELD(train, activation_checkpointing),
       "none; full: keep only each block's input and recompute the block in backward (about a third more "
       "compute, activations of one block at a time); selective: recompute only attention's scores, softmax "
       "and dropout, whose memory grows with seq_len squared (Megatron's selective recompute)",
       one_of({"none", "full", "selective"})},

      {CR_FIELD(optimizer, name),
       "adamw: decoupled weight decay; adam: weight_decay added to the gradient (L2)",
       one_of({"adamw", "adam"})},
      {CR_FIELD(optimizer, lr), "peak learning rate", greater_than(0)},
      {CR_FIELD(optimizer, betas), "Adam moment decay rates [beta1, beta2]",
       with_length(2, below(0, 1))},
      {CR_FIELD(optimizer, eps), "Adam denominator epsilon", greater_than(0)},
      {CR_FIELD(optimizer, weight_decay), "weight decay coefficient", at_least(0)},

      {CR_FIELD(lr_schedule, kind), "decay shape after warm-up",
       one_of({"cosine", "linear", "constant"})},
      {CR_FIELD(lr_schedule, warmup_steps), "steps of linear warm-up to optimizer.lr", at_least(0)},
      {CR_FIELD(lr_schedule, min_lr), "learning rate at the end of decay", at_least(0)},
      {CR_FIELD(lr_schedule, decay_steps),
       "steps over which the rate decays to min_lr; 0: train.steps", at_least(0)},

      {CR_FIELD(precision, dtype),
       "compute dtype of the forward and backward passes; bf16 and fp16 keep fp32 master weights",
       one_of({"fp32", "bf16", "fp16"})},
      {CR_FIELD(precision, master_weights),
       "bf16 / fp16: keep fp32 master weights that the optimizer updates (false: update the 16-bit weights "
       "in place, saving 4 bytes per parameter of the rank's shard); ignored for fp32"},
      {CR_FIELD(precision, initial_scale), "fp16: the loss scale to start from", greater_than(0)},
      {CR_FIELD(precision, growth_factor), "fp16: the scale is multiplied by this after growth_interval clean steps",
       greater_than(1)},
      {CR_FIELD(precision, backoff_factor), "fp16: the scale is multiplied by this on overflow (after hysteresis)",
       between(0, 1)},
      {CR_FIELD(precision, growth_interval), "fp16: steps without overflow before the scale grows", at_least(1)},
      {CR_FIELD(precision, hysteresis), "fp16: overflowing steps tolerated before the scale backs off", at_least(1)},
      {CR_FIELD(precision, min_scale), "fp16: the scale never drops below this", greater_than(0)},
      {CR_FIELD(precision, max_scale), "fp16: the scale never grows above this", greater_than(0)},

      {CR_FIELD(parallel, data), "data-parallel ranks; 0: the job's ranks / (pipeline x sequence x tensor)",
       between(0, kMaxRanks)},
      {CR_FIELD(parallel, tensor.size),
       "tensor-parallel ranks per group; `parallel.tensor: N` is short for this key with mode 1d "
       "(docs/parallelism.md)",
       between(1, kMaxRanks)},
      {CR_FIELD(parallel, tensor.mode),
       "1d: Megatron-style, attention heads, MLP units and the vocabulary split over the group; 2d: Optimus, a "
       "q x q grid (size = q^2) running SUMMA, activations split by batch over rows and hidden units over "
       "columns; 2.5d: Tesseract, depth stacked q x q grids (size = q^2 x depth), the batch split over them too; "
       "3d: a q x q x q cube (size = q^3), each weight split q^3 ways, activations q^2 ways (docs/parallelism.md)",
       one_of({"1d", "2d", "2.5d", "3d"})},
      {CR_FIELD(parallel, tensor.depth), "2.5d: the stacked q x q grids (1 otherwise)", between(1, kMaxRanks)},
      {CR_FIELD(parallel, sequence.mode),
       "none; split_gather: activations outside attention and MLP split along the sequence over the tensor "
       "group (Megatron sequence parallelism: all-gather / reduce-scatter instead of all-reduce); all_to_all: "
       "a sequence axis of its own, attention trading sequence parts for head parts (DeepSpeed Ulysses); "
       "ring_attn: a sequence axis of its own, key/value blocks passed around a ring (zigzag causal balance), "
       "for sequences whose attention does not fit one rank",
       one_of({"none", "split_gather", "all_to_all", "ring_attn"})},
      {CR_FIELD(parallel, sequence.size),
       "all_to_all, ring_attn: ranks splitting each sequence (ZeRO and gradient averaging run over data x "
       "sequence); split_gather uses the tensor group and leaves it 1",
       between(1, kMaxRanks)},
      {CR_FIELD(parallel, pipeline.size),
       "pipeline stages, each holding a contiguous run of blocks (the embedding on the first, the LM head on the "
       "last); `parallel.pipeline: N` is short for this key (docs/parallelism.md)",
       between(1, kMaxRanks)},
      {CR_FIELD(parallel, pipeline.schedule),
       "order of the micro-batches' forward and backward passes on each stage: gpipe (all forwards, then all "
       "backwards: M micro-batches' activations held), 1f1b (at most P held), interleaved (1f1b over `chunks` "
       "model chunks per stage: a V times smaller bubble, more messages), zero_bubble (ZB-H1: each backward split "
       "into the input's gradient, sent at once, and the weights', deferred into the bubbles; 1f1b's memory)",
       one_of({"gpipe", "1f1b", "interleaved", "zero_bubble"})},
      {CR_FIELD(parallel, pipeline.microbatches),
       "micro-batches per step on each data rank (M); 0: the gradient accumulation steps. With "
       "train.global_batch_size 0 the global batch is micro_batch_size x M x data ranks",
       between(0, kMaxRanks)},
      {CR_FIELD(parallel, pipeline.layers_per_stage),
       "transformer blocks of each stage (interleaved: of each virtual stage, every stage's first chunk, then every "
       "stage's second, ...), "
       "summing to model.n_layer; empty: balanced by compute, the LM head counted",
       at_least(1)},
      {CR_FIELD(parallel, pipeline.chunks),
       "interleaved: model chunks per stage (V >= 2; micro-batches a multiple of the stages); 1 otherwise",
       between(1, kMaxRanks)},
      {CR_FIELD(parallel, order), "mesh axes from outermost to innermost (dp, pp, sp, tp accepted); axes that talk in every layer (sequence, tensor) innermost"},
      {CR_FIELD(parallel, bucket_mb),
       "size of each gradient reduction bucket in MiB of fp32 (buckets never span two layers)",
       above_up_to(0, kMaxBucketMiB)},
      {CR_FIELD(zero, stage),
       "0: every rank keeps everything; 1: each keeps fp32 master weights and Adam moments for its 1/N of "
       "the parameters; 2: and only that 1/N of the gradients; 3: and of the compute weights, gathered "
       "layer by layer",
       between(0, 3)},
      {CR_FIELD(zero, overlap_communication),
       "start gradient reductions during backward and (stage 3) gather the next layer's weights while "
       "the current one computes"},
      {CR_FIELD(zero, placement_policy),
       "Gemini chunk placement (needs stage 3): static (the fractions below), cuda (all on the device), cpu (all "
       "on the host, moved to the device to compute), auto (moves chunks by measured memory); null: ZeRO's flat "
       "buffers (docs/gemini.md)",
       one_of({"static", "cuda", "cpu", "auto"})},
      {CR_FIELD(zero, shard_param_frac),
       "static: share of chunks whose compute weights are sharded over the data ranks; the rest stay gathered",
       between(0, 1)},
      {CR_FIELD(zero, offload_optim_frac),
       "static: share of chunks whose fp32 master weights, gradients and Adam moments live on the host",
       between(0, 1)},
      {CR_FIELD(zero, offload_param_frac),
       "static: share of chunks whose compute weights live on the host (needs shard_param_frac 1 and "
       "offload_optim_frac 1)",
       between(0, 1)},
      {CR_FIELD(zero, gpu_margin_mem_ratio),
       "auto: share of the device memory left after warm-up that takes chunks' fp32 state and Adam back",
       between(0, 1)},
      {CR_FIELD(zero, warmup_non_model_data_ratio),
       "auto: share of the device kept for activations during the warm-up step", below(0, 1)},
      {CR_FIELD(zero, steady_cuda_cap_ratio), "auto: share of the device usable after warm-up", above_up_to(0, 1)},
      {CR_FIELD(zero, max_prefetch),
       "chunks gathered to the device ahead of their use, in the order the first training step recorded",
       between(0, 64)},
      {CR_FIELD(zero, chunk_size_m),
       "Gemini chunk size in 2^20 elements; 0: searched for the least padding", between(0, 1 << 20)},
      {CR_FIELD(zero, search_range_m),
       "chunk size search: sizes tried above the largest parameter, in 2^20 elements", between(0, 1 << 20)},
      {CR_FIELD(zero, nvme_offload_fraction),
       "share of the chunks whose fp32 state is on the host that keep it in files under nvme_path instead (master "
       "weights, gradients, Adam moments; read and written with io_uring around each update)",
       between(0, 1)},
      {CR_FIELD(zero, nvme_path),
       "directory for the NVMe tier's files (one per rank, removed when the run ends however it ends)", a_path()},
      {CR_FIELD(zero, min_chunk_size_m),
       "chunk size search: the smallest chunk in 2^20 elements; a smaller model is one chunk kept gathered",
       between(0, 1 << 20)},
      {CR_FIELD(checkpoint, dir),
       "checkpoint directory; null: checkpoints/ inside runtime.run_dir", a_path()},
      {CR_FIELD(checkpoint, every), "steps between checkpoints; 0: only at the end", at_least(0)},
      {CR_FIELD(checkpoint, keep), "newest checkpoints kept; 0: keep all", at_least(0)},
      {CR_FIELD(checkpoint, resume),
       "auto: the newest checkpoint in checkpoint.dir, if any; none: start fresh; anything else: a "
       "checkpoint directory",
       a_path({"auto", "none"})},
      {CR_FIELD(checkpoint, save_final), "save a checkpoint after the last step"},

      {CR_FIELD(runtime, run_dir), "directory the run writes its logs and metrics to", a_path()},
      {CR_FIELD(runtime, device), "auto: cuda when available, else cpu",
       one_of({"auto", "cpu", "cuda"})},
      {CR_FIELD(runtime, threads), "CPU threads; 0: this rank's share of the cores", between(0, kMaxThreads)},
      {CR_FIELD(runtime, progress_bar), "draw a progress bar when stdout is a terminal"},
      {CR_FIELD(runtime, tensorboard),
       "also write the metrics as TensorBoard event files under <run_dir>/tensorboard (`tensorboard --logdir`)"},
      {CR_FIELD(runtime, collective_timeout_s),
       "seconds a collective may wait for other ranks before the job is aborted",
       above_up_to(0, kMaxTimeoutSeconds)},
      {CR_FIELD(runtime, device_memory_limit),
       "Gemini's device tier budget: bytes or a size such as 512MiB; null: the device's memory (on CPUs: no limit, "
       "a set limit emulates a device of that size in host memory)"},

      {CR_FIELD(serve, block_size), "token slots per KV-cache block", between(1, 4096)},
      {CR_FIELD(serve, kv_cache_memory),
       "memory for the KV cache: bytes or a size such as 2GiB; null: memory_utilization of the free memory, at "
       "most what max_batch_size full-context sequences hold"},
      {CR_FIELD(serve, memory_utilization),
       "share of the device's free memory (host memory on CPUs) the KV cache may take when kv_cache_memory is "
       "null (vLLM's gpu_memory_utilization)",
       above_up_to(0, 1)},
      {CR_FIELD(serve, max_batch_size), "sequences in one model iteration", between(1, kMaxSequences)},
      {CR_FIELD(serve, max_prefill_tokens),
       "prompt positions computed in one iteration: longer prompts are computed in chunks beside running "
       "decodes", between(1, kMaxTokens)},
      {CR_FIELD(serve, max_waiting), "requests queued for a place in the batch; more are refused with HTTP 429",
       between(1, kMaxSequences)},
      {CR_FIELD(serve, host), "address the HTTP server listens on (--host overrides)"},
      {CR_FIELD(serve, port), "port the HTTP server listens on (--port overrides; 0: any free port)",
       between(0, 65535)},
  };
  return keys;
}

#undef CR_FIELD

const std::vector<std::pair<std::string, std::string>>& config_shorthands() {
  static const std::vector<std::pair<std::string, std::string>> shorthands = {
      {"parallel.pipeline", "parallel.pipeline.size"},
      {"parallel.tensor", "parallel.tensor.size"},
  };
  return shorthands;
}

namespace {

// Why an optional size key's value is not a byte count or a size; "" when it is (or unset).
std::string byte_size_error(const std::optional<std::string>& value, const std::string& key) {
  if (!value) return "";
  try {
    parse_byte_size(*value, key);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace

const std::vector<ConfigRule>& config_rules() {
  static const std::vector<ConfigRule> rules = {
      {"serve.kv_cache_memory, when set, is a byte count or a size such as 512MiB.",
       [](const Config& c) { return byte_size_error(c.serve.kv_cache_memory, "serve.kv_cache_memory"); }},
      {"runtime.device_memory_limit, when set, is a byte count or a size such as 512MiB.",
       [](const Config& c) { return byte_size_error(c.runtime.device_memory_limit, "runtime.device_memory_limit"); }},
      {"zero.placement_policy needs zero.stage 3; the fractions belong to static, the margin ratios to auto; the NVMe "
       "tier needs a placement policy and nvme_path.",
       [](const Config& c) -> std::string {
         const ZeroConfig& z = c.zero;
         if (!z.placement_policy) {
           if (z.nvme_offload_fraction == 0) return "";
           return "zero.nvme_offload_fraction places Gemini's chunks: set zero.placement_policy (cpu, static or auto)";
         }
         const std::string& policy = *z.placement_policy;
         if (z.stage != 3) {
           return fmt::format("zero.placement_policy {} shards like ZeRO-3: set zero.stage 3 (it is {})", policy,
                              z.stage);
         }
         const ZeroConfig defaults;
         if (policy != "static" && (z.shard_param_frac != defaults.shard_param_frac ||
                                    z.offload_optim_frac != defaults.offload_optim_frac ||
                                    z.offload_param_frac != defaults.offload_param_frac)) {
           return fmt::format("zero.shard_param_frac, offload_optim_frac and offload_param_frac apply to "
                              "placement_policy static (cuda and cpu are its presets), not {}", policy);
         }
         if (z.offload_param_frac > 0 && (z.shard_param_frac != 1 || z.offload_optim_frac != 1)) {
           return fmt::format("zero.offload_param_frac {} needs shard_param_frac 1 and offload_optim_frac 1 (they are "
                              "{} and {}): weights on the host are sharded and updated there", z.offload_param_frac,
                              z.shard_param_frac, z.offload_optim_frac);
         }
         if (z.nvme_offload_fraction > 0 && policy == "cuda") {
           return "zero.nvme_offload_fraction moves state placed on the host, and placement_policy cuda places none "
                  "there";
         }
         if (z.nvme_offload_fraction > 0 && !z.nvme_path) {
           return fmt::format("zero.nvme_offload_fraction {} needs zero.nvme_path, the directory for its files",
                              z.nvme_offload_fraction);
         }
         if (policy != "auto" && z.gpu_margin_mem_ratio != defaults.gpu_margin_mem_ratio) {
           return fmt::format("zero.gpu_margin_mem_ratio applies to placement_policy auto, not {}", policy);
         }
         return "";
       }},
      {"train.global_batch_size, when not 0, is a multiple of train.micro_batch_size.",
       [](const Config& c) -> std::string {
         const TrainConfig& t = c.train;
         if (t.global_batch_size == 0 || t.global_batch_size % t.micro_batch_size == 0) return "";
         return fmt::format(
             "train.global_batch_size ({}) must be a multiple of train.micro_batch_size ({})",
             t.global_batch_size, t.micro_batch_size);
       }},
      {"data.tokenizer gpt2 or sentencepiece needs data.tokenizer_dir when data.format is text.",
       [](const Config& c) -> std::string {
         const DataConfig& d = c.data;
         if (d.format != "text" || d.tokenizer == "byte" || d.tokenizer_dir) return "";
         return "data.tokenizer " + d.tokenizer + " needs data.tokenizer_dir (data.format is text)";
       }},
      {"precision.min_scale <= precision.initial_scale <= precision.max_scale.",
       [](const Config& c) -> std::string {
         const PrecisionConfig& p = c.precision;
         if (p.min_scale <= p.initial_scale && p.initial_scale <= p.max_scale) return "";
         return fmt::format("precision.initial_scale ({}) must lie in [precision.min_scale ({}), "
                            "precision.max_scale ({})]",
                            p.initial_scale, p.min_scale, p.max_scale);
       }},
      {"lr_schedule.min_lr is at most optimizer.lr.",
       [](const Config& c) -> std::string {
         if (c.lr_schedule.min_lr <= c.optimizer.lr) return "";
         return fmt::format("lr_schedule.min_lr ({}) must be <= optimizer.lr ({})",
                            c.lr_schedule.min_lr, c.optimizer.lr);
       }},
      {"model.preset null needs model.n_layer, n_head, d_model, vocab_size and max_seq_len, or model.init_from.",
       [](const Config& c) -> std::string {
         const ModelConfig& m = c.model;
         if (m.preset || m.init_from) return "";
         std::vector<std::string> missing;
         const std::pair<const char*, const std::optional<int64_t>&> dims[] = {
             {"model.n_layer", m.n_layer},
             {"model.n_head", m.n_head},
             {"model.d_model", m.d_model},
             {"model.vocab_size", m.vocab_size},
             {"model.max_seq_len", m.max_seq_len}};
         for (const auto& [path, value] : dims) {
           if (!value) missing.push_back(path);
         }
         if (missing.empty()) return "";
         return fmt::format("model.preset is null, so {} must be set", fmt::join(missing, ", "));
       }},
      {"parallel.pipeline.chunks is 2 or more with the interleaved schedule and 1 with the others.",
       [](const Config& c) -> std::string {
         const PipelineConfig& p = c.parallel.pipeline;
         if (p.schedule == "interleaved" && p.chunks < 2) {
           return fmt::format("parallel.pipeline.schedule interleaved needs parallel.pipeline.chunks >= 2, got {}",
                              p.chunks);
         }
         if (p.schedule != "interleaved" && p.chunks != 1) {
           return fmt::format("parallel.pipeline.chunks {} needs parallel.pipeline.schedule interleaved (it is {})",
                              p.chunks, p.schedule);
         }
         return "";
       }},
      {"parallel.pipeline.layers_per_stage, when given, has one entry per stage (per stage and chunk: interleaved).",
       [](const Config& c) -> std::string {
         const PipelineConfig& p = c.parallel.pipeline;
         const auto expected = static_cast<size_t>(p.size * p.chunks);
         if (p.layers_per_stage.empty() || p.layers_per_stage.size() == expected) return "";
         return fmt::format("parallel.pipeline.layers_per_stage has {} entries; parallel.pipeline.size {} x chunks {} "
                            "needs {}",
                            p.layers_per_stage.size(), p.size, p.chunks, expected);
       }},
  };
  return rules;
}

}  // namespace cr
