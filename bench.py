"""
What adaptive depth costs and saves, measured in one run and printed as ratios, so the numbers compare
across machines (nanoGPT's bench.py times a training step; this one also times the cached decoder):
1) training step (forward + backward + AdamW) of K=0, K=3 halting='none' (PonderLM) and K=3 'learned'
   (AdaPonderLM: gates, bottom-k loss, KV alignment): tokens/s, ratios, MFU
2) decoding at each batch size: (a) no cache, every new token reruns all passes over the whole prefix (how
   the official PonderLM code generates), (b) the KV cache at full depth, (c) the cache with controlled
   halting: halting='fixed' draws each token's depth from a seeded RNG, so the mean passes is set and repeats
3) prefill of a long prompt through the cache: full depth against the same controlled halting
4) training with halting, forward + backward: eager training computes only the tokens still running; each
   row times it against the same model at full depth, beside the ideal (mean passes / (K+1)), with learned
   gates whose threshold is set so that about half the tokens halt at each pass (and fewer passes still)
Each row is one printed line of key=value pairs; a final section sets each headline ratio beside its ideal
(`ideal name=... ideal=1.00 measured=0.82`): what it would be if time followed the work done.
With ckpt=PATH it times only a trained checkpoint's decoding, its learned halting against full depth, on a
prompt from the start of its own dataset's val split (data_dir/<dataset>/val.bin), within its block size.

$ python bench.py                                   # the device's preset: GPT-2 small on cuda, 'small' elsewhere
$ python bench.py --device=cpu --new_tokens=32      # any setting below as --key=value
$ python bench.py --ckpt=out-toy/ckpt.pt            # what a trained model's gates buy in decoding tokens/s
"""

import math
import os
import platform
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from adaponder import AdaPonderConfig, AdaPonderLM, AllRows, RunningRows, depth_histogram
from configurator import check, configure, die, interrupted
from pretrained import device_peak_flops, load_checkpoint, pick_device

# -----------------------------------------------------------------------------
# settings: the device picks a preset of shapes ('gpt2' on cuda, 'small' elsewhere); a setting given
# explicitly (--key=value or a config file) wins over its preset's value
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto': bfloat16 on GPUs that have it (else float16), float32 elsewhere
compile = False  # torch.compile the training step; cuda turns it on unless set (a CPU would only wait for it)
preset = ''  # 'gpt2' (GPT-2 small, for a GPU) or 'small' (minutes on a CPU); '': by device
ckpt = ''  # the path of a trained checkpoint: time only its decoding, learned halting against full depth
data_dir = 'data'  # ckpt: the prompt is the start of data_dir/<the checkpoint's dataset>/val.bin
n_ponder = 3  # K of the pondering models: K+1 passes per token
fixed_mean_depth = 2.0  # controlled halting: mean passes per token, out of K+1
fixed_depth_dist = 'uniform'  # and how the depths spread around it ('uniform', 'geometric' or 'least_spread')
seed = 1337  # controlled halting draws depths from torch's RNG: reseeding repeats them exactly
peak_tflops = 0.0  # peak of the device for MFU; 0: look a CUDA GPU up in pretrained.PEAK_BF16_TFLOPS
# shapes: the values of the 'gpt2' preset, GPT-2 small, the shape nanoGPT's MFU is known at
n_layer = 12
n_head = 12
n_embd = 768
vocab_size = 50304
block_size = 1024
batch_size = 8  # training: batch_size x block_size tokens per step
warmup = 5  # untimed training steps first: compilation, allocator, kernel choice
iters = 20  # timed training steps
decode_batch_sizes = '1,16'  # decoding is timed at each of these batch sizes
prompt_len = 256  # decoding: prompt tokens...
new_tokens = 256  # ...and new tokens, greedy
nocache_stride = 1  # (a) times every nocache_stride-th step: each costs more than the last
prefill_len = 1024  # prefill: prompt tokens
repeats = 3  # decoding and prefill: the median of this many timed runs
sections = 'train,decode,prefill,skip'  # which of sections 1-4 to run (skip: 4, training with halting)
skip_shapes = '4x128x128,6x384x128,4x128x512'  # 4: n_layer x n_embd x sequence length (heads of 64 dims)
skip_batch = 16  # 4: sequences per training step
skip_vocab = 65  # 4: the vocabulary of the models timed (Tiny Shakespeare's characters, as its configs train)
skip_passes = '2.0,1.25'  # 4: the mean passes (of K+1) learned halting is set to, by its threshold
skip_iters = 5  # 4: timed steps per setting (the median; settings take turns step by step)
# -----------------------------------------------------------------------------
PRESETS = {
    'gpt2': {},  # the values above
    'small': dict(  # a few minutes on a laptop CPU; the vocabulary stays real: its products cost most here
        n_layer=4, n_head=4, n_embd=256, block_size=256, batch_size=1, warmup=1, iters=5, prompt_len=64,
        new_tokens=64, nocache_stride=8, prefill_len=256),
}
explicit = configure(globals())  # the settings given explicitly
try:
    device, dtype, autocast = pick_device(device, dtype)
except ValueError as e:
    die(e)
device = torch.device(device)
preset = preset or ('gpt2' if device.type == 'cuda' else 'small')
if preset not in PRESETS:
    die(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}, or '' to let the device choose")
for key, value in PRESETS[preset].items():
    if key not in explicit:
        globals()[key] = value
compile = compile if 'compile' in explicit else device.type == 'cuda'
try:
    decode_batch_sizes = [int(b) for b in decode_batch_sizes.split(',')]
except ValueError:
    die(f"decode_batch_sizes={decode_batch_sizes!r} is not integers and commas; e.g. --decode_batch_sizes=1,16")
check(globals(), **dict.fromkeys(('n_layer', 'n_head', 'n_embd', 'vocab_size', 'block_size', 'batch_size', 'iters',
                                  'prompt_len', 'new_tokens', 'nocache_stride', 'prefill_len', 'repeats', 'n_ponder'),
                                 'integer [1, inf)'),  # n_ponder: the K=0 row is always run
      warmup='integer [0, inf)', fixed_mean_depth=f'[1, {n_ponder + 1}]', peak_tflops='[0, inf)',
      skip_batch='integer [1, inf)', skip_vocab='integer [1, inf)', skip_iters='integer [1, inf)')
try:  # section 4's lists: shapes 'LxCxT,...' and mean passes 'm,...'
    skip_models = [tuple(int(n) for n in shape.split('x')) for shape in skip_shapes.split(',')]
    skip_means = [float(m) for m in skip_passes.split(',')]
    assert all(len(s) == 3 and min(s) >= 1 for s in skip_models) and all(1 <= m <= n_ponder + 1 for m in skip_means)
except (ValueError, AssertionError):
    die(f"skip_shapes={skip_shapes!r} or skip_passes={skip_passes!r} is malformed; e.g. --skip_shapes=4x128x128,"
        f"6x384x128 (n_layer x n_embd x sequence length) --skip_passes=2.0,1.25 (each in [1, {n_ponder + 1}])")
checks = [(min(decode_batch_sizes) >= 1, "decode_batch_sizes must all be >= 1"),
          (n_embd % n_head == 0, "n_embd must be a multiple of n_head"),
          (prompt_len + new_tokens <= block_size, "prompt_len + new_tokens must fit block_size"),
          (prefill_len <= block_size, "prefill_len must fit block_size"),
          (fixed_depth_dist in ('uniform', 'geometric', 'least_spread'),
           "fixed_depth_dist must be uniform, geometric or least_spread")]
if unknown := set(sections.split(',')) - {'train', 'decode', 'prefill', 'skip'}:
    checks.append((False, f"unknown sections {', '.join(sorted(unknown))}: use train, decode, prefill, skip"))
for ok, message in checks:
    if not ok:
        die(f"{message}; fix the setting")

# -----------------------------------------------------------------------------
# timing


def sync():
    """Wait for the device: GPU calls return before the work is done."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    elif device.type == 'mps':
        torch.mps.synchronize()


def seconds(fns, rounds):
    """Median wall time of each function in fns (name: function) over `rounds` rounds, and each one's
    last result. The functions take turns within a round, so a busy neighbour or a change of clock
    slows them alike: the ratios between them hold even when the absolute times wander."""
    times, outs = {name: [] for name in fns}, {}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            outs[name] = fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items() if t}, outs


def make_model(K, halting):
    torch.manual_seed(seed)  # same seed, same shapes: the K=3 models share their backbone weights
    cfg = AdaPonderConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size, block_size=block_size,
                          n_ponder=K, halting=halting, fixed_depth_dist=fixed_depth_dist,
                          fixed_mean_depth=fixed_mean_depth)
    return AdaPonderLM(cfg).to(device)


def random_tokens(B, T, n_vocab):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(n_vocab, (B, T), generator=g).to(device)


# -----------------------------------------------------------------------------
# 1) training step


def train_step(K, halting):
    """A function running one whole training step of a new model, and the model's FLOPs per token."""
    model = make_model(K, halting)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1, fused=device.type == 'cuda')
    forward = torch.compile(model) if compile else model
    x = random_tokens(batch_size, block_size, vocab_size)
    y = x.roll(-1, dims=1)  # the targets' values do not change the step's cost

    def step():  # no GradScaler for float16: a bench times steps, it does not need them to converge
        with autocast:
            loss = forward(x, y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step, 3 * model.flops_per_token([0] * K + [1])['total']  # forward + backward, at full depth


def bench_train():
    """Tokens/s of each training mode, and the model FLOP/s each achieves (for MFU). The models live
    side by side and take turns, step by step."""
    K, steps, flops = n_ponder, {}, {}
    for mode, k, halting in [('K0', 0, 'none'), (f'K{K}-none', K, 'none'), (f'K{K}-learned', K, 'learned')]:
        steps[mode], flops[mode] = train_step(k, halting)
    seconds(steps, warmup)  # compilation, allocator, kernel choice
    dt, _ = seconds(steps, iters)
    tok_s = {mode: batch_size * block_size / dt[mode] for mode in steps}
    return tok_s, {mode: flops[mode] * tok_s[mode] for mode in steps}


# -----------------------------------------------------------------------------
# 2) decoding and 3) prefill, all with one K=3 model whose halting rule is switched per run


def run_generate(model, prompt, halting, n_new=None):
    """model.generate (greedy), the prompt's prefill included: that is what a user waits for."""
    model.set_inference(halting=halting)
    torch.manual_seed(seed)  # 'fixed' draws every token's depth from the RNG: same draws each repeat
    return model.generate(prompt, n_new or new_tokens, temperature=0)


def nocache_seconds(model, tokens):
    """PonderLM's generate: no cache, each new token reruns all K+1 passes over the whole prefix. The
    cost grows with the prefix, so timing every nocache_stride-th step, weighted by the steps it stands
    for, estimates the whole loop (slightly low: each timed step is the shortest of its group).
    tokens: (B, prompt_len + new_tokens), the cached run's output (greedy, so the same tokens)."""
    model.set_inference(halting='none')
    P, N = prompt_len, new_tokens
    model(tokens[:, :P])  # warm up
    total = 0.0
    for j in range(0, N, nocache_stride):
        dt, _ = seconds(dict(step=lambda: model(tokens[:, :P + j]).logits[:, -1].argmax(-1)), 1)
        total += dt['step'] * min(nocache_stride, N - j)
    return total, math.ceil(N / nocache_stride)


@torch.no_grad()
def bench_decode(model, B):
    """Seconds of (a) no cache, (b) cache at full depth, (c) cache with controlled halting, at batch B,
    and the depths (B, new_tokens) of (b) and (c)."""
    prompt = random_tokens(B, prompt_len, vocab_size)
    runs = {halting: lambda h=halting: run_generate(model, prompt, h) for halting in ('none', 'fixed')}
    with autocast:
        seconds({h: lambda h=h: run_generate(model, prompt, h, n_new=2) for h in runs}, 1)  # warm up
        dt, outs = seconds(runs, repeats)
        nocache_s, steps_timed = nocache_seconds(model, outs['none'][0])
    return dict(nocache=nocache_s, full=dt['none'], halting=dt['fixed'], steps_timed=steps_timed,
                full_depth=outs['none'][1], depth=outs['fixed'][1])


@torch.no_grad()
def bench_prefill(model):
    """Seconds to prefill prefill_len tokens (batch 1) into a fresh cache at full depth and with controlled
    halting (only the active rows of each pass are computed), and the depths the halting run used."""
    prompt = random_tokens(1, prefill_len, vocab_size)

    def prefill(halting):
        model.set_inference(halting=halting)
        torch.manual_seed(seed)
        return model.step(prompt, model.new_cache(1, prefill_len))

    runs = {halting: lambda h=halting: prefill(h) for halting in ('none', 'fixed')}
    with autocast:
        seconds(runs, 1)  # warm up
        dt, outs = seconds(runs, repeats)
    return dt['none'], dt['fixed'], outs['fixed'].depth


# -----------------------------------------------------------------------------
# 4) training with halting: forward + backward on the running rows only, against full depth


class GridQueries(RunningRows):
    """An experiment beside the model, not part of it: attention run for the whole (B, T) grid of
    queries, halted ones zeros and their outputs dropped, as the training skip path first did; the
    model packs only the running rows' queries (RunningRows.attend_from_rows)."""

    def attend(self, layer, q, k, v):  # q, k, v: (N, nh, hs)
        empty = q.new_zeros(*self.grid, *q.shape[1:])
        k_prev, v_prev = self.prev.get(layer, (empty, empty))
        k, v = self.scatter(k_prev, k), self.scatter(v_prev, v)  # (B, T, nh, hs), as RunningRows
        self.prev[layer] = (k, v)
        y = F.scaled_dot_product_attention(self.scatter(empty, q).transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), is_causal=True)
        return self.gather(y.transpose(1, 2))


def spread_gates(model):
    """Wide random gates, so that gate values spread over (0, 1) and a threshold halts a chosen share."""
    torch.manual_seed(seed)
    for gate in model.gates:
        torch.nn.init.normal_(gate[-1].weight, std=1.0)
        torch.nn.init.zeros_(gate[-1].bias)


@torch.no_grad()
def threshold_for(model, x, passes):
    """The tau at which learned halting runs `passes` mean passes on x: bisection on log tau."""
    lo, hi = -12.0, 0.0
    for _ in range(30):
        model.set_inference(halt_threshold=10 ** ((lo + hi) / 2))
        lo, hi = ((lo + hi) / 2, hi) if model(x).depth.float().mean() > passes else (lo, (lo + hi) / 2)
    return 10 ** ((lo + hi) / 2)


def skip_rows(model, x, y, settings):
    """Forward + backward seconds of each setting (name: dict of set_inference values, and optionally the
    pass context), taking turns; with the depths each ran and, on CUDA, the peak memory."""
    def step(knobs):
        knobs = dict(knobs)
        context = knobs.pop('context', None)
        model.set_inference(**knobs)
        if context:  # this setting's pass context instead of the model's rule
            model.training_context = lambda T: context((model.rope_cos, model.rope_sin), T)
        else:
            model.__dict__.pop('training_context', None)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        with autocast:
            out = model(x, y)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        memory = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == 'cuda' else None
        return out.depth, memory, out.loss.item()
    fns = {name: (lambda k=knobs: step(k)) for name, knobs in settings.items()}
    seconds(fns, 1)  # warm up
    dt, outs = seconds(fns, skip_iters)
    return dt, outs


def skip_line(tag, model, name, dt, outs, full='full'):
    depth, memory, loss = outs[name]
    passes, K1 = depth.float().mean().item(), model.config.n_ponder + 1
    ratio, ideal = dt[name] / dt[full], passes / K1
    mem = f" mem_MB={memory:.0f}" if memory else ''
    say(f"{tag} halting={name} passes={passes:.2f} loss={loss:.6f} ms={dt[name] * 1e3:.1f} vs_full={ratio:.2f} "
        f"ideal={ideal:.2f} gap={ratio - ideal:+.2f}{mem}")
    return ratio, ideal


def report_skip():
    """Section 4; returns its ideal lines. Full depth is the static path (every row, every pass: what a
    full-depth step costs); 'nobody_halts' is the skip path at tau = 0, where every row runs (its overhead);
    'every_row' is learned halting computed the static way, halted rows thrown away (the cost before the
    skip path); 'grid_queries' runs attention for every query of the grid, not the running ones only."""
    lines = []
    for L, C, T in skip_models:
        torch.manual_seed(seed)
        model = AdaPonderLM(AdaPonderConfig(n_layer=L, n_head=max(1, C // 64), n_embd=C, vocab_size=skip_vocab,
                                            block_size=T, n_ponder=n_ponder)).to(device).train()
        spread_gates(model)
        x = random_tokens(skip_batch, T, skip_vocab)
        settings = dict(full=dict(halting='none'), nobody_halts=dict(halting='learned', halt_threshold=0.0))
        for m in skip_means:
            tau = threshold_for(model, x, m)
            settings[f'learned@{m:g}'] = dict(halting='learned', halt_threshold=tau)
            if m == skip_means[0]:  # the first mean passes: also the other ways of computing it
                settings[f'every_row@{m:g}'] = dict(halting='learned', halt_threshold=tau, context=AllRows)
                settings[f'grid_queries@{m:g}'] = dict(halting='learned', halt_threshold=tau,
                                                      context=GridQueries)
        dt, outs = skip_rows(model, x, x.roll(-1, 1), settings)
        tag = f"train_skip shape={L}x{C} block={T} batch={skip_batch}"
        for name in settings:
            ratio, ideal = skip_line(tag, model, name, dt, outs)
            if name.startswith('learned@'):
                lines.append(ideal_line(f'train_skip_{L}x{C}_T{T}_{name}', ratio, ideal,
                                        'step time over full depth; ideal: mean passes over K+1'))
    return lines


# -----------------------------------------------------------------------------
# report


def depth_stats(model, depth):
    """Realised mean passes, the ideal speedup over full depth if time followed passes ((K+1)/passes),
    and the one the FLOPs model predicts (vocabulary products included)."""
    K1 = model.config.n_ponder + 1
    passes = depth.float().mean().item()
    return passes, K1 / passes, 1 / model.flops_per_token(depth_histogram(depth, K1))['vs_full_depth']


def halting_line(tag, model, depth, halt_s, full_s, extra=''):
    """The cache-halting row; returns it, the speedup over full depth and its ideal, (K+1) / mean passes."""
    passes, ideal, ideal_flops = depth_stats(model, depth)
    ratio = full_s / halt_s
    line = (f"{tag} mode=cache-halting passes={passes:.2f}{extra} vs_cache_full={ratio:.2f} "
            f"ideal={ideal:.2f} ideal_flops={ideal_flops:.2f} frac_of_ideal={ratio / ideal:.2f}")
    return line, ratio, ideal


def ideal_line(name, measured, ideal, meaning, percent=False):
    """One line per headline ratio: what it would be if time followed the work done (the ideal), what was
    measured, and what the ratio is. A measurement, not a pass or fail: how close it gets depends on the device."""
    show = (lambda x: f'{x * 100:.1f}%') if percent else (lambda x: f'{x:.2f}')
    got = 'n/a (no device peak: pass --peak_tflops)' if measured is None else show(measured)
    return f"ideal name={name} ideal={show(ideal)} measured={got} ({meaning})"


def device_name():
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    if device.type == 'mps':
        return 'Apple MPS'
    cpu = platform.processor() or platform.machine()
    return f"cpu {cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def print_shapes():
    K = n_ponder
    say(f"shape model n_layer={n_layer} n_head={n_head} n_embd={n_embd} vocab_size={vocab_size} "
        f"block_size={block_size} n_ponder={K} (K+1={K + 1} passes)")
    say(f"shape train batch_size={batch_size} seq_len={block_size} warmup={warmup} iters={iters}")
    say(f"shape decode batch_sizes={','.join(map(str, decode_batch_sizes))} prompt_len={prompt_len} "
        f"new_tokens={new_tokens} repeats={repeats} sampling=greedy nocache_stride={nocache_stride}")
    say(f"shape prefill batch_size=1 prefill_len={prefill_len} repeats={repeats}")
    say(f"shape halting=fixed fixed_depth_dist={fixed_depth_dist} fixed_mean_depth={fixed_mean_depth} seed={seed}")


# -----------------------------------------------------------------------------


def report_train():
    """Section 1; returns its ideal lines."""
    tok_s, flop_s = bench_train()
    base, none, learned = tok_s  # K0, K-none, K-learned
    for mode in tok_s:
        mfu = flop_s[mode] / peak if peak else None
        vs_none = f" vs_none={tok_s[mode] / tok_s[none]:.2f}" if mode == learned else ''
        say(f"train mode={mode} tok/s={tok_s[mode]:.0f} vs_K0={tok_s[mode] / tok_s[base]:.2f}{vs_none} "
            f"mfu={f'{mfu * 100:.1f}%' if mfu else 'n/a'}")
    return [ideal_line('train_mfu_K0', flop_s[base] / peak if peak else None, 1.0,
                       "model FLOP/s over the device's peak", percent=True),
            ideal_line('train_learned_vs_none', tok_s[learned] / tok_s[none], 1.0,
                       'tokens/s of learned halting over fixed depth: the gates cost next to nothing')]


def report_decode(model, B):
    """Section 2 at batch B; returns its ideal lines."""
    r = bench_decode(model, B)
    n, K1 = B * new_tokens, n_ponder + 1
    passes_run = r['depth'].max(dim=0).values.float().mean().item()  # passes any row of the batch ran, per step
    say(f"decode batch={B} mode=nocache passes={K1:.2f} tok/s={n / r['nocache']:.1f} "
        f"steps_timed={r['steps_timed']}/{new_tokens}")
    say(f"decode batch={B} mode=cache-full passes={r['full_depth'].float().mean().item():.2f} "
        f"tok/s={n / r['full']:.1f} vs_nocache={r['nocache'] / r['full']:.2f}")
    line, ratio, ideal = halting_line(f"decode batch={B}", model, r['depth'], r['halting'], r['full'],
                                      f" passes_run={passes_run:.2f} tok/s={n / r['halting']:.1f}")
    say(line)
    P, N = prompt_len, new_tokens  # without the cache each new token reruns its whole prefix: P + j tokens
    lines = [ideal_line(f'decode_cache_vs_nocache_b{B}', r['nocache'] / r['full'], (N * P + N * (N - 1) / 2) /
                        (P + N - 1), 'speedup of the cache; ideal: tokens run without it over tokens run with it')]
    return (lines if B == 1 else []) + [ideal_line(f'decode_halting_b{B}', ratio, ideal,
                                                   f'speedup of halting; ideal: {K1} passes over the mean passes')]


def report_prefill(model):
    """Section 3; returns its ideal line."""
    full_s, halt_s, depth = bench_prefill(model)
    n = prefill_len
    say(f"prefill tokens={n} mode=cache-full passes={n_ponder + 1:.2f} tok/s={n / full_s:.0f} "
        f"ms={full_s * 1e3:.1f}")
    line, ratio, ideal = halting_line(f"prefill tokens={n}", model, depth, halt_s, full_s,
                                      f" tok/s={n / halt_s:.0f} ms={halt_s * 1e3:.1f}")
    say(line)
    return [ideal_line('prefill_halting', ratio, ideal,
                       f'speedup of halting; ideal: {n_ponder + 1} passes over the mean passes')]


def bench_all():
    """The chosen sections on random models of the preset's shapes, then each ratio beside its ideal."""
    print_shapes()
    chosen = sections.split(',')
    bar = tqdm(total=len(chosen), desc='bench', leave=False)
    targets = []
    if 'train' in chosen:
        targets += report_train()
        bar.update()
    if device.type == 'cuda':
        torch.cuda.empty_cache()  # the training models are gone: give their memory back
    model = make_model(n_ponder, 'none').eval()  # (a), (b), (c) share these weights
    if 'decode' in chosen:
        for B in decode_batch_sizes:
            targets += report_decode(model, B)
        bar.update()
    if 'prefill' in chosen:
        targets += report_prefill(model)
        bar.update()
    if 'skip' in chosen:
        del model
        targets += report_skip()
        bar.update()
    bar.close()
    say("ideals: each headline ratio beside what it would be if time followed the work done")
    for line in targets:
        say(line)


@torch.no_grad()
def compare_checkpoint():
    """A trained checkpoint's decoding (greedy, batch 1, the same prompt) with its own halting and at full
    depth (halting='none'): what its gates buy in tokens per second. The prompt is real text, the start of its
    dataset's val split (on random tokens a model trained with halting may stop every token at once), and
    prompt and new tokens fit its block size (past it, decoding would restart its cache)."""
    try:
        model, meta = load_checkpoint(ckpt, device)
    except (ValueError, FileNotFoundError) as e:
        die(e)
    model.eval()
    path = os.path.join(data_dir, meta.get('dataset') or '', 'val.bin')
    if not meta.get('dataset') or not os.path.isfile(path):
        die(f"no {path}, the val split of the checkpoint's dataset ({meta.get('dataset')}), to take a prompt from; "
            "prepare the dataset (python data/<dataset>/prepare.py) or pass --data_dir")
    L = model.config.block_size
    P = min(prompt_len, L // 2) if prompt_len + new_tokens > L else prompt_len  # the prompt keeps half, at least
    N = min(new_tokens, L - P)
    val = np.memmap(path, dtype=np.uint16, mode='r')
    if len(val) < P:
        die(f"{path} holds {len(val)} tokens, fewer than prompt_len={P}; lower prompt_len")
    prompt = torch.from_numpy(val[:P].astype(np.int64))[None].to(device)  # (1, P), the same for both runs
    halting = dict(adaptive=model.config.halting, full='none')
    runs = {name: lambda h=h: run_generate(model, prompt, h, n_new=N) for name, h in halting.items()}
    with autocast:  # warm up first, on a short run
        seconds({name: lambda h=h: run_generate(model, prompt, h, n_new=2) for name, h in halting.items()}, 1)
        dt, outs = seconds(runs, repeats)
    passes = {name: depth.float().mean().item() for name, (_, depth) in outs.items()}
    say(f"compare prompt_len={P} new_tokens={N} prompt=val tok/s_adaptive={N / dt['adaptive']:.1f} "
        f"tok/s_full={N / dt['full']:.1f} speedup={dt['full'] / dt['adaptive']:.2f}x passes={passes['adaptive']:.2f} "
        f"passes_full={passes['full']:.2f}")
    if len(val) > skip_batch * L + 1:  # and its training step at its trained threshold, on val windows
        windows = torch.from_numpy(val[:skip_batch * L + 1].astype(np.int64)).to(device)
        x, y = windows[:-1].view(skip_batch, L), windows[1:].view(skip_batch, L)
        model.train()
        settings = dict(full=dict(halting='none'), trained=dict(halting=halting['adaptive']))
        with torch.enable_grad():
            dt, outs = skip_rows(model, x, y, settings)
        skip_line(f"train_skip ckpt block={L} batch={skip_batch}", model, 'trained', dt, outs)


# -----------------------------------------------------------------------------
t0 = time.perf_counter()
say = tqdm.write  # prints above the progress bar
peak = peak_tflops * 1e12 or device_peak_flops(device)
say(f"bench device={device} name=\"{device_name()}\" torch={torch.__version__} dtype={dtype} compile={compile} "
    f"peak_tflops={peak / 1e12 if peak else 'n/a'} preset={preset}{f' ckpt={ckpt}' if ckpt else ''}")
try:
    if ckpt:
        compare_checkpoint()
    else:
        bench_all()
except torch.OutOfMemoryError:
    die("out of device memory; lower batch_size or pick a smaller preset")
except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; the rows above are what was measured
    interrupted("the rows above were measured, the rest not")
say(f"bench wall_s={time.perf_counter() - t0:.0f}")
