// Hugging Face interchange: config.json <-> ModelSpec, weight names and layouts, export of a
// training checkpoint and import through model.init_from, each checked tensor by tensor.
#include <cstring>
#include <limits>
#include <fstream>
#include <set>
#include <tuple>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/config/config.h"
#include "core/formats/hf_config.h"
#include "core/train/hf_export.h"
#include "core/train/hf_import.h"
#include "core/formats/hf_weights.h"
#include "core/formats/safetensors.h"
#include "core/infer/inference_model.h"
#include "core/train/model_factory.h"
#include "core/train/train_checkpoint.h"
#include "core/train/trainer.h"
#include "memory/flat_parameters.h"
#include "models/causal_lm.h"
#include "temp_dir.h"

using namespace cr;
using cr::test::TempDir;
namespace fs = std::filesystem;

namespace {

// A model with its parameters in flat storage, as the trainer holds it.
struct TinyModel {
  TinyModel(const ModelSpec& spec, uint64_t seed) {
    model = build_model(spec, seed);
    model->eval();
    params = std::make_unique<FlatParameters>(*model, torch::kFloat);
  }
  explicit TinyModel(uint64_t seed) : TinyModel(find_model_preset("gpt2-tiny").spec, seed) {}
  const ModelSpec& spec() const { return model->spec(); }
  torch::Tensor logits() {
    torch::NoGradGuard no_grad;
    auto tokens = torch::arange(0, 24, torch::kLong).mul(37).remainder(512).view({2, 12});
    return model->logits(tokens);
  }
  // Our names, fp32; the views point into `host`, which must outlive them.
  std::vector<TensorView> views(torch::Tensor& host) {
    host = params->master().to(torch::kCPU).contiguous();
    std::vector<TensorView> out;
    for (const auto& e : params->entries()) {
      out.push_back({e.name, DType::F32, e.shape, host.data_ptr<float>() + e.offset,
                     static_cast<size_t>(e.numel) * sizeof(float)});
    }
    return out;
  }
  torch::Tensor parameter(const std::string& name) const {
    const auto named = model->named_parameters();
    REQUIRE(named.contains(name));
    return named[name];
  }

  CausalLM model;
  std::unique_ptr<FlatParameters> params;
};

// The tiny presets plus the layouts only large released models have: OPT-350m's projected
// embeddings with post-LayerNorm blocks, and LLaMA with tied embeddings and biases.
std::vector<std::pair<std::string, ModelSpec>> tiny_specs() {
  ModelSpec opt_projected = find_model_preset("opt-tiny").spec;
  opt_projected.word_embed_proj_dim = 16;
  opt_projected.layer_norm_before = false;
  ModelSpec llama_tied = find_model_preset("llama-tiny").spec;
  llama_tied.tied_embeddings = true;
  llama_tied.bias = true;
  return {{"gpt2-tiny", find_model_preset("gpt2-tiny").spec},
          {"opt-tiny", find_model_preset("opt-tiny").spec},
          {"opt-tiny projected, post-LN", opt_projected},
          {"llama-tiny", find_model_preset("llama-tiny").spec},
          {"llama-tiny tied, biased", llama_tied}};
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

torch::Tensor as_tensor(const TensorView& view, torch::ScalarType type) {
  auto t = torch::empty(view.shape, type);
  std::memcpy(t.data_ptr(), view.data, view.nbytes);
  return t;
}

bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

Config tiny_config() {
  return load_config_text("model: {preset: gpt2-tiny}\ndata: {format: synthetic, seq_len: 32}\n", "test");
}

}  // namespace

TEST_CASE("GPT-2 export writes transformers' names, Conv1D layouts and config", "[hf]") {
  TempDir tmp;
  TinyModel source(1);
  const Config config = tiny_config();
  auto& master = source.params->master();
  CheckpointPart weights;  // export reads the weights only
  for (const auto& entry : source.params->entries()) {
    weights.slices.push_back({entry.name, entry.shape, 0, entry.numel, 1, 0, master.data_ptr<float>() + entry.offset});
  }
  const ParallelContext single_process;
  const TrainState state{{3, 12}, 0, std::nullopt, ""};
  const std::string checkpoint =
      save_train_checkpoint(tmp.file("ckpt"), config, state, weights, master.numel(), 0, single_process);

  HfExportOptions options;
  options.checkpoint = tmp.file("ckpt");  // the root: its newest checkpoint is exported
  options.out_dir = tmp.file("hf");
  const auto result = export_hf_checkpoint(options);
  CHECK(result.checkpoint == checkpoint);
  CHECK(fs::exists(tmp.path() / "hf" / "model.safetensors"));
  CHECK_FALSE(fs::exists(tmp.path() / "hf" / "model.safetensors.index.json"));
  // Token ids are only known for the released vocabulary, not gpt2-tiny's 512 bytes.
  CHECK_FALSE(fs::exists(tmp.path() / "hf" / "generation_config.json"));

  const auto hf = read_json(tmp.path() / "hf" / "config.json");
  CHECK(hf["architectures"] == nlohmann::json::array({"GPT2LMHeadModel"}));
  CHECK(hf["model_type"] == "gpt2");
  CHECK(hf["torch_dtype"] == "float32");
  CHECK(hf["n_layer"] == 2);
  CHECK(hf["n_head"] == 2);
  CHECK(hf["n_embd"] == 32);
  CHECK(hf["n_inner"] == 128);
  CHECK(hf["n_positions"] == 128);
  CHECK(hf["vocab_size"] == 512);
  CHECK(hf["activation_function"] == "gelu_new");
  CHECK(hf["layer_norm_epsilon"] == 1e-5);
  CHECK(hf["tie_word_embeddings"] == true);

  const SafetensorsFile file(tmp.file("hf/model.safetensors"));
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.names().size() == source.params->entries().size());
  CHECK_FALSE(file.contains("lm_head.weight"));  // tied to wte, omitted as transformers does
  for (const auto& entry : source.params->entries()) {
    INFO(entry.name);
    const HfTensorName name = hf_tensor_name("gpt2", entry.name);
    CHECK(name.name == "transformer." + entry.name);
    const auto& view = file.get(name.name);
    auto expected = source.parameter(entry.name).detach();
    if (name.transposed) expected = expected.t().contiguous();
    CHECK(bitwise_equal(as_tensor(view, torch::kFloat), expected));
  }
  const auto& c_attn = file.get("transformer.h.0.attn.c_attn.weight");
  CHECK(c_attn.shape == std::vector<int64_t>{32, 96});  // Conv1D: [in, out]
  CHECK(file.get("transformer.h.1.mlp.c_fc.weight").shape == std::vector<int64_t>{32, 128});
  CHECK(file.get("transformer.h.1.mlp.c_proj.weight").shape == std::vector<int64_t>{128, 32});
  CHECK(file.get("transformer.h.0.attn.c_attn.bias").shape == std::vector<int64_t>{96});
  CHECK(file.get("transformer.wte.weight").shape == std::vector<int64_t>{512, 32});
  CHECK_FALSE(hf_tensor_name("gpt2", "h.0.ln_1.weight").transposed);
  CHECK_FALSE(hf_tensor_name("gpt2", "wte.weight").transposed);
}

TEST_CASE("a failed export leaves the earlier export intact, a new one replaces it whole", "[hf]") {
  TempDir tmp;
  TinyModel source(1);
  auto& master = source.params->master();
  CheckpointPart weights;
  for (const auto& entry : source.params->entries()) {
    weights.slices.push_back({entry.name, entry.shape, 0, entry.numel, 1, 0, master.data_ptr<float>() + entry.offset});
  }
  const ParallelContext single_process;
  const TrainState state{{3, 12}, 0, std::nullopt, ""};
  save_train_checkpoint(tmp.file("ckpt"), tiny_config(), state, weights, master.numel(), 0, single_process);
  HfExportOptions options;
  options.checkpoint = tmp.file("ckpt");
  options.out_dir = tmp.file("hf");
  options.max_shard_bytes = 40'000;
  export_hf_checkpoint(options);
  std::ofstream(tmp.path() / "hf" / "README.md") << "mine";
  const auto shards_before = read_json(tmp.path() / "hf" / "model.safetensors.index.json");

  // Regression: the earlier weights were deleted before the tokenizer directory was refused.
  fs::create_directories(tmp.path() / "empty");
  options.tokenizer_dir = tmp.file("empty");
  options.max_shard_bytes = int64_t{1} << 40;
  CHECK_THROWS_WITH(export_hf_checkpoint(options), Catch::Contains("has no tokenizer files"));
  CHECK(read_json(tmp.path() / "hf" / "model.safetensors.index.json") == shards_before);
  CHECK_FALSE(fs::exists(tmp.path() / "hf" / "model.safetensors"));
  size_t entries = 0;
  for (const auto& item : fs::directory_iterator(tmp.path())) entries += item.path().filename().string()[0] == '.';
  CHECK(entries == 0);  // no staging directory left behind

  options.tokenizer_dir.reset();
  export_hf_checkpoint(options);
  CHECK(fs::exists(tmp.path() / "hf" / "model.safetensors"));
  CHECK_FALSE(fs::exists(tmp.path() / "hf" / "model.safetensors.index.json"));
  CHECK_FALSE(fs::exists(tmp.path() / "hf" / "model-00001-of-00002.safetensors"));
  std::ifstream readme(tmp.path() / "hf" / "README.md");
  std::string kept;
  std::getline(readme, kept);
  CHECK(kept == "mine");  // the user's own files stay
}

TEST_CASE("a Hugging Face export re-imports bitwise, single file and sharded", "[hf]") {
  TempDir tmp;
  TinyModel source(2);
  torch::Tensor host;
  const auto ours = source.views(host);
  const auto reference_logits = source.logits();

  SECTION("single file, through model.init_from's entry point") {
    write_hf_model(tmp.file("hf"), source.spec(), ours, DType::F32);
    TinyModel fresh(99);
    CHECK_FALSE(bitwise_equal(fresh.params->master(), source.params->master()));
    fresh.params->load(*open_init_weights(tmp.file("hf"), fresh.params->entries(), fresh.spec()));
    CHECK(bitwise_equal(fresh.params->master(), source.params->master()));
    CHECK(bitwise_equal(fresh.logits(), reference_logits));
  }
  SECTION("sharded with an index") {
    const int64_t limit = 40'000;  // bytes: the 65 KB token embedding gets a shard of its own
    const auto files = write_hf_model(tmp.file("hf"), source.spec(), ours, DType::F32, limit);
    CHECK_FALSE(fs::exists(tmp.path() / "hf" / "model.safetensors"));
    const auto index = read_json(tmp.path() / "hf" / "model.safetensors.index.json");
    const auto& map = index["weight_map"];
    CHECK(map.size() == ours.size());
    std::set<std::string> shards;
    int64_t total = 0;
    for (const auto& [name, shard] : map.items()) shards.insert(shard.get<std::string>());
    for (const auto& view : ours) total += static_cast<int64_t>(view.nbytes);
    CHECK(index["metadata"]["total_size"] == total);
    REQUIRE(shards.size() >= 3);
    const std::string last = fmt::format("model-{:05d}-of-{:05d}.safetensors", shards.size(), shards.size());
    CHECK(shards.count("model-00001-of-" + last.substr(15)) == 1);
    CHECK(shards.count(last) == 1);
    for (const auto& shard : shards) {
      const SafetensorsFile file(tmp.file("hf/" + shard));
      const int64_t bytes = [&] {
        int64_t sum = 0;
        for (const auto& name : file.names()) sum += static_cast<int64_t>(file.get(name).nbytes);
        return sum;
      }();
      CHECK((bytes <= limit || file.names().size() == 1));
    }

    TinyModel fresh(98);
    fresh.params->load(HfWeights(tmp.file("hf"), fresh.params->entries(), fresh.spec()));
    CHECK(bitwise_equal(fresh.params->master(), source.params->master()));
    CHECK(bitwise_equal(fresh.logits(), reference_logits));

    // A later single-file export into the same directory replaces the shards.
    write_hf_model(tmp.file("hf"), source.spec(), ours, DType::F32);
    CHECK(fs::exists(tmp.path() / "hf" / "model.safetensors"));
    CHECK_FALSE(fs::exists(tmp.path() / "hf" / "model.safetensors.index.json"));
    CHECK_FALSE(fs::exists(tmp.path() / "hf" / *shards.begin()));
  }
}

TEST_CASE("every architecture exports under transformers' names and re-imports bitwise", "[hf]") {
  for (const auto& [label, spec] : tiny_specs()) {
    INFO(label);
    TempDir tmp;
    TinyModel source(spec, 11);
    torch::Tensor host;
    const auto ours = source.views(host);
    const std::string prefix = spec.arch == "gpt2" ? "transformer." : "model.";
    for (const int64_t limit : {kDefaultMaxShardBytes, int64_t{30'000}}) {
      const std::string dir = tmp.file(fmt::format("hf-{}", limit));
      write_hf_model(dir, spec, ours, DType::F32, limit);
      CHECK(fs::exists(fs::path(dir) / "model.safetensors.index.json") == (limit != kDefaultMaxShardBytes));
      const auto config = read_json(fs::path(dir) / "config.json");
      CHECK(config["architectures"][0] == hf_architecture(spec.arch).hf_class);
      CHECK(config["model_type"] == spec.arch);
      CHECK(config["tie_word_embeddings"] == spec.tied_embeddings);

      const HfWeightReader reader(dir);
      CHECK(reader.names().size() == ours.size());
      CHECK(reader.contains("lm_head.weight") == !spec.tied_embeddings);
      for (const auto& name : reader.names()) {
        INFO(name);
        CHECK((name.rfind(prefix, 0) == 0 || name == "lm_head.weight"));
      }
      TinyModel fresh(spec, 12);
      fresh.params->load(*open_init_weights(dir, fresh.params->entries(), fresh.spec()));
      CHECK(bitwise_equal(fresh.params->master(), source.params->master()));
      CHECK(bitwise_equal(fresh.logits(), source.logits()));
    }
  }
  // Spot checks of names the other architectures' code must agree on.
  TinyModel opt(tiny_specs()[2].second, 1);
  torch::Tensor opt_host;
  TempDir tmp;
  write_hf_model(tmp.file("opt"), opt.spec(), opt.views(opt_host), DType::F32);
  const SafetensorsFile opt_file(tmp.file("opt/model.safetensors"));
  CHECK(opt_file.get("model.decoder.embed_tokens.weight").shape == std::vector<int64_t>{512, 16});
  CHECK(opt_file.get("model.decoder.embed_positions.weight").shape == std::vector<int64_t>{130, 32});
  CHECK(opt_file.get("model.decoder.project_in.weight").shape == std::vector<int64_t>{32, 16});
  CHECK(opt_file.get("model.decoder.project_out.weight").shape == std::vector<int64_t>{16, 32});
  CHECK(opt_file.get("model.decoder.layers.1.self_attn.out_proj.bias").shape == std::vector<int64_t>{32});
  CHECK(opt_file.get("model.decoder.layers.0.fc1.weight").shape == std::vector<int64_t>{128, 32});
  CHECK(opt_file.contains("model.decoder.layers.0.self_attn_layer_norm.weight"));
  CHECK(opt_file.contains("model.decoder.layers.0.final_layer_norm.bias"));
  CHECK_FALSE(opt_file.contains("model.decoder.final_layer_norm.weight"));  // post-LN: none
  TinyModel llama(find_model_preset("llama-tiny").spec, 1);
  torch::Tensor llama_host;
  write_hf_model(tmp.file("llama"), llama.spec(), llama.views(llama_host), DType::F32);
  const SafetensorsFile llama_file(tmp.file("llama/model.safetensors"));
  CHECK(llama_file.get("model.layers.0.self_attn.k_proj.weight").shape == std::vector<int64_t>{16, 32});  // 2 kv heads
  CHECK(llama_file.get("model.layers.1.mlp.gate_proj.weight").shape == std::vector<int64_t>{64, 32});
  CHECK(llama_file.contains("model.layers.1.post_attention_layernorm.weight"));
  CHECK(llama_file.contains("model.norm.weight"));
  CHECK(llama_file.get("lm_head.weight").shape == std::vector<int64_t>{512, 32});
  const auto llama_config = read_json(tmp.path() / "llama" / "config.json");
  CHECK(llama_config["num_key_value_heads"] == 2);
  CHECK(llama_config["rms_norm_eps"] == 1e-5);
  CHECK(llama_config["rope_theta"] == 1e4);
  CHECK(llama_config["intermediate_size"] == 64);
}

TEST_CASE("bf16 and fp16 exports hold the rounded weights and load back as fp32", "[hf]") {
  TempDir tmp;
  TinyModel source(3);
  torch::Tensor host;
  const auto ours = source.views(host);
  for (const auto& [dtype, type, name] : {std::tuple{DType::BF16, torch::kBFloat16, "bfloat16"},
                                          std::tuple{DType::F16, torch::kHalf, "float16"}}) {
    INFO(name);
    const std::string dir = tmp.file(name);
    write_hf_model(dir, source.spec(), ours, dtype);
    CHECK(read_json(fs::path(dir) / "config.json")["torch_dtype"] == name);
    const SafetensorsFile file(dir + "/model.safetensors");
    const auto& wte = file.get("transformer.wte.weight");
    CHECK(wte.dtype == dtype);
    CHECK(bitwise_equal(as_tensor(wte, type), source.parameter("wte.weight").detach().to(type)));
    const auto& c_fc = file.get("transformer.h.0.mlp.c_fc.weight");
    CHECK(bitwise_equal(as_tensor(c_fc, type), source.parameter("h.0.mlp.c_fc.weight").detach().t().to(type)));

    TinyModel fresh(97);
    fresh.params->load(HfWeights(dir, fresh.params->entries(), fresh.spec()));
    CHECK(bitwise_equal(fresh.params->master(), source.params->master().to(type).to(torch::kFloat)));
  }
}

TEST_CASE("hub files saved from the base model (no 'transformer.' prefix) load too", "[hf]") {
  TempDir tmp;
  TinyModel source(4);
  torch::Tensor host;
  auto ours = source.views(host);
  write_hf_model(tmp.file("hf"), source.spec(), ours, DType::F32);
  // Rewrite the weights under base-model names, plus the attention-mask buffer old files carry.
  std::vector<torch::Tensor> keep;
  std::vector<TensorView> renamed;
  {
    const SafetensorsFile file(tmp.file("hf/model.safetensors"));
    for (const auto& name : file.names()) {
      keep.push_back(as_tensor(file.get(name), torch::kFloat));
      renamed.push_back({our_tensor_name("gpt2", name), DType::F32, file.get(name).shape, keep.back().data_ptr(),
                         file.get(name).nbytes});
    }
  }
  auto mask = torch::ones({1, 1, 128, 128}).tril();
  renamed.push_back({"h.0.attn.bias", DType::F32, {1, 1, 128, 128}, mask.data_ptr(), static_cast<size_t>(mask.nbytes())});
  write_safetensors(tmp.file("hf/model.safetensors"), renamed, {{"format", "pt"}});
  TinyModel fresh(96);
  fresh.params->load(HfWeights(tmp.file("hf"), fresh.params->entries(), fresh.spec()));
  CHECK(bitwise_equal(fresh.params->master(), source.params->master()));
}

TEST_CASE("import errors name the tensor, the file and the dimension", "[hf]") {
  TempDir tmp;
  TinyModel source(5);
  torch::Tensor host;
  auto ours = source.views(host);
  TinyModel target(6);
  const std::string dir = tmp.file("hf");

  SECTION("missing tensor") {
    std::vector<TensorView> partial;
    for (const auto& view : ours) {
      if (view.name != "h.1.ln_2.bias") partial.push_back(view);
    }
    write_hf_model(dir, source.spec(), partial, DType::F32);
    CHECK_THROWS_WITH(target.params->load(HfWeights(dir, target.params->entries(), target.spec())),
                      Catch::Contains(dir) && Catch::Contains("no tensor 'transformer.h.1.ln_2.bias'"));
  }
  SECTION("shape mismatch") {
    write_hf_model(dir, source.spec(), ours, DType::F32);
    std::vector<torch::Tensor> keep;
    std::vector<TensorView> changed;
    const SafetensorsFile file(dir + "/model.safetensors");
    for (const auto& name : file.names()) {
      TensorView view = file.get(name);
      if (name == "transformer.h.0.attn.c_attn.weight") view.shape = {96, 32};  // not transposed
      changed.push_back(view);
    }
    write_safetensors(dir + "/broken.safetensors", changed, {{"format", "pt"}});
    fs::rename(dir + "/broken.safetensors", dir + "/model.safetensors");
    CHECK_THROWS_WITH(target.params->load(HfWeights(dir, target.params->entries(), target.spec())),
                      Catch::Contains("model.safetensors: tensor 'transformer.h.0.attn.c_attn.weight' has shape "
                                      "[96, 32] but parameter 'h.0.attn.c_attn.weight' needs [32, 96]"));
  }
  SECTION("index naming a shard without the tensor") {
    write_hf_model(dir, source.spec(), ours, DType::F32, 40'000);
    auto index = read_json(fs::path(dir) / "model.safetensors.index.json");
    // The token embedding is in a shard of its own, so any other shard lacks it.
    const std::string other = index["weight_map"]["transformer.ln_f.weight"];
    REQUIRE(other != index["weight_map"]["transformer.wte.weight"]);
    index["weight_map"]["transformer.wte.weight"] = other;
    write_text(fs::path(dir) / "model.safetensors.index.json", index.dump());
    CHECK_THROWS_WITH(HfWeightReader(dir), Catch::Contains("model.safetensors.index.json: lists tensor "
                                                           "'transformer.wte.weight' in " + other));
  }
  SECTION("unknown architecture") {
    fs::create_directories(dir);
    write_text(fs::path(dir) / "config.json", R"({"architectures": ["BertForMaskedLM"], "model_type": "bert"})");
    CHECK_THROWS_WITH(target.params->load(*open_init_weights(dir, target.params->entries(), target.spec())),
                      Catch::Contains("config.json: unsupported architecture 'BertForMaskedLM'") &&
                          Catch::Contains("GPT2LMHeadModel, OPTForCausalLM, LlamaForCausalLM"));
  }
  SECTION("missing key and unsupported value") {
    fs::create_directories(dir);
    auto config = hf_config_from_spec(source.spec(), "float32");
    config.erase("n_embd");
    write_text(fs::path(dir) / "config.json", config.dump());
    CHECK_THROWS_WITH(read_hf_config(dir), Catch::Contains("config.json: GPT2LMHeadModel config has no 'n_embd'"));
    config = hf_config_from_spec(source.spec(), "float32");
    config["activation_function"] = "relu";
    write_text(fs::path(dir) / "config.json", config.dump());
    CHECK_THROWS_WITH(read_hf_config(dir), Catch::Contains("'activation_function' = 'relu' is not supported"));
  }
  SECTION("dimensions that differ from the configured model") {
    ModelSpec bigger = source.spec();
    bigger.n_layer = 3;
    write_hf_model(dir, bigger, {}, DType::F32);
    CHECK_THROWS_WITH(target.params->load(HfWeights(dir, target.params->entries(), target.spec())),
                      Catch::Contains("has n_layer 3 but the configured model has 2"));
  }
  SECTION("neither a checkpoint nor a Hugging Face directory") {
    fs::create_directories(dir);
    CHECK_THROWS_WITH(target.params->load(*open_init_weights(dir, target.params->entries(), target.spec())),
                      Catch::Contains("neither manifest.json") && Catch::Contains(dir));
  }
  // Regression cases of the input fuzzing campaign.
  SECTION("an index whose shard name is not a file name in the directory") {
    write_hf_model(dir, source.spec(), ours, DType::F32, 40'000);
    auto index = read_json(fs::path(dir) / "model.safetensors.index.json");
    for (const nlohmann::json& shard : {nlohmann::json("../outside.safetensors"), nlohmann::json("/etc/passwd"),
                                        nlohmann::json(7), nlohmann::json("")}) {
      INFO(shard.dump());
      auto changed = index;
      changed["weight_map"]["transformer.wte.weight"] = shard;
      write_text(fs::path(dir) / "model.safetensors.index.json", changed.dump());
      CHECK_THROWS_WITH(HfWeightReader(dir), Catch::Contains("tensor 'transformer.wte.weight' maps to " + shard.dump() +
                                                             ", which is not a file name in the model directory"));
    }
  }
  SECTION("config.json: an integer past int64, a directory") {
    fs::create_directories(dir);
    auto config = hf_config_from_spec(source.spec(), "float32");
    config["n_layer"] = uint64_t{1} << 63;
    write_text(fs::path(dir) / "config.json", config.dump());
    CHECK_THROWS_WITH(read_hf_config(dir), Catch::Contains("'n_layer' is 9223372036854775808, out of range"));
    config["n_layer"] = 100000;
    write_text(fs::path(dir) / "config.json", config.dump());
    CHECK_THROWS_WITH(read_hf_config(dir), Catch::Contains("model.n_layer: must be in [1, 4096], got 100000"));
    fs::remove(fs::path(dir) / "config.json");
    fs::create_directories(fs::path(dir) / "config.json");
    CHECK_THROWS_WITH(read_hf_config(dir), Catch::Contains("config.json: not a regular file"));
  }
  SECTION("weights that are not finite") {
    std::vector<float> poisoned(static_cast<size_t>(ours.back().nbytes / sizeof(float)), 0.5f);
    poisoned[3] = std::numeric_limits<float>::quiet_NaN();
    auto changed = ours;
    changed.back().data = poisoned.data();
    write_hf_model(dir, source.spec(), changed, DType::F32);
    CHECK_THROWS_WITH(target.params->load(HfWeights(dir, target.params->entries(), target.spec())),
                      Catch::Contains("holds nan at element 3"));
  }
  SECTION("pytorch_model.bin only") {
    fs::create_directories(dir);
    write_text(fs::path(dir) / "config.json", hf_config_from_spec(source.spec(), "float32").dump());
    write_text(fs::path(dir) / "pytorch_model.bin", "");
    CHECK_THROWS_WITH(target.params->load(HfWeights(dir, target.params->entries(), target.spec())),
                      Catch::Contains("only pytorch_model.bin"));
  }
}

TEST_CASE("config.json round-trips every preset that has a Hugging Face counterpart", "[hf]") {
  for (const auto& preset : model_presets()) {
    INFO(preset.name);
    const auto config = hf_config_from_spec(preset.spec, "bfloat16");
    const ModelSpec back = spec_from_hf_config(config, "config.json");
    CHECK_NOTHROW(check_hf_spec_matches(back, preset.spec, "config.json"));
    CHECK(config["torch_dtype"] == "bfloat16");
  }
}

TEST_CASE("tokenizer files are copied under transformers' names", "[hf]") {
  TempDir tmp;
  fs::create_directories(tmp.path() / "tok");
  fs::create_directories(tmp.path() / "out");
  write_text(tmp.path() / "tok" / "encoder.json", "{}");
  write_text(tmp.path() / "tok" / "vocab.bpe", "#version: 0.2\n");
  write_text(tmp.path() / "tok" / "unrelated.txt", "");
  const auto copied = copy_tokenizer_files(tmp.file("tok"), tmp.file("out"));
  CHECK(copied.size() == 2);
  CHECK(fs::exists(tmp.path() / "out" / "vocab.json"));
  CHECK(fs::exists(tmp.path() / "out" / "merges.txt"));
  CHECK_FALSE(fs::exists(tmp.path() / "out" / "unrelated.txt"));
  CHECK_THROWS_WITH(copy_tokenizer_files(tmp.file("out/none"), tmp.file("out")), Catch::Contains("no tokenizer files"));

  // Every tokenizer prepare reads: the shared data's GPT-2 names (the OpenAI names win when both
  // are there), llama2-tokenizer.model, and a SentencePiece model named as the file itself.
  fs::create_directories(tmp.path() / "shared");
  write_text(tmp.path() / "shared" / "gpt2-encoder.json", "{\"a\": 0}");
  write_text(tmp.path() / "shared" / "gpt2-vocab.bpe", "#version: 0.2 shared\n");
  write_text(tmp.path() / "shared" / "llama2-tokenizer.model", "sentencepiece");
  fs::create_directories(tmp.path() / "out2");
  CHECK(copy_tokenizer_files(tmp.file("shared"), tmp.file("out2")).size() == 3);
  CHECK(read_text(tmp.path() / "out2" / "merges.txt") == "#version: 0.2 shared\n");
  CHECK(read_text(tmp.path() / "out2" / "tokenizer.model") == "sentencepiece");
  write_text(tmp.path() / "shared" / "vocab.bpe", "#version: 0.2 openai\n");
  CHECK(copy_tokenizer_files(tmp.file("shared"), tmp.file("out2")).size() == 3);
  CHECK(read_text(tmp.path() / "out2" / "merges.txt") == "#version: 0.2 openai\n");
  fs::create_directories(tmp.path() / "out3");
  CHECK(copy_tokenizer_files(tmp.file("shared/llama2-tokenizer.model"), tmp.file("out3")) ==
        std::vector<std::string>{tmp.file("out3/tokenizer.model")});
}

TEST_CASE("model.init_from trains from an exported Hugging Face directory as from the checkpoint", "[hf]") {
  TempDir tmp;
  auto config_for = [&](const std::string& run, std::vector<std::string> overrides) {
    const std::string yaml = "model: {preset: gpt2-tiny}\n"
                             "data: {format: synthetic, seq_len: 32}\n"
                             "train: {micro_batch_size: 2, steps: 2, eval_every: 0, log_every: 100, peak_flops: 1.0e9}\n"
                             "runtime: {threads: 1, progress_bar: false}\n";
    overrides.push_back("runtime.run_dir=" + tmp.file(run));
    return load_config_text(yaml, "test", overrides);
  };
  const auto base = run_training(config_for("base", {}));
  REQUIRE(base.last_checkpoint);
  HfExportOptions options;
  options.checkpoint = *base.last_checkpoint;
  options.out_dir = tmp.file("hf");
  export_hf_checkpoint(options);

  const auto from_checkpoint = run_training(config_for("a", {"model.init_from=" + *base.last_checkpoint}));
  const auto from_hf = run_training(config_for("b", {"model.init_from=" + tmp.file("hf")}));
  CHECK(from_hf.losses == from_checkpoint.losses);
  CHECK(from_hf.parameters_crc32 == from_checkpoint.parameters_crc32);

  // Without --tokenizer-dir, the run's own tokenizer files go along.
  fs::create_directories(tmp.path() / "tok");
  write_text(tmp.path() / "tok" / "encoder.json", "{}");
  write_text(tmp.path() / "tok" / "vocab.bpe", "#version: 0.2\n");
  const auto with_tokenizer =
      run_training(config_for("t", {"data.tokenizer=gpt2", "data.tokenizer_dir=" + tmp.file("tok")}));
  HfExportOptions own;
  own.checkpoint = *with_tokenizer.last_checkpoint;
  own.out_dir = tmp.file("hf-own");
  CHECK(export_hf_checkpoint(own).tokenizer_from == tmp.file("tok"));
  CHECK(fs::exists(tmp.path() / "hf-own" / "vocab.json"));
  CHECK(fs::exists(tmp.path() / "hf-own" / "merges.txt"));

  CHECK_THROWS_WITH(run_training(config_for("c", {"model.init_from=" + tmp.file("hf"), "model.n_layer=3"})),
                    Catch::Contains("has n_layer 2 but the configured model has 3"));
}

TEST_CASE("model.init_from alone takes the model from config.json, as from_pretrained does", "[hf]") {
  TempDir tmp;
  // The tiny architectures, and a LLaMA whose config.json, written by hand, has a non-default
  // norm eps and rope theta (no preset has them).
  auto specs = tiny_specs();
  ModelSpec llama = find_model_preset("llama-tiny").spec;
  llama.norm_eps = 1e-6;
  llama.rope_theta = 500000.0;
  specs.emplace_back("llama-tiny, eps 1e-6, theta 5e5, hand-written config.json", llama);
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& [label, spec] = specs[i];
    INFO(label);
    const std::string dir = tmp.file("hf-" + std::to_string(i));
    TinyModel source(spec, 21);
    torch::Tensor host;
    write_hf_model(dir, spec, source.views(host), DType::F32);
    if (spec.rope_theta == 500000.0) {
      std::ofstream(fs::path(dir) / "config.json") << fmt::format(
          R"({{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": {}, )"
          R"("intermediate_size": {}, "num_attention_heads": {}, "num_key_value_heads": {}, "num_hidden_layers": {}, )"
          R"("vocab_size": {}, "max_position_embeddings": {}, "rms_norm_eps": 1e-06, "rope_theta": 500000.0, )"
          R"("hidden_act": "silu", "tie_word_embeddings": false, "attention_bias": false, "torch_dtype": "float32"}})",
          spec.d_model, spec.d_ff, spec.n_head, spec.n_kv_head, spec.n_layer, spec.vocab_size, spec.max_seq_len);
    }
    const Config config = load_config_text("model: {init_from: " + dir + "}\nruntime: {run_dir: " +
                                               tmp.file("run-" + std::to_string(i)) +
                                               ", device: cpu, threads: 1}\n",
                                           "test");
    CHECK_FALSE(config.model.preset);
    CHECK(model_identity(model_spec_from_config(config.model)) == model_identity(spec));
    // Evaluation loads it: the same logits, bit for bit.
    InferenceModel loaded = load_inference_model(config, ParallelContext());
    torch::NoGradGuard no_grad;
    const auto tokens = torch::arange(0, 24, torch::kLong).mul(37).remainder(512).view({2, 12});
    CHECK(bitwise_equal(loaded.model->logits(tokens), source.logits()));
  }
  const std::string dir = tmp.file("hf-" + std::to_string(specs.size() - 1));
  // A rotary model may take another max_seq_len; dimensions its weights fix may not, all named at once.
  const auto longer = load_config_text("model: {init_from: " + dir + ", max_seq_len: 512}\n", "test");
  CHECK(model_spec_from_config(longer.model).max_seq_len == 512);
  CHECK_THAT(derived_dimensions_note(longer.model), Catch::Contains("model.max_seq_len 512 replaces"));
  const auto conflicting = load_config_text("model: {init_from: " + dir + ", n_layer: 3, d_model: 64}\n", "test");
  CHECK_THROWS_WITH(model_spec_from_config(conflicting.model),
                    Catch::Contains("config.json: the config sets n_layer 3 (2), d_model 64 (32)"));
  // A named preset is checked against config.json instead, every difference in one message.
  const auto preset = load_config_text("model: {preset: gpt2-tiny, init_from: " + dir + "}\n", "test");
  CHECK_THROWS_WITH(load_inference_model(preset, ParallelContext()),
                    Catch::Contains("has arch llama but the configured model has gpt2; choose a model.preset") &&
                        Catch::Contains("has norm rmsnorm but the configured model has layernorm"));
}
