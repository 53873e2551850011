"""
AdaPonderLM in one file: the whole transformer runs up to K+1 passes per token, each fed back its
own prediction as a probability-weighted embedding. A gate per pass scales that update; once it
falls below a threshold the token halts for good, and later passes see the keys/values of the last
pass it ran. Training and decoding share `ponder` and compute only the tokens still running.
After AdaPonderLM (arXiv 2603.01914), PonderLM (arXiv 2505.20674), GPT-NeoX, nanoGPT; the method
and the choices made where the paper is silent: docs/method.md."""

import math
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from typing import Optional

import torch
import torch.nn as nn
from torch.nn import functional as F

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
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    x1, x2 = x_rot.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return torch.cat([x_rot * cos.to(x.dtype) + rotated * sin.to(x.dtype), x_pass], dim=-1)

def attention(q, k, v, **how):
    """Scaled dot-product attention on (B, T, nh, hs) queries and (B, S, nh, hs) keys and values."""
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T or S, hs)
    y = F.scaled_dot_product_attention(q, k, v, **how)
    return y.transpose(1, 2)  # (B, T, nh, hs)

class CausalSelfAttention(nn.Module):
    """On (B, T, C), or (N, C) running rows; the pass context picks their keys/values (KV reuse)."""

    def __init__(self, config, layer_idx):
        super().__init__()
        self.n_head, self.hs = config.n_head, config.n_embd // config.n_head
        self.layer_idx = layer_idx
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # per head [q k v]
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, ctx):
        lead = x.shape[:-1]  # (B, T) or (N,)
        qkv = self.qkv(x).view(*lead, self.n_head, 3 * self.hs)  # GPT-NeoX: heads outermost
        q, k, v = qkv.split(self.hs, dim=-1)  # each (..., nh, hs)
        q, k = apply_rotary(q, *ctx.rotary), apply_rotary(k, *ctx.rotary)
        y = ctx.attend(self.layer_idx, q, k, v)  # (..., nh, hs)
        return self.resid_dropout(self.proj(y.reshape(*lead, self.n_head * self.hs)))

class Block(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        C = config.n_embd
        self.ln_1 = nn.LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = nn.Sequential(OrderedDict(  # the names GPT-NeoX checkpoints are read into
            fc=nn.Linear(C, 4 * C, bias=config.bias), gelu=nn.GELU(),
            proj=nn.Linear(4 * C, C, bias=config.bias), dropout=nn.Dropout(config.dropout)))
        self.parallel_residual = config.parallel_residual

    def forward(self, x, ctx):
        if self.parallel_residual:  # GPT-NeoX: attention and MLP both read the block's input
            return x + self.attn(self.ln_1(x), ctx) + self.mlp(self.ln_2(x))
        x = x + self.attn(self.ln_1(x), ctx)
        return x + self.mlp(self.ln_2(x))

# -----------------------------------------------------------------------------
# Pass contexts: which rows run a pass, which keys/values attention sees. ponder() asks one for:
#   begin_pass(i, running)  pass i starts; running (B, T) is m_i, the tokens still running
#   idle                    True if the pass has nothing to compute (decoding: all tokens halted)
#   rotary                  (cos, sin) at the positions of the rows that run
#   gather(x)               x (B, T, ...) -> the rows that run this pass
#   scatter(x, values)      x with those rows replaced by values, out of place (autograd)
#   attend(layer, q, k, v)  attention for them; a halted token's keys/values: its last pass's
# torch.compile: one graph for every count of running rows, a size it learns at run time only
torch._dynamo.config.capture_scalar_outputs = True  # .item(): the packed queries' width
torch._dynamo.config.capture_dynamic_output_shape_ops = True  # nonzero(): the running rows
torch._dynamo.config.optimize_ddp = False  # DDP's graph split (at its buckets) fails on such sizes

class AllRows:
    """Static shapes (nobody halts; static_shapes): every row runs, scatter() keeps a halted row's
    old values: k = where(m_i, k_new, k_prev)."""

    idle = False  # training never skips a pass: DDP expects every parameter in the graph

    def __init__(self, rotary, T, dropout=0.0):
        self.rotary = rotary[0][:T, None], rotary[1][:T, None]  # (T, 1, rot), over (B, T, nh, rot)
        self.prev, self.dropout = {}, dropout  # prev[layer]: the (k, v) grids of the last pass

    def begin_pass(self, i, running):
        self.running = running  # (B, T)

    def gather(self, x):  # every row
        return x

    def scatter(self, x, values):  # keep halted rows as they were
        m = self.running.view(*self.running.shape, *[1] * (x.dim() - 2))
        return torch.where(m, values.to(x.dtype), x)

    def attend(self, layer, q, k, v):  # q, k, v: (B, T, nh, hs)
        if layer in self.prev:  # pass > 0: halted tokens keep their last pass's key/value
            k, v = self.scatter(self.prev[layer][0], k), self.scatter(self.prev[layer][1], v)
        self.prev[layer] = (k, v)
        return attention(q, k, v, is_causal=True, dropout_p=self.dropout)

class RunningRows:
    """Only running tokens are computed, gathered into (N, ...) rows: a halted token costs nothing
    but as a key/value, on the (B, T) grid, where it keeps those of its last pass."""

    idle = False  # a pass with no running row runs on empty tensors: cheap, and every gate is used

    def __init__(self, rotary, T, dropout=0.0):
        self.cos, self.sin = rotary
        self.positions = torch.arange(T, device=self.cos.device)  # of the T tokens in view
        self.n_keys, self.prev, self.dropout = T, {}, dropout  # keys at positions 0..n_keys-1

    def begin_pass(self, i, running):  # running: (B, T)
        self.grid, n = running.shape, running.numel()  # pass 0 runs every token: no need to ask
        self.rows = torch.arange(n, device=running.device) if i == 0 else \
            running.flatten().nonzero().squeeze(1)  # (N,) b * T + t; waits for the GPU
        # all run: a gather is a view, not a copy (compiled, one graph serves every N: no branch)
        self.every_row = i == 0 or not torch.compiler.is_compiling() and len(self.rows) == n
        self.pos = self.positions[self.rows % self.grid[1]]  # (N,) each running row's position
        self.rotary = self.cos[self.pos, None], self.sin[self.pos, None]  # (N, 1, rot)
        self.pack_queries(running.sum(1))

    def pack_queries(self, counts):
        """Sequence b's counts[b] running queries go to row b of a (B, n, nh, hs) batch (n: the most
        any has), under a causal mask over keys 0..n_keys-1 (padding sees key 0, is dropped)."""
        B, T = self.grid
        self.slots, pos = None, self.positions[None]  # every row runs: the (B, T) grid itself
        if not self.every_row:
            b = self.rows // T
            self.slots = b, torch.arange(len(b), device=b.device) - (counts.cumsum(0) - counts)[b]
            width = counts.max().clamp(min=1).item()  # waits for the GPU
            torch._check(width >= 1)  # torch.compile cannot know it (it would guard on width == 1)
            pos = self.pos.new_zeros(B, width).index_put(self.slots, self.pos)  # (B, n) positions
        causal = self.every_row and self.n_keys == T  # the fast kernel needs no mask
        keys = torch.arange(self.n_keys, device=pos.device)
        self.mask = None if causal else (keys <= pos[..., None])[:, None]  # (B or 1, 1, n, n_keys)

    def gather(self, x):  # (B, T, ...) -> (N, ...)
        x = x.flatten(0, 1)
        return x if self.every_row else x.index_select(0, self.rows)

    def scatter(self, x, values):  # x (B, T, ...), values (N, ...)
        if self.every_row:
            return values.to(x.dtype).view_as(x)
        return x.flatten(0, 1).index_copy(0, self.rows, values.to(x.dtype)).view_as(x)

    def attend_from_rows(self, q, k, v, dropout=0.0):
        """Queries q (N, nh, hs) packed as pack_queries decided, over k, v (B, n_keys, nh, hs)."""
        how = dict(is_causal=True) if self.mask is None else dict(attn_mask=self.mask)
        if self.slots is None:  # every row runs: the grid, as it is
            q = q.view(*self.grid, *q.shape[1:])  # (B, T, nh, hs)
            return attention(q, k, v, dropout_p=dropout, **how).flatten(0, 1)
        packed = q.new_zeros(self.grid[0], self.mask.shape[2], *q.shape[1:])  # (B, n, nh, hs)
        packed = packed.index_put(self.slots, q)
        return attention(packed, k, v, dropout_p=dropout, **how)[self.slots]  # (N, nh, hs)

    def attend(self, layer, q, k, v):  # q, k, v: (N, nh, hs)
        empty = q.new_zeros(*self.grid, *q.shape[1:])  # pass 0: every token runs, nothing kept
        k_prev, v_prev = self.prev.get(layer, (empty, empty))
        k, v = self.scatter(k_prev, k), self.scatter(v_prev, v)  # (B, T, nh, hs)
        self.prev[layer] = (k, v)
        return self.attend_from_rows(q, k, v, self.dropout)

class KVCache(RunningRows):
    """Decoding: one KV cache per pass. A chunk of new tokens (a prompt, or one) runs every pass;
    running tokens write their keys/values into its cache, a halted token's is the last pass's."""

    def __init__(self, config, rotary, batch_size, max_len, device, dtype):
        super().__init__(rotary, 0)
        n_pass, hs = config.n_ponder + 1, config.n_embd // config.n_head
        shape = (n_pass, config.n_layer, batch_size, config.n_head, max_len, hs)
        self.k, self.v = (torch.zeros(shape, device=device, dtype=dtype) for _ in 'kv')
        self.max_len, self.length = max_len, 0  # length: tokens cached, the chunk in flight too

    def add_chunk(self, T):  # T new tokens (a prompt, or one): positions after those cached
        if self.length + T > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens, {self.length + T} needed; "
                             "make a larger cache with model.new_cache(batch_size, max_len)")
        self.positions = torch.arange(self.length, self.length + T, device=self.k.device)
        self.length = self.n_keys = self.length + T

    def begin_pass(self, i, running):
        super().begin_pass(i, running)
        self.i, span = i, slice(self.length - len(self.positions), self.length)
        for cache in (self.k, self.v) if i > 0 else ():  # KV reuse: from the previous pass's,
            cache[i, ..., span, :] = cache[i - 1, ..., span, :]  # running tokens overwrite theirs
        self.idle = len(self.rows) == 0

    def attend(self, layer, q, k, v):  # q, k, v: (N, nh, hs), one row per running token
        b = self.rows // self.grid[1]
        ck, cv = self.k[self.i, layer], self.v[self.i, layer]  # (B, nh, max_len, hs)
        ck[b, :, self.pos], cv[b, :, self.pos] = k.to(ck.dtype), v.to(cv.dtype)
        k, v = (c[:, :, :self.n_keys].transpose(1, 2).to(q.dtype) for c in (ck, cv))  # (B, S, ..)
        return self.attend_from_rows(q, k, v)

# -----------------------------------------------------------------------------
# The model

CHOICES = dict(halting=('learned', 'none', 'random'),  # who stops: the gates, nobody, chance
               fixed_depth_dist=('uniform', 'geometric', 'least_spread'))
INFERENCE_SETTINGS = ('halting', 'halt_threshold', 'n_ponder', 'fixed_depth_dist',
                      'fixed_mean_depth')  # what set_inference may change on a built model
INF = math.inf
RANGES = dict(vocab_size=(1, INF), block_size=(1, INF), n_layer=(1, INF), n_head=(1, INF),
              n_embd=(1, INF), n_ponder=(0, INF), dropout=(0, 0.99), layer_norm_eps=(1e-30, 1),
              rotary_pct=(0, 1), rotary_base=(1, INF), halt_threshold=(0, 1), bottom_k_frac=(0, 1),
              ponder_lambda=(0, INF), embed_scale=(1e-9, INF), first_embed_mult=(1e-9, INF),
              gate_bias_init=(-INF, INF), fixed_mean_depth=(1, INF))  # the config's numbers

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
    rotary_base: float = 10000.0
    parallel_residual: bool = True  # x + attn(ln1(x)) + mlp(ln2(x)) (GPT-NeoX), not sequential
    n_ponder: int = 3  # K: extra passes per token (K+1 in all); 0 is a plain language model
    halting: str = 'learned'  # who stops: 'learned' (gates) | 'none' (nobody) | 'random' depths
    gated: Optional[bool] = None  # gates exist and scale each update; default: halting == 'learned'
    halt_threshold: float = 1e-4  # tau: a token halts once its gate value s < tau
    ponder_lambda: float = 0.1  # weight of the bottom-k gate loss
    bottom_k_frac: float = 0.1  # share of running gate values the gate loss pushes down
    embed_scale: float = 1.0  # multiplies W_in[x] and the pondering embedding (PonderLM: sqrt(d))
    first_embed_mult: float = 1.0  # multiplies E_0 once more (official PonderLM from 410M up: K)
    gate_bias_init: float = 3.0  # sigmoid(3) ~ 0.95: training starts close to plain PonderLM
    fixed_depth_dist: str = 'uniform'  # halting='random': how the depths spread (CHOICES)
    fixed_mean_depth: float = 2.5  # halting='random': their mean passes (above K+1, as a cap: K+1)

    def __post_init__(self):
        """Every field is checked once, here: a ValueError names a bad value and what it may be."""
        self.halting = 'random' if self.halting == 'fixed' else self.halting  # its older name
        for f in fields(self):
            value, allowed = getattr(self, f.name), CHOICES.get(f.name)
            if allowed and value not in allowed:
                raise ValueError(f"unknown {f.name} {value!r}; use {', '.join(allowed)}")
            if f.type in (bool, Optional[bool]) and not isinstance(value, (bool, type(None))):
                raise ValueError(f"{f.name} must be True or False, got {value!r}")
            (low, high), whole = RANGES.get(f.name, (None, None)), f.type is int
            number = type(value) is int or type(value) is float and not whole  # (bool: no)
            if low is not None and not isinstance(value, torch.Tensor) and not (  # (a tensor:
                    number and low <= value <= high and math.isfinite(value)):  # train.py's k)
                raise ValueError(f"{f.name} must be a finite {'whole ' * whole}number in "
                                 f"[{low:g}, {high:g}], got {value!r}")
        if self.n_embd % self.n_head or int(self.n_embd // self.n_head * self.rotary_pct) % 2:
            raise ValueError(f"n_embd {self.n_embd} must split into n_head {self.n_head} heads "
                             f"whose rotary part (rotary_pct {self.rotary_pct}) has even dims")
        self.gated = self.halting == 'learned' if self.gated is None else self.gated
        if self.halting == 'learned' and not self.gated:
            raise ValueError("halting='learned' needs gates, and this model has none (it was "
                             "trained with halting='none' or 'random'); use one of those")

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
        self.config = config  # set_inference may change who halts and a cap on passes, nothing else
        self.trained_K = config.n_ponder  # the pondering steps the weights have (n_ponder: a cap)
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C)  # W_in, read by the pondering embedding too
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(C, eps=config.layer_norm_eps, bias=config.bias)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)  # untied, as in Pythia
        self.gates = nn.ModuleList([  # one per pondering step i = 0..K-1: a shared gate collapses
            nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, 1))
            for _ in range(config.n_ponder)]) if config.gated else None
        for name, table in zip(('rope_cos', 'rope_sin'), rotary_tables(
                C // config.n_head, config.rotary_pct, config.block_size, config.rotary_base)):
            self.register_buffer(name, table, persistent=False)
        self.static_shapes = False  # True: training runs every row of every pass (training_context)
        for module in self.modules():  # GPT-2's initialization
            if isinstance(module, (nn.Linear, nn.Embedding)):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith('proj.weight') and name.startswith('blocks'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        for gate in self.gates or []:
            torch.nn.init.constant_(gate[-1].bias, config.gate_bias_init)

    def set_inference(self, **settings):
        """The one way to change how a built model runs (INFERENCE_SETTINGS; n_ponder only down,
        as a cap, None: no cap). Checked like the config; returns the old values, to restore."""
        if unknown := set(settings) - set(INFERENCE_SETTINGS):
            raise ValueError(f"{', '.join(sorted(unknown))} cannot change once the model is "
                             f"built; these can: {', '.join(INFERENCE_SETTINGS)}")
        if settings.get('n_ponder', 0) is None:
            settings['n_ponder'] = self.trained_K
        old = {k: getattr(self.config, k) for k in settings}
        config = replace(self.config, **settings)  # a new config: every value checked
        if config.n_ponder > self.trained_K:
            raise ValueError(f"n_ponder is a cap on passes; pass at most K = {self.trained_K}")
        self.config = config
        return old

    # ---- the recurrence: one function for training and decoding ----

    def ponder(self, idx, ctx):
        """The recurrence over idx (B, T), with ctx deciding which rows run. Returns each token's
        state (B, T, C) from its last pass, its depth (B, T), and each pass's gate values and mask
        (for the gate loss). The method, and the lines of the loop that do it:
          only running tokens:  x = ctx.gather(E)           the rows with m_i = 1
          the update:           x = x + ... * e             E_i = E_{i-1} + s_{i-1} e_{i-1}
          the KV reuse:         x = block(x, ctx)           ctx.attend: halted tokens' keys and
                                                            values are those of their last pass
          the gate:             s_i = self.gate_value(..)   s_i = sigmoid(gate_i(h_i))
          the mask:             running = ctx.scatter(..)   m_{i+1} = m_i [s_i >= tau], for good"""
        cfg = self.config
        E = self.drop(self.wte(idx) * (cfg.embed_scale * cfg.first_embed_mult))  # E_0: (B, T, C)
        running = torch.ones(idx.shape, dtype=torch.bool, device=idx.device)  # m_0 = 1
        depth = torch.zeros(idx.shape, dtype=torch.long, device=idx.device)
        h_out = torch.zeros_like(E)  # each token's state after the last pass it ran
        s = torch.ones(idx.shape, device=idx.device)  # the last pass's gate values (float32)
        max_passes = self.max_passes(idx)  # (B, T): K+1, or the random-depth baseline's depths
        s_per_pass, running_after = [], []  # s_i and m_{i+1} of each pass, for the gate loss
        for i in range(cfg.n_ponder + 1):
            ctx.begin_pass(i, running)  # from here on, only the rows still running
            if ctx.idle:  # decoding, every token halted: the KV copy was all there was to do
                continue
            x = ctx.gather(E)  # (N, C) running rows; (B, T, C) with AllRows
            if i > 0:  # feed back the last pass's prediction, scaled by its gate
                e = self.pondering_embedding(ctx.gather(h_out))
                x = x + ctx.gather(s).unsqueeze(-1).to(x.dtype) * e
                E = ctx.scatter(E, x)
            for block in self.blocks:
                x = block(x, ctx)
            h = self.ln_f(x)
            h_out = ctx.scatter(h_out, h)  # a halted token keeps the state of its last pass
            depth = depth + running
            if i == cfg.n_ponder:
                break
            s_i = self.gate_value(i, h)
            s = ctx.scatter(s, s_i)
            running = ctx.scatter(running, self.goes_on(s_i, ctx.gather(max_passes) > i + 1))
            s_per_pass.append(s)
            running_after.append(running)  # the gate loss sees gates that let their token go on
        return h_out, depth, (s_per_pass, running_after)

    def pondering_embedding(self, h):
        """e = softmax(head(h)) @ W_in: the expected input embedding of the model's prediction."""
        p = F.softmax(self.lm_head(h).float(), dim=-1).to(h.dtype)  # (..., V)
        return (p @ self.wte.weight.to(h.dtype)) * self.config.embed_scale  # (..., C)

    def gate_value(self, i, h):
        """s_i of each row of the pass-i state h, in float32 (in bf16, a gate logit above ~6 rounds
        s to 1 and its gradient to 0). Without gates (PonderLM, random depths), s = 1."""
        if not self.config.gated:
            return torch.ones(h.shape[:-1], device=h.device)
        return torch.sigmoid(self.gates[i](h).float().squeeze(-1))

    def goes_on(self, s, may_go_on):
        """m_{i+1} of the rows that ran pass i: learned halting stops a row once s < tau (the gate
        learns through s, not this); none goes past its max_passes (may_go_on)."""
        learned = self.config.halting == 'learned'
        return may_go_on & (s >= self.config.halt_threshold) if learned else may_go_on

    def max_passes(self, idx):
        """The most passes each token may run: K+1, or the random depths of halting='random'."""
        cfg = self.config
        if cfg.halting == 'random':
            return random_depths(idx.shape, cfg.n_ponder + 1, cfg.fixed_mean_depth,
                                 cfg.fixed_depth_dist, idx.device)
        return torch.full(idx.shape, cfg.n_ponder + 1, device=idx.device)

    def training_context(self, T):
        """The one rule for which rows forward() computes: the running ones (RunningRows, compiled
        too), but all (AllRows) where none can halt (halting='none', K = 0) or static_shapes."""
        cfg = self.config
        static = self.static_shapes or cfg.halting == 'none' or cfg.n_ponder == 0
        rows = AllRows if static else RunningRows
        return rows((self.rope_cos, self.rope_sin), T, cfg.dropout if self.training else 0.0)

    def forward(self, idx, targets=None, bottom_k_frac=None):
        """idx, targets: (B, T). bottom_k_frac: this step's share of gates the gate loss pushes down
        (default: the config's; train.py passes a 0-d tensor, whose schedule never recompiles)."""
        if (T := idx.shape[1]) > (L := self.config.block_size):
            raise ValueError(f"sequence of {T} tokens is longer than block_size {L}")
        h, depth, (s_per_pass, running_after) = self.ponder(idx, self.training_context(T))
        logits = self.lm_head(h)  # (B, T, V)
        if targets is None:
            return PonderOutput(logits, depth)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
        k = self.config.bottom_k_frac if bottom_k_frac is None else bottom_k_frac
        learned = self.config.halting == 'learned' and s_per_pass  # (k = 0 gives 0: no recompile)
        gate_loss = self.gate_loss(s_per_pass, running_after, k) if learned else ce.new_zeros(())
        loss = ce + self.config.ponder_lambda * gate_loss
        return PonderOutput(logits, depth, loss, ce, gate_loss)

    @staticmethod
    def gate_loss(s_per_pass, running_after, k):
        """Mean of the smallest ceil(k * N) of the N gate values (batch x token x step) that let
        their token go on: the least useful passes pushed toward halting. The others would fill the
        bottom k and the loss fall to ~0: they sort last (not removed: static shapes)."""
        s, live = torch.stack(s_per_pass).flatten(), torch.stack(running_after).flatten()
        n_keep = torch.ceil(k * live.sum())  # 0 when k = 0 or when no gate let its token go on
        smallest = torch.where(live, s, 2.0).sort().values  # gates are <= 1: 2.0 sorts last
        in_bottom_k = torch.arange(len(s), device=s.device) < n_keep
        return (smallest * in_bottom_k).sum() / n_keep.clamp(min=1)

    # ---- cached decoding ----

    def new_cache(self, batch_size, max_len, dtype=None):
        """A KV cache for step(), in autocast's dtype if it is on."""
        device, weights = self.wte.weight.device, self.wte.weight.dtype
        autocast = torch.is_autocast_enabled(device.type)
        dtype = dtype or (torch.get_autocast_dtype(device.type) if autocast else weights)
        return KVCache(self.config, (self.rope_cos, self.rope_sin), batch_size,
                       min(max_len, self.config.block_size), device, dtype)

    @torch.no_grad()
    def step(self, idx, cache, last_only=False):
        """Run the next tokens idx (B, T) - a prompt or one new token - through the cache: the same
        outputs as forward() on the whole sequence (last_only: the last position's logits only)."""
        cache.add_chunk(idx.shape[1])
        h, depth, _ = self.ponder(idx, cache)
        return PonderOutput(self.lm_head(h[:, -1:] if last_only else h), depth)

    @torch.no_grad()
    def stream(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Continue idx (B, T), yielding each new token (B,) and its depth (B,) - how many passes
        chose it - as soon as it is chosen. temperature=0 is greedy."""
        V = self.config.vocab_size  # bad arguments are refused here, in one line each
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or not idx.shape[1] or \
                idx.dtype != torch.long or not 0 <= idx.min() <= idx.max() < V:
            raise ValueError(f"idx must be (B, T) token ids in [0, {V}), T >= 1")
        if type(max_new_tokens) is not int or max_new_tokens < 0 or not temperature >= 0 or \
                top_k is not None and (type(top_k) is not int or top_k < 1):
            raise ValueError(f"generation takes a whole max_new_tokens >= 0, temperature >= 0 and "
                             f"top_k None or >= 1; got {max_new_tokens}, {temperature}, {top_k}")
        B, L = idx.shape[0], self.config.block_size
        cache = self.new_cache(B, idx.shape[1] + max_new_tokens)
        out = self.step(idx[:, -cache.max_len:], cache, last_only=True)
        for j in range(max_new_tokens):
            next_idx = sample_next(out.logits[:, -1], temperature, top_k)  # (B, 1)
            yield next_idx[:, 0], out.depth[:, -1]
            if j + 1 == max_new_tokens:
                break
            idx = torch.cat((idx, next_idx), dim=1)
            if cache.length == cache.max_len:  # context full: restart from its last half
                cache = self.new_cache(B, L)  # (rotary position is relative: nothing else moves)
                out = self.step(idx[:, -(L // 2):], cache, last_only=True)
            else:
                out = self.step(next_idx, cache)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """stream(), collected: (idx with the new tokens appended, depth (B, max_new_tokens))."""
        new = list(self.stream(idx, max_new_tokens, temperature, top_k))
        tokens, depths = (torch.stack(x, 1) for x in zip(*new)) if new else (idx[:, :0],) * 2
        return torch.cat((idx, tokens), 1), depths

    def flops_per_token(self, depth_hist, context=None):
        """Forward FLOPs per token for depth_hist[d-1] tokens of d passes, by where they go and as a
        share of full depth; context: keys a query attends to (default block_size, as nanoGPT)."""
        cfg, K = self.config, self.config.n_ponder
        assert len(depth_hist) == K + 1, f"depth_hist needs {K + 1} bins (depths 1..{K + 1})"
        blocks = 2 * sum(p.numel() for p in self.blocks.parameters())
        attend = 4 * cfg.n_layer * cfg.n_embd * (cfg.block_size if context is None else context)
        gate_flops = 2 * sum(p.numel() for p in self.gates[0].parameters()) if self.gates else 0
        head = 2 * cfg.n_embd * cfg.vocab_size  # the LM head; the pondering embedding as much again

        def cost(d):  # d passes: d backbone passes, d-1 feedbacks (head + embedding), a last head
            return dict(blocks=d * blocks, attention=d * attend, vocab=(2 * d - 1) * head,
                        gates=gate_flops * min(d, K))
        w = [n / sum(depth_hist) for n in depth_hist]  # w[d-1]: share of tokens that ran d passes
        out = {key: sum(w[d - 1] * cost(d)[key] for d in range(1, K + 2)) for key in cost(1)}
        out['total'] = sum(out.values())
        out['vs_full_depth'] = out['total'] / sum(cost(K + 1).values())
        out['mean_depth'] = sum(w[d - 1] * d for d in range(1, K + 2))
        return out

def random_depths(shape, n_pass, mean, dist, device):
    """Depths in 1..n_pass of mean `mean` (capped): 'uniform', as wide as the range allows, rounded
    at random; 'geometric', on with probability c (bisected); 'least_spread', floor or ceil."""
    m, rand = min(max(mean, 1.0), float(n_pass)), lambda: torch.rand(shape, device=device)
    if dist == 'least_spread':  # ceil with probability frac(mean): at a whole number, a cap
        return (m + rand()).floor().long().clamp(1, n_pass)
    if dist == 'uniform':
        w = min(m - 1, n_pass - m)
        x = m - w + 2 * w * rand()
        return (x.floor() + (rand() < x.frac())).long().clamp(1, n_pass)
    lo, hi = 0.0, 1.0  # geometric: the mean depth sum_{j<n} c^j grows with c
    for _ in range(50):
        c = (lo + hi) / 2
        lo, hi = (c, hi) if sum(c ** j for j in range(n_pass)) < m else (lo, c)
    depth, going = torch.ones(shape, dtype=torch.long, device=device), True
    for _ in range(n_pass - 1):
        going = going & (rand() < c)
        depth += going
    return depth

def depth_histogram(depth, n_pass):
    """Tokens that ran 1, 2, ..., n_pass passes: the form flops_per_token takes."""
    return torch.bincount(depth.flatten().cpu() - 1, minlength=n_pass).tolist()

def sample_next(logits, temperature, top_k):
    """Next token (B, 1) from last-position logits (B, V): greedy at temperature 0, else top-k."""
    if temperature < 1e-6:  # as good as greedy (a logit gap of 1e-4 is a factor e^100), and logits
        return logits.argmax(dim=-1, keepdim=True)  # divided by a tinier one can overflow float32
    logits = logits.float() / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], -float('inf'))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
