#include "core/serve/serving_engine.h"

#include <algorithm>

#include "core/base/error.h"

namespace cr {
namespace {

// This rank's key/value heads: its share under tensor parallelism.
int64_t kv_heads(const CausalLMImpl& model) {
  const ModelSpec& spec = model.spec();
  const int64_t heads = spec.n_kv_head > 0 ? spec.n_kv_head : spec.n_head;
  return std::max<int64_t>(1, heads / model.tensor_parallel().size);
}

torch::Tensor first_parameter(const CausalLM& model) {
  CR_CHECK(!model->parameters().empty(), "serving a model without parameters");
  return model->parameters().front();
}

}  // namespace

int64_t kv_block_bytes(const CausalLMImpl& model, int64_t block_size) {
  const ModelSpec& spec = model.spec();
  return PagedKVStore::block_bytes(spec.n_layer, kv_heads(model), spec.d_model / spec.n_head, block_size,
                                   model.parameters().front().scalar_type());
}

ServingEngine::ServingEngine(CausalLM model, ServingOptions options)
    : model_(std::move(model)),
      limits_(options.limits),
      blocks_(options.num_blocks, options.block_size),
      store_(model_->spec().n_layer, kv_heads(*model_), model_->spec().d_model / model_->spec().n_head,
             options.num_blocks, options.block_size, first_parameter(model_).options().requires_grad(false)),
      scheduler_(blocks_, options.limits),
      device_(first_parameter(model_).device()) {
  model_->eval();
}

RequestId ServingEngine::submit(ServingRequest request) {
  const int64_t context = model_->spec().max_seq_len;
  const auto prompt_length = static_cast<int64_t>(request.prompt.size());
  if (prompt_length >= context) {
    fail("the prompt has {} tokens; the model's context is {}, which leaves no room for a new token", prompt_length,
         context);
  }
  if (request.max_new_tokens < 1) fail("max_new_tokens is {}; it must be at least 1", request.max_new_tokens);
  validate_sampling_options(request.sampling);
  const RequestId id = next_id_++;
  // Generation stops at the context's end whatever max_new_tokens says.
  scheduler_.add(id, request.prompt, std::min(request.max_new_tokens, context - prompt_length));
  TokenSampler sampler(request.sampling, request.seed);
  live_.emplace(id, Live{std::move(request), std::move(sampler)});
  return id;
}

void ServingEngine::abort(RequestId request) {
  if (!live_.count(request)) return;
  scheduler_.abort(request);
  scheduler_.forget(request);
  live_.erase(request);
}

std::optional<StopReason> ServingEngine::stop_after(const Live& live, int64_t token, int64_t generated,
                                                    int64_t length) const {
  // The order generate() checks them in.
  const auto& stops = live.request.stop_tokens;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) return StopReason::StopToken;
  if (generated >= live.request.max_new_tokens) return StopReason::MaxNewTokens;
  if (length >= model_->spec().max_seq_len) return StopReason::ContextFull;
  return std::nullopt;
}

std::vector<RequestUpdate> ServingEngine::step() {
  const Iteration iteration = scheduler_.next_iteration();
  preemptions_ += static_cast<int64_t>(iteration.preempted.size());
  if (iteration.sequences.empty()) return {};
  ++iterations_;
  torch::NoGradGuard no_grad;
  std::vector<int64_t> tokens;
  std::vector<PagedSequence> sequences;
  std::vector<int64_t> sampled_rows;  // packed row of each sampling sequence's last token
  for (const ScheduledSequence& work : iteration.sequences) {
    for (const BlockCopy& copy : work.reservation.copies) store_.copy_block(copy.from, copy.to);
    PagedSequence sequence;
    sequence.first_position = work.reservation.first_position;
    sequence.count = static_cast<int64_t>(work.tokens.size());
    sequence.slots =
        slots_of(blocks_.block_table(work.request), blocks_.block_size(), sequence.first_position + sequence.count);
    tokens.insert(tokens.end(), work.tokens.begin(), work.tokens.end());
    if (work.samples) sampled_rows.push_back(static_cast<int64_t>(tokens.size()) - 1);
    sequences.push_back(std::move(sequence));
  }
  PagedBatch batch(store_, std::move(sequences), device_);
  const auto packed = torch::tensor(tokens, torch::kLong).view({1, -1}).to(device_);
  auto hidden = model_->run_blocks(model_->embed(packed, batch.positions(0, batch.tokens())), 0,
                                   model_->spec().n_layer, &batch);
  std::vector<RequestUpdate> updates;
  if (sampled_rows.empty()) return updates;
  hidden = hidden.index_select(1, torch::tensor(sampled_rows, torch::kLong).to(device_));
  const auto logits = model_->head_logits(hidden)[0];
  size_t row = 0;
  for (const ScheduledSequence& work : iteration.sequences) {
    if (!work.samples) continue;
    Live& live = live_.at(work.request);
    auto row_logits = logits[static_cast<int64_t>(row++)];
    if (live.request.vocab_limit) row_logits = row_logits.slice(0, 0, *live.request.vocab_limit);
    const int64_t token = live.sampler.next(row_logits);
    scheduler_.append_token(work.request, token);
    const auto& generated = scheduler_.generated(work.request);
    const auto length = static_cast<int64_t>(live.request.prompt.size() + generated.size());
    RequestUpdate update{work.request, token, stop_after(live, token, static_cast<int64_t>(generated.size()), length)};
    if (update.stop) {
      scheduler_.finish(work.request);
      scheduler_.forget(work.request);
      live_.erase(work.request);
    }
    updates.push_back(update);
  }
  return updates;
}

ServingStats ServingEngine::stats() const {
  ServingStats stats;
  stats.waiting = scheduler_.waiting();
  stats.running = scheduler_.running();
  stats.used_blocks = blocks_.used_blocks();
  stats.total_blocks = blocks_.num_blocks();
  stats.fragmentation = blocks_.fragmentation();
  stats.preemptions = preemptions_;
  stats.iterations = iterations_;
  return stats;
}

}  // namespace cr
