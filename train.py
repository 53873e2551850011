"""
Train an AdaPonderLM. With no arguments: the toy demo on a CPU (5 to 10 minutes), which prepares its data,
trains, saves out-toy/ckpt.pt and prints how many passes each class of token gets.

$ python train.py
$ python train.py config/shakespeare_char.py --max_iters=2000
$ python train.py config/toy.py --init_from=resume --max_iters=1000
$ torchrun --standalone --nproc_per_node=8 train.py config/pile_pythia70m.py

Settings are the globals below; a config file (plain Python assignments) and then --key=value arguments
override them, in order (--help lists them). A resumed run keeps the checkpoint's settings but those given again,
and refuses any that would change its model or dataset; a run from scratch never replaces a trained ckpt.pt.
The same script runs on cuda, mps and cpu, alone or under torchrun (DDP).
"""

import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import fields

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from adaponder import AdaPonderConfig, AdaPonderLM, depth_histogram
from configurator import check, configure, die
from pretrained import PRESETS, device_peak_flops, from_pretrained, load_checkpoint, pick_device, save_checkpoint

# -----------------------------------------------------------------------------
# default config values: the toy demo, 5 to 10 minutes at one thread on a 2-core CPU (longer if it is busy)
# I/O
out_dir = 'out-toy'  # ckpt.pt is written here
eval_interval = 100  # evaluate (and checkpoint) every this many iterations, and at the end
log_interval = 20  # print an `iter` line every this many iterations
eval_iters = 10  # batches per split for each loss estimate
eval_only = False  # evaluate once and exit (use with init_from='resume')
always_save_checkpoint = True  # save at every eval, not only when val_loss improves
init_from = 'scratch'  # 'scratch' | 'resume' (out_dir/ckpt.pt) | a Pythia name like 'pythia-70m' or a local dir
# data
data_dir = 'data'  # datasets live in data_dir/<dataset>/ (train.bin, val.bin, meta.json)
dataset = 'toy'  # 'toy' is made on the spot; others need python data/<dataset>/prepare.py first
gradient_accumulation_steps = 1  # micro-batches per optimizer step, summed over all DDP ranks
batch_size = 32  # sequences per micro-batch (per rank)
block_size = 64  # training context in tokens
# model
model_preset = ''  # '' or a shape from pretrained.PRESETS ('pythia-70m', ...): it sets the shape below
n_layer = 4  # transformer blocks
n_head = 4  # attention heads
n_embd = 128  # width
dropout = 0.0  # 0 for pretraining; try 0.1+ when a small dataset overfits
bias = True  # biases in Linear and LayerNorm layers, as in Pythia
# pondering
n_ponder = 3  # K: extra passes per token, K+1 passes in all
halting = 'learned'  # 'learned' (AdaPonderLM gates) | 'none' (PonderLM: always K+1 passes) | 'fixed' (random depths)
halt_threshold = 1e-4  # tau: a token halts once its gate value falls below it (the paper's 1e-4)
ponder_lambda = 0.1  # weight of the bottom-k gate loss
fixed_depth_dist = 'uniform'  # halting='fixed': 'uniform', 'geometric' or 'least_spread' random depths...
fixed_mean_depth = 2.5  # ...with this mean number of passes (the iso-FLOPs baseline)
embed_scale = 1.0  # scales token and pondering embeddings (official PonderLM: sqrt(n_embd))
first_embed_mult = 1.0  # scales the first input embedding once more (official PonderLM from 410M up: K)
gate_bias_init = 3.0  # the gates' last bias at init: s = sigmoid(3) = 0.95, so training starts near PonderLM
bottom_k_frac = 0.1  # the gate loss pushes down this share of the running gates (the paper's k), at the end of...
bottom_k_start = 0.2  # ...a schedule: cross-entropy only (k = 0) for this fraction of max_iters, then a linear
bottom_k_end = 0.5  # ramp that reaches bottom_k_frac at this fraction of max_iters
gate_warmup_iters = 0  # first iterations train only the gates, backbone frozen (continued pretraining)
one_pass_iters = 0  # first iterations run one pass per token (a plain model), then all K+1 passes begin
gate_lr_mult = 1.0  # the gates' learning rate is this times the rest's (new gates on a pretrained backbone: > 1)
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
dtype = 'auto'  # 'auto' (bfloat16 where supported, float16 on older GPUs, float32 on cpu/mps) or one of those
compile = False  # torch.compile the model: faster on GPUs, slow to start
seed = 1337  # seeds the model init and the batch sampler
peak_tflops = 0.0  # the device's peak for MFU; 0.0: look it up (known GPUs only)
# -----------------------------------------------------------------------------
# overrides: config files, then --key=value arguments (configurator.py); a model_preset sets the shape
explicit = configure(globals())  # the keys a config file or the command line set
requested = set(explicit)  # those and the shape a model_preset given here sets
# A preset replaces the shape defaults; shape keys set explicitly (config file or command line) still win,
# e.g. model_preset='pythia-70m' with block_size=1024. vocab_size always comes from the dataset.
if model_preset:
    if model_preset not in PRESETS:
        die(f"unknown model_preset {model_preset!r}; choose one of {', '.join(PRESETS)} or ''")
    for key, value in PRESETS[model_preset].items():
        if key in globals() and key not in explicit:
            globals()[key] = value
            requested.add(key)
MODEL_KEYS = {f.name for f in fields(AdaPonderConfig)} & set(globals()) - {'block_size', 'bottom_k_frac'}
if init_from == 'resume':  # a resumed run goes on as it was: the settings not given again are the checkpoint's
    try:  # mmap: only what is read here is loaded
        saved = torch.load(os.path.join(out_dir, 'ckpt.pt'), map_location='cpu', weights_only=True, mmap=True)
        saved = dict(saved['config'], **saved['model_args'], dataset=saved['dataset'], iter_num=saved['iter_num'])
    except Exception:  # no checkpoint, or not one of ours: loading the model below says which, in one line
        saved = {}
    # ...and its model and data cannot change: a setting that would change them is refused, not ignored
    changed = [f"{k}={globals()[k]!r} (the checkpoint's: {saved[k]!r})"
               for k in sorted(requested & (MODEL_KEYS | {'dataset'})) if k in saved and globals()[k] != saved[k]]
    if 'one_pass_iters' in requested and one_pass_iters > saved.get('iter_num', 0) >= saved.get('one_pass_iters', 0):
        changed.append(f"one_pass_iters={one_pass_iters} (this model ponders since step "
                       f"{saved.get('one_pass_iters', 0)}: it would go back to one pass)")
    if changed:
        die(f"a resumed run keeps its model and data, so it cannot honour {', '.join(changed)}; drop "
            f"{'this setting' if len(changed) == 1 else 'these'}, or train a new model in another --out_dir")
    this_run = {'init_from', 'out_dir', 'data_dir', 'device', 'dtype', 'compile', 'eval_only', 'peak_tflops'}
    for key in set(saved) - requested - this_run:
        if key in globals():  # the model's own record of its shape, and the run's settings
            globals()[key] = saved[key]
config = {k: v for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, str))}
# the training settings are checked here, the model's by AdaPonderConfig: one line naming the setting and range
check(globals(), **dict.fromkeys(('batch_size', 'block_size', 'max_iters', 'eval_interval', 'eval_iters',
                                  'log_interval', 'gradient_accumulation_steps'), 'integer [1, inf)'),
      **dict.fromkeys(('warmup_iters', 'lr_decay_iters', 'gate_warmup_iters', 'one_pass_iters'), 'integer [0, inf)'),
      learning_rate='(0, inf)', min_lr='[0, inf)', weight_decay='[0, inf)', beta1='[0, 1)', beta2='[0, 1)',
      grad_clip='[0, inf)', gate_lr_mult='[0, inf)', peak_tflops='[0, inf)', bottom_k_frac='[0, 1]',
      bottom_k_start='[0, 1]', bottom_k_end='[0, 1]')
if min_lr > learning_rate:
    die(f"min_lr={min_lr:g} is above learning_rate={learning_rate:g}; the cosine decays from learning_rate down to "
        "min_lr, so lower min_lr")
if bottom_k_start > bottom_k_end:
    die(f"bottom_k_start={bottom_k_start} is after bottom_k_end={bottom_k_end}; the ramp of k needs start <= end")
if not out_dir:
    die("out_dir is empty; pass the folder for the checkpoint, e.g. --out_dir=out-toy")
if halting == 'fixed' and not 1 <= fixed_mean_depth <= n_ponder + 1:
    die(f"fixed_mean_depth={fixed_mean_depth} must be in [1, {n_ponder + 1}]: a token runs 1 to K+1 = "
        f"{n_ponder + 1} passes; lower it or raise n_ponder")
if eval_only and init_from == 'scratch':
    die("eval_only scores a trained model, but init_from='scratch' would score random weights; pass "
        "--init_from=resume (the model in out_dir) or a pretrained model's name")
lr_decay_iters = lr_decay_iters or max_iters  # config keeps 0: a resumed run with more max_iters decays to them
# -----------------------------------------------------------------------------
# devices and DDP: torchrun sets RANK, LOCAL_RANK and WORLD_SIZE

ddp = int(os.environ.get('RANK', -1)) != -1
if ddp:
    rank, local_rank, world_size = (int(os.environ[k]) for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'))
    if device in ('auto', 'cuda') and torch.cuda.is_available():
        device = f'cuda:{local_rank}'  # one GPU per process
        torch.cuda.set_device(device)
    if gradient_accumulation_steps % world_size:
        die(f"gradient_accumulation_steps={gradient_accumulation_steps} is not divisible by the "
            f"{world_size} processes; pass a multiple, e.g. --gradient_accumulation_steps={world_size}")
    gradient_accumulation_steps //= world_size  # each rank runs its share of the micro-batches
else:
    rank, local_rank, world_size = 0, 0, 1
try:
    device, dtype, ctx = pick_device(device, dtype)
except ValueError as e:
    die(e)


def on_interrupt(signum, frame):
    """Ctrl-C. In the training loop the step in hand, and a checkpoint it saves, finish first; before it, at a
    second Ctrl-C, or under DDP (whose ranks must stop together) the run ends at once. Either way one line."""
    global interrupted
    if interrupted or not training or ddp:
        stop_interrupted()
    interrupted = True


def stop_interrupted():
    where = last_checkpoint() if 'saved_step' in globals() else 'no checkpoint was saved'
    if rank == 0:  # under torchrun every rank gets the Ctrl-C
        resume = '; continue with --init_from=resume' if globals().get('saved_step') is not None else ''
        print(f"interrupted at step {globals().get('iter_num', 0)}; {where}{resume}", file=sys.stderr)
    raise SystemExit(130)  # the shell's status for Ctrl-C


training = interrupted = False
signal.signal(signal.SIGINT, on_interrupt)
device_type = torch.device(device).type
if ddp:
    dist.init_process_group(backend='nccl' if device_type == 'cuda' else 'gloo')
master_process = rank == 0  # only rank 0 logs and writes checkpoints
log = tqdm.write if master_process else (lambda line: None)  # lines above the progress bar, not through it
tokens_per_iter = gradient_accumulation_steps * world_size * batch_size * block_size
torch.manual_seed(seed + rank)  # DDP copies rank 0's initial weights; dropout masks differ per rank
scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')  # fp16 gradients underflow; bf16's do not
ckpt_path = os.path.join(out_dir, 'ckpt.pt')
metrics_path = os.path.join(out_dir, 'metrics.jsonl')  # every iter and eval line's numbers, for the curves
if init_from != 'resume' and not eval_only and os.path.exists(ckpt_path):  # a trained model is never replaced
    die(f"{ckpt_path} already holds a trained model; continue it with --init_from=resume, or pass another "
        "--out_dir (or delete it first to start over)")
if master_process and not eval_only:  # eval_only writes nothing
    try:  # now, not at the first checkpoint: a file, a read-only folder
        os.makedirs(out_dir, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as e:
        reason = 'a file, not a folder' if os.path.isfile(out_dir) else e.strerror
        die(f"cannot write into out_dir={out_dir} ({reason}); pass a folder you can write")
# -----------------------------------------------------------------------------
# data: uint16 token ids in train.bin / val.bin, the vocabulary size in meta.json

data_path = os.path.join(data_dir, dataset)
script = os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', dataset, 'prepare.py'))
extra = '' if data_dir == 'data' else f' --out_dir={data_path}'
how = f"run python {script}{extra} first" if os.path.exists(script) else "prepare it first (see data/*/readme.md)"
if not os.path.exists(os.path.join(data_path, 'train.bin')):
    if dataset not in ('toy', 'hops'):
        die(f"{data_path}/train.bin not found; {how}")
    if master_process:  # the generated datasets are made on the spot, in seconds
        if subprocess.run([sys.executable, script, f'--out_dir={data_path}']).returncode != 0:
            die(f"could not prepare the {dataset} dataset in {data_path}; run python {script} to see why")
    if ddp:
        dist.barrier()  # the other ranks wait for rank 0 to write it
for split in ('train', 'val'):
    path = os.path.join(data_path, f'{split}.bin')
    if not os.path.exists(path):
        die(f"{path} not found; {how}")
    n_tokens = os.path.getsize(path) // 2
    if n_tokens <= block_size:
        die(f"{path} holds {n_tokens} tokens, fewer than block_size + 1 = {block_size + 1}; "
            f"prepare more data or pass a smaller --block_size")
try:
    with open(os.path.join(data_path, 'meta.json')) as f:
        meta = json.load(f)
    vocab_size = meta['vocab_size']
except (OSError, ValueError, KeyError) as e:
    die(f"cannot read vocab_size from {data_path}/meta.json ({type(e).__name__}: {e}); {how}")
if init_from not in ('scratch', 'resume') and meta.get('encoding') == 'gpt2':
    die(f"{init_from} reads GPT-NeoX tokens but {data_path} holds GPT-2 tokens; prepare the data with "
        "python data/pile/prepare.py --encoding=neox --out_dir=data/pile_neox and pass --dataset=pile_neox")


def get_batch(split, generator):
    """This rank's share of a batch: x, y (batch_size, block_size), y shifted by one token. Every rank
    draws the offsets of the whole global batch from the same generator and keeps its own slice, so the
    generator state saved by rank 0 resumes every rank exactly."""
    # re-open the memmap each batch: a memmap kept open grows the process's memory without bound
    data = np.memmap(os.path.join(data_path, f'{split}.bin'), dtype=np.uint16, mode='r')
    ix = torch.randint(len(data) - block_size, (world_size * batch_size,), generator=generator)
    ix = ix[rank * batch_size:(rank + 1) * batch_size]
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64)) for i in ix])
    if (top := max(x.max(), y.max()).item()) >= vocab_size:  # an id the embedding has no row for: not a crash inside
        progress.close()  # the line below on a line of its own
        die(f"{data_path}/{split}.bin holds token id {top}, outside the vocabulary of "
            f"{data_path}/meta.json ({vocab_size} tokens); prepare the dataset again")
    if device_type == 'cuda':  # pinned memory lets the copy run asynchronously
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# -----------------------------------------------------------------------------
# model: from scratch, resumed from out_dir/ckpt.pt, or from a pretrained Pythia checkpoint

iter_num, best_val_loss, checkpoint, saved_step = 0, float('inf'), None, None  # saved_step: of the last checkpoint
ponder_args = dict(n_ponder=n_ponder, halting=halting, halt_threshold=halt_threshold, ponder_lambda=ponder_lambda,
                   bottom_k_frac=bottom_k_frac, dropout=dropout, embed_scale=embed_scale,
                   first_embed_mult=first_embed_mult, gate_bias_init=gate_bias_init, fixed_depth_dist=fixed_depth_dist,
                   fixed_mean_depth=fixed_mean_depth)
try:
    if init_from == 'scratch':
        model = AdaPonderLM(AdaPonderConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                                            n_head=n_head, n_embd=n_embd, bias=bias, **ponder_args))
    elif init_from == 'resume':  # the shape and pondering settings are the checkpoint's
        model, checkpoint = load_checkpoint(ckpt_path, device)
        missing = {'optimizer', 'iter_num', 'best_val_loss', 'rng'} - set(checkpoint)
        if missing:
            die(f"{ckpt_path} lacks {', '.join(sorted(missing))}, so it cannot be resumed; "
                "train a new model in another --out_dir")
        iter_num, best_val_loss = checkpoint['iter_num'], checkpoint['best_val_loss']
        saved_step = iter_num
    else:  # continued pretraining: the backbone's weights (a PonderLM's pondering too), new gates, and the
        # settings this run set explicitly (a shape that differs from the checkpoint's is refused there); the
        # checkpoint or AdaPonderConfig's defaults decide the rest
        asked = (MODEL_KEYS | {'bottom_k_frac'}) & requested
        model = from_pretrained(init_from, **{k: globals()[k] for k in sorted(asked)})
except (FileNotFoundError, ValueError) as e:
    die(e)
# every id of the dataset needs a row; a model resumed on a character table has exactly its rows (BPE: padded)
if model.config.vocab_size < vocab_size or (checkpoint and 'itos' in meta and model.config.vocab_size != vocab_size):
    die(f"the model's vocab_size {model.config.vocab_size} does not fit the {vocab_size} tokens of "
        f"{data_path}/meta.json; use a checkpoint trained on this dataset's vocabulary, or its --data_dir")
if block_size > model.config.block_size:
    die(f"block_size {block_size} is longer than the model's context {model.config.block_size}; "
        f"pass --block_size={model.config.block_size} or less")
if gate_warmup_iters and model.config.halting != 'learned':
    die(f"gate_warmup_iters needs learned gates, but halting is {model.config.halting!r}; "
        "pass --gate_warmup_iters=0 or --halting=learned")
model.to(device)
raw_model = model  # the plain module: for FLOPs, scoring and saving, under compile and DDP alike
# -----------------------------------------------------------------------------
# optimizer, compile, DDP

# AdamW, with weight decay on matrices and embeddings only; the gates may learn faster (gate_lr_mult: new gates
# on a pretrained backbone must). Each group carries its lr_mult for the schedule, in the order checkpoints keep.
groups = {}  # (decays, is a gate): parameters
for name, p in model.named_parameters():
    groups.setdefault((p.dim() >= 2, name.startswith('gates.')), []).append(p)
groups = [dict(params=params, weight_decay=weight_decay if decays else 0.0, lr_mult=gate_lr_mult if is_gate else 1.0)
          for (decays, is_gate), params in groups.items()]
optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=(beta1, beta2), fused=device_type == 'cuda')
batch_gen = torch.Generator().manual_seed(seed)  # the training batches; its state goes into checkpoints
if checkpoint is not None:
    optimizer.load_state_dict(checkpoint['optimizer'])
    if scaler.is_enabled() and checkpoint.get('scaler'):
        scaler.load_state_dict(checkpoint['scaler'])
    batch_gen.set_state(checkpoint['rng']['batches'])  # the same on every rank: they share one stream
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
if ddp:
    # every parameter gets a gradient every step (each gate scales an update), so no
    # find_unused_parameters; gate warm-up drops the backbone's gradients after the all-reduce instead
    model = DDP(model, device_ids=[local_rank] if device_type == 'cuda' else None)
# -----------------------------------------------------------------------------
# schedules, evaluation, checkpointing


def get_lr(it):
    """Linear warmup for warmup_iters steps, then cosine decay to min_lr at lr_decay_iters."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    progress = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


def get_bottom_k(it):
    """The bottom-k schedule: cross-entropy only (k = 0) for the first bottom_k_start of training, so the
    passes learn to help before the gates are pushed to halt; then k ramps linearly to bottom_k_frac."""
    start, end = bottom_k_start * max_iters, bottom_k_end * max_iters
    if it < start:
        return 0.0
    if it >= end:
        return bottom_k_frac
    return bottom_k_frac * (it - start) / (end - start)


@torch.no_grad()
def estimate_loss():
    """Mean cross-entropy on eval_iters batches of each split, and the histogram of depths on val.
    The eval batches are the same every time (a fixed seed), so successive evals compare like with like,
    and forking the RNG keeps evaluation from shifting the training run's random numbers."""
    losses, hist = {}, torch.zeros(raw_model.config.n_ponder + 1)
    generator = torch.Generator().manual_seed(seed + 1)
    model.eval()
    with torch.random.fork_rng(devices=[device] if device_type == 'cuda' else []):
        for split in ('train', 'val'):
            total = 0.0
            for _ in range(eval_iters):
                X, Y = get_batch(split, generator)
                with ctx:
                    out = model(X, Y, bottom_k_frac=k_tensor(0.0))  # a tensor, as in training: one graph
                total += out.ce.item()
                if split == 'val':
                    hist += torch.tensor(depth_histogram(out.depth, len(hist)))
            losses[split] = total / eval_iters
    model.train()
    return losses, hist


def k_tensor(k):
    """The bottom-k fraction as a 0-d tensor: torch.compile guards on a Python float's value, and the
    schedule would recompile the model at every new value of k."""
    return torch.tensor(k, device=device)


def stop_if_diverged():
    """A nan or inf training loss ends the run before anything else is saved, so the last good checkpoint
    stays as it was. (.item() waits for the GPU: called only where the loop waits anyway.)"""
    step = int(first_bad_step.item())
    if step >= 0:  # the likeliest cause first: float16's narrow range, no clipping, then the learning rate
        cause = ("dtype=float16 likely overflowed: pass --dtype=bfloat16 (or float32)" if dtype == 'float16' else
                 "grad_clip=0 lets one bad batch blow up the weights: pass --grad_clip=1.0" if not grad_clip else
                 f"learning_rate={learning_rate:g} is likely too high: try --learning_rate={learning_rate / 3:.2g}" +
                 (f" or a lower --gate_lr_mult than {gate_lr_mult:g}" if gate_lr_mult > 1 else ''))
        die(f"the training loss became nan or inf at step {step}; {last_checkpoint()}. {cause}" +
            (", then --init_from=resume" if saved_step is not None else ''))


def last_checkpoint():
    """Where the last good checkpoint is, for the lines that end a run early; it closes the progress bar, so that
    such a line starts on a line of its own."""
    if 'progress' in globals():
        progress.close()
    return f"the last checkpoint is {ckpt_path}, step {saved_step}, kept as it was" if saved_step is not None else \
        "no checkpoint was saved"


def drop_backbone_grads():
    """Gate warm-up: only the gates learn. AdamW skips a parameter whose .grad is None entirely - no
    Adam update and no weight decay - so the backbone stays bit-for-bit frozen. (Zeroed gradients would
    not do: weight decay and Adam's momentum still move the weights.)"""
    for name, p in raw_model.named_parameters():
        if not name.startswith('gates.'):
            p.grad = None


def set_passes(it):
    """one_pass_iters: one pass per token (a plain model) before that iteration, all K+1 passes after. The task's
    single steps are learned first, before pondering feeds the model's predictions back into its input (from
    scratch that feedback slowed learning them: docs/results.md section 9). Training and evaluation both follow."""
    raw_model.set_inference(n_ponder=0 if it < one_pass_iters else raw_model.K)


def save():  # the checkpoint holds the whole model, K+1 passes, even while one_pass_iters runs one
    global saved_step
    rng = dict(batches=batch_gen.get_state(), torch=torch.get_rng_state())
    if device_type == 'cuda':
        rng['cuda'] = torch.cuda.get_rng_state()
    try:
        save_checkpoint(ckpt_path, raw_model, optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                        iter_num=iter_num, best_val_loss=best_val_loss, config=config, dataset=dataset, rng=rng)
    except (OSError, RuntimeError) as e:  # a full disk (torch's zip writer raises RuntimeError); the old one stays
        die(f"could not write {ckpt_path} ({(str(e).strip().splitlines() or [''])[0]}); {last_checkpoint()}. Free "
            f"some space, then {'--init_from=resume' if saved_step is not None else 'run it again'}")
    saved_step = iter_num


def eval_metrics(losses, hist, tok_s):
    share = hist / hist.sum()
    flops = raw_model.flops_per_token(hist.tolist(), context=block_size)['vs_full_depth']
    peak = peak_tflops * 1e12 or device_peak_flops(device)
    # forward and backward: 3x the forward; eager training computes only the passes that run, compiled training
    # every pass (training_context)
    ran = [0] * (len(hist) - 1) + [1] if compile else hist.tolist()
    mfu = 3 * raw_model.flops_per_token(ran)['total'] * tok_s / (peak * world_size) if peak and tok_s else None
    return {'step': iter_num, 'train_loss': losses['train'], 'val_loss': losses['val'],
            'passes': (share * torch.arange(1, len(hist) + 1)).sum().item(), 'depth_hist': share.tolist(),
            'flops_vs_full': flops, 'tok/s': tok_s or None, 'mfu': mfu or None}


# how each logged number is printed; metrics.jsonl holds the numbers as printed (mfu in percent)
METRIC_FORMATS = {'step': 'd', 'loss': '.4f', 'gate_loss': '.2e', 'passes': '.2f', 'k': '.3f', 'lr': '.2e',
                  'ms': '.0f', 'train_loss': '.4f', 'val_loss': '.4f', 'depth_hist': '.2f', 'flops_vs_full': '.2f',
                  'tok/s': '.0f', 'mfu': '.1%'}


def shown(value, spec):
    """(text, number): a logged value as printed, and the number that text shows. None is n/a (null)."""
    if value is None:
        return 'n/a', None
    if isinstance(value, list):
        pairs = [shown(v, spec) for v in value]
        return '[' + ','.join(text for text, _ in pairs) + ']', [number for _, number in pairs]
    text = f'{value:{spec}}'
    return text, (int if spec in ('d', '.0f') else float)(text.rstrip('%'))


def log_metrics(kind, metrics):
    """Print `kind key=value ...` and append the same numbers to metrics.jsonl, one JSON object a line. Each
    value is formatted once and the file gets the number its text shows, so the two cannot disagree."""
    pairs = {key: shown(value, METRIC_FORMATS[key]) for key, value in metrics.items()}
    log(' '.join([kind] + [f'{key}={text}' for key, (text, _) in pairs.items()]))
    if master_process and not eval_only:  # eval_only writes nothing
        try:
            with open(metrics_path, 'a') as f:
                f.write(json.dumps({'kind': kind, **{key: number for key, (_, number) in pairs.items()}}) + '\n')
        except OSError as e:
            die(f"could not write {metrics_path} ({e.strerror}); {last_checkpoint()}. Free some space, then "
                f"{'--init_from=resume' if saved_step is not None else 'run it again'}")


def start_metrics():
    """A new metrics.jsonl, or on resume the lines written up to the checkpoint: a run that died after its last
    checkpoint wrote more, which this run writes again, starting with the eval at the checkpoint's step. A
    temporary file renamed into place, like the checkpoints: a crash here cannot lose the lines kept."""
    kept, garbled = [], 0
    if init_from == 'resume' and os.path.exists(metrics_path):
        with open(metrics_path, errors='replace') as f:
            for line in f:
                try:  # a line cut short by a crash, or garbled: dropped, it holds no numbers to keep
                    row = json.loads(line) if line.endswith('\n') else None
                    if row['step'] < iter_num or (row['step'] == iter_num and row['kind'] == 'iter'):
                        kept.append(line)
                except (ValueError, TypeError, KeyError):
                    garbled += 1
    try:
        with open(metrics_path + '.tmp', 'w') as f:
            f.writelines(kept)
        os.replace(metrics_path + '.tmp', metrics_path)
    except OSError as e:
        if os.path.exists(metrics_path + '.tmp'):  # a full disk leaves no stray file, and the old metrics whole
            os.remove(metrics_path + '.tmp')
        die(f"could not write {metrics_path} ({e.strerror}); free some space or pass another --out_dir")
    if garbled:
        log(f"dropped {garbled} unreadable line{'s' * (garbled > 1)} of {metrics_path}")


def report_classes():
    """Datasets with per-token difficulty labels (the toy one): mean passes, loss and accuracy (the most likely
    token is the right one) per class, on the whole val split in windows of block_size."""
    val = torch.from_numpy(np.fromfile(os.path.join(data_path, 'val.bin'), dtype=np.uint16).astype(np.int64))
    n = (len(val) - 1) // block_size * block_size  # whole windows; labels[j] is the class of val[j]
    labels = torch.from_numpy(np.fromfile(os.path.join(data_path, 'val_class.bin'), dtype=np.uint8)[1:n + 1])
    X, Y = val[:n].view(-1, block_size), val[1:n + 1].view(-1, block_size)
    nll, depth, correct = [], [], []
    raw_model.eval()
    for i in tqdm(range(0, len(X), 64), desc='classes', disable=not master_process):
        with torch.no_grad(), ctx:
            out = raw_model(X[i:i + 64].to(device))
        y = Y[i:i + 64].to(device)
        nll.append(F.cross_entropy(out.logits.flatten(0, 1).float(), y.flatten(), reduction='none').cpu())
        depth.append(out.depth.flatten().cpu())
        correct.append((out.logits.argmax(-1) == y).flatten().cpu())
    nll, depth, correct = torch.cat(nll), torch.cat(depth), torch.cat(correct)
    labels = labels.long()
    for c, name in enumerate(meta['classes']):
        chosen = labels == c
        print(f"class name={name} passes={depth[chosen].float().mean():.2f} loss={nll[chosen].mean():.3f} "
              f"acc={correct[chosen].float().mean():.2f} share={chosen.float().mean():.2f}")


def ranks_agree():
    """DDP keeps every rank's weights identical: check it, bit for bit, against rank 0's."""
    mine = torch.cat([p.detach().flatten() for p in raw_model.parameters()])
    rank0 = mine.clone()
    dist.broadcast(rank0, src=0)
    differ = torch.tensor([float(not torch.equal(mine, rank0))], device=mine.device)
    dist.all_reduce(differ, op=dist.ReduceOp.MAX)
    return differ.item() == 0


# -----------------------------------------------------------------------------
# training loop

n_params = sum(p.numel() for name, p in raw_model.named_parameters() if not name.startswith(('wte', 'lm_head')))
log(f"{n_params / 1e6:.2f}M non-embedding parameters, {tokens_per_iter:,} tokens per "
    f"iteration, device {device}, dtype {dtype}, world size {world_size}")
start_iter = iter_num
if master_process and not eval_only:  # eval_only writes nothing
    start_metrics()
training = True  # from now on Ctrl-C lets the step in hand finish
first_bad_step = torch.tensor(-1, device=device)  # the first step with a non-finite loss, if any
window_tokens, window_start = 0, time.time()  # throughput since the last eval
progress = tqdm(total=max_iters, initial=iter_num, desc='train', disable=not master_process, dynamic_ncols=True)
while True:
    set_passes(iter_num)
    if iter_num % eval_interval == 0 or iter_num == max_iters or eval_only:
        if device_type == 'cuda':
            torch.cuda.synchronize()  # queued GPU work belongs to the throughput window
        tok_s = window_tokens / (time.time() - window_start)
        stop_if_diverged()  # before evaluating and saving: a diverged run must not overwrite the last good checkpoint
        losses, hist = estimate_loss()
        log_metrics('eval', eval_metrics(losses, hist, tok_s))
        improved = losses['val'] < best_val_loss
        best_val_loss = min(best_val_loss, losses['val'])
        if master_process and iter_num > start_iter and (improved or always_save_checkpoint):
            save()
        window_tokens, window_start = 0, time.time()
    if iter_num >= max_iters or eval_only:
        break
    if interrupted:
        stop_interrupted()

    lr, k = get_lr(iter_num), get_bottom_k(iter_num)
    for group in optimizer.param_groups:
        group['lr'] = lr * group['lr_mult']
    t0 = time.time()
    for micro_step in range(gradient_accumulation_steps):
        X, Y = get_batch('train', batch_gen)  # fetched when used: a checkpoint's generator state is exact
        if ddp:  # all-reduce the gradients only on the last micro-step
            model.require_backward_grad_sync = micro_step == gradient_accumulation_steps - 1
        with ctx:
            out = model(X, Y, bottom_k_frac=k_tensor(k))
            loss = out.loss / gradient_accumulation_steps  # the mean over micro-batches
        scaler.scale(loss).backward()
        # remember the first step whose loss is nan or inf, without waiting for the GPU to say so now
        first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(out.ce), iter_num + 1, first_bad_step)
    if iter_num < gate_warmup_iters:
        drop_backbone_grads()
    if grad_clip > 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    iter_num += 1
    progress.update(1)
    window_tokens += tokens_per_iter
    if iter_num == start_iter + 1:  # the first iteration warms up (and compiles): not counted
        window_tokens, window_start = 0, time.time()
    if iter_num % log_interval == 0 and master_process:  # .item() waits for the GPU: not every step
        stop_if_diverged()
        log_metrics('iter', dict(step=iter_num, loss=out.ce.item(), gate_loss=out.gate_loss.item(),
                                 passes=out.depth.float().mean().item(), k=k, lr=lr, ms=1000 * (time.time() - t0)))
progress.close()
training = False

if master_process and os.path.exists(os.path.join(data_path, 'val_class.bin')):
    report_classes()
if ddp:
    log(f"ddp ranks_agree={ranks_agree()} world_size={world_size}")
    # DDP holds the process group from inside a reference cycle; left to interpreter shutdown, gloo's
    # threads die with it and abort the process (measured: 1 run in 3 of a small DDP script).
    del model
    gc.collect()
    dist.destroy_process_group()
