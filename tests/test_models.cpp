// GPT-2 shapes and counts, the fused LM loss, flat parameter storage and AdamW, each checked
// against a hand computation or LibTorch's own reference implementation.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include "memory/adamw_optimizer.h"
#include "core/train/lr_schedule.h"
#include "memory/flat_parameters.h"
#include "memory/weight_source.h"
#include "memory/zero_parameters.h"
#include "models/activation_checkpoint.h"
#include "models/causal_lm.h"
#include "models/flop_counter.h"
#include "models/gpt2.h"
#include "models/linear.h"
#include "models/lm_loss.h"
#include "models/model_spec.h"
#include "models/parameter_init.h"

using namespace cr;

TEST_CASE("GPT-2 presets have Hugging Face parameter counts", "[models]") {
  CHECK(parameter_count(find_model_preset("gpt2").spec) == 124439808);
  CHECK(parameter_count(find_model_preset("gpt2-medium").spec) == 354823168);
  CHECK(parameter_count(find_model_preset("gpt2-large").spec) == 774030080);
  CHECK(parameter_count(find_model_preset("gpt2-xl").spec) == 1557611200);
  CHECK(parameter_count(find_model_preset("gpt2-bench").spec) == 30357504);
}

TEST_CASE("allocated models have exactly the analytic parameter count", "[models]") {
  for (const auto& preset : model_presets()) {
    // Other architectures: test_model_zoo.cpp. Large ones: keep the test light.
    if (preset.spec.arch != "gpt2" || parameter_count(preset.spec) > 200'000'000) continue;
    GPT2 model(preset.spec);
    int64_t total = 0;
    for (const auto& p : model->parameters()) total += p.numel();
    INFO(preset.name);
    CHECK(total == parameter_count(preset.spec));
  }
}

TEST_CASE("unknown presets and inconsistent dimensions are rejected with a reason", "[models]") {
  CHECK_THROWS_WITH(find_model_preset("gpt2-mdium"), Catch::Contains("did you mean 'gpt2-medium'"));
  ModelSpec spec = find_model_preset("gpt2-tiny").spec;
  spec.n_head = 3;
  CHECK_THROWS_WITH(validate_model_spec(spec), Catch::Contains("not divisible by n_head 3"));
}

TEST_CASE("FLOPs per token: 6N + 12 L d T, N GPT-2's matmul weights", "[models]") {
  // N: all 124,439,808 parameters but the learned positions (1024 x 768) and the biases and
  // norm gains (13 x 768 per layer, 2 x 768 for ln_f); the tied embedding stays, as the head.
  const int64_t matmul_weights = 124439808 - 1024 * 768 - (12 * 13 + 2) * 768;
  CHECK(matmul_weights == 123532032);
  CHECK(flops_per_token(find_model_preset("gpt2").spec, 1024) == 6.0 * matmul_weights + 12.0 * 12 * 768 * 1024);
}

TEST_CASE("attention is causal: logits at t ignore tokens after t", "[models]") {
  torch::manual_seed(1);
  GPT2 model(find_model_preset("gpt2-tiny").spec);
  materialize_parameters(*model, 1);
  model->eval();
  auto tokens = torch::randint(0, 512, {2, 16}, torch::kLong);
  auto changed = tokens.clone();
  changed.slice(1, 10, 16).fill_(7);
  auto a = model->logits(tokens), b = model->logits(changed);
  CHECK(torch::allclose(a.slice(1, 0, 10), b.slice(1, 0, 10), 1e-6, 1e-6));
  CHECK_FALSE(torch::allclose(a.slice(1, 10, 16), b.slice(1, 10, 16), 1e-3, 1e-3));
}

TEST_CASE("fused linear cross-entropy equals the reference in value and gradients", "[models]") {
  torch::manual_seed(2);
  for (int64_t rows : {1, 63, 300}) {
    auto hidden = torch::randn({rows, 24}, torch::dtype(torch::kDouble)).to(torch::kFloat).requires_grad_();
    auto weight = (torch::randn({1000, 24}) * 0.3).requires_grad_();
    auto targets = torch::randint(0, 1000, {rows}, torch::kLong);
    auto fused = linear_cross_entropy(hidden, weight, targets);
    (fused * 3.0).backward();
    auto grad_hidden = hidden.grad().clone(), grad_weight = weight.grad().clone();
    hidden.mutable_grad().reset();
    weight.mutable_grad().reset();
    auto reference = linear_cross_entropy_reference(hidden, weight, targets);
    (reference * 3.0).backward();
    INFO("rows " << rows);
    CHECK(fused.item<double>() == Approx(reference.item<double>()).epsilon(1e-6));
    CHECK(torch::allclose(grad_hidden, hidden.grad(), 1e-5, 1e-6));
    CHECK(torch::allclose(grad_weight, weight.grad(), 1e-5, 1e-6));
  }
}

TEST_CASE("initial values are a pure function of (seed, name, index): any range equals that part of the whole",
          "[models][init]") {
  const InitRule rule = normal_init(0.02);
  const int64_t n = 1 << 20;
  std::vector<float> whole(n);
  initial_values(rule, 5, "h.0.mlp.c_fc.weight", 0, n, whole.data());
  for (const auto& [begin, count] : std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {1, 1}, {1, 2}, {777, 4097},
                                                                            {n - 3, 3}, {12345, 500000}}) {
    INFO(begin << " + " << count);
    std::vector<float> part(count);
    initial_values(rule, 5, "h.0.mlp.c_fc.weight", begin, count, part.data());
    CHECK(std::equal(part.begin(), part.end(), whole.begin() + begin));
  }
  // A N(0, 0.02) sample: mean within 5 standard errors, standard deviation within 1%.
  const auto values = torch::from_blob(whole.data(), {n}, torch::kFloat).to(torch::kDouble);
  CHECK(std::abs(values.mean().item<double>()) < 5 * 0.02 / std::sqrt(static_cast<double>(n)));
  CHECK(values.std().item<double>() == Approx(0.02).epsilon(0.01));
  CHECK(values.abs().max().item<double>() < 0.02 * 7);
  // Another name or seed is another stream; constants are constant.
  std::vector<float> other(64);
  initial_values(rule, 5, "h.1.mlp.c_fc.weight", 0, 64, other.data());
  CHECK_FALSE(std::equal(other.begin(), other.end(), whole.begin()));
  initial_values(rule, 6, "h.0.mlp.c_fc.weight", 0, 64, other.data());
  CHECK_FALSE(std::equal(other.begin(), other.end(), whole.begin()));
  initial_values(constant_init(1.0), 5, "ln_f.weight", 3, 64, other.data());
  CHECK(std::all_of(other.begin(), other.end(), [](float v) { return v == 1.0f; }));
}

TEST_CASE("the zoo declares its initialisation: N(0, 0.02), GPT-2's scaled residual projections, unit gains",
          "[models][init]") {
  const ModelSpec spec = find_model_preset("gpt2-tiny").spec;
  auto model = build_model_skeleton(spec);
  for (const auto& p : model->parameters()) CHECK(p.storage().nbytes() <= sizeof(float));  // no storage yet
  const auto rules = parameter_init_rules(*model);
  CHECK(rules.size() == model->parameters().size());
  const double residual = 0.02 / std::sqrt(2.0 * spec.n_layer);
  CHECK(rules.at("wte.weight").value == 0.02);
  CHECK(rules.at("h.0.attn.c_attn.weight").value == 0.02);
  CHECK(rules.at("h.1.attn.c_proj.weight").value == residual);
  CHECK(rules.at("h.1.mlp.c_proj.weight").value == residual);
  CHECK(rules.at("h.1.mlp.c_proj.bias").kind == InitRule::Kind::Constant);
  CHECK(rules.at("h.1.mlp.c_proj.bias").value == 0.0);
  CHECK(rules.at("ln_f.weight").value == 1.0);
  // Materialised: each parameter holds exactly its values.
  materialize_parameters(*model, 9);
  const auto named = model->named_parameters();
  std::vector<float> expected(named["h.1.mlp.c_proj.weight"].numel());
  initial_values(rules.at("h.1.mlp.c_proj.weight"), 9, "h.1.mlp.c_proj.weight", 0, expected.size(), expected.data());
  CHECK(torch::equal(named["h.1.mlp.c_proj.weight"].reshape({-1}),
                     torch::from_blob(expected.data(), {static_cast<int64_t>(expected.size())}, torch::kFloat)));
}

TEST_CASE("flat parameters: views in reverse registration order, gradients land in the flat buffer", "[memory]") {
  torch::manual_seed(3);
  GPT2 model(find_model_preset("gpt2-tiny").spec);
  materialize_parameters(*model, 3);
  FlatParameters flat(*model, torch::kFloat);
  CHECK(flat.numel() == parameter_count(model->spec()));
  for (const auto& entry : flat.entries()) CHECK(entry.decay == (entry.shape.size() >= 2));
  CHECK(flat.entries().front().name == "ln_f.bias");  // last registered comes first
  const auto& wte = flat.entries().back();
  CHECK(wte.name == "wte.weight");
  CHECK(model->wte->weight.data_ptr<float>() == flat.master().data_ptr<float>() + wte.offset);
  // Training (ZeRO stage 0, fp32): autograd adds straight into the flat fp32 gradient buffer.
  const ModuleWeights values(*model);
  ZeroParameters zero(module_parameters(*model), &values, torch::kCPU, torch::kFloat, /*stage=*/0,
                      ShardLayout(flat.buckets(1 << 20), 0, 1), nullptr);
  auto tokens = torch::randint(0, 512, {2, 8}, torch::kLong);
  model->loss(tokens, tokens).backward();
  CHECK(torch::equal(flat.view_of(zero.gradient_sums(), wte), model->wte->weight.grad()));
  CHECK(zero.gradient_sums().abs().sum().item<double>() > 0);
  zero.zero_grad();
  CHECK(zero.gradient_sums().abs().sum().item<double>() == 0);
}

TEST_CASE("bf16 compute keeps an fp32 master copy", "[memory]") {
  torch::manual_seed(4);
  GPT2 model(find_model_preset("gpt2-tiny").spec);
  materialize_parameters(*model, 4);
  FlatParameters flat(*model, torch::kBFloat16);
  CHECK(flat.has_master_copy());
  CHECK(model->wte->weight.scalar_type() == torch::kBFloat16);
  CHECK(flat.master().scalar_type() == torch::kFloat);
  CHECK(torch::equal(flat.compute(), flat.master().to(torch::kBFloat16)));
}

TEST_CASE("AdamW over flat parameters matches torch::optim::AdamW", "[memory]") {
  for (const std::string name : {"adamw", "adam"}) {
    torch::manual_seed(5);
    torch::nn::Linear ours(16, 8), theirs(16, 8);
    {
      torch::NoGradGuard no_grad;
      theirs->weight.copy_(ours->weight);
      theirs->bias.copy_(ours->bias);
    }
    auto initial = theirs->weight.detach().clone();
    OptimizerConfig config;
    config.name = name;
    config.lr = 1e-2;
    config.weight_decay = 0.1;
    const ModuleWeights values(*ours);
    const ModuleParameters params = module_parameters(*ours);
    ZeroParameters zero(params, &values, torch::kCPU, torch::kFloat, /*stage=*/0,
                        ShardLayout(params.buckets(1 << 20), 0, 1), nullptr);
    AdamWOptimizer optimizer(config, zero);
    // Our layout decays matrices only: the reference gets the same two groups.
    auto groups = [&](auto options) {
      auto no_decay = options;
      no_decay.weight_decay(0.0);
      std::vector<torch::optim::OptimizerParamGroup> result;
      result.emplace_back(std::vector<torch::Tensor>{theirs->weight}, std::make_unique<decltype(options)>(options));
      result.emplace_back(std::vector<torch::Tensor>{theirs->bias}, std::make_unique<decltype(options)>(no_decay));
      return result;
    };
    std::unique_ptr<torch::optim::Optimizer> reference;
    if (name == "adamw") {
      auto options = torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
      reference = std::make_unique<torch::optim::AdamW>(groups(options), options);
    } else {
      auto options = torch::optim::AdamOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
      reference = std::make_unique<torch::optim::Adam>(groups(options), options);
    }
    for (int step = 0; step < 5; ++step) {
      auto x = torch::randn({4, 16});
      zero.zero_grad();
      ours->forward(x).pow(2).sum().backward();
      optimizer.step(1e-2, 1.0);
      reference->zero_grad();
      theirs->forward(x).pow(2).sum().backward();
      reference->step();
    }
    INFO(name);
    CHECK((theirs->weight - initial).abs().max().item<double>() > 1e-2);
    CHECK(torch::allclose(ours->weight, theirs->weight, 1e-5, 1e-6));
    CHECK(torch::allclose(ours->bias, theirs->bias, 1e-5, 1e-6));
  }
}

TEST_CASE("learning-rate schedule: warmup, cosine to min_lr, linear, constant", "[train]") {
  LrScheduleConfig s;
  s.kind = "cosine";
  s.warmup_steps = 10;
  s.min_lr = 0.1;
  CHECK(learning_rate(s, 1.0, 0, 110) == Approx(0.1));
  CHECK(learning_rate(s, 1.0, 9, 110) == Approx(1.0));
  CHECK(learning_rate(s, 1.0, 10, 110) == Approx(1.0));
  CHECK(learning_rate(s, 1.0, 60, 110) == Approx(0.55));
  CHECK(learning_rate(s, 1.0, 110, 110) == Approx(0.1));
  s.kind = "linear";
  CHECK(learning_rate(s, 1.0, 60, 110) == Approx(0.55));
  CHECK(learning_rate(s, 1.0, 35, 110) == Approx(0.775));
  s.kind = "constant";
  CHECK(learning_rate(s, 1.0, 100, 110) == Approx(1.0));
  // A warm-up longer than the run is said, not silently left short of the peak.
  CHECK(schedule_warning(s, 110).empty());
  CHECK(schedule_warning(s, 10).empty());
  CHECK(schedule_warning(s, 8) ==
        "lr_schedule.warmup_steps 10 exceeds train.steps 8: the learning rate never reaches optimizer.lr");
}

TEST_CASE("the zoo's linear layer keeps the weight parameter, not its storage, for backward", "[models][zero]") {
  // ZeRO stage 3 frees a layer's gathered weights after forward and gathers them again for
  // backward: the graph must not hold the forward-time storage, and must read the new one.
  torch::manual_seed(7);
  Linear layer(8, 4);
  materialize_parameters(*layer, 7);
  const auto weight = layer->weight.detach().clone();
  auto x = torch::randn({3, 8}, torch::requires_grad());
  auto gathered = weight.clone();
  {
    torch::NoGradGuard no_grad;
    layer->weight.set_data(gathered);
  }
  auto y = layer(x);
  {
    torch::NoGradGuard no_grad;
    layer->weight.set_data(torch::empty({0}));
  }
  CHECK(gathered.storage().use_count() == 1);  // only this handle: the graph saved none
  {
    torch::NoGradGuard no_grad;
    layer->weight.set_data(weight.clone());  // gathered again
  }
  y.sum().backward();
  CHECK(torch::allclose(x.grad(), torch::ones({3, 4}).mm(weight)));
  CHECK(torch::allclose(layer->weight.grad(), torch::ones({4, 3}).mm(x.detach())));
  CHECK(torch::allclose(layer->bias.grad(), torch::full({4}, 3.0)));
}

TEST_CASE("a backward split into the input's gradient and deferred weight gradients equals one backward",
          "[models][pipeline]") {
  // Zero-bubble's B and W: after B the input has its gradient and the linear layers' weights have
  // none; W gives every weight the gradient one backward gives it.
  const ModelSpec spec = find_model_preset("gpt2-tiny").spec;
  auto model = build_model(spec, /*seed=*/3);
  torch::manual_seed(1);
  const auto tokens = torch::randint(0, spec.vocab_size, {2, 16}, torch::kLong);
  const auto targets = torch::randint(0, spec.vocab_size, {2, 16}, torch::kLong);
  auto run = [&](torch::Tensor& input) {
    input = model->embed(tokens).detach().requires_grad_();
    return model->head_loss(model->run_blocks(input, 0, spec.n_layer), targets);
  };
  torch::Tensor input;
  run(input).backward();
  const torch::Tensor input_gradient = input.grad().clone();
  std::map<std::string, torch::Tensor> expected;
  for (auto& item : model->named_parameters()) {
    // The position embedding is before the detached input: no gradient either way.
    if (item.value().grad().defined()) expected[item.key()] = item.value().grad().clone();
    item.value().mutable_grad() = torch::Tensor();
  }
  REQUIRE(expected.size() == model->parameters().size() - 1);

  DeferredWeightGradients deferred;
  {
    WeightGradientDeferral deferral(deferred);
    run(input).backward();
  }
  CHECK(torch::equal(input.grad(), input_gradient));
  REQUIRE_FALSE(deferred.empty());
  int64_t waiting = 0;
  for (const auto& block : model->blocks()->children()) {
    for (const auto& item : block->named_parameters()) {
      const bool matrix = item.value().dim() == 2;  // the linear layers' weights
      CHECK(item.value().grad().defined() != matrix);
      waiting += matrix;
    }
  }
  CHECK(waiting == 4 * spec.n_layer);  // c_attn, c_proj, c_fc, mlp.c_proj
  deferred.run();
  CHECK(deferred.empty());
  for (const auto& [name, gradient] : expected) {
    INFO(name);
    const torch::Tensor& parameter = model->named_parameters()[name];
    REQUIRE(parameter.grad().defined());
    CHECK(torch::allclose(parameter.grad(), gradient, 0.0, 1e-7));
  }
}

TEST_CASE("recomputed parts run again in backward: full reruns each block, selective attention's core only",
          "[models][recompute]") {
  // MatmulCounter counts forward matmuls, so a rerun in backward shows as more of them.
  const ModelSpec spec = find_model_preset("gpt2-tiny").spec;
  auto model = build_model(spec, /*seed=*/3);
  const int64_t B = 2, T = 16;
  torch::manual_seed(1);
  const auto tokens = torch::randint(0, spec.vocab_size, {B, T}, torch::kLong);
  const auto targets = torch::randint(0, spec.vocab_size, {B, T}, torch::kLong);
  auto counted = [&](const std::function<torch::Tensor()>& loss) {
    MatmulCounter counter;
    loss().backward();
    return counter.multiply_accumulates();
  };
  const int64_t kept = counted([&] { return model->loss(tokens, targets); });
  int64_t blocks = 0;
  {
    torch::NoGradGuard no_grad;
    MatmulCounter counter;
    model->run_blocks(model->embed(tokens), 0, spec.n_layer);
    blocks = counter.multiply_accumulates();
  }
  const int64_t full = counted([&] {
    auto x = model->embed(tokens);
    for (int64_t b = 0; b < spec.n_layer; ++b) {
      x = recompute_in_backward([&, b](const std::vector<torch::Tensor>& in) { return model->run_blocks(in[0], b, b + 1); },
                                {x}, false);
    }
    return model->head_loss(x, targets);
  });
  const int64_t selective = counted([&] {
    SelectiveRecompute recompute;
    return model->loss(tokens, targets);
  });
  CHECK(full == kept + blocks);
  CHECK(selective == kept + 2 * B * T * T * spec.d_model * spec.n_layer);  // q k^T and probs v, every head
}

TEST_CASE("a slice cut along two dimensions maps its elements to the whole tensor's runs", "[models]") {
  // (2 parts x 4 rows, 6 columns): rows [2, 4) of each part, then columns [3, 5).
  const ParameterSlice slice = split_again(split_parameter({8, 6}, 0, 2, 2, 2), 1, 3, 2);
  CHECK(slice.local_shape() == std::vector<int64_t>{4, 2});
  // (global offset, local offset, elements) of each run, flattened.
  std::vector<int64_t> runs;
  auto record = [&](int64_t global, int64_t local, int64_t n) { runs.insert(runs.end(), {global, local, n}); };
  for_each_global_run(slice, 0, 8, record);
  // Global rows 2, 3, 6, 7; columns 3 and 4 of each.
  CHECK(runs == std::vector<int64_t>{15, 0, 2, 21, 2, 2, 39, 4, 2, 45, 6, 2});
  runs.clear();
  for_each_global_run(slice, 3, 3, record);
  CHECK(runs == std::vector<int64_t>{22, 3, 1, 39, 4, 2});
  CHECK_THROWS_WITH(split_again(slice, 1, 0, 1), Catch::Contains("does not fit"));
  CHECK_THROWS_WITH(split_again(split_parameter({8, 6}, 1, 0, 3), 1, 5, 2), Catch::Contains("does not fit"));
}
