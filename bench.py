"""
What adaptive depth costs and saves, measured in one run and printed as ratios, so the numbers compare
across machines (nanoGPT's bench.py times a training step; this one also times the cached decoder):
1) training step (forward + backward + AdamW) of K=0, K=3 halting='none' (PonderLM) and K=3 'learned'
   (AdaPonderLM: gates, bottom-k loss, KV alignment): tokens/s, ratios, MFU
2) decoding at each batch size: (a) no cache, every new token reruns all passes over the whole prefix (how
   the official PonderLM code generates), (b) the KV cache at full depth, (c) the cache with controlled
   halting: halting='fixed' draws each token's depth from a seeded RNG, so the mean passes is set and repeats
3) prefill of a long prompt through the cache: full depth against the same controlled halting
Each row is one printed line of key=value pairs; a final section checks the targets of the issue.
With ckpt=PATH it times only a trained checkpoint's decoding, its learned halting against full depth.

$ python bench.py                                   # the device's preset: GPT-2 small on cuda, 'small' elsewhere
$ python bench.py --device=cpu --new_tokens=32      # any setting below as --key=value
$ python bench.py --ckpt=out-toy/ckpt.pt            # what a trained model's gates buy in decoding tokens/s
"""

import math
import os
import platform
import statistics
import time

import torch
from tqdm import tqdm

from adaponder import AdaPonderConfig, AdaPonderLM, depth_histogram, load_checkpoint
from configurator import configure, device_peak_flops, die, pick_device

# -----------------------------------------------------------------------------
# settings: the device picks a preset of shapes ('gpt2' on cuda, 'small' elsewhere); a setting given
# explicitly (--key=value or a config file) wins over its preset's value
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto': bfloat16 on GPUs that have it (else float16), float32 elsewhere
compile = False  # torch.compile the training step; cuda turns it on unless set (a CPU would only wait for it)
preset = ''  # 'gpt2' (GPT-2 small, the shapes, for a GPU) or 'small' (minutes on a CPU); '': by device
ckpt = ''  # the path of a trained checkpoint: time only its decoding, learned halting against full depth
n_ponder = 3  # K of the pondering models: K+1 passes per token
fixed_mean_depth = 2.0  # controlled halting: mean passes per token, out of K+1
fixed_depth_dist = 'uniform'  # and how the depths spread around it ('uniform' or 'geometric')
seed = 1337  # controlled halting draws depths from torch's RNG: reseeding repeats them exactly
peak_tflops = 0.0  # peak of the device for MFU; 0: look a CUDA GPU up in configurator.PEAK_BF16_TFLOPS
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
# -----------------------------------------------------------------------------
PRESETS = {
    'gpt2': {},  # the values above
    'small': dict(  # a few minutes on a laptop CPU; the vocabulary stays real: its products cost most here
        n_layer=4, n_head=4, n_embd=256, block_size=256, batch_size=1, warmup=1, iters=5, prompt_len=64,
        new_tokens=64, nocache_stride=8, prefill_len=256),
}
explicit = configure(globals())  # the settings given explicitly
device, dtype, autocast = pick_device(device, dtype)
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
counts = dict(n_layer=n_layer, n_head=n_head, vocab_size=vocab_size, batch_size=batch_size, iters=iters,
              prompt_len=prompt_len, new_tokens=new_tokens, nocache_stride=nocache_stride, prefill_len=prefill_len,
              repeats=repeats)  # settings that must be at least 1
checks = [(n_ponder >= 1, "n_ponder must be >= 1 (the K=0 row is always run)"),
          (1 <= fixed_mean_depth <= n_ponder + 1, f"fixed_mean_depth must lie in [1, {n_ponder + 1}]"),
          (n_embd % n_head == 0, "n_embd must be a multiple of n_head"),
          (prompt_len + new_tokens <= block_size, "prompt_len + new_tokens must fit block_size"),
          (prefill_len <= block_size, "prefill_len must fit block_size"),
          (fixed_depth_dist in ('uniform', 'geometric'), "fixed_depth_dist must be uniform or geometric"),
          (warmup >= 0 and min(counts.values()) >= 1 and min(decode_batch_sizes) >= 1,
           f"warmup must be >= 0, decode_batch_sizes and {', '.join(counts)} >= 1")]
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
    optimizer = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device.type)
    forward = torch.compile(model) if compile else model
    x = random_tokens(batch_size, block_size, vocab_size)
    y = x.roll(-1, dims=1)  # the targets' values do not change the step's cost

    def step():  # no GradScaler for float16: a bench times steps, it does not need them to converge
        with autocast:
            loss = forward(x, y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step, model.training_flops_per_token()


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
    model.config.halting = halting
    torch.manual_seed(seed)  # 'fixed' draws every token's depth from the RNG: same draws each repeat
    return model.generate(prompt, n_new or new_tokens, temperature=0)


def nocache_seconds(model, tokens):
    """PonderLM's generate: no cache, each new token reruns all K+1 passes over the whole prefix. The
    cost grows with the prefix, so timing every nocache_stride-th step, weighted by the steps it stands
    for, estimates the whole loop (slightly low: each timed step is the shortest of its group).
    tokens: (B, prompt_len + new_tokens), the cached run's output (greedy, so the same tokens)."""
    model.config.halting = 'none'
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
        model.config.halting = halting
        torch.manual_seed(seed)
        return model.step(prompt, model.new_cache(1, prefill_len))

    runs = {halting: lambda h=halting: prefill(h) for halting in ('none', 'fixed')}
    with autocast:
        seconds(runs, 1)  # warm up
        dt, outs = seconds(runs, repeats)
    return dt['none'], dt['fixed'], outs['fixed'].depth


# -----------------------------------------------------------------------------
# report


def depth_stats(model, depth):
    """Realised mean passes, the ideal speedup over full depth if time followed passes ((K+1)/passes),
    and the one the FLOPs model predicts (vocabulary products included)."""
    K1 = model.config.n_ponder + 1
    passes = depth.float().mean().item()
    return passes, K1 / passes, 1 / model.flops_per_token(depth_histogram(depth, K1))['vs_full_depth']


def halting_line(tag, model, depth, halt_s, full_s, extra=''):
    passes, ideal, ideal_flops = depth_stats(model, depth)
    ratio = full_s / halt_s
    line = (f"{tag} mode=cache-halting passes={passes:.2f}{extra} vs_cache_full={ratio:.2f} "
            f"ideal={ideal:.2f} ideal_flops={ideal_flops:.2f} frac_of_ideal={ratio / ideal:.2f}")
    return line, ratio / ideal


def target(name, got, minimum, percent=False):
    """One line per target of the issue: MET or MISSED, and by how much."""
    show = (lambda x: f'{x * 100:.1f}%') if percent else (lambda x: f'{x:.2f}')
    if got is None:
        return f"target name={name} min={show(minimum)} got=n/a status=n/a (no device peak: pass --peak_tflops)"
    status, sign = ('MET', '+') if got >= minimum else ('MISSED', '-')
    return (f"target name={name} min={show(minimum)} got={show(got)} status={status} "
            f"margin={sign}{show(abs(got - minimum))} ({(got / minimum - 1) * 100:+.0f}%)")


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
    """Section 1; returns its target lines."""
    tok_s, flop_s = bench_train()
    base, none, learned = tok_s  # K0, K-none, K-learned
    for mode in tok_s:
        mfu = flop_s[mode] / peak if peak else None
        vs_none = f" vs_none={tok_s[mode] / tok_s[none]:.2f}" if mode == learned else ''
        say(f"train mode={mode} tok/s={tok_s[mode]:.0f} vs_K0={tok_s[mode] / tok_s[base]:.2f}{vs_none} "
            f"mfu={f'{mfu * 100:.1f}%' if mfu else 'n/a'}")
    return [target('train_mfu_K0', flop_s[base] / peak if peak else None, 0.45, percent=True),
            target('train_learned_vs_none', tok_s[learned] / tok_s[none], 0.90)]


def report_decode(model, B):
    """Section 2 at batch B; returns its target lines."""
    r = bench_decode(model, B)
    n, K1 = B * new_tokens, n_ponder + 1
    passes_run = r['depth'].max(dim=0).values.float().mean().item()  # passes any row of the batch ran, per step
    say(f"decode batch={B} mode=nocache passes={K1:.2f} tok/s={n / r['nocache']:.1f} "
        f"steps_timed={r['steps_timed']}/{new_tokens}")
    say(f"decode batch={B} mode=cache-full passes={r['full_depth'].float().mean().item():.2f} "
        f"tok/s={n / r['full']:.1f} vs_nocache={r['nocache'] / r['full']:.2f}")
    line, frac = halting_line(f"decode batch={B}", model, r['depth'], r['halting'], r['full'],
                              f" passes_run={passes_run:.2f} tok/s={n / r['halting']:.1f}")
    say(line)
    targets = [target(f'decode_cache_vs_nocache_b{B}', r['nocache'] / r['full'], 10.0)] if B == 1 else []
    return targets + [target(f'decode_halting_b{B}_frac_of_ideal', frac, 0.80)]


def report_prefill(model):
    """Section 3; returns its target line."""
    full_s, halt_s, depth = bench_prefill(model)
    n = prefill_len
    say(f"prefill tokens={n} mode=cache-full passes={n_ponder + 1:.2f} tok/s={n / full_s:.0f} "
        f"ms={full_s * 1e3:.1f}")
    line, frac = halting_line(f"prefill tokens={n}", model, depth, halt_s, full_s,
                              f" tok/s={n / halt_s:.0f} ms={halt_s * 1e3:.1f}")
    say(line)
    return [target('prefill_halting_frac_of_ideal', frac, 0.80)]


def bench_all():
    """Sections 1-3 on random models of the preset's shapes, then the targets."""
    print_shapes()
    bar = tqdm(total=2 + len(decode_batch_sizes), desc='bench', leave=False)  # train, decodes, prefill
    targets = report_train()
    bar.update()
    if device.type == 'cuda':
        torch.cuda.empty_cache()  # the training models are gone: give their memory back
    model = make_model(n_ponder, 'none').eval()  # (a), (b), (c) share these weights
    for B in decode_batch_sizes:
        targets += report_decode(model, B)
        bar.update()
    targets += report_prefill(model)
    bar.close()
    say("targets (set for GPT-2 small on an H200 with compile; at other shapes and devices they are indicative)")
    for line in targets:
        say(line)


@torch.no_grad()
def compare_checkpoint():
    """A trained checkpoint's decoding (greedy, batch 1, the same prompt) with its own halting and at full
    depth (halting='none'): what its gates buy in tokens per second."""
    try:
        model, _ = load_checkpoint(ckpt, device)
    except (ValueError, FileNotFoundError) as e:
        die(e)
    model.eval()
    prompt = random_tokens(1, prompt_len, model.config.vocab_size)  # random text, the same for both runs
    halting = dict(adaptive=model.config.halting, full='none')
    runs = {name: lambda h=h: run_generate(model, prompt, h) for name, h in halting.items()}
    with autocast:  # warm up first, on a short run
        seconds({name: lambda h=h: run_generate(model, prompt, h, n_new=2) for name, h in halting.items()}, 1)
        dt, outs = seconds(runs, repeats)
    passes = {name: depth.float().mean().item() for name, (_, depth) in outs.items()}
    say(f"compare tok/s_adaptive={new_tokens / dt['adaptive']:.1f} tok/s_full={new_tokens / dt['full']:.1f} "
        f"speedup={dt['full'] / dt['adaptive']:.2f}x passes={passes['adaptive']:.2f} passes_full={passes['full']:.2f}")


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
say(f"bench wall_s={time.perf_counter() - t0:.0f}")
