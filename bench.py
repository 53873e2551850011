"""What adaptive depth costs and saves, as ratios that compare across machines, each headline one
beside its ideal (what it would be if time followed the work done): sections 1) train, 2) decode,
3) prefill, 4) skip: training on the running tokens only, compiled too with compile=True.
ckpt=PATH (a checkpoint or its folder): a trained model's own halting against full depth, decoding
and training on its dataset's val text.   $ python bench.py --sections=skip --compile=True"""

import itertools
import os
import platform
import statistics
import time

import torch
from torch._dynamo.utils import counters

from adaponder import AdaPonderConfig, AdaPonderLM, AllRows, depth_histogram
from configurator import check, configure, die, interrupted, or_die
from data.show import print_table
from pretrained import device_peak_flops, load_checkpoint, pick_device, read_tokens, tau_for_passes

# -----------------------------------------------------------------------------
# settings (--key=value or a config file): one given explicitly wins over its preset's value
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto': bfloat16 on GPUs that have it (else float16), float32 elsewhere
compile = False  # torch.compile sections 1 and 4 (4: beside eager); cuda turns it on unless set
preset = ''  # 'gpt2' (GPT-2 small, for a GPU) or 'small' (minutes on a CPU); '': by device
ckpt = ''  # a trained checkpoint (or its folder): time only its decoding and training step
data_dir = 'data'  # ckpt: the prompt is the start of data_dir/<its dataset>/val.bin
n_ponder = 3  # K of the pondering models: K+1 passes per token
fixed_mean_depth = 2.0  # controlled halting: mean passes per token, out of K+1
fixed_depth_dist = 'uniform'  # and how depths spread: 'uniform', 'geometric', 'least_spread'
seed = 1337  # controlled halting draws depths from torch's RNG: reseeding repeats them exactly
peak_tflops = 0.0  # the device's peak, for MFU; 0: a CUDA GPU's from pretrained.PEAK_BF16_TFLOPS
n_layer = 12  # the shapes: the 'gpt2' preset's, GPT-2 small, the shape nanoGPT's MFU is known at
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
sections = 'train,decode,prefill,skip'  # which of sections 1-4 to run
skip_shapes = '4x128x128,6x384x128,4x128x512'  # 4: n_layer x n_embd x length (64-dim heads)
skip_batch = 16  # 4: sequences per training step
skip_vocab = 65  # 4: the vocabulary (Tiny Shakespeare's characters, as its configs train)
skip_passes = '2.0,1.3'  # 4: the mean passes (of K+1) learned halting is set to, by its threshold
skip_iters = 5  # 4: timed steps per setting (the median; settings take turns step by step)
# -----------------------------------------------------------------------------
PRESETS = {'gpt2': {},  # the values above; 'small': minutes on a CPU, the vocabulary still real
           'small': dict(n_layer=4, n_head=4, n_embd=256, block_size=256, batch_size=1, warmup=1,
                         iters=5, prompt_len=64, new_tokens=64, nocache_stride=8, prefill_len=256)}
explicit = configure(globals())  # the settings given explicitly
device, dtype, autocast = or_die(pick_device, device, dtype)
device = torch.device(device)
check(globals(), {'preset': ('', *PRESETS), 'warmup': 'integer [0, inf)', 'peak_tflops': '[0, inf)',
    'seed': 'integer [0, inf)', **dict.fromkeys(('n_layer', 'n_head', 'n_embd', 'vocab_size',
    'block_size', 'n_ponder', 'batch_size', 'iters', 'prompt_len', 'new_tokens', 'nocache_stride',
    'prefill_len', 'repeats', 'skip_batch', 'skip_vocab', 'skip_iters'), 'integer [1, inf)'),
    'fixed_mean_depth': f'[1, {n_ponder + 1}]'})  # the explicit values: the presets' are good
preset = preset or ('gpt2' if device.type == 'cuda' else 'small')
globals().update({key: explicit.get(key, value) for key, value in PRESETS[preset].items()})
compile = explicit.get('compile', device.type == 'cuda')
try:  # the lists: batch sizes 'b,...', section 4's shapes 'LxCxT,...' and mean passes 'm,...'
    decode_batches = [int(b) for b in str(decode_batch_sizes).split(',')]
    skip_models = [tuple(int(n) for n in shape.split('x')) for shape in str(skip_shapes).split(',')]
    SKIP_SHAPES = [dict(n_layer=L, n_head=max(1, C // 64), n_embd=C, block_size=T,
                        vocab_size=skip_vocab) for L, C, T in skip_models]
    skip_means = [float(m) for m in str(skip_passes).split(',')]
    if min(decode_batches) < 1 or not all(1 <= m <= n_ponder + 1 for m in skip_means):
        raise ValueError  # out of range: said as a malformed list is, below
except ValueError:
    die(f"decode_batch_sizes={decode_batch_sizes}, skip_shapes={skip_shapes} or skip_passes="
        f"{skip_passes} is malformed; e.g. --decode_batch_sizes=1,16 --skip_shapes=4x128x128,"
        f"6x384x128 (n_layer x n_embd x length) --skip_passes=2.0,1.3 (in [1, {n_ponder + 1}])")
if unknown := set(sections.split(',')) - {'train', 'decode', 'prefill', 'skip'}:
    die(f"unknown sections {', '.join(sorted(unknown))}; use train, decode, prefill, skip")
if max(prompt_len + new_tokens, prefill_len) > block_size:
    die(f"prompt_len + new_tokens ({prompt_len + new_tokens}) and prefill_len ({prefill_len}) "
        f"must fit block_size {block_size}; fix the setting")
SHAPE = {k: globals()[k] for k in ('n_layer', 'n_head', 'n_embd', 'vocab_size', 'block_size')}
for shape in [SHAPE] + SKIP_SHAPES:  # refused here, as the model would refuse them
    or_die(AdaPonderConfig, n_ponder=n_ponder, fixed_depth_dist=fixed_depth_dist, **shape)

def seconds(fns, rounds):
    """Median seconds of each function (name: function) over rounds, and its last result."""
    times, outs = {name: [] for name in fns}, {}  # sync: GPU calls return before the work is done
    sync = {'cuda': torch.cuda.synchronize, 'mps': torch.mps.synchronize}.get(device.type, dict)
    for _ in range(rounds):
        for name, fn in fns.items():  # in turns: a busy neighbour slows all alike, ratios hold
            sync()
            t0 = time.perf_counter()
            outs[name] = fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items() if t}, outs

def make_model(K, halting, shape=SHAPE):
    torch.manual_seed(seed)  # same seed, same shapes: the K=3 models share their backbone weights
    return AdaPonderLM(AdaPonderConfig(**shape, n_ponder=K, halting=halting, fixed_depth_dist=
        fixed_depth_dist, fixed_mean_depth=fixed_mean_depth)).to(device)

def random_tokens(B, T, n_vocab):
    return torch.randint(n_vocab, (B, T), generator=torch.Generator().manual_seed(seed)).to(device)

def ideal_line(name, measured, ideal, meaning, fmt='.2f'):  # a measurement, not a verdict
    got = 'n/a (no device peak: pass --peak_tflops)' if measured is None else f'{measured:{fmt}}'
    return f"ideal name={name} ideal={ideal:{fmt}} measured={got} ({meaning})"

# -----------------------------------------------------------------------------
# 1) training step
def report_train():
    """Section 1: tokens/s and MFU of a training step: K=0, PonderLM, AdaPonderLM, taking turns."""
    K, steps, flops, x = n_ponder, {}, {}, random_tokens(batch_size, block_size, vocab_size)
    for mode, k, h in ('K0', 0, 'none'), (f'K{K}-none', K, 'none'), (f'K{K}-learned', K, 'learned'):
        model = make_model(k, h)
        optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=device.type == 'cuda')
        def step(forward=torch.compile(model) if compile else model, optimizer=optimizer):
            with autocast:  # no GradScaler: a bench need not converge
                loss = forward(x, x.roll(-1, dims=1)).loss  # the targets do not change the cost
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        steps[mode], flops[mode] = step, 3 * model.flops_per_token([0] * k + [1])['total']
    seconds(steps, warmup)  # compilation, allocator, kernel choice
    tok_s = {mode: batch_size * block_size / t for mode, t in seconds(steps, iters)[0].items()}
    mfu = {mode: flops[mode] * tok_s[mode] / peak if peak else None for mode in steps}
    base, none, learned = steps
    rows = [{'mode': mode, 'tok/s': f'{t:.0f}', 'vs_K0': f'{t / tok_s[base]:.2f}',
             'mfu': f'{mfu[mode]:.1%}' if mfu[mode] else 'n/a'} for mode, t in tok_s.items()]
    rows[-1]['vs_none'] = f'{tok_s[learned] / tok_s[none]:.2f}'  # learned halting's row
    print_table('train', rows)
    return [ideal_line('train_mfu_K0', mfu[base], 1, "model FLOP/s over the device's peak", '.1%'),
            ideal_line('train_learned_vs_none', tok_s[learned] / tok_s[none], 1.0,
                       'tokens/s of learned halting over fixed depth: the gates cost next to none')]

# -----------------------------------------------------------------------------
# 2) decoding and 3) prefill, all with one K=3 model whose halting rule is switched per run
RULES = dict(none='none', random='random')  # full depth, controlled halting

def time_rules(model, rules, run, warm_up=None):
    """Median seconds and last result of run() under each rule (name: halting), warm_up() first."""
    def under(rule, fn):
        model.set_inference(halting=rule)
        torch.manual_seed(seed)  # halting='random' draws the same depths each time
        return fn()
    with autocast:
        seconds({name: lambda h=h: under(h, warm_up or run) for name, h in rules.items()}, 1)
        return seconds({name: lambda h=h: under(h, run) for name, h in rules.items()}, repeats)

def halting_row(name, model, depth, dt, **extra):
    """The cache-halting row and the ideal line of its speedup (dt: seconds of each rule)."""
    K1, passes = model.config.n_ponder + 1, depth.float().mean().item()
    ratio = dt['none'] / dt['random']
    flops = 1 / model.flops_per_token(depth_histogram(depth, K1))['vs_full_depth']  # vocab too
    return dict(mode='cache-halting', passes=f'{passes:.2f}', **extra, vs_cache_full=f'{ratio:.2f}',
                ideal=f'{K1 / passes:.2f}', ideal_flops=f'{flops:.2f}',
                frac_of_ideal=f'{ratio / (K1 / passes):.2f}'), ideal_line(
        name, ratio, K1 / passes, f'speedup of halting; ideal: {K1} passes over the mean passes')

@torch.no_grad()
def report_decode(model, B):
    """Section 2 at batch B: (b) cache, full depth, (c) cache, halting='random', (a) no cache on
    (b)'s tokens, each rerunning every pass over its prefix as the official PonderLM code does."""
    P, N, n = prompt_len, new_tokens, B * new_tokens
    prompt = random_tokens(B, P, vocab_size)
    dt, outs = time_rules(model, RULES, lambda: model.generate(prompt, N, 0),
                          lambda: model.generate(prompt, 2, 0))  # warm up on a short run
    model.set_inference(halting='none')  # (a): every nocache_stride-th step timed
    tokens, starts = outs['none'][0], range(0, N, nocache_stride)
    with autocast:
        step_s = {j: seconds({j: lambda j=j: model(tokens[:, :P + j])}, 1)[0][j] for j in starts}
    nocache_s = sum(t * min(nocache_stride, N - j) for j, t in step_s.items())  # and those skipped
    passes_run = outs['random'][1].max(dim=0).values.float().mean()  # passes any row ran, per step
    halting, line = halting_row(f'decode_halting_b{B}', model, outs['random'][1], dt, **{
        'passes_run': f'{passes_run:.2f}', 'tok/s': f"{n / dt['random']:.1f}"})
    print_table(f'decode batch={B}', [
        {'mode': 'nocache', 'passes': f'{n_ponder + 1:.2f}', 'tok/s': f'{n / nocache_s:.1f}',
         'steps_timed': f'{len(starts)}/{N}'},
        {'mode': 'cache-full', 'passes': f"{outs['none'][1].float().mean().item():.2f}",
         'tok/s': f"{n / dt['none']:.1f}", 'vs_nocache': f"{nocache_s / dt['none']:.2f}"}, halting])
    cache = ideal_line(f'decode_cache_vs_nocache_b{B}', nocache_s / dt['none'],  # tokens run:
                       (N * P + N * (N - 1) / 2) / (P + N - 1),  # without the cache, with it
                       'speedup of the cache; ideal: tokens run without it over tokens run with it')
    return [cache] * (B == 1) + [line]

def report_prefill(model):
    """Section 3: prefill_len tokens (batch 1) into a new cache, full depth, controlled halting."""
    prompt, n = random_tokens(1, prefill_len, vocab_size), prefill_len
    dt, outs = time_rules(model, RULES, lambda: model.step(prompt, model.new_cache(1, n)))
    halting, line = halting_row('prefill_halting', model, outs['random'].depth, dt, **{
        'tok/s': f"{n / dt['random']:.0f}", 'ms': f"{dt['random'] * 1e3:.1f}"})
    print_table(f'prefill tokens={n}', [
        {'mode': 'cache-full', 'passes': f'{n_ponder + 1:.2f}', 'tok/s': f"{n / dt['none']:.0f}",
         'ms': f"{dt['none'] * 1e3:.1f}"}, halting])
    return [line]

# -----------------------------------------------------------------------------
# 4) training with halting: forward + backward on the running rows only, against full depth
def skip_rows(model, x, y, settings, compiled=False, eager=None):
    """Rows: forward + backward ms of each setting (set_inference values, maybe a pass context), on
    two batches in turn (the mask changes), over full depth's; compiled: over eager's, graphs."""
    run, first, rows = torch.compile(model) if compiled else model, {}, {}
    def step(knobs, i):
        model.__dict__.pop('training_context', None)  # the model's rule, unless the setting has one
        if context := knobs.get('context'):
            model.training_context = lambda T: context((model.rope_cos, model.rope_sin), T)
        model.set_inference(**{k: v for k, v in knobs.items() if k != 'context'})
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        with autocast:
            out = run(x.roll(i % 2, 1), y.roll(i % 2, 1))
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        memory = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == 'cuda' else 0
        return out.depth.float().mean().item(), memory, out.loss.item()
    fns = {name: lambda k=k, i=itertools.count(): step(k, next(i)) for name, k in settings.items()}
    torch._dynamo.reset()
    for name in fns:  # warm up (and compile), one setting after the other
        counters.clear()
        first[name] = seconds({name: fns[name]}, 1)[0][name], counters['stats']['unique_graphs']
    counters.clear()
    dt, outs = seconds(fns, skip_iters)
    for name, (passes, memory, loss) in outs.items():
        ratio, ideal = dt[name] / dt['full'], passes / (model.config.n_ponder + 1)
        rows[name] = dict(halting=name, passes=f'{passes:.2f}', loss=f'{loss:.6f}',
                          ms=f'{dt[name] * 1e3:.1f}', vs_full=f'{ratio:.2f}', ideal=f'{ideal:.2f}',
                          gap=f'{ratio - ideal:+.2f}')
        rows[name].update({'mem_MB': f'{memory:.0f}'} if memory else {})
        if compiled:
            rows[name].update(vs_eager=f"{dt[name] * 1e3 / float(eager[name]['ms']):.2f}",
                              graphs=first[name][1], recompiles=counters['frames']['ok'],
                              compile_s=f'{first[name][0] - dt[name]:.1f}')
    return rows

def report_skip():
    """Section 4. full: the static path at full depth; nobody_halts: the skip path at tau = 0 (its
    overhead); every_row: learned halting the static way."""
    lines = []
    for (L, C, T), shape in zip(skip_models, SKIP_SHAPES):
        model = make_model(n_ponder, 'learned', dict(shape, gate_bias_init=0.0)).train()
        for gate in model.gates:  # wide random gates: gate values spread over (0, 1)
            torch.nn.init.normal_(gate[-1].weight, std=1.0)
        x, full = random_tokens(skip_batch, T, skip_vocab), dict(halting='none')
        def passes(tau):  # the mean passes learned halting runs on x at the threshold tau
            model.set_inference(halt_threshold=tau)
            with torch.no_grad():
                return model(x).depth.float().mean().item()
        learned = {f'learned@{m:g}': dict(halting='learned', halt_threshold=tau_for_passes(
            passes, m)) for m in skip_means}
        m, first, *rest = skip_means[0], *learned.items()  # at m, other ways of computing it too
        eager = dict(full=full, nobody_halts=dict(halting='learned', halt_threshold=0.0), **{
            first[0]: first[1], f'every_row@{m:g}': dict(first[1], context=AllRows)}, **dict(rest))
        tag = f"train_skip shape={L}x{C} block={T} batch={skip_batch}"
        runs = {'': skip_rows(model, x, x.roll(-1, 1), eager)}
        if compile:  # compiled skip against compiled full depth, eager beside
            runs['_compiled'] = skip_rows(model, x, x.roll(-1, 1), dict(full=full, **learned),
                                          compiled=True, eager=runs[''])
        for suffix, rows in runs.items():
            print_table(f'{tag} compile={bool(suffix)}', list(rows.values()))
            lines += [ideal_line(f'train_skip_{L}x{C}_T{T}_{name}{suffix}',
                                 float(rows[name]['vs_full']), float(rows[name]['ideal']),
                                 'step time over full depth; ideal: mean passes over K+1')
                      for name in learned]
    return lines

# -----------------------------------------------------------------------------
# the run
def bench_all():
    print(f"shape model {' '.join(f'{k}={v}' for k, v in SHAPE.items())} {n_ponder=} "
          f"(K+1={n_ponder + 1} passes)\nshape train batch_size={batch_size} seq_len={block_size} "
          f"{warmup=} {iters=}\nshape decode batch_sizes={decode_batch_sizes} {prompt_len=} "
          f"{new_tokens=} {repeats=} sampling=greedy {nocache_stride=}\nshape prefill batch_size=1 "
          f"{prefill_len=} {repeats=}\nshape halting=random fixed_depth_dist={fixed_depth_dist} "
          f"{fixed_mean_depth=} {seed=}")
    chosen, lines = sections.split(','), []
    if 'train' in chosen:
        lines += report_train()
    torch.cuda.empty_cache()  # the training models are gone: give their memory back (if any)
    model = make_model(n_ponder, 'none').eval()  # (a), (b), (c) share these weights
    if 'decode' in chosen:
        lines += [line for B in decode_batches for line in report_decode(model, B)]
    if 'prefill' in chosen:
        lines += report_prefill(model)
    del model
    if 'skip' in chosen:
        lines += report_skip()
    print("ideals: each headline ratio beside what it would be if time followed the work done")
    print(*lines, sep='\n')

def compare_checkpoint():
    """A trained model's own halting against full depth on its val text (random tokens may halt)."""
    model, meta = or_die(load_checkpoint, ckpt, device)
    path = os.path.join(data_dir, meta.get('dataset') or '', 'val.bin')
    if not meta.get('dataset') or not os.path.isfile(path):
        die(f"no {path}, the val split of the checkpoint's dataset ({meta.get('dataset')}), to "
            "take a prompt from; prepare it (python data/<dataset>/prepare.py) or pass --data_dir")
    L = model.eval().config.block_size
    P = min(prompt_len, L // 2) if prompt_len + new_tokens > L else prompt_len  # half, at least
    N, val = min(new_tokens, L - P), or_die(read_tokens, path)
    if len(val) < P:
        die(f"{path} holds {len(val)} tokens, fewer than prompt_len={P}; lower prompt_len")
    prompt = torch.from_numpy(val[:P].astype('int64'))[None].to(device)  # (1, P), for both runs
    rules = dict(adaptive=model.config.halting, full='none')
    dt, outs = time_rules(model, rules, lambda: model.generate(prompt, N, 0),
                          lambda: model.generate(prompt, 2, 0))  # warm up on a short run
    passes = {name: depth.float().mean().item() for name, (_, depth) in outs.items()}
    print(f"compare prompt_len={P} new_tokens={N} prompt=val "
          f"tok/s_adaptive={N / dt['adaptive']:.1f} tok/s_full={N / dt['full']:.1f} "
          f"speedup={dt['full'] / dt['adaptive']:.2f}x passes={passes['adaptive']:.2f} "
          f"passes_full={passes['full']:.2f}")
    if len(val) > skip_batch * L + 1:  # its training step at its trained threshold, on val windows
        windows = torch.from_numpy(val[:skip_batch * L + 1].astype('int64')).to(device)
        x, y = windows[:-1].view(skip_batch, L), windows[1:].view(skip_batch, L)
        rows = skip_rows(model.train(), x, y, dict(full=dict(halting='none'),
                                                   trained=dict(halting=rules['adaptive'])))
        print_table(f"train_skip ckpt block={L} batch={skip_batch}", list(rows.values()))

peak, t0 = peak_tflops * 1e12 or device_peak_flops(device), time.perf_counter()
name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'Apple MPS' if device.type \
    == 'mps' else f"cpu {platform.processor() or platform.machine()} ({os.cpu_count()} cores, " \
    f"{torch.get_num_threads()} threads)"
print(f"bench device={device} name=\"{name}\" torch={torch.__version__} dtype={dtype} "
      f"compile={compile} peak_tflops={peak / 1e12 if peak else 'n/a'} preset={preset}"
      + f' ckpt={ckpt}' * bool(ckpt))
try:
    compare_checkpoint() if ckpt else bench_all()
except torch.OutOfMemoryError:
    die("out of device memory; lower batch_size or pick a smaller preset")
except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; the rows above are what was measured
    interrupted("the rows above were measured, the rest not")
print(f"bench wall_s={time.perf_counter() - t0:.0f}")
