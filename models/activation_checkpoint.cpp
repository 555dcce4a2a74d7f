#include "models/activation_checkpoint.h"

#include <mutex>
#include <utility>

#include <ATen/core/Generator.h>

namespace cr {
namespace {

thread_local bool g_selective = false;

// What backward needs to rerun a part: the part, and the generator state it started from.
struct PartRun : torch::CustomClassHolder {
  RecomputedPart part;
  at::Generator generator;
  torch::Tensor state;  // undefined: the part draws nothing
};

// Swaps the generator's state for `state` while alive.
class GeneratorState {
 public:
  GeneratorState(at::Generator& generator, const torch::Tensor& state) : generator_(generator) {
    if (!state.defined()) return;
    std::lock_guard<std::mutex> lock(generator_.mutex());
    outer_ = generator_.get_state();
    generator_.set_state(state);
  }
  ~GeneratorState() {
    if (!outer_.defined()) return;
    std::lock_guard<std::mutex> lock(generator_.mutex());
    generator_.set_state(outer_);
  }

 private:
  at::Generator& generator_;
  torch::Tensor outer_;
};

class RecomputeFunction : public torch::autograd::Function<RecomputeFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const c10::intrusive_ptr<PartRun>& run,
                               at::TensorList inputs) {
    ctx->saved_data["run"] = c10::IValue::make_capsule(run);
    ctx->save_for_backward(inputs.vec());
    return run->part(inputs.vec());  // autograd records nothing inside a Function's forward
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto run = c10::static_intrusive_pointer_cast<PartRun>(ctx->saved_data["run"].toCapsule());
    std::vector<torch::Tensor> inputs;
    for (const auto& saved : ctx->get_saved_variables()) inputs.push_back(saved.detach().requires_grad_(saved.requires_grad()));
    torch::Tensor output;
    {
      // The rerun keeps what its own backward needs: nothing inside it is recomputed again.
      const bool selective = std::exchange(g_selective, false);
      GeneratorState state(run->generator, run->state);
      torch::AutoGradMode enable(true);
      output = run->part(inputs);
      g_selective = selective;
    }
    // Reentrant: the parameters inside the part get their gradients (and hooks) here.
    torch::autograd::backward({output}, {grads[0]});
    torch::autograd::variable_list result = {torch::Tensor()};  // for `run`
    for (const auto& input : inputs) result.push_back(input.requires_grad() ? input.grad() : torch::Tensor());
    return result;
  }
};

}  // namespace

torch::Tensor recompute_in_backward(RecomputedPart part, const std::vector<torch::Tensor>& inputs, bool random) {
  auto run = c10::make_intrusive<PartRun>();
  run->part = std::move(part);
  run->generator = at::globalContext().defaultGenerator(inputs.front().device());
  if (random) {
    std::lock_guard<std::mutex> lock(run->generator.mutex());
    run->state = run->generator.get_state();
  }
  return RecomputeFunction::apply(run, at::TensorList(inputs));
}

SelectiveRecompute::SelectiveRecompute() : outer_(g_selective) { g_selective = true; }
SelectiveRecompute::~SelectiveRecompute() { g_selective = outer_; }
bool SelectiveRecompute::active() { return g_selective && torch::GradMode::is_enabled(); }

}  // namespace cr
