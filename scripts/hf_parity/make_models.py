# Builds tiny GPT-2 / OPT / LLaMA models with Hugging Face transformers (random weights, no
# download), saves them as safetensors, writes a token shard, and prints each model's mean loss
# over that shard (windows of 64 tokens), for scripts/hf_parity/check.sh to compare against.
import json, sys

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM, LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
out = sys.argv[1]
# A llm.c token shard (uint16) of 4 windows of 64 + 1 tokens.
g = torch.Generator().manual_seed(1)
toks = torch.randint(0, 512, (4 * 64 + 1,), generator=g)
hdr = np.zeros(256, dtype=np.int32); hdr[0] = 20240520; hdr[1] = 1; hdr[2] = toks.numel()
with open(f"{out}/tokens.bin", "wb") as f:
    f.write(hdr.tobytes()); f.write(toks.numpy().astype(np.uint16).tobytes())
models = {
  "gpt2-tiny": GPT2LMHeadModel(GPT2Config(vocab_size=512, n_positions=128, n_embd=32, n_layer=2, n_head=2,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
  "opt-tiny": OPTForCausalLM(OPTConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, ffn_dim=128,
        num_attention_heads=2, max_position_embeddings=128, word_embed_proj_dim=32, do_layer_norm_before=True,
        dropout=0.0, attention_dropout=0.0, activation_function="relu", enable_bias=True)),
  "llama-tiny": LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=False, hidden_act="silu")),
}
expected = {}
for name, m in models.items():
    m.eval()
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.2)  # beyond init, so the comparison is not trivial
    m.save_pretrained(f"{out}/{name}", safe_serialization=True)
    losses = []
    with torch.no_grad():
        for i in range(4):
            w = toks[i * 64: i * 64 + 65].unsqueeze(0)
            logits = m(input_ids=w[:, :-1]).logits.float()
            losses.append(torch.nn.functional.cross_entropy(logits[0], w[0, 1:], reduction="sum").item())
    expected[name] = sum(losses) / 256
print(json.dumps(expected))
