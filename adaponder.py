"""
AdaPonderLM in one file: a pondering language model with token-wise adaptive depth.

The whole transformer runs up to K+1 passes per token. After each pass the model's own prediction is fed
back as a probability-weighted embedding; a small per-pass MLP gate scales that update and, once it falls
below a threshold, the token halts for good. Halted tokens are not recomputed: later passes see the
keys/values from the last pass they ran. Training and decoding share one function, `ponder`, so the
parallel training forward and the step-by-step cached decoder compute the same thing.

References:
1) AdaPonderLM: Gated Pondering Language Models with Token-Wise Adaptive Depth (arXiv 2603.01914)
2) PonderLM: Pretraining Language Models to Ponder in Continuous Space (arXiv 2505.20674)
3) the GPT-NeoX / Pythia blocks (EleutherAI), and karpathy/nanoGPT for the shape of this file
docs/method.md states the method and the decisions taken here where the paper is silent.
"""

import glob
import importlib.util
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn as nn
from torch.nn import functional as F
from tqdm import tqdm

# -----------------------------------------------------------------------------
# The backbone: GPT-NeoX (Pythia) blocks


def rotary_tables(head_dim, rotary_pct, max_len, base=10000):
    """cos/sin tables for rotary position embedding on the first rotary_pct of each head's dims."""
    rot = int(head_dim * rotary_pct)
    inv_freq = 1.0 / base ** (torch.arange(0, rot, 2).float() / rot)
    angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (L, rot/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, rot): GPT-NeoX rotates the two halves
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    """x: (..., nh, hs); cos, sin: (..., 1, rot) already indexed by each row's position."""
    rot = cos.shape[-1]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    x1, x2 = x_rot.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return torch.cat([x_rot * cos + rotated * sin, x_pass], dim=-1)


class CausalSelfAttention(nn.Module):
    """Works on any leading shape: (B, T, C) in training, (N, C) running rows when decoding.
    Where the keys/values come from - and so the KV reuse of halted tokens - is the `kv` object's job."""

    def __init__(self, config, layer_idx):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head, self.head_dim, self.layer_idx = config.n_head, config.n_embd // config.n_head, layer_idx
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # fused, per-head [q k v]
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, kv):
        lead = x.shape[:-1]  # (B, T) or (N,)
        qkv = self.qkv(x).view(*lead, self.n_head, 3 * self.head_dim)  # GPT-NeoX layout: heads outermost
        q, k, v = qkv.split(self.head_dim, dim=-1)  # each (..., nh, hs)
        cos, sin = kv.rotary
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = kv.attend(self.layer_idx, q, k, v)  # (..., nh, hs)
        return self.resid_dropout(self.proj(y.reshape(*lead, -1)))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):

    def __init__(self, config, layer_idx):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)
        self.parallel_residual = config.parallel_residual

    def forward(self, x, kv):
        if self.parallel_residual:  # GPT-NeoX: attention and MLP both read the block's input
            return x + self.attn(self.ln_1(x), kv) + self.mlp(self.ln_2(x))
        x = x + self.attn(self.ln_1(x), kv)
        return x + self.mlp(self.ln_2(x))


# -----------------------------------------------------------------------------
# Where keys/values come from: the only place training and decoding differ


class TrainingKV:
    """Training: every token runs every pass (static shapes, compile-friendly). KV reuse as "alignment":
    in every layer a halted token's key/value is replaced by the one from the previous pass, so attention
    sees exactly what the cached decoder sees."""

    def __init__(self, rotary, T, dropout):
        cos, sin = rotary
        self.rotary = cos[:T, None], sin[:T, None]  # (T, 1, rot): broadcasts over (B, T, nh, rot)
        self.prev, self.dropout = {}, dropout
        self.rows = None  # None: every row runs (see rows_of)

    def begin_pass(self, i, running):
        self.running = running[:, :, None, None]  # (B, T, 1, 1) = m_i
        return True

    def attend(self, layer, q, k, v):  # q, k, v: (B, T, nh, hs)
        if layer in self.prev:  # pass > 0: halted tokens keep their last pass's key/value
            k_prev, v_prev = self.prev[layer]
            k, v = torch.where(self.running, k, k_prev), torch.where(self.running, v, v_prev)
        self.prev[layer] = (k, v)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout)
        return y.transpose(1, 2)  # (B, T, nh, hs)


class KVCache:
    """Decoding: one KV cache per pass. Each pass computes only the tokens still running (their rows are
    gathered); a halted token's entry in this pass's cache is copied from the previous pass."""

    def __init__(self, config, rotary, batch_size, max_len, device, dtype):
        n_pass, hs = config.n_ponder + 1, config.n_embd // config.n_head
        shape = (n_pass, config.n_layer, batch_size, config.n_head, max_len, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.cos, self.sin = rotary
        self.batch_size, self.max_len, self.length = batch_size, max_len, 0  # length: tokens cached so far

    def begin_chunk(self, T):
        if self.length + T > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens, {self.length + T} needed; "
                             "make a larger cache with model.new_cache(batch_size, max_len)")
        self.chunk = torch.arange(self.length, self.length + T, device=self.k.device)  # positions
        # (T, length + T): chunk token j sees the cached tokens and the chunk's tokens up to itself
        self.mask = torch.ones(T, self.length + T, dtype=torch.bool, device=self.k.device).tril(self.length)

    def begin_pass(self, i, running):  # running: (B, T) = m_i for this chunk's tokens
        self.i = i
        if i > 0:  # KV reuse: the chunk starts from the previous pass's keys/values, so halted tokens
            span = slice(self.length, self.length + len(self.chunk))  # keep their last ones; running
            self.k[i, ..., span, :] = self.k[i - 1, ..., span, :]  # tokens overwrite theirs in attend()
            self.v[i, ..., span, :] = self.v[i - 1, ..., span, :]
        self.rows = running.nonzero(as_tuple=True)  # (b, t) of the tokens that run this pass
        pos = self.chunk[self.rows[1]]
        self.rotary = self.cos[pos, None], self.sin[pos, None]  # (N, 1, rot)
        return len(pos) > 0  # False: every token has halted, nothing to compute

    def attend(self, layer, q, k, v):  # q, k, v: (N, nh, hs), one row per running token
        b, t = self.rows
        pos, end = self.chunk[t], self.length + self.mask.shape[0]
        ck, cv = self.k[self.i, layer], self.v[self.i, layer]  # (B, nh, max_len, hs)
        ck[b, :, pos], cv[b, :, pos] = k.to(ck.dtype), v.to(cv.dtype)
        # attention runs on the (B, T) grid of the chunk: halted tokens' queries are zeros and their
        # outputs are dropped - small next to the projections and MLP, and it keeps one dense SDPA call
        q_grid = q.new_zeros(self.batch_size, self.mask.shape[0], *q.shape[1:])  # (B, T, nh, hs)
        q_grid[b, t] = q
        y = F.scaled_dot_product_attention(q_grid.transpose(1, 2), ck[:, :, :end].to(q.dtype),
                                           cv[:, :, :end].to(q.dtype), attn_mask=self.mask)
        return y.transpose(1, 2)[b, t]  # (N, nh, hs)


def rows_of(x, rows):
    """Gather the rows of x (B, T, ...) that run this pass: (N, ...) when decoding, all of x in training
    (rows is None)."""
    return x if rows is None else x[rows]


def scatter_rows(x, rows, values, running):
    """The inverse of rows_of: write a pass's per-row results back into x (B, T, ...), for running tokens
    only; halted tokens keep what they had."""
    if rows is None:
        return torch.where(running.view(*running.shape, *[1] * (x.dim() - 2)), values, x)
    return x.index_put(rows, values.to(x.dtype))


# -----------------------------------------------------------------------------
# The model


@dataclass
class AdaPonderConfig:
    vocab_size: int = 50304  # GPT-2 BPE (50257) padded up to a multiple of 64, as in Pythia
    block_size: int = 1024  # longest context
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, as in Pythia
    layer_norm_eps: float = 1e-5
    rotary_pct: float = 0.25  # fraction of each head's dims that get rotary position
    rotary_base: int = 10000
    parallel_residual: bool = True  # x + attn(ln1(x)) + mlp(ln2(x)) (GPT-NeoX) instead of sequential
    n_ponder: int = 3  # K: extra passes per token (K+1 passes in all); 0 is a plain language model
    halting: str = 'learned'  # 'learned' (AdaPonderLM) | 'none' (PonderLM: all K+1 passes) | 'fixed' (random depth)
    halt_threshold: float = 1e-4  # tau: a token halts once its gate value s < tau
    ponder_lambda: float = 0.1  # weight of the bottom-k gate loss
    bottom_k_frac: float = 0.1  # share of the running gate values the gate loss pushes down (train.py ramps it)
    embed_scale: float = 1.0  # multiplies W_in[x] and the pondering embedding (official PonderLM: sqrt(d))
    first_embed_mult: float = 1.0  # multiplies E_0 once more (official PonderLM from 410M up: K)
    gate_bias_init: float = 3.0  # sigmoid(3) ~ 0.95: training starts close to plain PonderLM
    fixed_depth_dist: str = 'uniform'  # halting='fixed': 'uniform', 'geometric' or 'least_spread' depths
    fixed_mean_depth: float = 2.5  # halting='fixed': mean passes per token, in [1, K+1]


PRESETS = {  # the real Pythia shapes (GPT-NeoX tokenizer: 50304 padded vocabulary, 2048 context)
    'pythia-14m': dict(n_layer=6, n_head=4, n_embd=128, block_size=2048),
    'pythia-70m': dict(n_layer=6, n_head=8, n_embd=512, block_size=2048),
    'pythia-160m': dict(n_layer=12, n_head=12, n_embd=768, block_size=2048),
    'pythia-410m': dict(n_layer=24, n_head=16, n_embd=1024, block_size=2048),
    'tiny': dict(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=64),  # tests and CPU demos
}


def preset(name, **overrides):
    """AdaPonderConfig for a named shape, e.g. preset('pythia-70m', n_ponder=3)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return AdaPonderConfig(**{**PRESETS[name], **overrides})


@dataclass
class PonderOutput:
    logits: torch.Tensor  # (B, T, V), each token scored on the last pass it ran
    depth: torch.Tensor  # (B, T) passes each token ran, 1..K+1
    loss: Optional[torch.Tensor] = None  # ce + ponder_lambda * gate_loss
    ce: Optional[torch.Tensor] = None
    gate_loss: Optional[torch.Tensor] = None


class AdaPonderLM(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # W_in, also read by the pondering embedding
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # untied, as in Pythia
        self.gates = nn.ModuleList([  # one gate per pondering step i = 0..K-1: a shared gate collapses
            nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(), nn.Linear(4 * config.n_embd, 1))
            for _ in range(config.n_ponder)]) if config.halting == 'learned' else None
        hs = config.n_embd // config.n_head
        cos, sin = rotary_tables(hs, config.rotary_pct, config.block_size, config.rotary_base)
        self.register_buffer('rope_cos', cos, persistent=False)
        self.register_buffer('rope_sin', sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith('proj.weight') and name.startswith('blocks'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        for gate in self.gates or []:
            torch.nn.init.constant_(gate[-1].bias, config.gate_bias_init)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)

    def get_num_params(self, non_embedding=True):
        """Parameters; non_embedding leaves out W_in and the LM head (their cost is counted apart)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() - self.lm_head.weight.numel() if non_embedding else n

    # ---- the recurrence: one function for training and decoding ----

    def ponder(self, idx, kv):
        """Run the AdaPonderLM recurrence over idx (B, T); returns each token's final hidden state (B, T, C)
        from the last pass it ran, its depth (B, T), and each pass's gate values with the mask of tokens
        they let run another pass (for the gate loss). The method is four lines of the loop:
          the gate:         s_rows, go_on = self.halt(...)        s_i = sigmoid(gate_i(h_i))
          the mask:         running = scatter_rows(..., go_on)    m_{i+1} = m_i * [s_i >= tau], never undone
          the update:       x = x + s * pondering_embedding(...)  E_i = E_{i-1} + m_i * s_{i-1} * e_{i-1}
          the KV reuse:     kv.begin_pass(i, running)             halted tokens keep their last keys/values
        kv decides which rows run: all of them in training (TrainingKV), the running ones when decoding."""
        cfg = self.config
        E = self.drop(self.wte(idx) * (cfg.embed_scale * cfg.first_embed_mult))  # E_0: (B, T, C)
        running = torch.ones(idx.shape, dtype=torch.bool, device=idx.device)  # m_0 = 1
        depth = torch.zeros(idx.shape, dtype=torch.long, device=idx.device)
        h_out = torch.zeros_like(E)  # each token's state after the last pass it ran
        s = torch.ones(idx.shape, device=idx.device)  # gate values of the previous pass (float32)
        max_depth = self.max_depth(idx.shape, idx.device)  # K+1, or random depths (halting='fixed')
        gates, running_after = [], []  # s_i and m_{i+1} of each pass, for the gate loss
        for i in range(cfg.n_ponder + 1):
            if not kv.begin_pass(i, running):  # decoding: every token halted, skip the pass
                continue
            x = rows_of(E, kv.rows)  # (B, T, C) in training, (N, C) running rows when decoding
            if i > 0:  # feed back the previous pass's prediction, scaled by its gate
                e = self.pondering_embedding(rows_of(h_out, kv.rows))
                x = x + rows_of(s, kv.rows).unsqueeze(-1).to(x.dtype) * e
                E = scatter_rows(E, kv.rows, x, running)
            for block in self.blocks:
                x = block(x, kv)
            h = self.ln_f(x)
            h_out = scatter_rows(h_out, kv.rows, h, running)  # halted tokens keep the state of their last pass
            depth = depth + running
            if i == cfg.n_ponder:
                break
            s_rows, go_on = self.halt(i, h, rows_of(max_depth, kv.rows))
            s = scatter_rows(s, kv.rows, s_rows, running)
            running = scatter_rows(running, kv.rows, go_on, running)  # a halted token never resumes
            gates.append(s)
            running_after.append(running)  # the gate loss sees the gates that let their token go on
        return h_out, depth, (gates, running_after)

    def pondering_embedding(self, h):
        """e = softmax(head(h)) @ W_in: the expected input embedding of the model's own prediction."""
        p = F.softmax(self.lm_head(h).float(), dim=-1).to(h.dtype)  # (..., V)
        return (p @ self.wte.weight.to(h.dtype)) * self.config.embed_scale  # (..., C)

    def halt(self, i, h, max_depth):
        """The halting rule, in one place. From the pass-i state h of the rows that ran it, the gate value
        s_i (it scales the next update) and whether each row runs pass i+1. A model with gates always scales
        by them; `halting` only picks who stops, so one checkpoint can also run at full depth ('none') or
        with random depths ('fixed', drawn by max_depth) for comparison."""
        cfg = self.config
        if self.gates is not None:  # float32: in bf16 a gate logit above ~6 rounds s to 1.0, and its gradient to 0
            s = torch.sigmoid(self.gates[i](h).float().squeeze(-1))  # (rows,) one scalar per token
        else:  # a model trained without gates (PonderLM, fixed pruning) adds each update in full
            s = torch.ones(h.shape[:-1], device=h.device)
        if cfg.halting not in ('learned', 'none', 'fixed'):
            raise ValueError(f"unknown halting {cfg.halting!r}; use 'learned', 'none' or 'fixed'")
        if cfg.halting == 'learned' and self.gates is None:
            raise ValueError("halting='learned' needs gates: this model was trained without them")
        go_on = max_depth > i + 1
        if cfg.halting == 'learned':  # the LM loss trains the gate through s, not through this comparison
            go_on = go_on & (s >= cfg.halt_threshold)
        return s, go_on

    def max_depth(self, shape, device):
        """The most passes each token may run: K+1, except with halting='fixed' (the iso-FLOPs baseline),
        where each token's depth is drawn at random and the gates do not decide."""
        if self.config.halting == 'fixed':
            return self.sample_fixed_depth(shape, device)
        return torch.full(shape, self.config.n_ponder + 1, device=device)

    def sample_fixed_depth(self, shape, device):
        """Depths in 1..K+1 with mean fixed_mean_depth: 'uniform' spreads a continuous uniform as wide as
        the range allows and rounds it at random (mean preserved); 'geometric' continues each pass
        with one probability c, chosen by bisection to give the mean; 'least_spread' gives each token
        floor(m) or ceil(m) passes (ceil with probability frac(m)): at an integer mean, a cap on passes."""
        cfg, n = self.config, self.config.n_ponder + 1
        m = min(max(cfg.fixed_mean_depth, 1.0), float(n))
        if cfg.fixed_depth_dist == 'least_spread':
            return (m + torch.rand(shape, device=device)).floor().long().clamp(1, n)
        if cfg.fixed_depth_dist == 'uniform':
            w = min(m - 1, n - m)
            x = m - w + 2 * w * torch.rand(shape, device=device)
            return (x.floor() + (torch.rand(shape, device=device) < x.frac())).long().clamp(1, n)
        if cfg.fixed_depth_dist == 'geometric':
            lo, hi = 0.0, 1.0
            for _ in range(50):  # mean depth sum_{j<n} c^j grows with c
                c = (lo + hi) / 2
                lo, hi = (c, hi) if sum(c ** j for j in range(n)) < m else (lo, c)
            depth = torch.ones(shape, dtype=torch.long, device=device)
            going = torch.ones(shape, dtype=torch.bool, device=device)
            for _ in range(n - 1):
                going = going & (torch.rand(shape, device=device) < c)
                depth += going
            return depth
        raise ValueError(f"unknown fixed_depth_dist {cfg.fixed_depth_dist!r}; use 'uniform', 'geometric' or "
                         "'least_spread'")

    # ---- training forward ----

    def forward(self, idx, targets=None, bottom_k_frac=None):
        """idx, targets: (B, T). bottom_k_frac: this step's share of gates the gate loss pushes down (default
        config.bottom_k_frac; train.py passes a 0-d tensor so that its schedule never recompiles the model)."""
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        kv = TrainingKV((self.rope_cos, self.rope_sin), T, self.config.dropout if self.training else 0.0)
        h, depth, (gates, running_after) = self.ponder(idx, kv)
        logits = self.lm_head(h)  # (B, T, V)
        if targets is None:
            return PonderOutput(logits, depth)
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        k = self.config.bottom_k_frac if bottom_k_frac is None else bottom_k_frac
        use_gates = self.config.halting == 'learned' and gates  # k = 0 (stage 1) gives a gate loss of 0
        gate_loss = self.gate_loss(gates, running_after, k) if use_gates else ce.new_zeros(())
        return PonderOutput(logits, depth, ce + self.config.ponder_lambda * gate_loss, ce, gate_loss)

    @staticmethod
    def gate_loss(gates, running_after, k):
        """Mean of the smallest ceil(k * N) gate values among the N entries (batch x token x step) that let
        their token run another pass: pushes the least useful passes toward halting. Entries of halted
        tokens, and gates already below tau, are left out: pushing those lower would change nothing, and
        they would fill the bottom-k set and the loss would fall to ~0 without acting. Static shapes,
        so it compiles: left-out entries are sorted to the end instead of being removed."""
        s, live = torch.stack(gates).flatten(), torch.stack(running_after).flatten()
        n_keep = torch.ceil(k * live.sum())  # 0 when k = 0 or when no gate let its token go on
        smallest = torch.where(live, s, 2.0).sort().values  # gates are <= 1, so 2.0 sorts last
        in_bottom_k = torch.arange(len(s), device=s.device) < n_keep
        return (smallest * in_bottom_k).sum() / n_keep.clamp(min=1)

    # ---- cached decoding ----

    def new_cache(self, batch_size, max_len, dtype=None):
        """A KV cache for step(): one per pass, each with every layer."""
        device = self.wte.weight.device
        if dtype is None:
            dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) \
                else self.wte.weight.dtype
        max_len = min(max_len, self.config.block_size)
        return KVCache(self.config, (self.rope_cos, self.rope_sin), batch_size, max_len, device, dtype)

    @torch.no_grad()
    def step(self, idx, cache, last_only=False):
        """Process the next tokens idx (B, T) - a prompt or one new token - through the cache.
        Same outputs as forward() over the whole sequence, for these T positions (logits of the
        last one only with last_only: all that sampling needs after a prompt)."""
        cache.begin_chunk(idx.shape[1])
        h, depth, _ = self.ponder(idx, cache)
        cache.length += idx.shape[1]
        return PonderOutput(self.lm_head(h[:, -1:] if last_only else h), depth)

    @torch.no_grad()
    def stream(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Continue idx (B, T), yielding each new token (B,) and its depth (B,) - how many passes chose it -
        as soon as it is chosen. temperature=0 is greedy."""
        B, L = idx.shape[0], self.config.block_size
        cache = self.new_cache(B, idx.shape[1] + max_new_tokens)
        out = self.step(idx[:, -cache.max_len:], cache, last_only=True)
        for j in range(max_new_tokens):
            next_idx = sample_next(out.logits[:, -1], temperature, top_k)  # (B, 1)
            yield next_idx[:, 0], out.depth[:, -1]
            if j + 1 == max_new_tokens:
                break
            idx = torch.cat((idx, next_idx), dim=1)
            if cache.length == cache.max_len:  # context full: restart from its last half (rotary is relative)
                cache = self.new_cache(B, L)
                out = self.step(idx[:, -(L // 2):], cache, last_only=True)
            else:
                out = self.step(next_idx, cache)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """stream(), collected: (idx with the new tokens appended, depth (B, max_new_tokens))."""
        tokens, depths = zip(*self.stream(idx, max_new_tokens, temperature, top_k))
        return torch.cat((idx, torch.stack(tokens, 1)), 1), torch.stack(depths, 1)

    # ---- cost accounting and training utilities ----

    def flops_per_token(self, depth_hist, context=None):
        """Forward FLOPs per token for a histogram of depths (depth_hist[d-1] = tokens that ran d passes),
        split by where they go, plus the ratio to the same model at full depth and to one plain pass.
        context: mean number of keys a query attends to (default block_size, as nanoGPT counts)."""
        cfg = self.config
        n_pass, C, V = cfg.n_ponder + 1, cfg.n_embd, cfg.vocab_size
        context = cfg.block_size if context is None else context
        block_params = sum(p.numel() for p in self.blocks.parameters())
        per_pass = dict(blocks=2 * block_params, attention=4 * cfg.n_layer * C * context)
        gate = 2 * sum(p.numel() for p in self.gates[0].parameters()) if self.gates else 0
        head = 2 * C * V  # the LM head; the pondering embedding p @ W_in costs the same again

        def cost(d):  # d passes: d backbone passes, d-1 feedbacks (head + embedding), one final head
            gates = gate * min(d, cfg.n_ponder)
            return dict(blocks=d * per_pass['blocks'], attention=d * per_pass['attention'],
                        vocab=(d - 1) * 2 * head + head, gates=gates)

        hist = torch.as_tensor(depth_hist, dtype=torch.float64)
        assert len(hist) == n_pass, f"depth_hist needs {n_pass} bins (depths 1..{n_pass})"
        w = hist / hist.sum()
        out = {key: sum(w[d - 1].item() * cost(d)[key] for d in range(1, n_pass + 1)) for key in cost(1)}
        out['total'] = sum(out.values())
        out['vs_full_depth'] = out['total'] / sum(cost(n_pass).values())
        out['vs_one_pass'] = out['total'] / (per_pass['blocks'] + per_pass['attention'] + head)
        out['mean_depth'] = sum(w[d - 1].item() * d for d in range(1, n_pass + 1))
        return out

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, gate_lr_mult=1.0):
        """AdamW with weight decay on matrices (and embeddings) only, not on biases and LayerNorms. Each group
        carries an lr_mult for train.py's schedule: the gates may learn faster than the rest (gate_lr_mult), as
        new gates on a pretrained backbone must."""
        groups = []
        for gates, lr_mult in ((False, 1.0), (True, gate_lr_mult)):
            params = [p for n, p in self.named_parameters() if p.requires_grad and n.startswith('gates.') == gates]
            groups += [dict(params=[p for p in params if p.dim() >= 2], weight_decay=weight_decay, lr_mult=lr_mult),
                       dict(params=[p for p in params if p.dim() < 2], weight_decay=0.0, lr_mult=lr_mult)]
        fused = device_type == 'cuda'  # the fused kernel is faster where it exists
        return torch.optim.AdamW([g for g in groups if g['params']], lr=learning_rate, betas=betas, fused=fused)

    @torch.no_grad()
    def score(self, data, batch_size=16, max_tokens=None, progress=False):
        """Per-token NLL, depth and whether the most likely token was right, over a 1-D token array (e.g. a
        val split), in non-overlapping windows of block_size. Returns (nll, depth, targets, correct), 1-D and
        aligned: entry j scores the prediction of targets[j] (so a per-target label, like the toy difficulty
        class, indexes them directly)."""
        L, device = self.config.block_size, self.wte.weight.device
        n_win = (min(len(data), max_tokens or len(data)) - 1) // L
        windows = torch.as_tensor(data[:n_win * L + 1].astype('int64'))
        nll, depth, correct = [], [], []
        for start in tqdm(range(0, n_win, batch_size), disable=not progress, desc='scoring'):
            rows = range(start, min(start + batch_size, n_win))
            x = torch.stack([windows[r * L:(r + 1) * L] for r in rows]).to(device)
            y = torch.stack([windows[r * L + 1:(r + 1) * L + 1] for r in rows]).to(device)
            out = self(x)
            nll.append(F.cross_entropy(out.logits.flatten(0, 1).float(), y.flatten(), reduction='none').cpu())
            depth.append(out.depth.flatten().cpu())
            correct.append((out.logits.argmax(-1) == y).flatten().cpu())
        return torch.cat(nll), torch.cat(depth), windows[1:n_win * L + 1], torch.cat(correct)

    def training_flops_per_token(self):
        """Training runs every pass densely: forward + backward = 3x the full-depth forward."""
        full = [0] * self.config.n_ponder + [1]
        return 3 * self.flops_per_token(full)['total']

    # ---- starting from a pretrained GPT-NeoX (Pythia) model ----

    @classmethod
    def from_pretrained(cls, name_or_path, **config_overrides):
        """A GPT-NeoX checkpoint as an AdaPonderLM: a Pythia ('pythia-70m'), a PonderLM (the official
        'zeng123/PonderingPythia-1.4B') or any model-hub id (downloaded once), or a local directory. The
        architecture comes from its config.json, a PonderLM's pondering too (K and its embedding scales);
        the overrides set the other knobs (and may lower block_size). The gates are new. With n_ponder=0
        (Pythia) or halting='none' (PonderLM) this computes the original model's logits."""
        hf, weights, path = read_neox_checkpoint(name_or_path)
        arch = neox_architecture(hf, path)
        for key, value in config_overrides.items():
            if not hasattr(AdaPonderConfig, key):
                raise ValueError(f"unknown config field {key!r}")
            if key in arch and value != arch[key] and not (key == 'block_size' and value <= arch[key]):
                raise ValueError(f"{key}={value} conflicts with the checkpoint's {arch[key]}; the architecture "
                                 "comes from config.json (block_size may only be lowered)")
        model = cls(AdaPonderConfig(**{**arch, **config_overrides}))
        renames = [('wte', 'gpt_neox.embed_in'), ('blocks', 'gpt_neox.layers'), ('lm_head', 'embed_out'),
                   ('ln_f', 'gpt_neox.final_layer_norm'), ('ln_1', 'input_layernorm'),
                   ('ln_2', 'post_attention_layernorm'), ('mlp.fc', 'mlp.dense_h_to_4h'),
                   ('mlp.proj', 'mlp.dense_4h_to_h'), ('attn.proj', 'attention.dense'),
                   ('attn.qkv', 'attention.query_key_value')]  # the same fused layout: heads outermost, then q k v
        for name, p in model.state_dict().items():  # tensors that share storage with the parameters
            if name.startswith('gates.'):  # new in AdaPonderLM: they keep their init
                continue
            theirs = name
            for our_part, their_part in renames:
                theirs = theirs.replace(our_part, their_part)
            if theirs not in weights or weights[theirs].shape != p.shape:
                found = tuple(weights[theirs].shape) if theirs in weights else 'nothing'
                raise ValueError(f"{path}: {theirs} should have shape {tuple(p.shape)}, found {found}")
            p.copy_(weights.pop(theirs))  # and cast: Pythia ships float16
        # what may remain: buffers we rebuild (causal masks, rotary tables) and PonderLM's `adapter`, a layer
        # its model declares and its forward never uses; anything else would be lost
        unused = ('attention.bias', 'masked_bias', 'inv_freq', 'adapter.weight')
        if left := [k for k in weights if not k.endswith(unused)]:
            raise ValueError(f"{path} has weights AdaPonderLM has no place for: {', '.join(left[:4])}")
        return model


def neox_architecture(hf, path):
    """The AdaPonderConfig fields a GPT-NeoX config.json fixes: the shape, and for a PonderLM its pondering."""
    try:
        arch = dict(vocab_size=hf['vocab_size'], block_size=hf['max_position_embeddings'], bias=True,
                    n_layer=hf['num_hidden_layers'], n_head=hf['num_attention_heads'], n_embd=hf['hidden_size'],
                    layer_norm_eps=hf.get('layer_norm_eps', 1e-5),
                    parallel_residual=hf.get('use_parallel_residual', True),
                    rotary_pct=hf.get('partial_rotary_factor', hf.get('rotary_pct', 0.25)),  # newer, older name
                    rotary_base=hf.get('rope_theta', hf.get('rotary_emb_base', 10000)))
    except KeyError as e:
        raise ValueError(f"{path}/config.json lacks {e}; it is not a GPT-NeoX config") from None
    pythia = dict(hidden_act='gelu', intermediate_size=4 * arch['n_embd'], tie_word_embeddings=False,
                  attention_bias=True, rope_type='default', rope_scaling=None)  # what our blocks compute
    if unlike := [f'{k}={hf[k]!r}' for k, v in pythia.items() if hf.get(k, v) != v]:
        raise ValueError(f"{path} has {', '.join(unlike)}; only GPT-NeoX models built like Pythia import")
    if hf.get('ponderinglm'):  # the official PonderLM code: K pondering steps, E_0 and W_in scaled by sqrt(d)
        K, dtype = hf['pondering_steps'], getattr(torch, hf.get('torch_dtype') or 'float32', torch.float32)
        # it computes sqrt(d) in the weights' dtype (45.25 for d = 2048 in bfloat16): take the value it trained with
        root_d = torch.tensor(arch['n_embd'], dtype=dtype).sqrt().item() if hf.get('scale_embeds') else 1.0
        arch.update(n_ponder=K, embed_scale=root_d, first_embed_mult=K if hf.get('mutiply_pondering_steps') else 1)
    return arch


def depth_histogram(depth, n_pass):
    """Tokens that ran 1, 2, ..., n_pass passes, from a tensor of depths: the form flops_per_token takes."""
    return torch.bincount(depth.flatten().cpu() - 1, minlength=n_pass).tolist()


def save_checkpoint(path, model, **extra):
    """Save the plain weights (no torch.compile or DDP prefix) and config, atomically: a crash in the
    middle of a save leaves the previous checkpoint whole."""
    raw = getattr(model, '_orig_mod', model)  # torch.compile wraps the module
    raw = getattr(raw, 'module', raw)  # so does DDP
    tmp = f'{path}.tmp'
    torch.save(dict(model=raw.state_dict(), model_args=asdict(raw.config), **extra), tmp)
    os.replace(tmp, path)


def load_checkpoint(path, device='cpu', **config_overrides):
    """Load a checkpoint without running any code from it (weights_only). Returns (model, checkpoint)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}; train one first (python train.py) or fix out_dir")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        model = AdaPonderLM(AdaPonderConfig(**ckpt['model_args']))
        model.load_state_dict(ckpt['model'])
    except Exception as e:
        first_line = (str(e).strip().splitlines() or [''])[0]
        raise ValueError(f"{path} is not a readable AdaPonder checkpoint ({type(e).__name__}: {first_line}); "
                         "delete it and train again") from None
    for key, value in config_overrides.items():  # inference-time knobs: halting, halt_threshold, n_ponder...
        if not hasattr(model.config, key):
            raise ValueError(f"unknown config field {key!r}")
        setattr(model.config, key, value)
    if model.config.n_ponder > ckpt['model_args']['n_ponder']:
        raise ValueError(f"n_ponder can only be lowered at inference (a cap on passes); "
                         f"this model was trained with {ckpt['model_args']['n_ponder']}")
    return model.to(device), ckpt


def read_neox_checkpoint(name_or_path):
    """(config.json as a dict, state dict, directory) of a GPT-NeoX checkpoint in a directory, or of a model-hub
    id ('EleutherAI/pythia-70m', or just 'pythia-70m') through huggingface_hub's cache. The weights are
    transformers' files: model.safetensors or pytorch_model.bin, one file or shards."""
    path = str(name_or_path)
    if not os.path.isdir(path):
        path = download_checkpoint(f'EleutherAI/{path}' if path.startswith('pythia-') else path)
    config, files = os.path.join(path, 'config.json'), weight_files(path)
    if not os.path.isfile(config) or not files:
        raise FileNotFoundError(f"{path} needs config.json and model.safetensors or pytorch_model.bin, or their "
                                "shards (as transformers' save_pretrained writes them)")
    with open(config) as f:
        hf = json.load(f)
    hf.update(hf.get('rope_parameters') or {})  # newer transformers nest the rotary settings
    weights = {}
    for file in files:
        weights.update(read_weights(file))
    return hf, weights, path


def weight_kinds():
    """transformers' weight files, one file or shards, in the order they are looked for: safetensors first (last
    without the safetensors package), then PyTorch's .bin."""
    kinds = ['model*.safetensors', 'pytorch_model*.bin']
    return kinds if importlib.util.find_spec('safetensors') else kinds[::-1]


def weight_files(path):
    """The weight files in a directory, all shards of the first kind there (so no index is needed)."""
    for kind in weight_kinds():
        if files := sorted(glob.glob(os.path.join(glob.escape(path), kind))):
            return files
    return []


def read_weights(file):
    if file.endswith('.safetensors'):
        if importlib.util.find_spec('safetensors') is None:
            raise ValueError(f"reading {file} needs the safetensors package: pip install safetensors")
        from safetensors.torch import load_file
        return load_file(file)
    return torch.load(file, map_location='cpu', weights_only=True)


def download_checkpoint(hub_id):
    """The directory of config.json and one kind of weights of a model-hub checkpoint in the Hugging Face cache,
    downloaded once by huggingface_hub (so HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE apply)."""
    if hub_id.count('/') != 1:
        raise ValueError(f"{hub_id!r} is neither a directory nor a model-hub id; pass a checkpoint directory, "
                         "an id like EleutherAI/pythia-70m or zeng123/PonderingPythia-1.4B, or pythia-70m")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import RepositoryNotFoundError  # where older versions have it too
    except ImportError:
        raise ValueError(f"{hub_id} is not a directory; downloading it needs huggingface_hub: "
                         "pip install huggingface_hub") from None
    try:
        for kind in weight_kinds():  # the first kind the hub has
            path = snapshot_download(hub_id, allow_patterns=['config.json', kind])
            if weight_files(path):
                return path
    except RepositoryNotFoundError:  # also gated and private repositories without a token
        raise ValueError(f"{hub_id} is not on the model hub, or it is gated or private; check the id, or set "
                         "HF_TOKEN to a token that has access") from None
    except OSError as e:  # offline, or the hub unreachable, with nothing cached
        first_line = (str(e).strip().splitlines() or [''])[0]
        raise ValueError(f"could not download {hub_id} from the model hub ({type(e).__name__}: {first_line}); "
                         "check your connection and HF_ENDPOINT, or pass a local directory") from None
    raise ValueError(f"{hub_id} on the model hub has no model.safetensors or pytorch_model.bin; download it "
                     "yourself and pass the directory")


def sample_next(logits, temperature, top_k):
    """Next token (B, 1) from last-position logits (B, V): greedy at temperature 0, else top-k sampling."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], -float('inf'))
    return torch.multinomial(F.softmax(logits.float(), dim=-1), num_samples=1)
