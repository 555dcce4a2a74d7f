// The model zoo beyond GPT-2's own tests: OPT and LLaMA counts against Hugging Face, causality
// and incremental decoding for every architecture, rotary positions by hand, the config path,
// and short training runs of the OPT and LLaMA example configs.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "core/config/config.h"
#include "core/train/model_factory.h"
#include "core/train/trainer.h"
#include "models/causal_lm.h"
#include "models/flop_counter.h"
#include "models/opt.h"
#include "models/rotary.h"
#include "shared_data.h"
#include "temp_dir.h"

using namespace cr;

namespace {

const std::vector<std::string> kTinyPresets = {"gpt2-tiny", "opt-tiny", "llama-tiny"};

// opt-350m's layout at unit-test size: post-LayerNorm blocks, narrower embeddings projected in and out.
ModelSpec opt_post_norm_tiny() {
  ModelSpec spec = find_model_preset("opt-tiny").spec;
  spec.word_embed_proj_dim = 16;
  spec.layer_norm_before = false;
  return spec;
}

int64_t allocated_parameters(const CausalLM& model) {
  int64_t total = 0;
  for (const auto& p : model->parameters()) total += p.numel();
  return total;
}

std::set<std::string> parameter_names(const CausalLM& model) {
  std::set<std::string> names;
  for (const auto& item : model->named_parameters()) names.insert(item.key());
  return names;
}

}  // namespace

TEST_CASE("OPT and LLaMA presets have Hugging Face parameter counts", "[models]") {
  CHECK(parameter_count(find_model_preset("opt-125m").spec) == 125'239'296);
  CHECK(parameter_count(find_model_preset("opt-350m").spec) == 331'196'416);
  CHECK(parameter_count(find_model_preset("opt-1.3b").spec) == 1'315'758'080);
  CHECK(parameter_count(find_model_preset("opt-2.7b").spec) == 2'651'596'800);
  CHECK(parameter_count(find_model_preset("opt-6.7b").spec) == 6'658'473'984);
  CHECK(parameter_count(find_model_preset("llama-7b").spec) == 6'738'415'616);
  CHECK(parameter_count(find_model_preset("llama2-7b").spec) == 6'738'415'616);
  CHECK(parameter_count(find_model_preset("llama-13b").spec) == 13'015'864'320);
  CHECK(parameter_count(find_model_preset("llama2-13b").spec) == 13'015'864'320);
  CHECK(parameter_count(find_model_preset("llama2-70b").spec) == 68'976'648'192);
  CHECK(parameter_count(find_model_preset("llama3-8b").spec) == 8'030'261'248);
  CHECK(parameter_count(find_model_preset("llama3-70b").spec) == 70'553'706'496);
  for (const auto& preset : model_presets()) {
    INFO(preset.name);
    CHECK_NOTHROW(validate_model_spec(preset.spec));
    // Below 6 x every parameter: norm gains at least are not matmul weights (test below).
    const double attention = 12.0 * static_cast<double>(preset.spec.n_layer * preset.spec.d_model * 128);
    CHECK(flops_per_token(preset.spec, 128) < 6.0 * static_cast<double>(parameter_count(preset.spec)) + attention);
  }
}

TEST_CASE("allocated small models have exactly the analytic parameter count, names and shapes", "[models]") {
  std::vector<ModelSpec> specs = {opt_post_norm_tiny()};
  for (const auto& name : {"gpt2-tiny", "gpt2-mini", "opt-tiny", "opt-mini", "llama-tiny", "llama-mini"}) {
    specs.push_back(find_model_preset(name).spec);
  }
  ModelSpec tied_llama = find_model_preset("llama-tiny").spec;
  tied_llama.tied_embeddings = true;
  specs.push_back(tied_llama);
  for (const auto& spec : specs) {
    INFO(spec.arch << " d_model " << spec.d_model);
    const auto model = build_model(spec);
    CHECK(allocated_parameters(model) == parameter_count(spec));
    // The analytic list `plan` lays buffers out from is the built model's, in order.
    const auto named = model->named_parameters();
    const auto shapes = parameter_shapes(spec);
    REQUIRE(named.size() == shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      CHECK(named[i].key() == shapes[i].name);
      CHECK(named[i].value().sizes().vec() == shapes[i].shape);
    }
  }
}

TEST_CASE("parameter names mirror Hugging Face's", "[models]") {
  const auto opt = parameter_names(build_model(find_model_preset("opt-tiny").spec));
  for (const auto& name :
       {"decoder.embed_tokens.weight", "decoder.embed_positions.weight", "decoder.layers.1.self_attn.q_proj.weight",
        "decoder.layers.1.self_attn.k_proj.bias", "decoder.layers.1.self_attn.out_proj.weight",
        "decoder.layers.1.self_attn_layer_norm.bias", "decoder.layers.1.fc1.weight", "decoder.layers.1.fc2.bias",
        "decoder.layers.1.final_layer_norm.weight", "decoder.final_layer_norm.weight"}) {
    INFO(name);
    CHECK(opt.count(name) == 1);
  }
  CHECK(opt.count("decoder.project_in.weight") == 0);

  const auto post_norm = parameter_names(build_model(opt_post_norm_tiny()));
  CHECK(post_norm.count("decoder.project_in.weight") == 1);
  CHECK(post_norm.count("decoder.project_out.weight") == 1);
  CHECK(post_norm.count("decoder.final_layer_norm.weight") == 0);

  const auto llama = parameter_names(build_model(find_model_preset("llama-tiny").spec));
  for (const auto& name :
       {"embed_tokens.weight", "layers.1.self_attn.q_proj.weight", "layers.1.self_attn.k_proj.weight",
        "layers.1.self_attn.v_proj.weight", "layers.1.self_attn.o_proj.weight", "layers.1.mlp.gate_proj.weight",
        "layers.1.mlp.up_proj.weight", "layers.1.mlp.down_proj.weight", "layers.1.input_layernorm.weight",
        "layers.1.post_attention_layernorm.weight", "norm.weight", "lm_head.weight"}) {
    INFO(name);
    CHECK(llama.count(name) == 1);
  }
  for (const auto& name : llama) {
    INFO(name);
    CHECK(name.find("bias") == std::string::npos);
  }

  const auto gpt2 = parameter_names(build_model(find_model_preset("gpt2-tiny").spec));
  for (const auto& name : {"wte.weight", "wpe.weight", "h.1.ln_1.weight", "h.1.attn.c_attn.weight",
                           "h.1.attn.c_proj.bias", "h.1.mlp.c_fc.weight", "ln_f.bias"}) {
    INFO(name);
    CHECK(gpt2.count(name) == 1);
  }
}

TEST_CASE("every architecture is causal: logits at t ignore tokens after t", "[models]") {
  for (const auto& name : kTinyPresets) {
    torch::manual_seed(1);
    auto model = build_model(find_model_preset(name).spec);
    model->eval();
    auto tokens = torch::randint(0, 512, {2, 16}, torch::kLong);
    auto changed = tokens.clone();
    changed.slice(1, 10, 16).fill_(7);
    auto a = model->logits(tokens), b = model->logits(changed);
    INFO(name);
    CHECK(torch::allclose(a.slice(1, 0, 10), b.slice(1, 0, 10), 1e-6, 1e-6));
    CHECK_FALSE(torch::allclose(a.slice(1, 10, 16), b.slice(1, 10, 16), 1e-3, 1e-3));
  }
}

TEST_CASE("decoding with a KV cache equals the full-sequence logits", "[models]") {
  std::vector<ModelSpec> specs = {opt_post_norm_tiny()};
  for (const auto& name : kTinyPresets) specs.push_back(find_model_preset(name).spec);
  ModelSpec multi_head_llama = find_model_preset("llama-tiny").spec;
  multi_head_llama.n_kv_head = multi_head_llama.n_head;
  specs.push_back(multi_head_llama);
  for (const auto& spec : specs) {
    torch::manual_seed(2);
    auto model = build_model(spec);
    model->eval();
    torch::NoGradGuard no_grad;
    auto tokens = torch::randint(0, spec.vocab_size, {2, 12}, torch::kLong);
    auto full = model->logits(tokens);
    INFO(spec.arch << " n_kv_head " << spec.n_kv_head << " layer_norm_before " << spec.layer_norm_before);

    ContiguousKVCache one_by_one(spec.n_layer);
    for (int64_t t = 0; t < 12; ++t) {
      auto step = model->forward_cached(tokens.slice(1, t, t + 1), one_by_one);
      CHECK(torch::allclose(step, full.slice(1, t, t + 1), 1e-5, 1e-5));
    }
    CHECK(one_by_one.length() == 12);

    // A prompt in one pass, then a chunk: queries after cached keys need the shifted mask.
    ContiguousKVCache chunked(spec.n_layer);
    auto prompt = model->forward_cached(tokens.slice(1, 0, 5), chunked);
    auto rest = model->forward_cached(tokens.slice(1, 5, 12), chunked);
    CHECK(torch::allclose(torch::cat({prompt, rest}, 1), full, 1e-5, 1e-5));
  }
}

TEST_CASE("a full cache is refused at max_seq_len", "[models]") {
  const ModelSpec spec = find_model_preset("llama-tiny").spec;
  auto model = build_model(spec);
  torch::NoGradGuard no_grad;
  ContiguousKVCache cache(spec.n_layer);
  model->forward_cached(torch::zeros({1, spec.max_seq_len}, torch::kLong), cache);
  CHECK_THROWS_WITH(model->forward_cached(torch::zeros({1, 1}, torch::kLong), cache),
                    Catch::Contains("exceeds model.max_seq_len 128"));
}

TEST_CASE("rotary embedding rotates (i, i + D/2) pairs by position * theta^(-2i/D)", "[models]") {
  const double theta = 100.0;
  const int64_t first_position = 3;
  auto x = torch::arange(1, 17, torch::kDouble).reshape({1, 2, 2, 4});  // (B, H, T, D = 4)
  auto rotated = apply_rotary(x.to(torch::kFloat), first_position, theta);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t t = 0; t < 2; ++t) {
      for (int64_t i = 0; i < 2; ++i) {
        const double angle = static_cast<double>(first_position + t) * std::pow(theta, -2.0 * i / 4.0);
        const double a = x[0][h][t][i].item<double>(), b = x[0][h][t][i + 2].item<double>();
        INFO("head " << h << " t " << t << " pair " << i);
        CHECK(rotated[0][h][t][i].item<double>() == Approx(a * std::cos(angle) - b * std::sin(angle)).epsilon(1e-5));
        CHECK(rotated[0][h][t][i + 2].item<double>() ==
              Approx(b * std::cos(angle) + a * std::sin(angle)).epsilon(1e-5));
      }
    }
  }
  // Position 0 is the identity.
  auto at_zero = x.slice(2, 0, 1).to(torch::kFloat);
  CHECK(torch::allclose(apply_rotary(at_zero, 0, theta), at_zero));
}

TEST_CASE("the opt-350m layout (post-LayerNorm, projected embeddings) trains a step", "[models]") {
  torch::manual_seed(3);
  auto model = build_model(opt_post_norm_tiny());
  auto opt = std::dynamic_pointer_cast<OPTImpl>(model);
  REQUIRE(opt);
  CHECK(opt->decoder->embed_tokens->weight.size(1) == 16);
  CHECK(opt->decoder->embed_positions->weight.size(0) == 128 + 2);
  auto tokens = torch::randint(0, 512, {2, 8}, torch::kLong);
  auto loss = model->loss(tokens, tokens);
  CHECK(std::abs(loss.item<double>() - std::log(512.0)) < 0.5);
  loss.backward();
  CHECK(opt->decoder->project_in->weight.grad().abs().sum().item<double>() > 0);
  CHECK(opt->decoder->project_out->weight.grad().abs().sum().item<double>() > 0);
}

TEST_CASE("flops_per_token is 3x the matmul FLOPs a forward pass does, per token", "[models][flops]") {
  // The multiply-accumulates (2 FLOPs each) the models' matmuls count in one forward pass;
  // backward does twice forward's matmul work. Learned positions and an untied input embedding
  // are only looked up; the head, tied or not, is a matmul.
  ModelSpec tied_llama = find_model_preset("llama-tiny").spec;
  tied_llama.tied_embeddings = true;
  std::vector<std::pair<std::string, ModelSpec>> specs = {{"opt-350m layout", opt_post_norm_tiny()},
                                                          {"llama tied", tied_llama}};
  for (const auto& name : kTinyPresets) specs.emplace_back(name, find_model_preset(name).spec);
  const int64_t B = 2, T = 16;
  for (const auto& [name, spec] : specs) {
    INFO(name);
    torch::manual_seed(0);
    auto model = build_model(spec);
    torch::NoGradGuard no_grad;
    const auto tokens = torch::randint(0, spec.vocab_size, {B, T}, torch::kLong);
    int64_t loss_macs = 0, logits_macs = 0;
    {
      MatmulCounter counter;
      model->loss(tokens, tokens);
      loss_macs = counter.multiply_accumulates();
    }
    {
      MatmulCounter counter;
      model->logits(tokens);
      logits_macs = counter.multiply_accumulates();
    }
    CHECK(logits_macs == loss_macs);
    CHECK(3.0 * 2.0 * static_cast<double>(loss_macs) / (B * T) == flops_per_token(spec, T));
  }
}

TEST_CASE("config: arch follows the preset, must agree when given, overrides keep grouped-query attention",
          "[models][config]") {
  ModelConfig config;
  config.preset = "opt-125m";
  CHECK(model_spec_from_config(config).arch == "opt");
  config.arch = "gpt2";
  CHECK_THROWS_WITH(model_spec_from_config(config),
                    Catch::Contains("model.arch 'gpt2' does not match model.preset 'opt-125m'"));
  config.arch = "opt";
  CHECK(model_spec_from_config(config).activation == "relu");

  config.arch = "llama";
  config.preset = "llama-tiny";
  config.n_head = 8;
  ModelSpec spec = model_spec_from_config(config);
  CHECK(spec.n_kv_head == 2);
  config.n_kv_head = 8;
  CHECK(model_spec_from_config(config).n_kv_head == 8);

  ModelConfig explicit_dims;
  explicit_dims.arch = "llama";
  explicit_dims.preset.reset();
  explicit_dims.n_layer = 2;
  explicit_dims.n_head = 4;
  explicit_dims.d_model = 32;
  explicit_dims.vocab_size = 512;
  explicit_dims.max_seq_len = 64;
  spec = model_spec_from_config(explicit_dims);
  CHECK(spec.norm == "rmsnorm");
  CHECK(spec.n_kv_head == 4);
  CHECK_FALSE(spec.tied_embeddings);
}

namespace {

// A short run of an example config on tinyshakespeare, as test_train does for shakespeare_char.
void check_shakespeare_config(const std::string& file) {
  const std::string data = std::string(CR_SHARED_DATA) + "/tinyshakespeare.txt";
  if (!cr::test::shared_data_present({data})) return;
  cr::test::TempDir dir;
  const auto config = load_config_file(std::string(CR_SOURCE_DIR) + "/configs/" + file,
                                       {"data.train=" + data, "train.steps=120", "train.global_batch_size=16",
                                        "train.eval_every=120", "train.eval_batches=8", "runtime.threads=1",
                                        "runtime.run_dir=" + dir.path().string(), "runtime.progress_bar=false",
                                        "train.peak_flops=1.0e9", "checkpoint.save_final=false", "checkpoint.every=0"});
  const auto summary = run_training(config);
  REQUIRE(summary.val_losses.size() == 1);
  const double uniform = std::log(512.0);
  CHECK(summary.losses.front() > 0.9 * uniform);
  CHECK(summary.val_losses.back().second < 0.5 * uniform);
}

}  // namespace

TEST_CASE("OPT trains on tinyshakespeare", "[train][data]") { check_shakespeare_config("shakespeare_opt.yaml"); }

TEST_CASE("LLaMA trains on tinyshakespeare", "[train][data]") { check_shakespeare_config("shakespeare_llama.yaml"); }
