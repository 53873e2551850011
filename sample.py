"""
Sample from a trained AdaPonderLM and see how many passes it spent on each token; or analyse a checkpoint.

    python sample.py                                    # stream samples from out-toy/ckpt.pt, coloured by depth
    python sample.py --start="A:57+486=" --plain        # text[passes] instead of colours
    python sample.py --compare                          # speed: learned halting vs full depth
    python sample.py --mode=analyze                     # tables: depth vs difficulty, the compute-quality dial,
    python sample.py --mode=analyze --compare_ckpts=out-none,out-fixed   # iso-FLOPs (+ other trained models)
    python sample.py --mode=lens --start="C:abc|ab"     # what each pass predicts, before the gate stops it

Options are nanoGPT's (--key=value against DEFAULTS below). Each checkpoint names its dataset; the vocabulary
is read from <data_dir>/<dataset>/meta.json: characters (itos/stoi), GPT-2 BPE or Pythia's GPT-NeoX BPE.
"""
import html
import itertools
import json
import math
import os
import sys
import time
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from adaponder import load_checkpoint

DEFAULTS = dict(
    mode='sample',  # 'sample': stream text | 'analyze': tables 1-3 | 'lens': per-pass predictions for --start
    init_from='resume',  # 'resume' = the checkpoint in out_dir (the only source: sampling needs trained gates)
    out_dir='out-toy',  # the folder holding ckpt.pt (or the path of a .pt file); train.py's default
    data_dir='data',  # the checkpoint's dataset lives in data_dir/<dataset>/ (meta.json, val.bin, ...)
    start='\n',  # the prompt, or FILE:path to read it from a file
    num_samples=10,  # samples to draw
    max_new_tokens=500,  # tokens generated per sample
    temperature=0.8,  # 1.0: the model's distribution, < 1 sharper, 0 greedy
    top_k=200,  # sample among the top_k most likely tokens only (None: all)
    seed=1337,
    device='cuda' if torch.cuda.is_available() else 'cpu',  # 'cpu', 'cuda', 'cuda:1', 'mps'
    dtype='bfloat16' if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else 'float32',
    compile=False,  # torch.compile the full-sequence forward (analyze, lens); decoding stays eager
    halt_threshold=None,  # inference-time tau (None: the checkpoint's); higher = fewer passes
    n_ponder=None,  # cap on the extra passes, at most the trained K (None: K)
    plain=False,  # show tokens as text[passes] (the default when stdout is not a terminal)
    html='',  # also write the samples, coloured by depth, to this HTML file
    compare=False,  # after each sample, time generation with learned halting and at full depth
    split='val',  # analyze: the split to score
    max_tokens=65536,  # analyze: score at most this many tokens of the split
    batch_size=16,  # analyze: windows of block_size per forward
    compare_ckpts='',  # analyze: comma-separated checkpoints for the iso-FLOPs table (e.g. halting none, fixed)
)
NULLABLE = dict(top_k=int, halt_threshold=float, n_ponder=int)  # options that accept None, and their type
KINDS = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'text'}
DTYPES = dict(float32=torch.float32, bfloat16=torch.bfloat16, float16=torch.float16)

# -----------------------------------------------------------------------------
# options, device, checkpoint, vocabulary


def parse_args(argv):
    """--key=value (or a bare --flag for booleans) against DEFAULTS; a clear error for anything else."""
    opt = dict(DEFAULTS)
    for arg in argv:
        key, has_value, text = arg[2:].partition('=')
        if not arg.startswith('--') or key not in opt:
            raise ValueError(f"unknown option {arg!r}; options are --key=value with key one of: {', '.join(opt)}")
        opt[key] = convert(key, text if has_value else None)
    checks = [(opt['mode'] in ('sample', 'analyze', 'lens'), "--mode must be sample, analyze or lens"),
              (min(opt['num_samples'], opt['max_new_tokens']) >= 1, "--num_samples, --max_new_tokens must be >= 1"),
              (opt['temperature'] >= 0, "--temperature must be >= 0 (0: greedy)"),
              (opt['top_k'] is None or opt['top_k'] >= 1, "--top_k must be >= 1, or None for all tokens"),
              (opt['dtype'] in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}")]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{message}; fix the option")
    return opt


def convert(key, text):
    kind = NULLABLE.get(key, type(DEFAULTS[key]))
    if text is None and kind is not bool:
        raise ValueError(f"--{key} needs a value; write --{key}=VALUE")
    if key in NULLABLE and text == 'None':
        return None
    try:
        if kind is bool:  # a bare --plain means --plain=True
            return {None: True, 'true': True, '1': True, 'false': False, '0': False}[text and text.lower()]
        return kind(text)  # str options keep the text as typed: --start=123 is the prompt "123"
    except (KeyError, ValueError):
        raise ValueError(f"--{key}={text} is not {KINDS[kind]}; e.g. --{key}={DEFAULTS[key]}") from None


def setup_device(opt):
    """The torch device and the autocast context every forward runs in."""
    try:
        device = torch.device(opt['device'])
    except RuntimeError:
        raise ValueError(f"unknown device {opt['device']!r}; use cpu, cuda, cuda:1 or mps") from None
    checks = dict(cuda=torch.cuda.is_available, mps=torch.backends.mps.is_available)
    if not checks.get(device.type, lambda: True)():
        raise ValueError(f"device {opt['device']} is not available on this machine; pass --device=cpu")
    dtype = DTYPES[opt['dtype']]
    return device, nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def checkpoint_path(out_dir):
    return out_dir if out_dir.endswith('.pt') else os.path.join(out_dir, 'ckpt.pt')


def load_model(opt, path):
    """The checkpoint's model in eval mode, with the inference-time knobs asked for (tau, a cap on passes)."""
    if opt['init_from'] != 'resume':
        raise ValueError(f"init_from={opt['init_from']}: sample.py samples from trained checkpoints only; "
                         "train from it first (python train.py --init_from=...), then pass --out_dir")
    overrides = {key: opt[key] for key in ('halt_threshold', 'n_ponder') if opt[key] is not None}
    model, ckpt = load_checkpoint(path, opt['device'], **overrides)
    model.eval()
    if opt['compile']:  # only the fixed-shape forward: decoding gathers a different number of rows each pass
        model.forward = torch.compile(model.forward)
    return model, ckpt


def dataset_dir(ckpt, opt, path):
    if not ckpt.get('dataset'):
        raise ValueError(f"{path} does not name its dataset; save it with save_checkpoint(..., dataset=NAME)")
    return os.path.join(opt['data_dir'], ckpt['dataset'])


def load_meta(ckpt, opt, path, vocab_size):
    meta_path = os.path.join(dataset_dir(ckpt, opt, path), 'meta.json')
    if os.path.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    elif vocab_size >= 50257:  # as nanoGPT: a checkpoint without its meta.json is taken to use GPT-2 BPE
        meta = dict(encoding='gpt2')
    else:
        raise FileNotFoundError(f"no {meta_path} (the vocabulary of this checkpoint); prepare the dataset "
                                f"(python {os.path.dirname(meta_path)}/prepare.py) or pass --data_dir")
    if meta.get('vocab_size', 0) > vocab_size:
        raise ValueError(f"{meta_path} has {meta['vocab_size']} tokens but the model only {vocab_size}; "
                         "this data_dir holds a different preparation of the dataset")
    return meta


def load_tokenizer(meta):
    """(encode, decode, n_vocab) of a subword meta.json: GPT-2 BPE ('encoding': 'gpt2', tiktoken) or Pythia's
    GPT-NeoX BPE ('encoding': 'neox', the tokenizer.json it names, Hugging Face's tokenizers)."""
    if meta.get('encoding') == 'gpt2':
        try:
            import tiktoken
            enc = tiktoken.get_encoding('gpt2')
        except Exception as e:  # offline without cached files: requests errors, not one known class
            raise ValueError(f"cannot load the GPT-2 tokenizer ({type(e).__name__}: {e}); "
                             "set TIKTOKEN_CACHE_DIR to a folder with its files") from None
        return lambda text: enc.encode(text, allowed_special='all'), enc.decode, enc.n_vocab
    if meta.get('encoding') == 'neox':
        try:
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(meta['tokenizer_json'])
        except ImportError:
            raise ValueError("this dataset uses the GPT-NeoX tokenizer; pip install tokenizers") from None
        except Exception as e:
            raise ValueError(f"cannot read the GPT-NeoX tokenizer {meta.get('tokenizer_json')} ({e}); "
                             "prepare the dataset again") from None
        decode = lambda ids: tok.decode(ids, skip_special_tokens=False)  # noqa: E731
        return lambda text: tok.encode(text).ids, decode, tok.get_vocab_size()
    raise ValueError("meta.json has neither 'itos' nor a known 'encoding' (gpt2, neox); prepare the dataset again")


class Vocab:
    """Text <-> token ids for the checkpoint's dataset: a character table (meta.json 'itos'/'stoi') or BPE."""

    def __init__(self, meta):
        if 'itos' in meta:
            self.itos, self.stoi = meta['itos'], meta['stoi']
            self.n_vocab, self.decode_known = len(self.itos), lambda ids: ''.join(self.itos[i] for i in ids)
        else:
            self.stoi = None
            self.encode_bpe, self.decode_known, self.n_vocab = load_tokenizer(meta)

    def encode(self, text):
        if self.stoi is None:
            return self.encode_bpe(text)
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise ValueError(f"prompt has characters not in the vocabulary: {', '.join(map(repr, unknown))}; "
                             f"use only these: {''.join(self.itos)!r}")
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        """The text of ids; the padding ids past the tokenizer's vocabulary have none and show as '\ufffd'."""
        runs = itertools.groupby(ids, key=lambda i: i < self.n_vocab)
        return ''.join(self.decode_known(list(run)) if known else '\ufffd' * len(list(run)) for known, run in runs)

    def streamer(self):
        """id -> the text it adds. A BPE token can end in the middle of a UTF-8 character: that token shows
        nothing and the character comes with the token that completes it (at most 4 bytes later)."""
        pending = []

        def text_of(i):
            pending.append(i)
            text = self.decode(pending)
            if text.endswith('\ufffd') and len(pending) < 4:
                return ''
            pending.clear()
            return text
        return text_of


def read_prompt(start):
    if start.startswith('FILE:'):
        path = start[len('FILE:'):]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"prompt file {path} does not exist; fix the path after FILE:")
        try:
            with open(path, encoding='utf-8') as f:
                start = f.read()
        except UnicodeDecodeError:
            raise ValueError(f"prompt file {path} is not UTF-8 text; save it as UTF-8") from None
        if not start:
            raise ValueError(f"prompt file {path} is empty; write a prompt into it or pass --start=TEXT")
    if not start:
        raise ValueError("the prompt is empty; pass --start=TEXT or --start=FILE:path")
    return start


@contextmanager
def config_set(model, **changes):
    """Change inference-time knobs of model.config (halting, halt_threshold, n_ponder...) for a while."""
    saved = {key: getattr(model.config, key) for key in changes}
    for key, value in changes.items():
        setattr(model.config, key, value)
    try:
        yield model
    finally:
        for key, value in saved.items():
            setattr(model.config, key, value)


def sync(model):
    if model.wte.weight.device.type == 'cuda':  # GPU work is asynchronous: wait for it before reading a clock
        torch.cuda.synchronize()

# -----------------------------------------------------------------------------
# sampling: stream tokens as they are chosen, each shown with its depth


@torch.no_grad()
def generate_stream(model, idx, max_new_tokens, temperature=1.0, top_k=None, on_token=None):
    """model.generate, timed: on_token(tokens, depths) gets one entry per row as each token is chosen.
    Returns (idx with the new tokens, depth (B, max_new_tokens), seconds spent generating, without the
    time spent in on_token)."""
    shown = 0.0

    def show(tokens, depths):
        nonlocal shown
        tokens, depths = tokens.tolist(), depths.tolist()  # waits for the GPU: counted as model time
        t = time.perf_counter()
        on_token(tokens, depths)
        shown += time.perf_counter() - t

    sync(model)
    t0 = time.perf_counter()
    idx, depth = model.generate(idx, max_new_tokens, temperature, top_k, on_token=show if on_token else None)
    sync(model)
    return idx, depth, time.perf_counter() - t0 - shown


# xterm-256 colours (all in the 6x6x6 cube) from cool to hot: blue, cyan, green, lime, yellow, orange, red
PALETTE = [33, 45, 49, 118, 226, 214, 208, 196]
RESET = '\x1b[0m'


def depth_colour(depth, n_pass):
    """The palette entry for a depth in 1..n_pass: 1 pass is the coolest, n_pass the hottest."""
    return PALETTE[0] if n_pass == 1 else PALETTE[round((depth - 1) * (len(PALETTE) - 1) / (n_pass - 1))]


def xterm_rgb(code):
    """#rrggbb of an xterm-256 colour of the 6x6x6 cube (codes 16..231), for the HTML page."""
    levels, c = [0, 95, 135, 175, 215, 255], code - 16
    return f'#{levels[c // 36]:02x}{levels[c // 6 % 6]:02x}{levels[c % 6]:02x}'


def format_token(text, depth, n_pass, colour):
    """Colour: black text on the depth's colour; a newline shows as a coloured '↵' so its depth stays
    visible (a coloured line break is invisible). Plain: text[depth], newlines written as \\n[depth] and
    then kept, so the lines of the sample stay lines."""
    if not colour:
        return text.replace('\n', '\\n') + f'[{depth}]' + '\n' * text.endswith('\n')
    start = f'\x1b[30;48;5;{depth_colour(depth, n_pass)}m'
    return start + text.replace('\n', '↵' + RESET + '\n' + start) + RESET


def legend(n_pass, colour):
    if not colour:
        return f"each new token is shown as text[passes], passes 1..{n_pass}; \\n is a newline"
    keys = ''.join(format_token(f' {d} ', d, n_pass, True) for d in range(1, n_pass + 1))
    return f"passes per token: {keys} (cool = few, hot = many; ↵ is a newline)"


def token_printer(vocab, n_pass, colour, pieces):
    """The on_token callback: print each new token with its depth; keep (text, depth) for the HTML page."""
    text_of = vocab.streamer()

    def on_token(tokens, depths):
        text = text_of(tokens[0])
        pieces.append((text, depths[0]))
        print(format_token(text, depths[0], n_pass, colour), end='', flush=True)
    return on_token


def depth_stats(model, depth):
    """Mean passes, depth histogram and forward FLOPs per token of a tensor of depths."""
    hist = torch.bincount(depth.flatten() - 1, minlength=model.config.n_ponder + 1).tolist()
    return dict(passes=depth.float().mean().item(), hist=hist, flops=model.flops_per_token(hist)['total'])


def full_depth_flops(model, ckpt):
    """FLOPs per token of the checkpoint as trained, at full depth: what every flops_vs_full compares to,
    also under a cap on passes or another halting rule."""
    trained = ckpt['model_args']
    with config_set(model, n_ponder=trained['n_ponder'], halting=trained['halting']):
        return model.flops_per_token([0] * trained['n_ponder'] + [1])['total']


def compare_speed(model, idx, opt, seed):
    """Time the same generation (same seed) with the model's halting and with halting off (every pass)."""
    speed, settings = {}, (opt['temperature'], opt['top_k'])
    for name, halting in (('adaptive', model.config.halting), ('full', 'none')):
        with config_set(model, halting=halting):
            generate_stream(model, idx, 8, *settings)  # warm-up: a first call's allocations would skew the time
            torch.manual_seed(seed)
            _, depth, seconds = generate_stream(model, idx, opt['max_new_tokens'], *settings)
        speed[name] = (depth.shape[1] / seconds, depth.float().mean().item())
    (fast, passes), (full, full_passes) = speed['adaptive'], speed['full']
    print(f"compare tok/s_adaptive={fast:.1f} tok/s_full={full:.1f} speedup={fast / full:.2f}x "
          f"passes={passes:.2f} passes_full={full_passes:.2f}")


def sample_once(opt, model, vocab, ctx, idx, colour, i, full_flops):
    """Stream one sample to the terminal; returns its (text, depth) pieces and its stats line."""
    pieces, settings = [], (opt['max_new_tokens'], opt['temperature'], opt['top_k'])
    show = token_printer(vocab, model.config.n_ponder + 1, colour, pieces)
    with ctx:
        _, depth, seconds = generate_stream(model, idx, *settings, on_token=show)
    s, n = depth_stats(model, depth), depth.shape[1]
    return pieces, (f"sample i={i} tokens={n} tok/s={n / seconds:.1f} passes={s['passes']:.2f} "
                    f"flops_vs_full={s['flops'] / full_flops:.2f} depth_hist={s['hist']}")


def sample_mode(opt, model, ckpt, vocab, ctx):
    prompt = read_prompt(opt['start'])
    idx = torch.tensor([vocab.encode(prompt)], dtype=torch.long, device=model.wte.weight.device)  # (1, T)
    colour = not opt['plain'] and sys.stdout.isatty()
    print(legend(model.config.n_ponder + 1, colour))
    with ctx:
        generate_stream(model, idx, 8)  # warm-up, so the first sample's tok/s is not a first call's allocations
    samples = []
    for i in range(opt['num_samples']):
        torch.manual_seed(opt['seed'] + i)  # one seed per sample, so --compare can replay it at full depth
        print(prompt, end='', flush=True)
        pieces, stats = sample_once(opt, model, vocab, ctx, idx, colour, i, full_depth_flops(model, ckpt))
        print('\n' + stats)
        if opt['compare']:
            with ctx:
                compare_speed(model, idx, opt, opt['seed'] + i)
        print('---------------')
        samples.append((prompt, pieces, stats))
    if opt['html']:
        write_html(opt['html'], samples, model.config.n_ponder + 1)
        print(f"wrote {opt['html']}")


def write_html(path, samples, n_pass):
    """A self-contained page: each new token on its depth's colour, the depth in its tooltip."""
    def span(text, depth):
        colour = xterm_rgb(depth_colour(depth, n_pass))
        shown = html.escape(text.replace('\n', '↵\n'))  # as in the terminal: a newline's depth stays visible
        return f'<span style="background:{colour}" title="passes: {depth}">{shown}</span>'
    keys = ' '.join(span(f' {d} ', d) for d in range(1, n_pass + 1))
    body = [f'<h1>AdaPonder samples</h1><p>passes per token: {keys} (the prompt is not coloured)</p>']
    for prompt, pieces, stats in samples:
        body.append(f'<pre>{html.escape(prompt)}{"".join(span(t, d) for t, d in pieces)}</pre>'
                    f'<p><code>{html.escape(stats)}</code></p><hr>')
    page = ('<!doctype html><html><head><meta charset="utf-8"><title>AdaPonder samples</title><style>'
            'body{font-family:sans-serif} pre{white-space:pre-wrap;font-size:15px}</style></head><body>'
            + '\n'.join(body) + '</body></html>\n')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(page)

# -----------------------------------------------------------------------------
# analysis: tables a reader can trust, every row the same tokens


def print_table(tag, rows):
    """Rows of key=value pairs behind a tag, padded into columns: a table to read, lines to grep."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[f'{key}={row[key]}' if key in row else '' for key in keys] for row in rows]
    widths = [max(len(line[j]) for line in cells) for j in range(len(keys))]
    for line in cells:
        print(tag, ' '.join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


def ranks(x):
    """Ranks 1..n of a 1-D tensor, ties sharing their average rank (depths are all ties)."""
    values, order = x.double().sort()
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # rank of each group's last member
    r = torch.empty(len(x), dtype=torch.float64)
    r[order] = (last - (counts - 1) / 2)[group]  # the mean of ranks last-count+1 .. last
    return r


def spearman(x, y):
    """Spearman correlation: the Pearson correlation of the tie-averaged ranks (nan if x or y is constant)."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return ((rx * ry).sum() / (rx.norm() * ry.norm())).item()


def evaluate(model, data, opt, ctx, progress=False):
    """Per-token NLL and depth of the model as configured now; the seed fixes halting='fixed' draws."""
    torch.manual_seed(opt['seed'])
    with ctx:
        nll, depth, targets = model.score(data, opt['batch_size'], opt['max_tokens'], progress)
    return dict(nll=nll, depth=depth, targets=targets, loss=nll.mean().item(), **depth_stats(model, depth))


def depth_vs_difficulty(ev, labels, classes, loss_key, n_bins=5):
    """Table 1: mean passes per NLL quantile, the rank correlation of depth and NLL, and per toy class."""
    nll, depth, n_pass = ev['nll'], ev['depth'], len(ev['hist'])
    rows = []
    for q, chunk in enumerate(nll.argsort().tensor_split(n_bins)):  # easiest fifth first
        shares = torch.bincount(depth[chunk] - 1, minlength=n_pass) * 100 / len(chunk)
        rows.append(dict(q=f'{q + 1}/{n_bins}', nll=f'{nll[chunk].min():.3f}..{nll[chunk].max():.3f}',
                         loss=f'{nll[chunk].mean():.4f}', passes=f'{depth[chunk].float().mean():.2f}',
                         depth_pct=[round(s) for s in shares.tolist()]))
    print_table('nll_quantile', rows)
    print(f"depth_vs_nll spearman={spearman(depth, nll):.3f} tokens={len(nll)}"
          "  (> 0: more passes on harder tokens; nan: every token ran the same passes)")
    if labels is None:
        return
    rows = []
    for c, name in enumerate(classes):
        mine = labels == c
        if mine.any():
            rows.append(dict(name=name, share=f'{mine.double().mean():.1%}',
                             passes=f'{depth[mine].float().mean():.2f}', **{loss_key: f'{nll[mine].mean():.4f}'}))
    print_table('class', rows)


def pareto(rows):
    """Whether each row is Pareto-optimal: no other row is as good on both FLOPs and loss, and better on one."""
    def beats(a, b):
        at_least_as_good = a['flops'] <= b['flops'] and a['loss'] <= b['loss']
        return at_least_as_good and (a['flops'], a['loss']) != (b['flops'], b['loss'])
    return [not any(beats(other, row) for other in rows) for row in rows]


def dial_settings(cfg):
    """(tau, cap) pairs: tau from 0 (never halt) through the trained tau's decades up to 0.9, then caps on
    passes with the trained tau."""
    K, tau = cfg.n_ponder, cfg.halt_threshold
    if cfg.halting != 'learned':  # no gates: only the cap moves compute
        return [(tau, cap) for cap in range(K, -1, -1)]
    taus = {0.0, 0.5, 0.9} | {tau * m for m in (0.01, 0.1, 0.3, 1, 3, 10, 30, 100, 1000)}
    taus = sorted(t for t in taus if t < 1)  # gate values are < 1: tau >= 1 halts every token after one pass
    return [(t, K) for t in taus] + [(tau, cap) for cap in range(K - 1, -1, -1)]


def compute_quality_dial(model, data, opt, ctx, full_flops, loss_key):
    """Table 2: one checkpoint, halting threshold and pass cap changed at inference."""
    rows = []
    for tau, cap in tqdm(dial_settings(model.config), desc='dial', leave=False):
        with config_set(model, halt_threshold=tau, n_ponder=cap):
            rows.append(dict(tau=tau, cap=cap, **evaluate(model, data, opt, ctx)))
    print_table('dial', [dict(tau=f'{r["tau"]:.3g}', cap=r['cap'], passes=f'{r["passes"]:.2f}',
                              flops_vs_full=f'{r["flops"] / full_flops:.3f}', **{loss_key: f'{r["loss"]:.4f}'},
                              pareto='yes' if best else 'no') for r, best in zip(rows, pareto(rows))])
    return rows


def iso_row(name, halting, ev, learned, full_flops, loss_key):
    row = dict(model=name, halting=halting, passes=f'{ev["passes"]:.2f}',
               flops_vs_full=f'{ev["flops"] / full_flops:.3f}', **{loss_key: f'{ev["loss"]:.4f}'})
    if torch.equal(ev['targets'], learned['targets']):  # same tokens: a paired difference and its standard error
        diff = ev['nll'] - learned['nll']
        row.update(delta=f'{diff.mean():+.4f}', se=f'{diff.std() / math.sqrt(len(diff)):.4f}')
    return row


def iso_flops(model, data, opt, ctx, learned, full_flops, loss_key, ckpt):
    """Table 3: learned halting against random depths with the same mean, then other trained checkpoints."""
    halting = model.config.halting
    rows = [iso_row('this', halting, learned, learned, full_flops, loss_key)]
    for dist in tqdm(('uniform', 'geometric'), desc='fixed pruning', leave=False):
        with config_set(model, halting='fixed', fixed_depth_dist=dist, fixed_mean_depth=learned['passes']):
            fixed = evaluate(model, data, opt, ctx)
        rows.append(iso_row('this', f'fixed-{dist}', fixed, learned, full_flops, loss_key))
    for path in tqdm(list(filter(None, opt['compare_ckpts'].split(','))), desc='checkpoints', leave=False):
        other, other_ckpt = load_model(opt, checkpoint_path(path))
        if other_ckpt.get('dataset') != ckpt.get('dataset'):
            raise ValueError(f"{path} was trained on {other_ckpt.get('dataset')!r}, not {ckpt.get('dataset')!r}; "
                             "compare checkpoints of the same dataset")
        ev = evaluate(other, data, opt, ctx)
        rows.append(iso_row(path, other.config.halting, ev, learned, full_flops, loss_key))
    print_table('iso', rows)
    print("(delta: loss minus this checkpoint's, paired over the same tokens, with its standard error; "
          "fixed pruning keeps this model's gate scales and draws each depth at random)")


def load_split(opt, ckpt, path, block_size):
    folder = dataset_dir(ckpt, opt, path)
    bin_path = os.path.join(folder, f"{opt['split']}.bin")
    if not os.path.isfile(bin_path):
        raise FileNotFoundError(f"no {bin_path}; prepare the dataset first (python {folder}/prepare.py)")
    data = np.memmap(bin_path, dtype=np.uint16, mode='r')
    if len(data) <= block_size:
        raise ValueError(f"{bin_path} has {len(data)} tokens, fewer than one window of {block_size + 1}; "
                         "prepare a larger split")
    class_path = os.path.join(folder, f"{opt['split']}_class.bin")  # the toy dataset's difficulty labels
    labels = np.fromfile(class_path, dtype=np.uint8) if os.path.isfile(class_path) else None
    return data, labels


def analyze(opt, model, ckpt, path, ctx):
    cfg = model.config
    data, labels = load_split(opt, ckpt, path, cfg.block_size)
    meta = load_meta(ckpt, opt, path, cfg.vocab_size)
    loss_key = f"{opt['split']}_loss"
    print(f"analyze ckpt={path} dataset={ckpt['dataset']} split={opt['split']} halting={cfg.halting} "
          f"K={cfg.n_ponder} tau={cfg.halt_threshold:g} iter={ckpt.get('iter_num', '?')} (loss: CE in nats)")
    full_flops = full_depth_flops(model, ckpt)
    learned = evaluate(model, data, opt, ctx, progress=True)

    print("\n== 1. depth vs difficulty: mean passes per NLL quintile (paper: more passes on high-NLL tokens) ==")
    if labels is not None:  # label[j] = class of predicting token j; score's entry j predicts token j + 1
        labels = torch.as_tensor(labels[1:1 + len(learned['nll'])].astype(np.int64))
    depth_vs_difficulty(learned, labels, meta.get('classes', []), loss_key)

    print("\n== 2. compute-quality dial: halting threshold tau and a cap on passes, changed at inference ==")
    compute_quality_dial(model, data, opt, ctx, full_flops, loss_key)

    print(f"\n== 3. iso-FLOPs: this checkpoint's halting vs random depths at the same mean passes "
          f"({learned['passes']:.2f}) ==")
    iso_flops(model, data, opt, ctx, learned, full_flops, loss_key, ckpt)

# -----------------------------------------------------------------------------
# the logit lens: what each pass predicts before the gate stops it


@torch.no_grad()
def logit_lens(model, idx, ctx):
    """Greedy prediction (token, probability) after each pass j = 1..K+1 for every position of idx (1, T),
    and each token's depth. Capping the model at j passes reproduces pass j exactly: passes 1..j, and every
    halting decision in them, are unchanged by what comes after."""
    with ctx:
        depth = model(idx).depth[0]  # (T,)
        per_pass = []
        for j in range(model.config.n_ponder + 1):
            with config_set(model, n_ponder=j):
                probs = F.softmax(model(idx).logits[0].float(), dim=-1)  # (T, V)
            per_pass.append(probs.max(dim=-1))
    return per_pass, depth


def lens_mode(opt, model, vocab, ctx):
    ids = vocab.encode(read_prompt(opt['start']))
    if len(ids) > model.config.block_size:
        print(f"(the prompt has {len(ids)} tokens: only its last block_size={model.config.block_size} are shown)")
        ids = ids[-model.config.block_size:]
    per_pass, depth = logit_lens(model, torch.tensor([ids], device=model.wte.weight.device), ctx)

    def show(i):  # quoted, so that spaces and newlines are visible
        return repr(vocab.decode([i]))

    rows = []
    for t, token in enumerate(ids):
        row = dict(pos=t, token=show(token), next=show(ids[t + 1]) if t + 1 < len(ids) else '?')
        for j, (p, pred) in enumerate(per_pass):
            row[f'pass{j + 1}'] = f'{show(pred[t].item())}{p[t].item():.2f}' if j < depth[t] else '-'
        rows.append(dict(row, depth=depth[t].item()))
    print("== logit lens: the greedy next-token prediction (and its probability) after each pass ==")
    print("'-': the token had halted before this pass, its prediction stays the last one shown")
    print_table('lens', rows)

# -----------------------------------------------------------------------------


def run(opt):
    _, ctx = setup_device(opt)
    torch.manual_seed(opt['seed'])
    path = checkpoint_path(opt['out_dir'])
    model, ckpt = load_model(opt, path)
    if opt['mode'] == 'analyze':
        return analyze(opt, model, ckpt, path, ctx)
    vocab = Vocab(load_meta(ckpt, opt, path, model.config.vocab_size))
    if opt['mode'] == 'lens':
        return lens_mode(opt, model, vocab, ctx)
    sample_mode(opt, model, ckpt, vocab, ctx)


def main(argv=None):
    if hasattr(sys.stdout, 'reconfigure'):  # a console that cannot show a character gets '?', not a crash
        sys.stdout.reconfigure(errors='replace')
    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == '__main__':
    main()
