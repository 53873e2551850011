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

$ python bench.py                                   # the device's default shapes: GPT-2 small on cuda
$ python bench.py --device=cpu --new_tokens=32      # any setting below as --key=value
"""

import math
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext

import torch
from tqdm import tqdm

from adaponder import AdaPonderConfig, AdaPonderLM, device_peak_flops

# -----------------------------------------------------------------------------
# settings: the device picks a preset of shapes; any setting can be overridden with --key=value

DEFAULTS = dict(
    device='cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu',
    preset='',  # 'gpt2' (the shapes, for a GPU) or 'small' (a few minutes on a CPU); '': by device
    n_ponder=3,  # K of the pondering models: K+1 passes per token
    fixed_mean_depth=2.0,  # controlled halting: mean passes per token, out of K+1
    fixed_depth_dist='uniform',  # and how the depths spread around it ('uniform' or 'geometric')
    seed=1337,  # controlled halting draws depths from torch's RNG: reseeding repeats them exactly
    peak_tflops=0.0,  # peak of the device for MFU; 0: look a CUDA GPU up in adaponder.PEAK_BF16_TFLOPS
)
PRESETS = {
    'gpt2': dict(  # GPT-2 small, the shape nanoGPT's MFU is known at
        n_layer=12, n_head=12, n_embd=768, vocab_size=50304, block_size=1024,
        batch_size=8, warmup=5, iters=20,  # training: batch_size x block_size tokens per step
        decode_batch_sizes=(1, 16), prompt_len=256, new_tokens=256, nocache_stride=1,
        prefill_len=1024, repeats=3),  # decoding and prefill: median of `repeats` timed runs
    'small': dict(  # a few minutes on a laptop CPU; the vocabulary stays real: its products cost most here
        n_layer=4, n_head=4, n_embd=256, vocab_size=50304, block_size=256,
        batch_size=1, warmup=1, iters=5,
        decode_batch_sizes=(1, 16), prompt_len=64, new_tokens=64, nocache_stride=8,
        prefill_len=256, repeats=3),
}
DTYPES = dict(float32=torch.float32, bfloat16=torch.bfloat16, float16=torch.float16)
COUNTS = ['n_layer', 'n_head', 'vocab_size', 'batch_size', 'iters', 'prompt_len', 'new_tokens', 'nocache_stride',
          'prefill_len', 'repeats']  # settings that must be at least 1


def device_defaults(device_type):
    """Settings that depend on the device: GPUs get the issue's shapes, bf16 autocast and torch.compile."""
    if device_type == 'cuda':
        bf16 = torch.cuda.is_bf16_supported()
        return dict(preset='gpt2', dtype='bfloat16' if bf16 else 'float16', compile=True)
    return dict(preset='small', dtype='float32', compile=False)  # cpu, mps: plain eager float32


def parse_args(argv):
    """--key=value against the defaults (device and preset first: they choose the others)."""
    given = {}
    for arg in argv:
        key, has_value, text = arg[2:].partition('=')
        if not arg.startswith('--') or not has_value:
            raise ValueError(f"bad argument {arg!r}; write settings as --key=value, e.g. --device=cpu")
        given[key] = text
    device = given.pop('device', DEFAULTS['device'])
    defaults = {**DEFAULTS, 'device': device, **device_defaults(torch.device(check_device(device)).type)}
    preset = given.pop('preset', '') or defaults['preset']
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    opt = {**defaults, **PRESETS[preset], 'preset': preset}
    for key, text in given.items():
        if key not in opt:
            raise ValueError(f"unknown setting --{key}; settings are: {', '.join(opt)}")
        opt[key] = convert(key, text, opt[key])
    check(opt)
    return opt


def convert(key, text, default):
    """The text of --key=text as the type of its default; '1,16' for a tuple of integers."""
    try:
        if isinstance(default, bool):
            return {'true': True, '1': True, 'false': False, '0': False}[text.lower()]
        if isinstance(default, tuple):
            return tuple(int(t) for t in text.split(','))
        return type(default)(text)
    except (KeyError, ValueError):
        raise ValueError(f"--{key}={text} is not like its default {default!r}; e.g. --{key}={default}") from None


def check_device(name):
    try:
        kind = torch.device(name).type
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:1 or mps") from None
    if not dict(cuda=torch.cuda.is_available, mps=torch.backends.mps.is_available).get(kind, lambda: True)():
        raise ValueError(f"device {name} is not available on this machine; pass --device=cpu")
    return name


def check(opt):
    K = opt['n_ponder']
    checks = [(opt['dtype'] in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}"),
              (K >= 1, "--n_ponder must be >= 1 (the K=0 row is always run)"),
              (1 <= opt['fixed_mean_depth'] <= K + 1, f"--fixed_mean_depth must lie in [1, {K + 1}]"),
              (opt['n_embd'] % opt['n_head'] == 0, "--n_embd must be a multiple of --n_head"),
              (opt['prompt_len'] + opt['new_tokens'] <= opt['block_size'],
               "--prompt_len + --new_tokens must fit --block_size"),
              (opt['prefill_len'] <= opt['block_size'], "--prefill_len must fit --block_size"),
              (opt['fixed_depth_dist'] in ('uniform', 'geometric'),
               "--fixed_depth_dist must be uniform or geometric"),
              (opt['warmup'] >= 0 and min(opt[k] for k in COUNTS) >= 1 and min(opt['decode_batch_sizes']) >= 1,
               f"--warmup must be >= 0, --decode_batch_sizes and --{', --'.join(COUNTS)} >= 1")]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{message}; fix the setting")


# -----------------------------------------------------------------------------
# timing


def sync(device):
    """Wait for the device: GPU calls return before the work is done."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    elif device.type == 'mps':
        torch.mps.synchronize()


def seconds(fns, device, repeats):
    """Median wall time of each function in fns (name: function) over `repeats` rounds, and each one's
    last result. The functions take turns within a round, so a busy neighbour or a change of clock
    slows them alike: the ratios between them hold even when the absolute times wander."""
    times, outs = {name: [] for name in fns}, {}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            outs[name] = fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items() if t}, outs


def make_model(opt, device, n_ponder, halting):
    torch.manual_seed(opt['seed'])  # same seed, same shapes: the K=3 models share their backbone weights
    cfg = AdaPonderConfig(**{k: opt[k] for k in ('n_layer', 'n_head', 'n_embd', 'vocab_size', 'block_size')},
                          n_ponder=n_ponder, halting=halting, fixed_depth_dist=opt['fixed_depth_dist'],
                          fixed_mean_depth=opt['fixed_mean_depth'])
    return AdaPonderLM(cfg).to(device)


def random_tokens(opt, device, B, T):
    g = torch.Generator().manual_seed(opt['seed'])
    return torch.randint(opt['vocab_size'], (B, T), generator=g).to(device)


# -----------------------------------------------------------------------------
# 1) training step


def train_step(opt, device, autocast, n_ponder, halting):
    """A function running one whole training step of a new model, and the model's FLOPs per token."""
    model = make_model(opt, device, n_ponder, halting)
    optimizer = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device.type)
    forward = torch.compile(model) if opt['compile'] else model
    x = random_tokens(opt, device, opt['batch_size'], opt['block_size'])
    y = x.roll(-1, dims=1)  # the targets' values do not change the step's cost

    def step():  # no GradScaler for float16: a bench times steps, it does not need them to converge
        with autocast:
            loss = forward(x, y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step, model.training_flops_per_token()


def bench_train(opt, device, autocast):
    """Tokens/s of each training mode, and the model FLOP/s each achieves (for MFU). The models live
    side by side and take turns, step by step."""
    K, steps, flops = opt['n_ponder'], {}, {}
    for mode, n_ponder, halting in [('K0', 0, 'none'), (f'K{K}-none', K, 'none'), (f'K{K}-learned', K, 'learned')]:
        steps[mode], flops[mode] = train_step(opt, device, autocast, n_ponder, halting)
    seconds(steps, device, opt['warmup'])  # compilation, allocator, kernel choice
    dt, _ = seconds(steps, device, opt['iters'])
    tok_s = {mode: opt['batch_size'] * opt['block_size'] / dt[mode] for mode in steps}
    return tok_s, {mode: flops[mode] * tok_s[mode] for mode in steps}


# -----------------------------------------------------------------------------
# 2) decoding and 3) prefill, all with one K=3 model whose halting rule is switched per run


def run_generate(model, opt, prompt, halting):
    """model.generate (greedy), the prompt's prefill included: that is what a user waits for."""
    model.config.halting = halting
    torch.manual_seed(opt['seed'])  # 'fixed' draws every token's depth from the RNG: same draws each repeat
    return model.generate(prompt, opt['new_tokens'], temperature=0)


def nocache_seconds(model, opt, device, tokens):
    """PonderLM's generate: no cache, each new token reruns all K+1 passes over the whole prefix. The
    cost grows with the prefix, so timing every nocache_stride-th step, weighted by the steps it stands
    for, estimates the whole loop (slightly low: each timed step is the shortest of its group).
    tokens: (B, prompt_len + new_tokens), the cached run's output (greedy, so the same tokens)."""
    model.config.halting = 'none'
    P, N, stride = opt['prompt_len'], opt['new_tokens'], opt['nocache_stride']
    model(tokens[:, :P])  # warm up
    total = 0.0
    for j in range(0, N, stride):
        dt, _ = seconds(dict(step=lambda: model(tokens[:, :P + j]).logits[:, -1].argmax(-1)), device, 1)
        total += dt['step'] * min(stride, N - j)
    return total, math.ceil(N / stride)


@torch.no_grad()
def bench_decode(model, opt, device, autocast, B):
    """Seconds of (a) no cache, (b) cache at full depth, (c) cache with controlled halting, at batch B,
    and the depths (B, new_tokens) of (b) and (c)."""
    prompt = random_tokens(opt, device, B, opt['prompt_len'])
    runs = {halting: lambda h=halting: run_generate(model, opt, prompt, h) for halting in ('none', 'fixed')}
    with autocast:
        seconds({h: lambda h=h: run_generate(model, dict(opt, new_tokens=2), prompt, h) for h in runs}, device, 1)
        dt, outs = seconds(runs, device, opt['repeats'])
        nocache_s, steps_timed = nocache_seconds(model, opt, device, outs['none'][0])
    return dict(nocache=nocache_s, full=dt['none'], halting=dt['fixed'], steps_timed=steps_timed,
                full_depth=outs['none'][1], depth=outs['fixed'][1])


@torch.no_grad()
def bench_prefill(model, opt, device, autocast):
    """Seconds to prefill prefill_len tokens (batch 1) into a fresh cache at full depth and with controlled
    halting (only the active rows of each pass are computed), and the depths the halting run used."""
    prompt = random_tokens(opt, device, 1, opt['prefill_len'])

    def prefill(halting):
        model.config.halting = halting
        torch.manual_seed(opt['seed'])
        return model.step(prompt, model.new_cache(1, opt['prefill_len']))

    runs = {halting: lambda h=halting: prefill(h) for halting in ('none', 'fixed')}
    with autocast:
        seconds(runs, device, 1)  # warm up
        dt, outs = seconds(runs, device, opt['repeats'])
    return dt['none'], dt['fixed'], outs['fixed'].depth


# -----------------------------------------------------------------------------
# report


def depth_stats(model, depth):
    """Realised mean passes, the ideal speedup over full depth if time followed passes ((K+1)/passes),
    and the one the FLOPs model predicts (vocabulary products included)."""
    K1 = model.config.n_ponder + 1
    passes = depth.float().mean().item()
    hist = torch.bincount(depth.flatten().cpu(), minlength=K1 + 1)[1:].tolist()
    return passes, K1 / passes, 1 / model.flops_per_token(hist)['vs_full_depth']


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


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    if device.type == 'mps':
        return 'Apple MPS'
    cpu = platform.processor() or platform.machine()
    return f"cpu {cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def print_header(opt, device, peak):
    K = opt['n_ponder']
    say = tqdm.write
    say(f"bench device={device} name=\"{device_name(device)}\" torch={torch.__version__} dtype={opt['dtype']} "
        f"compile={opt['compile']} peak_tflops={peak / 1e12 if peak else 'n/a'} preset={opt['preset']}")
    say(f"shape model n_layer={opt['n_layer']} n_head={opt['n_head']} n_embd={opt['n_embd']} "
        f"vocab_size={opt['vocab_size']} block_size={opt['block_size']} n_ponder={K} (K+1={K + 1} passes)")
    say(f"shape train batch_size={opt['batch_size']} seq_len={opt['block_size']} warmup={opt['warmup']} "
        f"iters={opt['iters']}")
    say(f"shape decode batch_sizes={','.join(map(str, opt['decode_batch_sizes']))} prompt_len={opt['prompt_len']} "
        f"new_tokens={opt['new_tokens']} repeats={opt['repeats']} sampling=greedy "
        f"nocache_stride={opt['nocache_stride']}")
    say(f"shape prefill batch_size=1 prefill_len={opt['prefill_len']} repeats={opt['repeats']}")
    say(f"shape halting=fixed fixed_depth_dist={opt['fixed_depth_dist']} "
        f"fixed_mean_depth={opt['fixed_mean_depth']} seed={opt['seed']}")


# -----------------------------------------------------------------------------


def report_train(opt, device, autocast, peak, say):
    """Section 1; returns its target lines."""
    tok_s, flop_s = bench_train(opt, device, autocast)
    base, none, learned = tok_s  # K0, K-none, K-learned
    for mode in tok_s:
        mfu = flop_s[mode] / peak if peak else None
        vs_none = f" vs_none={tok_s[mode] / tok_s[none]:.2f}" if mode == learned else ''
        say(f"train mode={mode} tok/s={tok_s[mode]:.0f} vs_K0={tok_s[mode] / tok_s[base]:.2f}{vs_none} "
            f"mfu={f'{mfu * 100:.1f}%' if mfu else 'n/a'}")
    return [target('train_mfu_K0', flop_s[base] / peak if peak else None, 0.45, percent=True),
            target('train_learned_vs_none', tok_s[learned] / tok_s[none], 0.90)]


def report_decode(model, opt, device, autocast, B, say):
    """Section 2 at batch B; returns its target lines."""
    r = bench_decode(model, opt, device, autocast, B)
    n, K1 = B * opt['new_tokens'], opt['n_ponder'] + 1
    passes_run = r['depth'].max(dim=0).values.float().mean().item()  # passes any row of the batch ran, per step
    say(f"decode batch={B} mode=nocache passes={K1:.2f} tok/s={n / r['nocache']:.1f} "
        f"steps_timed={r['steps_timed']}/{opt['new_tokens']}")
    say(f"decode batch={B} mode=cache-full passes={r['full_depth'].float().mean().item():.2f} "
        f"tok/s={n / r['full']:.1f} vs_nocache={r['nocache'] / r['full']:.2f}")
    line, frac = halting_line(f"decode batch={B}", model, r['depth'], r['halting'], r['full'],
                              f" passes_run={passes_run:.2f} tok/s={n / r['halting']:.1f}")
    say(line)
    targets = [target(f'decode_cache_vs_nocache_b{B}', r['nocache'] / r['full'], 10.0)] if B == 1 else []
    return targets + [target(f'decode_halting_b{B}_frac_of_ideal', frac, 0.80)]


def report_prefill(model, opt, device, autocast, say):
    """Section 3; returns its target line."""
    full_s, halt_s, depth = bench_prefill(model, opt, device, autocast)
    n = opt['prefill_len']
    say(f"prefill tokens={n} mode=cache-full passes={opt['n_ponder'] + 1:.2f} tok/s={n / full_s:.0f} "
        f"ms={full_s * 1e3:.1f}")
    line, frac = halting_line(f"prefill tokens={n}", model, depth, halt_s, full_s,
                              f" tok/s={n / halt_s:.0f} ms={halt_s * 1e3:.1f}")
    say(line)
    return [target('prefill_halting_frac_of_ideal', frac, 0.80)]


def run(opt):
    device, dtype = torch.device(opt['device']), DTYPES[opt['dtype']]
    autocast = nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 runs use the tensor cores too, as nanoGPT
        torch.backends.cudnn.allow_tf32 = True
    peak = opt['peak_tflops'] * 1e12 or device_peak_flops(device)
    print_header(opt, device, peak)
    say = tqdm.write  # prints above the progress bar
    bar = tqdm(total=2 + len(opt['decode_batch_sizes']), desc='bench', leave=False)  # train, decodes, prefill
    targets = report_train(opt, device, autocast, peak, say)
    bar.update()
    if device.type == 'cuda':
        torch.cuda.empty_cache()  # the training models are gone: give their memory back
    model = make_model(opt, device, opt['n_ponder'], 'none').eval()  # (a), (b), (c) share these weights
    for B in opt['decode_batch_sizes']:
        targets += report_decode(model, opt, device, autocast, B, say)
        bar.update()
    targets += report_prefill(model, opt, device, autocast, say)
    bar.close()
    say("targets (set for GPT-2 small on an H200 with compile; at other shapes and devices they are indicative)")
    for line in targets:
        say(line)


def main(argv=None):
    t0 = time.perf_counter()
    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    except torch.OutOfMemoryError:
        sys.exit("error: out of device memory; lower --batch_size or pick a smaller --preset")
    tqdm.write(f"bench wall_s={time.perf_counter() - t0:.0f}")


if __name__ == '__main__':
    main()
