"""
The one way every script (train.py, sample.py, analyze.py, bench.py) takes its settings, after nanoGPT's
configurator: a script's settings are its plain global variables, and

    python train.py config/shakespeare_char.py --batch_size=32 --compile=False

runs config files (plain Python assignments) and then --key=value overrides over them, in order. A value is
a Python literal (--learning_rate=3e-4, --compile=False, --top_k=None) or else a string (--dataset=toy);
a bare --flag sets a boolean setting to True.
Also here, so that every script sets up a run the same way: the device and mixed-precision context (and the
device's peak FLOP/s, for MFU), the dataset's tokenizer (load_tokenizer) and die(), the one-line error for bad input.
"""
import ast
import difflib
import itertools
import json
import os
import sys
import types
from contextlib import nullcontext
from pathlib import Path

import torch


def die(message):
    """Bad input: one line 'error: ...' on stderr and exit status 1, never a traceback."""
    raise SystemExit(f"error: {' '.join(str(message).split())}")


def configure(settings, argv=None):
    """Override settings (a script's globals()) from config files and --key=value arguments (default:
    sys.argv[1:]). Only keys the script defines can be set, each keeping its type (an int is a float too;
    a setting whose default is None takes any value). Returns the keys that were set."""
    keys = {k for k, v in settings.items() if not k.startswith('_') and isinstance(v, (int, float, str, type(None)))}
    explicit = set()

    def set_one(key, value, source):
        if key not in keys:
            guess = ''.join(f"did you mean {k}? " for k in difflib.get_close_matches(key, keys, n=1))
            die(f"unknown setting {key!r} (from {source}); {guess}settings are: {', '.join(sorted(keys))}")
        default = settings[key]
        same_kind = default is None or value is None or type(value) is type(default) or \
            (type(default) is float and type(value) is int)
        if not same_kind:
            die(f"{key} must be {type(default).__name__}, got {value!r} (from {source}); e.g. --{key}={default!r}")
        settings[key] = float(value) if type(default) is float and type(value) is int else value
        explicit.add(key)

    for arg in sys.argv[1:] if argv is None else argv:
        if not arg.startswith('--'):  # a config file
            if not os.path.isfile(arg):
                die(f"config file {arg} not found; pass a file like config/toy.py or a --key=value setting")
            namespace = {}
            try:
                exec(open(arg).read(), namespace)
            except Exception as e:
                die(f"config file {arg} failed to run ({type(e).__name__}: {e}); fix that file")
            for key, value in namespace.items():
                if not key.startswith('_') and not isinstance(value, types.ModuleType):
                    set_one(key, value, arg)
            continue
        key, has_value, text = arg[2:].partition('=')
        if not has_value and not isinstance(settings.get(key), bool):  # a bare --flag turns a bool setting on
            die(f"setting {arg} has no value; write --{key}=VALUE")
        text = text if has_value else 'True'
        try:
            value = ast.literal_eval(text)  # numbers, booleans, None, quoted strings
        except (ValueError, SyntaxError):
            value = text  # a bare word is a string: --dataset=shakespeare_char
        if isinstance(settings.get(key), str) and not isinstance(value, str):
            value = text  # a string setting keeps what was typed: --start=123 is the prompt "123"
        set_one(key, value, arg)
    return explicit


def pick_device(device='auto', dtype='auto'):
    """(device, dtype name, autocast context) for the scripts. device 'auto': cuda > mps > cpu. dtype 'auto':
    bfloat16 where the GPU has it, float16 on older GPUs (train.py adds a GradScaler), else float32. Weights
    stay float32; matmuls run in the lower precision inside the returned autocast context."""
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
    try:
        kind = torch.device(device).type
    except RuntimeError:
        die(f"unknown device {device!r}; use auto, cpu, cuda, cuda:1 or mps")
    if not dict(cuda=torch.cuda.is_available, mps=torch.backends.mps.is_available).get(kind, lambda: True)():
        die(f"device {device} is not available on this machine; pass --device=cpu")
    if dtype == 'auto':
        dtype = 'float32' if kind != 'cuda' else 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    if dtype not in ('float32', 'bfloat16', 'float16'):
        die(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    if kind == 'cuda':  # tf32 matmuls and convolutions on Ampere and later
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ctx = nullcontext() if dtype == 'float32' else torch.autocast(kind, dtype=getattr(torch, dtype))
    return device, dtype, ctx


def load_tokenizer(data_dir, ckpt, vocab_size):
    """(encode: text -> ids, decode: ids -> text) of the checkpoint's dataset, from data_dir/<dataset>/meta.json:
    a character table ('itos', 'stoi'), GPT-2 BPE ('encoding': 'gpt2') or Pythia's GPT-NeoX BPE ('encoding':
    'neox', the file meta['tokenizer_json']). Padding ids past the tokenizer's vocabulary decode as '\ufffd'."""
    path = os.path.join(data_dir, ckpt.get('dataset') or '', 'meta.json')
    if not os.path.isfile(path) and vocab_size < 50257:  # as nanoGPT: a GPT-2-sized model without one: GPT-2 BPE
        die(f"no {path}, the vocabulary of this checkpoint's dataset; prepare the dataset or pass --data_dir")
    meta = json.loads(Path(path).read_text()) if os.path.isfile(path) else dict(encoding='gpt2')
    try:  # not installed, offline without tiktoken's cached files, no tokenizer.json: one clear line
        if 'itos' in meta:
            itos, stoi = meta['itos'], meta['stoi']
            n_vocab, decode_known = len(itos), lambda ids: ''.join(itos[i] for i in ids)

            def encode(text):
                if unknown := sorted(set(text) - set(stoi)):  # a clear error, not a KeyError
                    die(f"the prompt has characters not in the vocabulary: {', '.join(map(repr, unknown))}; "
                        f"use only these: {''.join(itos)!r}")
                return [stoi[c] for c in text]
        elif meta.get('encoding') == 'gpt2':
            import tiktoken
            enc = tiktoken.get_encoding('gpt2')
            n_vocab, decode_known, encode = enc.n_vocab, enc.decode, lambda s: enc.encode(s, allowed_special='all')
        else:  # 'neox'
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(meta['tokenizer_json'])
            n_vocab, encode, decode_known = (tok.get_vocab_size(), lambda s: tok.encode(s).ids,
                                             lambda ids: tok.decode(ids, skip_special_tokens=False))
    except Exception as e:  # requests' and the Rust library's errors have no common class
        die(f"cannot load the tokenizer of {path} ({type(e).__name__}: {e}); install it or prepare the data again")

    def decode(ids):  # runs of real ids decode together (BPE characters span tokens); padding ids have no text
        runs = itertools.groupby(ids, key=lambda i: i < n_vocab)
        return ''.join(decode_known(list(run)) if real else '\ufffd' * len(list(run)) for real, run in runs)
    return encode, decode


PEAK_BF16_TFLOPS = {  # dense bf16 datasheet peaks (no sparsity), matched against the device name
    'H200': 989, 'H100 PCIe': 756, 'H100': 989, 'GH200': 989, 'A100': 312, 'L40S': 362, 'L4': 121,
    'A10G': 70, 'A10': 125, 'RTX 4090': 165, 'RTX 3090': 71, 'V100': 125, 'T4': 65,
}


def device_peak_flops(device):
    """Peak bf16 FLOP/s of a CUDA device, from its name; None where unknown (CPU, MPS, other GPUs)."""
    if torch.device(device).type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():  # longer, more specific names come first
        if key in name:
            return tflops * 1e12
    return None
