"""Weights in and out (ours; Pythia and PonderLM imported), and what the scripts share: the
device, datasets, a training run's out_dir and checks, scoring.
    model, ckpt = load_checkpoint('out-toy/ckpt.pt', halt_threshold=0.01)  # ours, at another tau
    model = from_pretrained('pythia-70m', n_ponder=3)        # new gates on a plain Pythia
    model = from_pretrained('zeng123/PonderingPythia-1.4B')  # PonderLM, K from its config"""
import difflib
import errno
import glob
import importlib.util
import json
import os
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import asdict, fields

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from adaponder import AdaPonderConfig, AdaPonderLM
from configurator import first_line

# ---- our checkpoints: written whole or not at all, read back with weights_only ----

def save_checkpoint(path, model, **extra):
    """Save the plain weights, config and extra atomically: a crash mid-save keeps the old file."""
    raw = getattr(model, 'module', model)  # DDP wraps the module
    raw = getattr(raw, '_orig_mod', raw)  # so does torch.compile (inside DDP or outside it)
    if bad := unreadable(extra):
        raise ValueError(f"cannot save {bad}: a checkpoint holds tensors, numbers, strings, "
                         "lists and dicts only (weights_only loading reads nothing else)")
    model_args = {**asdict(raw.config), 'n_ponder': raw.trained_K}  # not the cap: its K
    try:
        torch.save(dict(model=raw.state_dict(), model_args=model_args, **extra), f'{path}.tmp')
        os.replace(f'{path}.tmp', path)
    finally:
        if os.path.exists(f'{path}.tmp'):  # a full disk
            os.remove(f'{path}.tmp')

def unreadable(value, where='extra'):
    """Where value holds what weights_only loading refuses (a numpy number, a Path), or None."""
    if isinstance(value, dict) and any(type(k) not in (str, int) for k in value):
        return f'a key of {where}'
    if isinstance(value, (dict, list, tuple)):  # a torch.Size too
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return next(filter(None, (unreadable(v, f'{where}[{k!r}]') for k, v in items)), None)
    plain = (int, float, bool, str, bytes, type(None))  # exact types: np.float64 is refused
    ok = type(value) in plain or isinstance(value, (torch.Tensor, torch.dtype))
    return None if ok else f'{where} (a {type(value).__name__})'

def load_checkpoint(path, device='cpu', **settings):
    """(model, checkpoint) of path or its folder's ckpt.pt; settings: INFERENCE_SETTINGS."""
    path = os.path.join(path, 'ckpt.pt') if os.path.isdir(path) else path
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "no checkpoint here; train one (python train.py) "
                                "or pass the folder or file that holds it", path)
    device = usable_device(device)[0]  # 'auto' too
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        ckpt['model_args'], ckpt['model']
    except OSError:  # a permission, a disk: the file may well be fine, say what really failed
        raise
    except Exception as e:  # a truncated or foreign file: zip, pickle and key errors share no class
        raise ValueError(f"{path} is damaged or not an AdaPonder checkpoint "
                         f"({type(e).__name__}); use another checkpoint") from None
    if unknown := set(ckpt['model_args']) - {f.name for f in fields(AdaPonderConfig)}:
        raise ValueError(f"{path} was written by another version of adaponder.py: it has config "
                         f"fields {', '.join(sorted(unknown))}, unknown here; use that version")
    model, theirs = AdaPonderLM(AdaPonderConfig(**ckpt['model_args'])), ckpt['model']
    ours = model.state_dict()
    if bad := [k for k in {**ours, **theirs}
               if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape]:
        raise ValueError(f"{path} does not fit its own config: first mismatched tensors "
                         f"{', '.join(bad[:3])}; it was not saved by save_checkpoint")
    if bad := [k for k, v in theirs.items() if v.is_floating_point() and not v.isfinite().all()]:
        raise ValueError(f"{path} holds nan or inf weights ({bad[0]}, ...): the run that saved it "
                         "had diverged; use an earlier checkpoint or train again")
    model.load_state_dict(theirs)
    model.set_inference(**settings)
    return model.to(device), ckpt

# ---- GPT-NeoX weights (Pythia, PonderLM) as an AdaPonderLM ----

PRESETS = {  # the real Pythia shapes (GPT-NeoX tokenizer: 50304 padded vocabulary, 2048 context)
    'pythia-14m': dict(n_layer=6, n_head=4, n_embd=128, block_size=2048),
    'pythia-70m': dict(n_layer=6, n_head=8, n_embd=512, block_size=2048),
    'pythia-160m': dict(n_layer=12, n_head=12, n_embd=768, block_size=2048),
    'pythia-410m': dict(n_layer=24, n_head=16, n_embd=1024, block_size=2048),
    'tiny': dict(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=64),  # tests, CPU demos
}

def preset(name, **overrides):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return AdaPonderConfig(**{**PRESETS[name], **overrides})

def from_pretrained(name_or_path, **config_overrides):
    """A GPT-NeoX checkpoint as an AdaPonderLM; n_ponder=0 or halting='none' give its own logits."""
    hf, weights, path = read_neox_checkpoint(name_or_path)
    arch = neox_architecture(hf, path)
    for key, value in config_overrides.items():
        if not hasattr(AdaPonderConfig, key):
            raise ValueError(f"unknown config field {key!r}")
        if key in arch and value != arch[key] and not (key == 'block_size' and value <= arch[key]):
            raise ValueError(f"{key}={value} conflicts with the checkpoint's {arch[key]}; the "
                             "architecture comes from config.json (block_size may only be lowered)")
    model = AdaPonderLM(AdaPonderConfig(**{**arch, **config_overrides}))
    renames = {'wte': 'gpt_neox.embed_in', 'blocks': 'gpt_neox.layers', 'lm_head': 'embed_out',
               'ln_f': 'gpt_neox.final_layer_norm', 'ln_1': 'input_layernorm',
               'ln_2': 'post_attention_layernorm', 'mlp.fc': 'mlp.dense_h_to_4h',
               'mlp.proj': 'mlp.dense_4h_to_h', 'attn.proj': 'attention.dense',
               'attn.qkv': 'attention.query_key_value'}  # the same fused layout: heads, then q k v
    for name, p in model.state_dict().items():  # tensors that share storage with the parameters
        if name.startswith('gates.'):  # new in AdaPonderLM: they keep their init
            continue
        theirs = name
        for our_part, their_part in renames.items():
            theirs = theirs.replace(our_part, their_part)
        if theirs not in weights or weights[theirs].shape != p.shape:
            found = tuple(weights[theirs].shape) if theirs in weights else 'nothing'
            raise ValueError(f"{path}: {theirs} should have shape {tuple(p.shape)}, found {found}")
        p.copy_(weights.pop(theirs))  # and cast: Pythia ships float16
    # may remain: buffers we rebuild (masks, rotary tables), and an `adapter` PonderLM never uses
    unused = ('attention.bias', 'masked_bias', 'inv_freq', 'adapter.weight')
    if left := [k for k in weights if not k.endswith(unused)]:
        raise ValueError(f"{path} has weights AdaPonderLM has no place for: {', '.join(left[:4])}")
    return model

def neox_architecture(hf, path):
    get = hf.get
    try:
        arch = dict(vocab_size=hf['vocab_size'], block_size=hf['max_position_embeddings'],
                    n_layer=hf['num_hidden_layers'], n_head=hf['num_attention_heads'],
                    n_embd=hf['hidden_size'], bias=True, layer_norm_eps=get('layer_norm_eps', 1e-5),
                    parallel_residual=get('use_parallel_residual', True),
                    rotary_pct=get('partial_rotary_factor', get('rotary_pct', 0.25)),  # new, old
                    rotary_base=get('rope_theta', get('rotary_emb_base', 10000)))
    except KeyError as e:
        raise ValueError(f"{path}/config.json lacks {e}; it is not a GPT-NeoX config") from None
    pythia = dict(hidden_act='gelu', intermediate_size=4 * arch['n_embd'], attention_bias=True,
                  tie_word_embeddings=False, rope_type='default', rope_scaling=None)  # our blocks
    if unlike := [f'{k}={hf[k]!r}' for k, v in pythia.items() if get(k, v) != v]:
        raise ValueError(f"{path} has {', '.join(unlike)}; only GPT-NeoX models like Pythia import")
    if get('ponderinglm'):  # official PonderLM: K passes, E_0 and W_in times sqrt(d) in its dtype
        K, dtype = hf['pondering_steps'], getattr(torch, get('torch_dtype') or '', torch.float32)
        root_d = torch.tensor(arch['n_embd'], dtype=dtype).sqrt().item()  # 45.25 at 2048 in bf16
        arch.update(n_ponder=K, embed_scale=root_d if get('scale_embeds') else 1.0,
                    first_embed_mult=K if get('mutiply_pondering_steps') else 1)
    return arch

def read_neox_checkpoint(name_or_path):
    """(config.json, state dict, directory) of a directory, a hub id or a name like 'pythia-70m'."""
    path = str(name_or_path)
    if not os.path.isdir(path):
        path = download_checkpoint(f'EleutherAI/{path}' if path.startswith('pythia-') else path)
    kinds = (sorted(glob.glob(os.path.join(glob.escape(path), kind))) for kind in weight_kinds())
    config, files = os.path.join(path, 'config.json'), next(filter(None, kinds), [])  # all shards
    if not os.path.isfile(config) or not files:
        raise FileNotFoundError(f"{path} needs config.json and model.safetensors or pytorch_model"
                                ".bin, or their shards (as save_pretrained writes them)")
    try:
        hf = json.load(open(config))
        hf.update(hf.get('rope_parameters') or {})  # newer transformers nest the rotary settings
    except (ValueError, AttributeError) as e:  # not JSON, or JSON but not an object
        raise ValueError(f"{config} is not a valid config.json ({e}); download it again") from None
    weights = {}
    for file in files:
        pickled = file.endswith('.bin')
        if not pickled and not importlib.util.find_spec('safetensors'):
            raise ValueError(f"reading {file} needs safetensors: pip install safetensors")
        try:
            weights.update(torch.load(file, map_location='cpu', weights_only=True) if pickled else
                           importlib.import_module('safetensors.torch').load_file(file))
        except Exception as e:  # safetensors' and pickle's errors share no class
            raise ValueError(f"{file} is not a readable weight file ({type(e).__name__}: "
                             f"{first_line(e)}); download it again") from None
    return hf, weights, path

def weight_kinds():  # transformers' weight files: safetensors first, last without its package
    kinds = ['model*.safetensors', 'pytorch_model*.bin']
    return kinds if importlib.util.find_spec('safetensors') else kinds[::-1]

def download_checkpoint(hub_id):
    """Its folder in the HF cache, downloaded once (HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE apply)."""
    if hub_id.count('/') != 1:
        raise ValueError(f"{hub_id!r} is neither a directory nor a model-hub id; pass a directory,"
                         " an id like zeng123/PonderingPythia-1.4B, or a name like pythia-70m")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import RepositoryNotFoundError  # where older versions have it
    except ImportError:
        raise ValueError(f"{hub_id} is not a directory; downloading it needs huggingface_hub: "
                         "pip install huggingface_hub") from None
    try:
        for kind in weight_kinds():  # config.json and the first kind of weights the hub has
            path = snapshot_download(hub_id, allow_patterns=['config.json', kind])
            if glob.glob(os.path.join(glob.escape(path), kind)):
                return path
    except RepositoryNotFoundError:  # also gated and private repositories without a token
        raise ValueError(f"{hub_id} is not on the model hub, or it is gated or private; check the "
                         "id, or set HF_TOKEN to a token that has access") from None
    except OSError as e:  # offline, or the hub unreachable, with nothing cached
        raise ValueError(f"could not download {hub_id} ({type(e).__name__}: {first_line(e)}); check"
                         " your connection and HF_ENDPOINT, or pass a local directory") from None
    raise ValueError(f"{hub_id} on the model hub has no model.safetensors or pytorch_model.bin; "
                     "download it yourself and pass the directory")

# ---- the device ----

def pick_device(device='auto', dtype='auto'):
    """(device, dtype name, autocast context); weights stay float32, matmuls autocast to dtype."""
    device, kind = usable_device(device)
    if dtype == 'auto':  # float16 on GPUs without bfloat16: train.py adds a GradScaler
        dtype = 'float32' if kind != 'cuda' else \
            'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    if dtype not in ('float32', 'bfloat16', 'float16'):
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    if kind == 'cuda':  # tf32 matmuls and convolutions on Ampere and later
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    autocast = nullcontext() if dtype == 'float32' else torch.autocast(kind, getattr(torch, dtype))
    return device, dtype, autocast

def usable_device(device):
    have = dict(cpu=True, cuda=torch.cuda.is_available(), mps=torch.backends.mps.is_available())
    device = next(k for k in ('cuda', 'mps', 'cpu') if have[k]) if device == 'auto' else device
    try:
        kind, index = torch.device(device).type, torch.device(device).index
    except (RuntimeError, TypeError):
        kind = None
    if not have.get(kind):
        raise ValueError(f"device {device} is not available here (this machine has "
                         f"{', '.join(k for k, ok in have.items() if ok)}); pass --device=cpu")
    if kind == 'cuda' and index is not None and index >= torch.cuda.device_count():
        raise ValueError(f"device {device}: this machine has {torch.cuda.device_count()} GPUs; "
                         "pass --device=cuda:0")
    return device, kind

PEAK_BF16_TFLOPS = {'H200': 989, 'H100 PCIe': 756, 'H100': 989, 'GH200': 989, 'A100': 312,
                    'L40S': 362, 'L4': 121, 'A10G': 70, 'A10': 125, 'RTX 4090': 165, 'RTX 3090': 71,
                    'V100': 125, 'T4': 65}  # dense bf16 datasheet peaks by GPU name, for MFU

def device_peak_flops(device):
    name = torch.cuda.get_device_name(device) if torch.device(device).type == 'cuda' else ''
    return next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS.items() if key in name), None)

# ---- a prepared dataset ----

def read_tokens(path, min_tokens=1, fix='prepare the dataset'):
    if not os.path.isfile(path):
        raise ValueError(f"{path} not found; {fix} first")
    if (size := os.path.getsize(path)) % 2:
        raise ValueError(f"{path} has an odd number of bytes, not 2-byte token ids; {fix} again")
    if size // 2 < min_tokens:
        raise ValueError(f"{path} holds {size // 2} tokens, fewer than {min_tokens}; {fix} again"
                         + ", or pass a smaller --block_size" * (min_tokens > 1))
    return np.memmap(path, dtype=np.uint16, mode='r')

def read_meta(folder, fix='prepare the dataset'):
    path = os.path.join(folder, 'meta.json')
    try:
        meta = json.load(open(path))
        if type(meta['vocab_size']) is not int or not 1 <= meta['vocab_size'] <= 2 ** 16:  # 2 bytes
            raise ValueError(f"{meta['vocab_size']!r} is not an integer in [1, 65536]")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} has no valid vocab_size ({first_line(e)}); {fix} again") from None
    return meta

def open_dataset(folder, min_tokens=1, make=False):
    """A prepared dataset: data_dir/<name>/ with train.bin and val.bin of min_tokens or more, and
    its meta.json, returned with how to prepare it. make: only make toy or hops, if missing."""
    name = os.path.basename(os.path.normpath(folder))
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', name, 'prepare.py')
    how = (f"run python {os.path.relpath(script)}" + f" --out_dir={folder}" * (
        os.path.normpath(folder) != os.path.join('data', name)) if os.path.exists(script) else
        "prepare it (see data/*/readme.md)")
    if make:  # in seconds, with the script's own output
        if name in ('toy', 'hops') and not os.path.exists(os.path.join(folder, 'train.bin')) and \
                subprocess.run([sys.executable, script, f'--out_dir={folder}']).returncode:
            raise ValueError(f"could not prepare {folder}; run python {script} to see why")
        return None
    for split in ('train', 'val'):
        read_tokens(os.path.join(folder, f'{split}.bin'), min_tokens, how)
    return read_meta(folder, how), how

# ---- a training run: its out_dir, and the checks train.py makes ----

def lock_out_dir(out_dir):
    """Make out_dir and lock it while this process lives: two runs would corrupt its checkpoint."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        lock = open(os.path.join(out_dir, 'train.lock'), 'a+')
    except OSError as e:  # a file where the folder should be, a read-only disk
        why = 'a file, not a folder' if os.path.isfile(out_dir) else e.strerror
        raise ValueError(f"cannot write into out_dir={out_dir} ({why}); pass a folder you can "
                         "write") from None
    try:
        import fcntl  # POSIX only: elsewhere two runs are not kept apart
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # per process: one run, one lock
    except ImportError:
        return lock
    except OSError:
        lock.seek(0)
        raise ValueError(f"another run (pid {lock.read().strip() or '?'}) is training in "
                         f"{out_dir}; wait for it to end, or pass another --out_dir") from None
    lock.truncate(0)
    print(os.getpid(), end='', file=lock, flush=True)
    return lock

def start_metrics(path, resumed_at=None):
    """metrics.jsonl (a JSON row per line train.py prints) emptied, or kept up to the step a run
    resumes at (it may have logged past its last checkpoint); returns how many garbled rows went."""
    def step(row):  # inf if a crash cut the row short, or it is garbled
        try:
            return json.loads(row)['step'] if row.endswith('\n') else float('inf')
        except (ValueError, TypeError, KeyError):
            return float('inf')
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; move it away")
    resumed = resumed_at is not None and os.path.exists(path)
    rows = open(path, errors='replace').readlines() if resumed else []
    with open(path + '.tmp', 'w') as f:  # a crash here cannot lose the rows kept
        f.writelines(row for row in rows if step(row) <= resumed_at)
    os.replace(path + '.tmp', path)
    return sum(step(row) == float('inf') for row in rows)

def saved_run(path):
    """A checkpoint's settings, and those a resumed run keeps (model, data); {} if unreadable."""
    try:
        saved = torch.load(path, 'cpu', weights_only=True, mmap=True)  # no weight is read
        return saved['config'], dict(saved['model_args'], dataset=saved['dataset'],
                                     one_pass_iters=saved['config'].get('one_pass_iters', 0))
    except Exception:
        return {}, {}

def check_resumable(ckpt, path, max_iters, data_path):
    """A checkpoint train.py can continue: its training state, steps left, tokens that still fit."""
    if missing := {'optimizer', 'iter_num', 'best_val_loss', 'rng'} - set(ckpt):
        raise ValueError(f"{path} lacks {', '.join(sorted(missing))}, so it cannot be resumed")
    if ckpt['iter_num'] >= max_iters:
        raise ValueError(f"{path} is at step {ckpt['iter_num']} already, max_iters={max_iters}: "
                         "nothing to train; pass a larger --max_iters")
    meta, vocab_size = read_meta(data_path), ckpt['model_args']['vocab_size']
    trained_on = ckpt.get('vocab_size', vocab_size)  # older checkpoints: a char model's
    if trained_on != meta['vocab_size'] and (trained_on != vocab_size or 'itos' in meta):
        raise ValueError(f"the model's vocab_size {vocab_size} does not fit the "
                         f"{meta['vocab_size']} tokens of {data_path}/meta.json (it trained on "
                         f"{trained_on}); was it prepared again?")

def check_init_from(init_from):
    """train.py's init_from names a GPT-NeoX model (a folder, a hub id): not ours, not a typo."""
    folder = init_from if os.path.isdir(init_from) else os.path.dirname(init_from) or '.'
    if init_from.endswith('.pt') or os.path.isfile(os.path.join(folder, 'ckpt.pt')):
        raise ValueError(f"{init_from} is an AdaPonder checkpoint: continue it with "
                         f"--init_from=resume --out_dir={folder}")
    if guess := difflib.get_close_matches(init_from.lower(), ('scratch', 'resume'), n=1):
        raise ValueError(f"init_from={init_from}: did you mean {guess[0]}? Or pass a GPT-NeoX "
                         "model's folder or hub id, like pythia-70m")

def why_diverged(dtype, grad_clip, learning_rate, gate_lr_mult):  # the likeliest cause first
    if dtype == 'float16':
        return "dtype=float16 likely overflowed: pass --dtype=bfloat16"
    if not grad_clip:
        return "grad_clip=0 lets one bad batch blow up the weights: pass --grad_clip=1.0"
    return (f"learning_rate={learning_rate:g} is likely too high: try --learning_rate="
            f"{learning_rate / 3:.2g}" + f" or a lower --gate_lr_mult than {gate_lr_mult:g}"
            * (gate_lr_mult > 1))

def ranks_agree(model):
    """DDP keeps every rank's weights identical: True if they are, bit for bit, on every rank."""
    mine = torch.cat([p.detach().flatten() for p in model.parameters()])
    rank0 = mine.clone()
    torch.distributed.broadcast(rank0, src=0)
    differ = torch.tensor([float(not torch.equal(mine, rank0))], device=mine.device)
    torch.distributed.all_reduce(differ, op=torch.distributed.ReduceOp.MAX)
    return differ.item() == 0

# ---- scoring a split (train.py's class lines, analyze.py) ----

@torch.no_grad()
def score(model, data, block_size=None, batch_size=16, max_tokens=None, progress=False):
    """(nll, depth, targets, correct) of each token of a val split, in windows of block_size."""
    L, device = block_size or model.config.block_size, model.wte.weight.device
    n_win = (min(len(data), max_tokens or len(data)) - 1) // L
    tokens = torch.as_tensor(data[:n_win * L + 1].astype('int64'))
    inputs, targets = tokens[:-1].view(n_win, L), tokens[1:].view(n_win, L)  # (n_win, L)
    nll, depth, correct = [], [], []
    for start in tqdm(range(0, n_win, batch_size), disable=not progress, desc='scoring'):
        x, y = (t[start:start + batch_size].to(device) for t in (inputs, targets))
        out = model(x)
        logits, y = out.logits.flatten(0, 1).float(), y.flatten()
        nll.append(F.cross_entropy(logits, y, reduction='none').cpu())
        depth.append(out.depth.flatten().cpu())
        correct.append((logits.argmax(-1) == y).cpu())
    return torch.cat(nll), torch.cat(depth), targets.flatten(), torch.cat(correct)

def class_lines(model, folder, block_size, classes):
    """A line per class of a labelled val split (val_class.bin): passes, loss, accuracy, share."""
    nll, depth, _, correct = score(model, read_tokens(os.path.join(folder, 'val.bin')), block_size,
                                   64, progress=True)
    labels = np.fromfile(os.path.join(folder, 'val_class.bin'), dtype=np.uint8)  # of each token
    labels = torch.from_numpy(labels[1:len(nll) + 1].astype(np.int64))  # of each target
    lines = []
    for c, name in enumerate(classes):
        chosen = labels == c
        lines.append(f"class name={name} passes={depth[chosen].float().mean():.2f} loss="
                     f"{nll[chosen].mean():.3f} acc={correct[chosen].float().mean():.2f} "
                     f"share={chosen.float().mean():.2f}")
    return lines

def tau_for_passes(passes_at, target, lo=1e-12, hi=1.0, tol=0.01, steps=30):
    """The tau where passes_at(tau) is target: bisection on log tau (gate values span decades)."""
    tried = {}  # tau: its mean passes
    for _ in range(steps):
        tau = (max(lo, 1e-30) * hi) ** 0.5
        tried[tau] = passes = passes_at(tau)
        if abs(passes - target) <= tol:
            break
        lo, hi = (tau, hi) if passes > target else (lo, tau)  # passes fall as tau rises
    return min(tried, key=lambda t: abs(tried[t] - target))  # the closest seen
