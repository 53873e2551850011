"""Train an AdaPonderLM. With no arguments, the toy demo on a CPU (5 to 10 minutes): it prepares its
data, trains, saves out-toy/ckpt.pt and prints how many passes each class of token gets.
$ python train.py config/shakespeare_char.py --max_iters=2000  # settings: --help
$ python train.py --init_from=resume --max_iters=1000  # the toy demo, continued
$ torchrun --standalone --nproc_per_node=8 train.py config/pile_pythia70m.py
A resumed run takes the settings saved in its checkpoint, then those given again (but none that
would change its model or data). A trained ckpt.pt is never replaced; one run per out_dir."""
from configurator import check, configure, die, first_line, interrupted, or_die  # first: see there

import gc
import json
import math
import os
import signal
import time
from dataclasses import fields

import numpy as np
import torch
import torch.distributed as dist
from torch._dynamo.utils import counters
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from adaponder import AdaPonderConfig, AdaPonderLM, depth_histogram
from data.show import metrics_line
from pretrained import (PRESETS, check_init_from, check_resumable, class_lines, device_peak_flops,
                        from_pretrained, load_checkpoint, lock_out_dir, open_dataset, pick_device,
                        ranks_agree, read_tokens, save_checkpoint, saved_run, start_metrics,
                        why_diverged)

# -----------------------------------------------------------------------------
# default config values: the toy demo, 5 to 10 minutes at one thread on a 2-core CPU
# I/O
out_dir = 'out-toy'  # ckpt.pt and metrics.jsonl are written here
eval_interval = 100  # evaluate (and checkpoint) every this many iterations, and at the end
log_interval = 20  # print an `iter` line every this many iterations
eval_iters = 10  # batches per split for each loss estimate
eval_only = False  # evaluate once and exit (use with init_from='resume')
always_save_checkpoint = True  # save at every eval, not only when val_loss improves
init_from = 'scratch'  # 'scratch' | 'resume' (out_dir/ckpt.pt) | 'pythia-70m' or a GPT-NeoX dir
# data
data_dir = 'data'  # datasets live in data_dir/<dataset>/ (train.bin, val.bin, meta.json)
dataset = 'toy'  # 'toy' and 'hops' are made on the spot; others: python data/<dataset>/prepare.py
gradient_accumulation_steps = 1  # micro-batches per optimizer step, summed over all DDP ranks
batch_size = 32  # sequences per micro-batch (per rank)
block_size = 64  # training context in tokens
# model
model_preset = ''  # '' or a shape from pretrained.PRESETS ('pythia-70m', ...): sets the shape below
n_layer = 4  # transformer blocks
n_head = 4  # attention heads
n_embd = 128  # width
dropout = 0.0  # 0 for pretraining; try 0.1+ when a small dataset overfits
bias = True  # biases in Linear and LayerNorm layers, as in Pythia
# pondering
n_ponder = 3  # K: extra passes per token, K+1 passes in all
halting = 'learned'  # 'learned' (gates) | 'none' (always K+1, PonderLM) | 'random' depths
halt_threshold = 1e-4  # tau: a token halts once its gate value falls below it (the paper's 1e-4)
ponder_lambda = 0.1  # weight of the bottom-k gate loss
fixed_depth_dist = 'uniform'  # halting='random': 'uniform', 'geometric' or 'least_spread'...
fixed_mean_depth = 2.5  # ...with this mean number of passes (the iso-FLOPs baseline)
embed_scale = 1.0  # scales token and pondering embeddings (official PonderLM: sqrt(n_embd))
first_embed_mult = 1.0  # scales the first input embedding again (official PonderLM 410M+: K)
gate_bias_init = 3.0  # the gates' last bias at init: s = sigmoid(3) = 0.95, as if PonderLM
bottom_k_frac = 0.1  # the gate loss pushes down this share of the running gates (the paper's k)...
bottom_k_start = 0.2  # ...after cross-entropy alone (k = 0) for this fraction of max_iters, then a
bottom_k_end = 0.5  # linear ramp that reaches bottom_k_frac at this fraction of max_iters
gate_warmup_iters = 0  # first iterations train only the gates, the backbone frozen
one_pass_iters = 0  # first iterations run one pass per token (a plain model), then all K+1 passes
gate_lr_mult = 1.0  # the gates' learning rate is this times the rest's (new gates: > 1)
# adamw optimizer
learning_rate = 1e-3  # peak learning rate
max_iters = 500  # optimizer steps in all
weight_decay = 0.1  # on matrices and embeddings only
beta1 = 0.9
beta2 = 0.99  # 0.99 for small batches of tokens; 0.95 for large models and batches
grad_clip = 1.0  # clip the gradient norm at this value; 0.0 disables clipping
# learning rate schedule: linear warmup, then cosine decay to min_lr
decay_lr = True  # False: constant learning_rate
warmup_iters = 50  # linear warmup steps
lr_decay_iters = 0  # step where the cosine reaches min_lr; 0: max_iters
min_lr = 1e-4  # about learning_rate / 10
# system
device = 'auto'  # 'auto' (cuda > mps > cpu), or 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto' (bfloat16 if supported, float16 on older GPUs, else float32) or one
compile = False  # torch.compile the model: faster on GPUs, slow to start
seed = 1337  # seeds the model init and the batch sampler
peak_tflops = 0.0  # the device's peak for MFU; 0.0: look it up (known GPUs only)
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith('_') and
               isinstance(v, (int, float, bool, str))]  # what checkpoints keep: nothing else leaks
given = configure(globals())  # config files, then --key=value: the settings given for this run
MODEL_KEYS = {f.name for f in fields(AdaPonderConfig)} & set(config_keys) - {'block_size'}
THIS_RUN = {'init_from', 'out_dir', 'data_dir', 'device', 'dtype', 'compile', 'eval_only',
            'peak_tflops'}  # where and how this run goes, never from a checkpoint
if init_from == 'resume':  # the checkpoint's settings, then those given again, in one update
    saved, was = saved_run(os.path.join(out_dir, 'ckpt.pt'))  # none: loading the model says why
    if changed := [f"{k}={v!r} (the checkpoint's: {was[k]!r})" for k, v in sorted(given.items())
                   if k in MODEL_KEYS - {'bottom_k_frac'} | {'dataset', 'one_pass_iters'}
                   and v != was.get(k, v)]:
        die(f"a resumed run keeps its model and data, so it cannot honour {', '.join(changed)}; "
            "drop those settings, or train a new model in another --out_dir")
    globals().update({k: v for k, v in saved.items() if k in config_keys and k not in THIS_RUN},
                     **given)
elif model_preset in PRESETS:  # a named shape; shape keys given explicitly still win
    globals().update({k: v for k, v in PRESETS[model_preset].items() if k in config_keys}, **given)
check(globals(), {
    **dict.fromkeys(('batch_size', 'block_size'), 'integer [1, 1048576]'),
    **dict.fromkeys(('max_iters', 'eval_interval', 'eval_iters', 'log_interval',
                     'gradient_accumulation_steps'), 'integer [1, 1e15]'),
    **dict.fromkeys(('warmup_iters', 'lr_decay_iters', 'gate_warmup_iters', 'one_pass_iters'),
                    'integer [0, 1e15]'),
    **dict.fromkeys(('weight_decay', 'grad_clip', 'gate_lr_mult', 'peak_tflops'), '[0, inf)'),
    'learning_rate': '(0, inf)', 'min_lr': '[0, learning_rate]', 'seed': 'integer [0, 9.2e18)',
    **dict.fromkeys(('beta1', 'beta2'), '[0, 1)'), 'model_preset': ('', *PRESETS),
    **dict.fromkeys(('bottom_k_frac', 'bottom_k_end'), '[0, 1]'),
    'bottom_k_start': '[0, bottom_k_end]'})  # the ramp of k starts before it ends
if not out_dir:
    die("out_dir is empty; pass the folder for the checkpoint")
if eval_only and init_from == 'scratch':
    die("eval_only with init_from='scratch' would score random weights; pass --init_from=resume")
config = {k: globals()[k] for k in config_keys}  # what the checkpoint keeps of this run's settings
lr_decay_iters = lr_decay_iters or max_iters  # 0 stays in config: a longer resumed run decays later
# -----------------------------------------------------------------------------
# DDP (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE) and the device

ddp = 'RANK' in os.environ
rank, local_rank, world_size = 0, 0, 1  # one process, unless torchrun started several
if ddp:
    env = [os.environ.get(k, '') for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE')]
    if 'TORCHELASTIC_RUN_ID' not in os.environ or not all(v.isdigit() for v in env):
        die("RANK is set, but this process was not started by torchrun; unset RANK, or run "
            "torchrun --standalone --nproc_per_node=N train.py ...")
    rank, local_rank, world_size = map(int, env)
    if gradient_accumulation_steps % world_size:
        die(f"gradient_accumulation_steps={gradient_accumulation_steps} is not divisible by the "
            f"{world_size} processes; pass a multiple of {world_size}")
    gradient_accumulation_steps //= world_size  # each rank runs its share of the micro-batches
    if device in ('auto', 'cuda') and torch.cuda.is_available():
        device = f'cuda:{local_rank}'  # one GPU per process
        torch.cuda.set_device(device)
device, dtype, autocast = or_die(pick_device, device, dtype)
device_type = torch.device(device).type
if ddp:
    dist.init_process_group(backend='nccl' if device_type == 'cuda' else 'gloo')
master_process = rank == 0  # only rank 0 logs and writes
log = tqdm.write if master_process else (lambda line: None)  # lines above the progress bar
tokens_per_iter = gradient_accumulation_steps * world_size * batch_size * block_size
torch.manual_seed(seed + rank)  # DDP copies rank 0's initial weights; dropout masks differ per rank
scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')  # fp16 gradients underflow
# -----------------------------------------------------------------------------
# out_dir (one run at a time, a trained model never replaced), then the data (data/*/readme.md)

ckpt_path = os.path.join(out_dir, 'ckpt.pt')
metrics_path = os.path.join(out_dir, 'metrics.jsonl')  # every iter and eval line, for the curves
if master_process and not eval_only:  # eval_only writes nothing
    lock = or_die(lock_out_dir, out_dir)  # held until the process ends
if init_from != 'resume' and not eval_only and os.path.exists(ckpt_path):
    die(f"{ckpt_path} already holds a trained model; continue it with --init_from=resume, or pass "
        "another --out_dir (or delete it first to start over)")
data_path = os.path.join(data_dir, dataset)
if master_process:  # toy and hops are made on the spot, by rank 0
    or_die(open_dataset, data_path, make=True)
if ddp:
    dist.barrier()  # the other ranks wait for it
meta, how = or_die(open_dataset, data_path, block_size + 1)
vocab_size = meta['vocab_size']
if init_from not in ('scratch', 'resume') and meta.get('encoding') == 'gpt2':
    die(f"{init_from} reads GPT-NeoX tokens but {data_path} holds GPT-2 tokens; run python data/"
        "pile/prepare.py --encoding=neox --out_dir=data/pile_neox, pass --dataset=pile_neox")

def get_batch(split, generator):
    """This rank's share of a batch: x, y (batch_size, block_size), y shifted by one. Every rank
    draws the whole global batch from one generator, keeps its slice: rank 0's state resumes all."""
    # re-open the memmap each batch: a memmap kept open grows the process's memory without bound
    data = read_tokens(os.path.join(data_path, f'{split}.bin'))
    ix = torch.randint(len(data) - block_size, (world_size * batch_size,), generator=generator)
    ix = ix[rank * batch_size:(rank + 1) * batch_size]
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64)) for i in ix])
    if (top := y.max().item()) >= vocab_size:  # an id the embedding has no row for
        die(f"{data_path}/{split}.bin holds token id {top}, outside the {vocab_size} tokens of its "
            f"meta.json; prepare the dataset again ({how}); {where_saved()}")
    if device_type == 'cuda':  # pinned memory lets the copy run asynchronously
        return (t.pin_memory().to(device, non_blocking=True) for t in (x, y))
    return x.to(device), y.to(device)

# -----------------------------------------------------------------------------
# model: from scratch, resumed from out_dir/ckpt.pt, or a pretrained GPT-NeoX model

iter_num, best_val_loss, checkpoint, saved_step = 0, float('inf'), None, None
if init_from == 'scratch':
    model = or_die(lambda: AdaPonderLM(AdaPonderConfig(
        **{k: config[k] for k in MODEL_KEYS}, block_size=block_size, vocab_size=vocab_size)))
elif init_from == 'resume':  # the model as saved, its shape and pondering settings too
    model, checkpoint = or_die(load_checkpoint, ckpt_path, device)
    or_die(check_resumable, checkpoint, ckpt_path, math.inf if eval_only else max_iters, data_path)
    iter_num = saved_step = checkpoint['iter_num']
    best_val_loss = checkpoint['best_val_loss']
else:  # continued pretraining: the backbone's weights, new gates, the settings given here
    or_die(check_init_from, init_from)
    model = or_die(from_pretrained, init_from, **{k: given[k] for k in MODEL_KEYS & set(given)})
if model.config.vocab_size < vocab_size or block_size > model.config.block_size:
    die(f"the model's vocab_size {model.config.vocab_size} does not fit the {vocab_size} tokens of "
        f"{data_path}/meta.json; use a model of this vocabulary" if model.config.vocab_size <
        vocab_size else f"block_size {block_size} is longer than the model's context "
        f"{model.config.block_size}; pass --block_size={model.config.block_size} or less")
if gate_warmup_iters and model.config.halting != 'learned':
    die(f"gate_warmup_iters needs learned gates, but halting is {model.config.halting!r}; pass "
        "--gate_warmup_iters=0 or --halting=learned")
model.to(device)
raw_model = model  # the plain module: for FLOPs, scoring and saving, under compile and DDP alike
# -----------------------------------------------------------------------------
# optimizer, compile, DDP

# AdamW, weight decay on matrices and embeddings only; the gates may learn faster (gate_lr_mult)
groups = {}  # (decays, is a gate): parameters, in the order checkpoints keep
for name, p in model.named_parameters():
    groups.setdefault((p.dim() >= 2, name.startswith('gates.')), []).append(p)
optimizer = torch.optim.AdamW(
    [dict(params=params, weight_decay=weight_decay * decays, lr_mult=gate_lr_mult if gate else 1.0)
     for (decays, gate), params in groups.items()],
    lr=learning_rate, betas=(beta1, beta2), fused=device_type == 'cuda')
batch_gen = torch.Generator().manual_seed(seed)  # the training batches; checkpoints keep its state
if checkpoint is not None:
    optimizer.load_state_dict(checkpoint['optimizer'])
    if scaler.is_enabled() and checkpoint.get('scaler'):
        scaler.load_state_dict(checkpoint['scaler'])
    batch_gen.set_state(checkpoint['rng']['batches'])  # the same on every rank: one stream
    if master_process:  # exactly the dropout masks of an uninterrupted run
        torch.set_rng_state(checkpoint['rng']['torch'])
        if 'cuda' in checkpoint['rng'] and device_type == 'cuda':
            torch.cuda.set_rng_state(checkpoint['rng']['cuda'])
    else:  # other ranks just move on to fresh masks
        torch.manual_seed(seed + rank + iter_num)
    checkpoint = None  # free the memory
if compile:
    log("compiling the model... (takes a minute)")
    model = torch.compile(model)
if ddp:  # each gate scales an update, so every parameter has a gradient, but while
    # one_pass_iters runs one pass the gates have none: then DDP must look for unused ones
    model = DDP(model, device_ids=[local_rank] if device_type == 'cuda' else None,
                find_unused_parameters=one_pass_iters > iter_num)
# -----------------------------------------------------------------------------
# schedules, evaluation, checkpoints and the metrics file

def get_lr(it):  # linear warmup for warmup_iters, then cosine decay to min_lr at lr_decay_iters
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)

def get_bottom_k(it):  # k = 0 first (cross-entropy only: passes learn to help), then a linear ramp
    start, end = bottom_k_start * max_iters, bottom_k_end * max_iters
    return 0.0 if it < start else bottom_k_frac if it >= end else \
        bottom_k_frac * (it - start) / (end - start)

@torch.no_grad()
def estimate_loss():
    """Mean cross-entropy on eval_iters batches of each split, and the depths on val: the same
    batches each time (a fixed seed), in a forked RNG that leaves training's numbers alone."""
    losses, hist = {}, torch.zeros(raw_model.config.n_ponder + 1)
    generator = torch.Generator().manual_seed(seed + 1)
    model.eval()
    with torch.random.fork_rng(devices=[device] if device_type == 'cuda' else []):
        for split in ('train', 'val'):
            total = 0.0
            for _ in range(eval_iters):
                X, Y = get_batch(split, generator)
                with autocast:
                    out = model(X, Y, bottom_k_frac=torch.zeros((), device=device))  # k = 0
                total += out.ce.item()
                if split == 'val':
                    hist += torch.tensor(depth_histogram(out.depth, len(hist)))
            losses[split] = total / eval_iters
    model.train()
    return losses, hist

def where_saved():  # the last good checkpoint, for the lines that end a run early (the bar
    bar.close()  # closed first: such a line starts on a line of its own)
    return "no checkpoint was saved" if saved_step is None else f"the last checkpoint is " \
        f"{ckpt_path}, step {saved_step}, kept as it was; continue with --init_from=resume"

def save():  # the checkpoint holds the whole model, K+1 passes, even while one_pass_iters runs one
    global saved_step
    rng = dict(batches=batch_gen.get_state(), torch=torch.get_rng_state())  # for an exact resume
    if device_type == 'cuda':
        rng['cuda'] = torch.cuda.get_rng_state()
    try:
        save_checkpoint(ckpt_path, raw_model, optimizer=optimizer.state_dict(), rng=rng,
                        scaler=scaler.state_dict(), iter_num=iter_num, best_val_loss=best_val_loss,
                        config=config, dataset=dataset, vocab_size=vocab_size)
    except (OSError, RuntimeError) as e:  # a full disk: torch's zip writer raises RuntimeError
        die(f"could not write {ckpt_path} ({first_line(e)}); {where_saved()}")
    saved_step = iter_num

def log_metrics(kind, **metrics):  # `kind step=N key=value ...`; the same numbers to metrics.jsonl
    metrics = {'step': iter_num, **{k.replace('tok_s', 'tok/s'): v for k, v in metrics.items()}}
    log(metrics_line(kind, metrics))
    if master_process and not eval_only:
        try:
            with open(metrics_path, 'a') as f:
                f.write(json.dumps(dict(kind=kind, **metrics)) + '\n')
        except OSError as e:
            die(f"could not write {metrics_path} ({e.strerror}); {where_saved()}")

def stop_if_diverged():  # a nan or inf loss ends the run on every rank, before anything is saved
    bad = first_bad_step.clone()
    if ddp:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if (step := int(bad.item())) >= 0:
        die(f"the training loss became nan or inf at step {step}; {where_saved()}. "
            + why_diverged(dtype, grad_clip, learning_rate, gate_lr_mult))

def on_signal(signum, frame):  # Ctrl-C, SIGTERM: the step in hand (and its checkpoint) first; a
    # second one, or any under DDP (whose ranks must stop together), ends the run at once
    global stop_signal
    if stop_signal or ddp:
        interrupted(f"at step {iter_num}; {where_saved()}", 128 + signum)
    stop_signal = signum

# -----------------------------------------------------------------------------
# training loop

n_params = sum(p.numel() for name, p in raw_model.named_parameters()
               if not name.startswith(('wte', 'lm_head')))
log(f"{n_params / 1e6:.2f}M non-embedding parameters, {tokens_per_iter:,} tokens per iteration, "
    f"device {device}, dtype {dtype}, world size {world_size}")
if master_process and not eval_only:  # a resumed run's rows up to its step, a new run's none
    if garbled := or_die(start_metrics, metrics_path, iter_num if init_from == 'resume' else None):
        log(f"dropped {garbled} unreadable line{'s' * (garbled > 1)} of {metrics_path}")
start_iter, stop_signal = iter_num, None
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
first_bad_step = torch.tensor(-1, device=device)  # the first step with a non-finite loss, if any
window_tokens, window_start = 0, time.time()  # throughput since the last eval
bar = tqdm(total=max_iters, initial=iter_num, desc='train', disable=not master_process,
           dynamic_ncols=True)
while True:
    plain = iter_num < one_pass_iters  # a plain model, one pass per token: eager, not 2 more graphs
    raw_model.set_inference(n_ponder=0 if plain else raw_model.trained_K)
    torch.compiler.set_stance('force_eager' if plain else 'default')
    if iter_num % eval_interval == 0 or iter_num == max_iters or eval_only:
        if device_type == 'cuda':
            torch.cuda.synchronize()  # queued GPU work belongs to the throughput window
        tok_s = window_tokens / (time.time() - window_start)
        stop_if_diverged()  # before evaluating and saving
        if iter_num > start_iter or init_from != 'resume' or eval_only:  # not again on resume
            losses, hist = estimate_loss()
            flops = raw_model.flops_per_token(hist.tolist(), context=block_size)
            peak = (peak_tflops * 1e12 or device_peak_flops(device) or 0) * world_size
            ran = 3 * raw_model.flops_per_token(hist.tolist())['total'] * tok_s  # 3: + backward
            log_metrics('eval', train_loss=losses['train'], val_loss=losses['val'],
                        passes=flops['mean_depth'], depth_hist=(hist / hist.sum()).tolist(),
                        flops_vs_full=flops['vs_full_depth'], tok_s=tok_s or None,
                        mfu=ran / peak if peak and tok_s else None)
            improved = losses['val'] < best_val_loss
            best_val_loss = min(best_val_loss, losses['val'])
            if master_process and iter_num > start_iter and (
                    improved or always_save_checkpoint or saved_step is None):  # a run keeps one
                save()
        window_tokens, window_start = 0, time.time()
    if iter_num >= max_iters or eval_only:
        break
    if stop_signal:  # Ctrl-C or SIGTERM: the step in hand, and its checkpoint, came first
        interrupted(f"at step {iter_num}; {where_saved()}", 128 + stop_signal)

    lr, k = get_lr(iter_num), get_bottom_k(iter_num)
    for group in optimizer.param_groups:
        group['lr'] = lr * group['lr_mult']
    t0 = time.time()
    for micro_step in range(gradient_accumulation_steps):
        X, Y = get_batch('train', batch_gen)  # fetched when used: a checkpoint's generator is exact
        if ddp:  # all-reduce the gradients only on the last micro-step
            model.require_backward_grad_sync = micro_step == gradient_accumulation_steps - 1
        with autocast:  # k as a tensor: torch.compile would recompile for each new float
            out = model(X, Y, bottom_k_frac=torch.tensor(k, device=device))
            loss = out.loss / gradient_accumulation_steps  # the mean over micro-batches
        scaler.scale(loss).backward()
        # the first step whose loss is nan or inf, without waiting for the GPU to say so now
        first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(out.ce), iter_num + 1,
                                     first_bad_step)
    if iter_num < gate_warmup_iters:  # only the gates learn: AdamW skips a .grad of None entirely,
        for name, p in raw_model.named_parameters():  # no update and no weight decay (zeros would)
            p.grad = p.grad if name.startswith('gates.') else None
    if grad_clip > 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    iter_num += 1
    bar.update(1)
    window_tokens += tokens_per_iter
    if iter_num == start_iter + 1:  # the first iteration warms up (and compiles): not counted
        window_tokens, window_start = 0, time.time()
    if iter_num % log_interval == 0:  # .item() waits for the GPU: not every step
        stop_if_diverged()
        log_metrics('iter', loss=out.ce.item(), gate_loss=out.gate_loss.item(),
                    passes=out.depth.float().mean().item(), k=k, lr=lr,
                    ms=1000 * (time.time() - t0))
bar.close()
if compile:  # one graph for training, one for evaluation, whatever the halting masks
    log(f"compile graphs={counters['stats']['unique_graphs']} "
        f"recompiles={counters['frames']['ok'] - 1}")

if master_process and os.path.exists(os.path.join(data_path, 'val_class.bin')):
    with autocast:  # the toy dataset labels each token's difficulty: passes, loss, accuracy, share
        print(*class_lines(raw_model.eval(), data_path, block_size, meta['classes']), sep='\n')
if ddp:
    log(f"ddp ranks_agree={ranks_agree(raw_model)} world_size={world_size}")
    # DDP holds the process group from inside a reference cycle; left to interpreter shutdown,
    # gloo's threads die with it and abort the process (measured: 1 run in 3 of a small DDP script)
    del model
    gc.collect()
    dist.destroy_process_group()
