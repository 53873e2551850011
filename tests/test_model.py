"""The model's promises: training forward == cached decoding, real skipped work, the halting rule."""
import math

import pytest
import torch
import torch.nn.functional as F

from adaponder import AdaPonderConfig, AdaPonderLM, AllRows, RunningRows, random_depths
from pretrained import preset

V, T = 64, 24


def make_model(halting='learned', n_ponder=3, seed=0, **overrides):
    """A tiny float32 model. With 'learned', the gates get wide random weights and tau = 0.5 so that
    on random weights tokens halt after every pass: depths 1..K+1 all occur."""
    torch.manual_seed(seed)
    settings = dict(vocab_size=V, n_ponder=n_ponder, halting=halting, halt_threshold=0.5, gate_bias_init=0.0)
    cfg = preset('tiny', **{**settings, **overrides})
    model = AdaPonderLM(cfg).eval()
    for gate in model.gates or []:
        for p in gate.parameters():
            torch.nn.init.normal_(p, std=1.0)
    return model


def tokens(B=2, n=T, seed=1):
    return torch.randint(0, V, (B, n), generator=torch.Generator().manual_seed(seed))


def decode_in_chunks(model, idx, sizes):
    cache = model.new_cache(idx.shape[0], idx.shape[1])
    outs, t = [], 0
    for n in sizes:
        outs.append(model.step(idx[:, t:t + n], cache))
        t += n
    assert t == idx.shape[1]
    return torch.cat([o.logits for o in outs], 1), torch.cat([o.depth for o in outs], 1)


def test_depths_really_vary():  # the fixture every consistency test below relies on
    depth = make_model()(tokens()).depth
    assert set(depth.unique().tolist()) == {1, 2, 3, 4}


CHUNKINGS = [[T], [1] * T, [5, 1, 7, 2, 1, 8], [1, 23]]


PONDERLM_SCALES = dict(embed_scale=8.0, first_embed_mult=3.0)  # the official PonderLM's embedding options


@pytest.mark.parametrize('halting,sizes,options', [('learned', s, {}) for s in CHUNKINGS]
                         + [('none', s, {}) for s in CHUNKINGS] + [('learned', CHUNKINGS[2], PONDERLM_SCALES)]
                         + [('random', [T], {})])  # 'random' draws depths per call: same draws only unchunked
def test_cached_decoding_equals_training_forward(halting, sizes, options):
    model, idx = make_model(halting, **options), tokens()
    torch.manual_seed(5)
    ref = model(idx)
    torch.manual_seed(5)
    logits, depth = decode_in_chunks(model, idx, sizes)
    assert torch.equal(depth, ref.depth)
    torch.testing.assert_close(logits, ref.logits, atol=1e-5, rtol=0)


def test_batched_decoding_equals_decoding_alone():
    model, idx = make_model(), tokens(B=3, seed=7)
    sizes = [6, 1, 1, 9, 1, 6]
    logits, depth = decode_in_chunks(model, idx, sizes)
    assert not torch.equal(depth[0], depth[1])  # the rows really halt differently
    for b in range(3):
        lb, db = decode_in_chunks(model, idx[b:b + 1], sizes)
        assert torch.equal(db, depth[b:b + 1])
        torch.testing.assert_close(lb, logits[b:b + 1], atol=1e-5, rtol=0)
    batched, bdepth = model.generate(idx[:, :5], 12, temperature=0)
    for b in range(3):
        alone, adepth = model.generate(idx[b:b + 1, :5], 12, temperature=0)
        assert torch.equal(alone, batched[b:b + 1]) and torch.equal(adepth, bdepth[b:b + 1])


# ---- an independent, straightforward PonderLM written from the equations ----

def reference_lm(model, E):
    """One full causal GPT-NeoX pass over E (B, T, C), with the model's weights, written out by hand."""
    cfg = model.config
    B, n, C = E.shape
    nh, hs = cfg.n_head, C // cfg.n_head
    rot = int(hs * cfg.rotary_pct)
    inv_freq = 1.0 / (cfg.rotary_base ** (torch.arange(0, rot, 2).float() / rot))
    ang = torch.arange(n).float()[:, None] * inv_freq[None]  # (T, rot/2)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):  # (B, nh, T, hs)
        xr, xp = x[..., :rot], x[..., rot:]
        half = rot // 2
        rotated = torch.cat([-xr[..., half:], xr[..., :half]], -1)
        return torch.cat([xr * cos + rotated * sin, xp], -1)

    x = E
    for blk in model.blocks:
        a = F.layer_norm(x, (C,), blk.ln_1.weight, blk.ln_1.bias, cfg.layer_norm_eps)
        qkv = (a @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).view(B, n, nh, 3, hs)
        q, k, v = [qkv[:, :, :, j].transpose(1, 2) for j in range(3)]  # (B, nh, T, hs)
        q, k = rope(q), rope(k)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(torch.ones(n, n).triu(1).bool(), float('-inf')).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, n, C) @ blk.attn.proj.weight.T + blk.attn.proj.bias
        m = F.layer_norm(x, (C,), blk.ln_2.weight, blk.ln_2.bias, cfg.layer_norm_eps)
        m = F.gelu(m @ blk.mlp.fc.weight.T + blk.mlp.fc.bias) @ blk.mlp.proj.weight.T + blk.mlp.proj.bias
        x = x + y + m  # parallel residual
    return F.layer_norm(x, (C,), model.ln_f.weight, model.ln_f.bias, cfg.layer_norm_eps) @ model.lm_head.weight.T


@pytest.mark.parametrize('embed_scale,first_embed_mult', [(1.0, 1.0), (3.0, 1.0), (3.0, 3.0)])
def test_ponderlm_equals_reference(embed_scale, first_embed_mult):
    model, idx = make_model('none', embed_scale=embed_scale, first_embed_mult=first_embed_mult), tokens()
    W_in = model.wte.weight
    E = W_in[idx] * embed_scale * first_embed_mult
    for _ in range(model.config.n_ponder):
        E = E + (reference_lm(model, E).softmax(-1) @ W_in) * embed_scale
    out = model(idx)
    torch.testing.assert_close(out.logits, reference_lm(model, E), atol=1e-5, rtol=0)
    assert (out.depth == 4).all()


def test_no_pondering_is_a_plain_transformer():
    model, idx = make_model('learned', n_ponder=0), tokens()
    out = model(idx)
    torch.testing.assert_close(out.logits, reference_lm(model, model.wte.weight[idx]), atol=1e-5, rtol=0)
    assert (out.depth == 1).all() and len(model.gates) == 0


# ---- monotone halting and KV reuse ----

def recording(context):
    """A training pass context that records each pass's mask and the keys/values attention actually used."""
    class Recording(context):
        masks, keys = [], []

        def begin_pass(self, i, running):
            self.masks.append(running.clone())
            self.keys.append({})
            super().begin_pass(i, running)

        def attend(self, layer, q, k, v):
            y = super().attend(layer, q, k, v)
            self.keys[-1][layer] = torch.cat(self.prev[layer], -1)  # (B, T, nh, 2 hs) after the KV reuse
            return y
    return Recording


@pytest.mark.parametrize('context', [AllRows, RunningRows])
def test_halting_is_monotone_and_halted_keys_freeze(context):
    model, idx = make_model(), tokens()
    kv = recording(context)((model.rope_cos, model.rope_sin), T, 0.0)
    kv.masks, kv.keys = [], []
    with torch.no_grad():
        _, depth, _ = model.ponder(idx, kv)
    masks = torch.stack(kv.masks)  # (K+1, B, T)
    assert (masks[1:] <= masks[:-1]).all()  # m_{i+1} <= m_i: a halted token never resumes
    assert torch.equal(masks.sum(0), depth)  # depth = number of passes run
    for layer in range(model.config.n_layer):
        keys = torch.stack([p[layer] for p in kv.keys])  # (K+1, B, T, nh, 2 hs)
        for i in range(1, len(keys)):
            frozen = ~masks[i]
            assert torch.equal(keys[i][frozen], keys[i - 1][frozen])  # halted: reused, bit for bit
            assert (keys[i][masks[i]] != keys[i - 1][masks[i]]).any()  # active: really recomputed


def test_cache_of_later_passes_holds_last_computed_keys():
    model, idx = make_model(), tokens()
    cache = model.new_cache(2, T)
    depth = model.step(idx, cache).depth
    for b in range(2):
        for t in range(T):
            last = depth[b, t] - 1
            for i in range(last + 1, model.config.n_ponder + 1):
                assert torch.equal(cache.k[i][:, b, :, t], cache.k[last][:, b, :, t])
                assert torch.equal(cache.v[i][:, b, :, t], cache.v[last][:, b, :, t])


# ---- the loss trains the gates ----

def test_gradients_reach_every_gate_and_bottom_k_moves_them():
    torch.manual_seed(0)  # the default init: s ~ 0.95, nobody halts, every gate sees every token
    model, idx = AdaPonderLM(preset('tiny', vocab_size=V, n_ponder=3)), tokens()

    def gate_grads(k, lam):
        model.zero_grad()
        model.config.ponder_lambda = lam
        model(idx, tokens(seed=3), bottom_k_frac=k).loss.backward()
        return [p.grad.clone() for g in model.gates for p in g.parameters()]

    for g in gate_grads(0.0, 0.1):  # CE alone already trains every gate, through s * e
        assert g.abs().sum() > 0
    ce_only, with_bottom_k = gate_grads(0.0, 1.0), gate_grads(0.5, 1.0)
    assert all(not torch.allclose(a, b) for a, b in zip(ce_only, with_bottom_k))


def test_gate_loss_is_mean_of_smallest_live_values():
    s = [torch.tensor([[0.9, 0.1, 0.5, 0.7]]), torch.tensor([[0.05, 0.2, 0.6, 0.8]])]
    live = [torch.ones(1, 4, dtype=torch.bool), torch.tensor([[False, True, True, True]])]
    # live values: 0.9 0.1 0.5 0.7 | 0.2 0.6 0.8 (0.05 is halted, ignored); ceil(0.3 * 7) = 3
    assert AdaPonderLM.gate_loss(s, live, 0.3).item() == pytest.approx((0.1 + 0.2 + 0.5) / 3)


# ---- decoding really skips halted tokens ----

def test_step_runs_only_active_rows():
    model, idx = make_model(), tokens()
    rows_seen = []
    hook = model.blocks[0].register_forward_hook(lambda mod, args, out: rows_seen.append(args[0].shape[0]))
    try:
        cache = model.new_cache(2, T)
        depth = torch.cat([model.step(idx[:, :10], cache).depth, model.step(idx[:, 10:], cache).depth], 1)
    finally:
        hook.remove()
    n_pass = model.config.n_ponder + 1
    expected = [int((depth[:, a:b] > i).sum()) for a, b in [(0, 10), (10, T)] for i in range(n_pass)]
    assert rows_seen == [n for n in expected if n > 0]  # passes where every token halted never run
    assert sum(rows_seen) == depth.sum() < 4 * depth.numel()


# ---- the rest of the public surface ----

@pytest.mark.parametrize('dist', ['uniform', 'geometric', 'least_spread'])
@pytest.mark.parametrize('mean', [1.5, 2.0, 3.2])
def test_fixed_depth_has_configured_mean(dist, mean):
    torch.manual_seed(0)
    depth = random_depths((200_000,), 4, mean, dist, 'cpu')
    assert depth.min() >= 1 and depth.max() <= 4
    assert depth.float().mean().item() == pytest.approx(mean, abs=0.02)


def test_flops_accounting():
    model = make_model()
    full = model.flops_per_token([0, 0, 0, 1])
    assert full['vs_full_depth'] == pytest.approx(1.0) and full['mean_depth'] == 4
    one = model.flops_per_token([1, 0, 0, 0])
    half = model.flops_per_token([1, 0, 0, 1])
    assert one['total'] < half['total'] < full['total']
    assert half['total'] == pytest.approx((one['total'] + full['total']) / 2)
    assert one['vocab'] == 2 * model.config.n_embd * V  # one pass: the LM head only
    plain = make_model(n_ponder=0).flops_per_token([1])
    assert plain['vs_full_depth'] == 1.0 and plain['gates'] == 0
    assert plain['total'] == pytest.approx(one['total'] - one['gates'])  # one pass: a plain pass and a gate


@pytest.mark.parametrize('name', ['pythia-14m', 'pythia-70m', 'pythia-160m', 'pythia-410m'])
def test_presets_have_pythia_sizes(name):
    expected = {'pythia-14m': 1.2e6, 'pythia-70m': 18.9e6, 'pythia-160m': 85.1e6, 'pythia-410m': 302.3e6}
    with torch.device('meta'):  # shapes only, no memory
        model = AdaPonderLM(preset(name, n_ponder=0))
    n_params = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(('wte', 'lm_head')))
    assert n_params == pytest.approx(expected[name], rel=0.01)  # Pythia's non-embedding counts


def test_clear_errors():
    with pytest.raises(ValueError, match='unknown preset'):
        preset('gpt-5')
    model = make_model()
    with pytest.raises(ValueError, match='longer than block_size'):
        model(torch.zeros(1, 65, dtype=torch.long))
    cache = model.new_cache(1, 8)
    with pytest.raises(ValueError, match='KV cache holds 8'):
        model.step(torch.zeros(1, 9, dtype=torch.long), cache)


def test_generate_shapes_and_long_generation():
    model, idx = make_model(), tokens(B=2, n=5)
    out, depth = model.generate(idx, 100, temperature=1.0, top_k=5)  # 105 > block_size 64: cache restarts
    assert out.shape == (2, 105) and depth.shape == (2, 100)
    assert torch.equal(out[:, :5], idx) and depth.min() >= 1 and depth.max() <= 4


# ---- mixed precision and half-precision weights ----

def test_gate_gradient_survives_bf16_autocast():
    """A gate whose logit is 8 has s = 0.99966: in bfloat16 that rounds to 1.0 and its gradient to 0, so the
    token could never learn to halt. The gate value is computed in float32 from the logit."""
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', vocab_size=V, n_ponder=3))
    for gate in model.gates:
        torch.nn.init.constant_(gate[-1].bias, 8.0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = model(tokens(), tokens(seed=3), bottom_k_frac=0.0).loss  # cross-entropy alone
    loss.backward()
    assert all(gate[-1].bias.grad.abs().item() > 0 for gate in model.gates)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_weights(dtype):
    """A model stored in 16 bits (a large checkpoint loaded to save memory) trains' forward, step() and
    generate() all run, and decoding still equals the forward (the same kernels on the same numbers)."""
    model, idx = make_model().to(dtype), tokens()
    ref = model(idx)
    assert ref.logits.dtype == dtype
    logits, depth = decode_in_chunks(model, idx, [5, 1, 7, 2, 1, 8])
    assert torch.equal(depth, ref.depth) and len(depth.unique()) > 1
    torch.testing.assert_close(logits, ref.logits, atol=4 * 2 ** -8 * ref.logits.abs().max().item(), rtol=0)
    out, new_depth = model.generate(idx[:, :5], 10)
    assert out.shape == (2, 15) and new_depth.shape == (2, 10)


@pytest.mark.parametrize('sizes', [[T], [1] * T, [5, 1, 7, 2, 1, 8]])
def test_cached_decoding_equals_training_forward_under_bf16_autocast(sizes):
    """Under autocast the two paths multiply matrices of different shapes and keep the cache in bfloat16, so
    logits agree only to bfloat16's precision: 8 significant bits, i.e. a relative step of 2**-8 per rounding.
    We allow 4 such steps at the logits' scale. The depths must still be identical: the gates here are far
    from tau, further than any rounding moves them."""
    model, idx = make_model(), tokens()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        ref = model(idx)
        logits, depth = decode_in_chunks(model, idx, sizes)
    assert torch.equal(depth, ref.depth) and len(depth.unique()) > 1
    tolerance = 4 * 2 ** -8 * ref.logits.float().abs().max().item()
    torch.testing.assert_close(logits.float(), ref.logits.float(), atol=tolerance, rtol=0)


# ---- small things: edge cases of the loss and the inputs ----

def test_gate_loss_is_zero_when_every_token_halted_at_the_first_gate():
    s = [torch.tensor([[0.01, 0.02]]), torch.tensor([[0.01, 0.02]])]
    nobody_runs_on = [torch.zeros(1, 2, dtype=torch.bool)] * 2
    assert AdaPonderLM.gate_loss(s, nobody_runs_on, 0.1).item() == 0.0


def test_forward_gate_loss_counts_only_gates_that_let_their_token_go_on():
    """Recompute the gate loss from the recorded masks: gate i's entries count where the token runs pass i+1."""
    model, idx = make_model(), tokens()
    kv = recording(AllRows)((model.rope_cos, model.rope_sin), T, 0.0)
    kv.masks, kv.keys = [], []
    _, depth, (gates, _) = model.ponder(idx, kv)
    masks = kv.masks[1:] + [torch.zeros_like(kv.masks[0])] * (len(gates) + 1 - len(kv.masks))
    live_values = torch.cat([g[m] for g, m in zip(gates, masks)]).sort().values
    n_keep = math.ceil(0.3 * len(live_values))
    expected = live_values[:n_keep].mean()
    assert 0 < len(live_values) < sum(g.numel() for g in gates)  # some halted: the mask matters
    got = model(idx, tokens(seed=3), bottom_k_frac=0.3).gate_loss
    torch.testing.assert_close(got, expected)


def test_targets_need_not_be_contiguous():
    model, idx = make_model(), tokens()
    targets = tokens(n=2 * T, seed=3)[:, ::2]  # a strided view
    assert not targets.is_contiguous()
    assert torch.isfinite(model(idx, targets).loss)


# ---- generation past the context ----

def reference_generate(model, idx, n):
    """Greedy generation with forward() over a sliding window, as generate() promises: when the context is
    full, start again from its last half."""
    L, start = model.config.block_size, max(0, idx.shape[1] - model.config.block_size)
    depths = []
    for _ in range(n):
        out = model(idx[:, start:])
        depths.append(out.depth[:, -1])
        idx = torch.cat([idx, out.logits[:, -1].argmax(-1, keepdim=True)], 1)
        if idx.shape[1] - start > L:  # the window would overflow: keep its last half
            start = idx.shape[1] - L // 2
    return idx, torch.stack(depths, 1)


def test_generation_past_the_context_restarts_from_the_last_half():
    model, idx = make_model(block_size=16), tokens(B=2, n=5)  # a short context: the same restarts, 4x fewer tokens
    n = 2 * model.config.block_size  # two restarts
    out, depth = model.generate(idx, n, temperature=0)
    ref, ref_depth = reference_generate(model, idx, n)
    assert torch.equal(out, ref) and torch.equal(depth, ref_depth)


# ---- training computes only the tokens still running, and equals the static path ----

def loss_and_grads(model, idx, targets, static, seed=5):
    """One training forward and backward on the skip path (RunningRows) or the static one (AllRows)."""
    model.zero_grad()
    model.static_shapes = static
    torch.manual_seed(seed)  # halting='random' draws its depths here: the same draws on both paths
    out = model(idx, targets, bottom_k_frac=0.3)
    out.loss.backward()
    return out, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize('halting', ['learned', 'random', 'none'])
def test_training_on_running_rows_equals_every_row(halting):
    """The loss, logits, depths and every gradient of the skip path equal the static path's: halted tokens
    change nothing there but cost nothing here. fp32: logits to 1e-5, gradients to 1e-4 relative."""
    model, idx, targets = make_model(halting).train(), tokens(), tokens(seed=3)
    skip, skip_grads = loss_and_grads(model, idx, targets, static=False)
    every, every_grads = loss_and_grads(model, idx, targets, static=True)
    assert torch.equal(skip.depth, every.depth)
    if halting != 'none':
        assert 1 < skip.depth.float().mean() < 4  # tokens really halt at different passes
    torch.testing.assert_close(skip.logits, every.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(skip.loss, every.loss, atol=1e-5, rtol=0)
    for name, grad in every_grads.items():
        assert grad.abs().sum() > 0 or name.startswith('gates.'), name  # every backbone weight learns
        assert (skip_grads[name] - grad).norm() <= 1e-4 * grad.norm() + 1e-12, name


def test_training_runs_blocks_and_gates_on_running_rows_only():
    """Rows entering the blocks and each gate in a training step: exactly the tokens running that pass,
    none halted, none of the running ones left out."""
    model, idx = make_model().train(), tokens()
    rows = {'block': [], 'gate': []}
    hooks = [model.blocks[0].register_forward_hook(lambda m, args, out: rows['block'].append(args[0].shape[0]))]
    hooks += [g.register_forward_hook(lambda m, args, out: rows['gate'].append(args[0].shape[0]))
              for g in model.gates]
    try:
        depth = model(idx, tokens(seed=3)).depth
    finally:
        for hook in hooks:
            hook.remove()
    running = [int((depth > i).sum()) for i in range(4)]  # tokens that ran pass i
    assert rows['block'] == running and rows['gate'] == running[:3]
    assert running[0] == depth.numel() > running[1] > running[3] > 0


@pytest.mark.parametrize('halting', ['learned', 'random'])
def test_training_on_running_rows_under_bf16_autocast(halting):
    """Under bf16 the two paths multiply matrices of different shapes ((N, C) against (B*T, C)), so roundings
    differ: logits may differ by a few bf16 steps (2**-8 relative) at the logits' scale, as decoding does
    against the forward; the depths must not differ (the gates are far from tau here)."""
    model, idx, targets = make_model(halting).train(), tokens(), tokens(seed=3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        skip, skip_grads = loss_and_grads(model, idx, targets, static=False)
        every, every_grads = loss_and_grads(model, idx, targets, static=True)
    assert torch.equal(skip.depth, every.depth)
    tolerance = 4 * 2 ** -8 * every.logits.float().abs().max().item()
    torch.testing.assert_close(skip.logits.float(), every.logits.float(), atol=tolerance, rtol=0)
    for name, grad in every_grads.items():  # bf16 gradients: a few percent of the gradient's norm
        assert (skip_grads[name] - grad).norm() <= 0.05 * grad.norm() + 1e-6, name


def test_a_pass_where_every_token_halted_still_trains_every_gate():
    """tau = 1: every token halts after the first pass, so later passes run on no rows at all; each gate still
    takes part in the graph (DDP would otherwise wait for its gradient), with gradient 0."""
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', vocab_size=V, n_ponder=3, halt_threshold=1.0))  # s ~ 0.95 < 1
    out = model(tokens(), tokens(seed=3))
    out.loss.backward()
    assert (out.depth == 1).all()
    assert all(p.grad is not None for gate in model.gates for p in gate.parameters())


def test_the_rule_picks_static_shapes_where_nobody_halts():  # compiled too: tests/test_compile.py
    model = make_model()
    assert isinstance(model.training_context(T), RunningRows)
    assert isinstance(make_model('none').training_context(T), AllRows)  # PonderLM: nobody halts
    assert isinstance(make_model(n_ponder=0).training_context(T), AllRows)
    model.static_shapes = True
    assert isinstance(model.training_context(T), AllRows)


# ---- the config checks itself; set_inference is the one way to change how a model runs ----

@pytest.mark.parametrize('bad,fragment', [
    (dict(n_embd=30, n_head=4), 'n_head'), (dict(halting='sometimes'), 'halting'),
    (dict(fixed_depth_dist='poisson'), 'fixed_depth_dist'), (dict(halt_threshold=float('nan')), 'halt_threshold'),
    (dict(halt_threshold=1.5), 'halt_threshold'), (dict(n_ponder=-1), 'n_ponder'), (dict(n_layer=2.5), 'n_layer'),
    (dict(ponder_lambda=float('inf')), 'ponder_lambda'), (dict(dropout=1.0), 'dropout'),
    (dict(bottom_k_frac=-0.1), 'bottom_k_frac'), (dict(halting='learned', gated=False), 'gates')])
def test_config_refuses_values_that_mean_nothing(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        preset('tiny', **bad)


def test_set_inference_checks_and_returns_what_it_replaced():
    model = make_model()
    old = model.set_inference(halt_threshold=0.1, n_ponder=1)
    assert old == dict(halt_threshold=0.5, n_ponder=3) and model.config.n_ponder == 1
    assert (model(tokens()).depth <= 2).all()
    model.set_inference(**old)
    assert model.config.halt_threshold == 0.5 and model.config.n_ponder == 3
    for bad, fragment in [(dict(n_ponder=4), 'a cap on passes'), (dict(n_layer=1), 'cannot change'),
                          (dict(halting='maybe'), 'halting'), (dict(halt_threshold=-1), 'halt_threshold')]:
        with pytest.raises(ValueError, match=fragment):
            model.set_inference(**bad)
    assert model.config.n_ponder == 3  # a refused change changes nothing
    with pytest.raises(ValueError, match='needs gates'):
        make_model('none').set_inference(halting='learned')


def test_a_checkpoint_keeps_the_models_k_under_a_cap(tmp_path):
    from pretrained import load_checkpoint, save_checkpoint
    model = make_model()
    model.set_inference(n_ponder=1)  # as train.py's one_pass_iters and analyze.py's caps do
    save_checkpoint(str(tmp_path / 'ckpt.pt'), model)
    loaded, ckpt = load_checkpoint(str(tmp_path / 'ckpt.pt'))
    assert ckpt['model_args']['n_ponder'] == 3 and len(loaded.gates) == 3


@pytest.mark.parametrize('halting', ['learned', 'none'])
def test_a_checkpoint_saved_before_gated_existed_loads(tmp_path, halting):
    """Checkpoints written before the config had `gated` say only `halting`: gates exist where it is 'learned'."""
    from pretrained import load_checkpoint
    from dataclasses import asdict
    model = make_model(halting)
    args = {k: v for k, v in asdict(model.config).items() if k != 'gated'}
    torch.save(dict(model=model.state_dict(), model_args=args), tmp_path / 'old.pt')
    loaded, _ = load_checkpoint(str(tmp_path / 'old.pt'))
    assert loaded.config.gated == (halting == 'learned')
    torch.testing.assert_close(loaded(tokens()).logits, model(tokens()).logits)
