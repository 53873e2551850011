"""
A model ready to run: weights in and out, and the device they run on. AdaPonder checkpoints (written
atomically, read without running code from them), and pretrained GPT-NeoX weights imported as an AdaPonderLM:
a Pythia model (which has never pondered) or an official PonderLM checkpoint (which ponders, without gates),
from a local directory or a model-hub id through huggingface_hub.

    model, ckpt = load_checkpoint('out-toy/ckpt.pt', halt_threshold=0.01)   # ours, run at another tau
    model = from_pretrained('pythia-70m', n_ponder=3)                       # new gates on a plain Pythia
    model = from_pretrained('zeng123/PonderingPythia-1.4B')                 # PonderLM, K from its config

An import takes the architecture from the checkpoint's config.json; the overrides set the pondering knobs.
Our blocks use GPT-NeoX's fused layout, so importing is renaming tensors. pick_device() is every script's
device and precision set-up, and device_peak_flops() the GPU's peak, for MFU. preset('pythia-70m') is a
Pythia shape to train from scratch, and preset('tiny') a model for tests and demos.
"""
import errno
import glob
import importlib.util
import json
import math
import os
from contextlib import nullcontext
from dataclasses import asdict, fields

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from adaponder import AdaPonderConfig, AdaPonderLM
from configurator import first_line

# -----------------------------------------------------------------------------
# AdaPonder checkpoints


def save_checkpoint(path, model, **extra):
    """Save the plain weights (no torch.compile or DDP prefix), the config and extra, atomically: a
    crash mid-save leaves the previous checkpoint whole. extra holds what load_checkpoint can read
    back safely (weights_only): tensors, numbers, strings, lists and dicts of them."""
    raw = getattr(model, '_orig_mod', model)  # torch.compile wraps the module
    raw = getattr(raw, 'module', raw)  # so does DDP
    if bad := unreadable(extra):
        raise ValueError(f"cannot save {bad}: a checkpoint holds tensors, numbers, strings, "
                         "lists and dicts only (weights_only loading reads nothing else)")
    model_args = {**asdict(raw.config), 'n_ponder': raw.K}  # a cap on passes is not the model's K
    try:
        torch.save(dict(model=raw.state_dict(), model_args=model_args, **extra), f'{path}.tmp')
        os.replace(f'{path}.tmp', path)
    finally:
        if os.path.exists(f'{path}.tmp'):  # a full disk
            os.remove(f'{path}.tmp')


def unreadable(value, where='extra'):
    """Where value holds something weights_only loading refuses (a numpy number, a Path), or None."""
    if isinstance(value, dict):
        return next((bad for k, v in value.items() if (bad := unreadable(v, f'{where}[{k!r}]'))),
                    None if all(type(k) in (str, int) for k in value) else f'a key of {where}')
    if isinstance(value, (list, tuple)):
        return next((bad for i, v in enumerate(value) if (bad := unreadable(v, f'{where}[{i}]'))), None)
    plain = (torch.Tensor, torch.Size, torch.dtype, int, float, bool, str, bytes, type(None))
    return None if isinstance(value, plain) else f'{where} (a {type(value).__name__})'


def load_checkpoint(path, device='cpu', **settings):
    """A checkpoint (path, or the folder holding ckpt.pt) read without running code from it
    (weights_only); settings (INFERENCE_SETTINGS) change how it runs. Returns (model, checkpoint).
    Errors name the real cause: a missing file, a device, another version's fields, damage."""
    path = os.path.join(path, 'ckpt.pt') if os.path.isdir(path) else path
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "no checkpoint here; train one (python train.py) "
                                "or pass the folder or file that holds it", path)
    usable_device(device)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        ckpt['model_args'], ckpt['model']
    except OSError:  # a permission, a disk: the file may well be fine, say what really failed
        raise
    except Exception as e:  # a truncated or foreign file: zip, pickle and key errors share no class
        raise ValueError(f"{path} is damaged or not an AdaPonder checkpoint ({type(e).__name__}); "
                         "use another checkpoint") from None
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
        raise ValueError(f"{path} holds nan or inf weights ({bad[0]}, ...): the run that saved it had "
                         "diverged; use an earlier checkpoint or train again")
    model.load_state_dict(theirs)
    model.set_inference(**settings)
    return model.to(device), ckpt


# -----------------------------------------------------------------------------
# Pythia: its shapes, and Pythia and PonderLM weights imported

PRESETS = {  # the real Pythia shapes (GPT-NeoX tokenizer: 50304 padded vocabulary, 2048 context)
    'pythia-14m': dict(n_layer=6, n_head=4, n_embd=128, block_size=2048),
    'pythia-70m': dict(n_layer=6, n_head=8, n_embd=512, block_size=2048),
    'pythia-160m': dict(n_layer=12, n_head=12, n_embd=768, block_size=2048),
    'pythia-410m': dict(n_layer=24, n_head=16, n_embd=1024, block_size=2048),
    'tiny': dict(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=64),  # tests, CPU demos
}


def preset(name, **overrides):
    """AdaPonderConfig for a named shape, e.g. preset('pythia-70m', n_ponder=3)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return AdaPonderConfig(**{**PRESETS[name], **overrides})


def from_pretrained(name_or_path, **config_overrides):
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
    model = AdaPonderLM(AdaPonderConfig(**{**arch, **config_overrides}))
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
    try:
        with open(config) as f:
            hf = json.load(f)
        hf.update(hf.get('rope_parameters') or {})  # newer transformers nest the rotary settings
    except (ValueError, AttributeError) as e:  # not JSON, or JSON but not an object
        raise ValueError(f"{config} is not a valid config.json ({e}); download it again") from None
    weights = {}
    for file in files:
        try:
            weights.update(read_weights(file))
        except Exception as e:  # safetensors' and pickle's errors share no class
            first_line = (str(e).strip().splitlines() or [''])[0]
            raise ValueError(f"{file} is not a readable weight file ({type(e).__name__}: {first_line}); "
                             "download it again") from None
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


# -----------------------------------------------------------------------------
# The device


def pick_device(device='auto', dtype='auto'):
    """(device, dtype name, autocast context): the one device and precision set-up of every
    script. 'auto': cuda > mps > cpu, and bfloat16 where the GPU has it (float16 on older GPUs:
    train.py adds a GradScaler), else float32. Weights stay float32; matmuls run in the lower
    precision inside the autocast context."""
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else \
            'mps' if torch.backends.mps.is_available() else 'cpu'
    kind = usable_device(device)
    if dtype == 'auto':
        dtype = 'float32' if kind != 'cuda' else \
            'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    if dtype not in ('float32', 'bfloat16', 'float16'):
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    if kind == 'cuda':  # tf32 matmuls and convolutions on Ampere and later
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    autocast = nullcontext() if dtype == 'float32' else torch.autocast(kind, getattr(torch, dtype))
    return device, dtype, autocast


def usable_device(device):
    """The kind of a device this machine has (cpu, cuda, mps: what these scripts run on), or a
    ValueError saying what to pass instead."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    available = dict(cpu=True, cuda=torch.cuda.is_available(), mps=torch.backends.mps.is_available())
    if not available.get(kind):
        raise ValueError(f"device {device} is not available here (this machine has "
                         f"{', '.join(k for k, ok in available.items() if ok)}); pass --device=cpu")
    if kind == 'cuda' and torch.device(device).index is not None and \
            torch.device(device).index >= torch.cuda.device_count():
        raise ValueError(f"device {device}: this machine has {torch.cuda.device_count()} GPUs; "
                         "pass --device=cuda:0")
    return kind


PEAK_BF16_TFLOPS = {  # dense bf16 datasheet peaks, matched against the device name: for MFU
    'H200': 989, 'H100 PCIe': 756, 'H100': 989, 'GH200': 989, 'A100': 312, 'L40S': 362, 'L4': 121,
    'A10G': 70, 'A10': 125, 'RTX 4090': 165, 'RTX 3090': 71, 'V100': 125, 'T4': 65,
}


def device_peak_flops(device):
    """Peak bf16 FLOP/s of a CUDA device, from its name; None where unknown (CPU, MPS, others)."""
    if torch.device(device).type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS.items() if key in name), None)


# -----------------------------------------------------------------------------
# Prepared datasets and run folders, checked once for every script


def read_tokens(path, min_tokens=1, fix='prepare the dataset'):
    """The uint16 token ids of a prepared split (train.bin, val.bin), memory-mapped; a file that
    cannot hold them, or too few, is refused with fix as the advice."""
    if not os.path.isfile(path):
        raise ValueError(f"{path} not found; {fix} first")
    if (size := os.path.getsize(path)) % 2:
        raise ValueError(f"{path} has an odd number of bytes, not 2-byte token ids; {fix} again")
    if size // 2 < min_tokens:
        raise ValueError(f"{path} holds {size // 2} tokens, fewer than {min_tokens}; {fix} again, "
                         "or pass a smaller --block_size")
    return np.memmap(path, dtype=np.uint16, mode='r')


def read_meta(folder, fix='prepare the dataset'):
    """A prepared dataset's meta.json: vocab_size (and for characters itos, for the toy classes)."""
    path = os.path.join(folder, 'meta.json')
    try:
        with open(path) as f:
            meta = json.load(f)
        vocab_size = meta['vocab_size']
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} has no valid vocab_size ({first_line(e)}); {fix} again") from None
    if type(vocab_size) is not int or not 1 <= vocab_size <= 2 ** 16:  # ids are 2 bytes
        raise ValueError(f"{path} says vocab_size={vocab_size!r}, not an integer in [1, 65536]; "
                         f"{fix} again")
    return meta


def lock_out_dir(out_dir):
    """Make out_dir and hold its lock while this process lives (a crashed run's lock ends with
    it): two runs writing one checkpoint and one metrics file would corrupt both."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"cannot write into out_dir={out_dir} (a file, not a folder); pass a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
        lock = open(os.path.join(out_dir, 'train.lock'), 'a+')
    except OSError as e:
        raise ValueError(f"cannot write into out_dir={out_dir} ({e.strerror}); pass a folder you "
                         "can write") from None
    try:
        import fcntl  # POSIX only: elsewhere two runs are not kept apart
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # per process: one run, one lock
    except ImportError:
        return lock
    except OSError:
        lock.seek(0)
        raise ValueError(f"another run (pid {lock.read().strip() or '?'}) is training in {out_dir}; "
                         "wait for it to end, or pass another --out_dir") from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


# -----------------------------------------------------------------------------
# Scoring, shared by train.py's class lines, analyze.py's tables and bench.py


@torch.no_grad()
def score(model, data, block_size=None, batch_size=16, max_tokens=None, progress=False):
    """Per-token NLL, depth and whether the most likely token was right, over a 1-D token array (a
    val split) in non-overlapping windows of block_size (default: the model's). Returns (nll, depth,
    targets, correct), 1-D and aligned: entry j scores the prediction of targets[j]."""
    L, device = block_size or model.config.block_size, model.wte.weight.device
    n_win = (min(len(data), max_tokens or len(data)) - 1) // L
    windows = torch.as_tensor(data[:n_win * L + 1].astype('int64'))
    nll, depth, correct = [], [], []
    for start in tqdm(range(0, n_win, batch_size), disable=not progress, desc='scoring'):
        rows = range(start, min(start + batch_size, n_win))
        x = torch.stack([windows[r * L:(r + 1) * L] for r in rows]).to(device)  # (b, L)
        y = torch.stack([windows[r * L + 1:(r + 1) * L + 1] for r in rows]).to(device)
        out = model(x)
        nll.append(F.cross_entropy(out.logits.flatten(0, 1).float(), y.flatten(),
                                   reduction='none').cpu())
        depth.append(out.depth.flatten().cpu())
        correct.append((out.logits.argmax(-1) == y).flatten().cpu())
    return torch.cat(nll), torch.cat(depth), windows[1:n_win * L + 1], torch.cat(correct)


def tau_for_passes(passes_at, target, lo=1e-12, hi=1.0, tol=0.01, steps=30):
    """The halting threshold tau at which learned halting runs `target` mean passes, where
    passes_at(tau) measures them: bisection on log tau (gate values span decades), between lo
    (more passes than target) and hi (fewer). Returns the tau closest to target seen."""
    best = None
    for _ in range(steps):
        tau = math.sqrt(max(lo, 1e-30) * hi)
        passes = passes_at(tau)
        best = min(best or (tau, passes), (tau, passes), key=lambda tp: abs(tp[1] - target))
        if abs(passes - target) <= tol:
            break
        lo, hi = (tau, hi) if passes > target else (lo, tau)  # passes fall as tau rises
    return best[0]
