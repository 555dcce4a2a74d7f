#include "models/ring_attention.h"

#include <cmath>
#include <limits>
#include <memory>

#include "core/base/error.h"
#include "models/flop_counter.h"
#include "parallel/communicator.h"

namespace cr {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Key/value heads repeated to the query heads (head h reads h / (H / H_kv)).
torch::Tensor expand_heads(const torch::Tensor& kv, int64_t heads) {
  const int64_t B = kv.size(0), H_kv = kv.size(1), T = kv.size(2), D = kv.size(3);
  if (H_kv == heads) return kv;
  return kv.unsqueeze(2).expand({B, H_kv, heads / H_kv, T, D}).reshape({B, heads, T, D});
}

// The expanded heads' gradients summed back onto the key/value heads.
torch::Tensor reduce_heads(const torch::Tensor& grad, int64_t kv_heads) {
  const int64_t B = grad.size(0), H = grad.size(1), T = grad.size(2), D = grad.size(3);
  if (H == kv_heads) return grad;
  return grad.view({B, kv_heads, H / kv_heads, T, D}).sum(2);
}

// Scaled scores of one block with the causal mask of the tokens' positions (-inf where a key
// comes after the query), fp32.
torch::Tensor block_scores(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& q_pos,
                           const torch::Tensor& k_pos, double scale) {
  MatmulCounter::count(q.size(0) * q.size(1) * q.size(2), q.size(3), k.size(2));
  auto scores = torch::matmul(q, k.transpose(2, 3)).to(torch::kFloat).mul_(scale);
  return scores.masked_fill_(q_pos.unsqueeze(1) < k_pos.unsqueeze(0), -kInf);
}

// Starts sending `out` to the next rank and receiving the previous rank's into `in`, in an
// order that also suits backends matching point-to-point calls in issue order (even ranks send
// first).
std::pair<std::unique_ptr<CommWork>, std::unique_ptr<CommWork>> start_pass(Communicator* group, const torch::Tensor& out,
                                                                           const torch::Tensor& in, int tag) {
  const int P = group->size(), r = group->rank();
  std::unique_ptr<CommWork> send, recv;
  if (r % 2 == 0) {
    send = group->send_async(out, (r + 1) % P, tag);
    recv = group->recv_async(in, (r + P - 1) % P, tag);
  } else {
    recv = group->recv_async(in, (r + P - 1) % P, tag);
    send = group->send_async(out, (r + 1) % P, tag);
  }
  return {std::move(send), std::move(recv)};
}

void pass_around(Communicator* group, const torch::Tensor& out, const torch::Tensor& in, int tag) {
  auto works = start_pass(group, out, in, tag);
  works.first->wait();
  works.second->wait();
}

Communicator* group_from(int64_t handle) { return reinterpret_cast<Communicator*>(static_cast<intptr_t>(handle)); }

class RingAttention : public torch::autograd::Function<RingAttention> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, int64_t group_handle) {
    Communicator* group = group_from(group_handle);
    const int P = group->size(), r = group->rank();
    const int64_t H = q.size(1), T = q.size(2);
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
    const auto q_pos = zigzag_positions(T * P, r, P).to(q.device());
    torch::Tensor out, lse;  // fp32: the merged output so far and its log-sum-exp per query
    auto kv = torch::stack({k, v}).contiguous();
    for (int step = 0; step < P; ++step) {
      const int source = (r + P - step) % P;
      const auto k_pos = zigzag_positions(T * P, source, P).to(q.device());
      // The next block travels while this one is computed.
      auto next = step + 1 < P ? torch::empty_like(kv) : torch::Tensor();
      std::pair<std::unique_ptr<CommWork>, std::unique_ptr<CommWork>> passing;
      if (next.defined()) passing = start_pass(group, kv, next, 0);
      // Under the zigzag split every block has visible keys: each rank's late part follows every
      // other rank's early part.
      auto scores = block_scores(q, expand_heads(kv[0], H), q_pos, k_pos, scale);
      auto max = std::get<0>(scores.max(-1, /*keepdim=*/true));
      max = torch::where(torch::isinf(max), torch::zeros_like(max), max);  // rows with no visible key
      auto weights = scores.sub_(max).exp_();  // in place: one block of scores at a time
      auto sum = weights.sum(-1, /*keepdim=*/true);
      MatmulCounter::count(q.size(0) * H * T, k.size(2), q.size(3));
      auto block_out = torch::matmul(weights, expand_heads(kv[1], H).to(torch::kFloat))
                           .div_(torch::where(sum == 0, torch::ones_like(sum), sum));
      auto block_lse = (max + sum.log()).squeeze(-1);
      if (!out.defined()) {
        // The first block is the rank's own: every query sees itself, so lse is finite from here.
        out = block_out;
        lse = block_lse;
      } else {
        auto merged = torch::logaddexp(lse, block_lse);
        out = out * (lse - merged).exp().unsqueeze(-1) + block_out * (block_lse - merged).exp().unsqueeze(-1);
        lse = merged;
      }
      if (next.defined()) {
        passing.first->wait();
        passing.second->wait();
        kv = next;
      }
    }
    ctx->save_for_backward({q, k, v, out, lse});
    ctx->saved_data["group"] = group_handle;
    return out.to(q.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    Communicator* group = group_from(ctx->saved_data["group"].toInt());
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    const int P = group->size(), r = group->rank();
    const int64_t H = q.size(1), H_kv = k.size(1), T = q.size(2);
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
    const auto q_pos = zigzag_positions(T * P, r, P).to(q.device());
    const auto grad_out = grads[0].to(torch::kFloat);
    const auto qf = q.to(torch::kFloat);
    const auto delta = (grad_out * out).sum(-1, /*keepdim=*/true);  // rowsum(dO * O)
    auto grad_q = torch::zeros_like(qf);
    auto kv = torch::stack({k, v}).contiguous();
    auto grad_kv = torch::zeros(kv.sizes(), kv.options().dtype(torch::kFloat));  // travels with its block
    for (int step = 0; step < P; ++step) {
      const int source = (r + P - step) % P;
      const auto k_pos = zigzag_positions(T * P, source, P).to(q.device());
      const auto keys = expand_heads(kv[0], H);
      const auto ke = keys.to(torch::kFloat), ve = expand_heads(kv[1], H).to(torch::kFloat);
      auto probs = block_scores(q, keys, q_pos, k_pos, scale).sub_(lse.unsqueeze(-1)).exp_();
      grad_kv[1] += reduce_heads(torch::matmul(probs.transpose(2, 3), grad_out), H_kv);
      auto grad_scores = probs.mul_(torch::matmul(grad_out, ve.transpose(2, 3)).sub_(delta)).mul_(scale);
      grad_q.add_(torch::matmul(grad_scores, ke));
      grad_kv[0] += reduce_heads(torch::matmul(grad_scores.transpose(2, 3), qf), H_kv);
      MatmulCounter::count(q.size(0) * H * T, k.size(2), q.size(3) * 4);
      // The block and its gradient move on together; after the last block only the gradient
      // moves, which brings each rank's own key/value gradients home.
      if (step + 1 < P) {
        auto next = torch::empty_like(kv);
        pass_around(group, kv, next, 0);
        kv = next;
      }
      auto next_grad = torch::empty_like(grad_kv);
      pass_around(group, grad_kv, next_grad, 1);
      grad_kv = next_grad;
    }
    return {grad_q.to(q.scalar_type()), grad_kv[0].to(k.scalar_type()), grad_kv[1].to(v.scalar_type()),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor zigzag_positions(int64_t length, int rank, int size) {
  CR_CHECK(length % (2 * size) == 0, "ring attention: sequence length {} does not split into {} parts", length,
           2 * size);
  const int64_t part = length / (2 * size);
  return torch::cat({torch::arange(rank * part, (rank + 1) * part, torch::kLong),
                     torch::arange((2 * size - 1 - rank) * part, (2 * size - rank) * part, torch::kLong)});
}

torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             Communicator* group) {
  return RingAttention::apply(q, k, v, static_cast<int64_t>(reinterpret_cast<intptr_t>(group)));
}

}  // namespace cr
