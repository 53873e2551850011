"""
Sample from a trained AdaPonderLM, each new token shown with the number of passes the model spent choosing it:
$ python sample.py --start="A:57+486=" --halt_threshold=1e-2 --html=samples.html  # any setting below as --key=value
"""
import itertools
import json
import os
import sys
import time
from html import escape
from pathlib import Path

import torch

from adaponder import AdaPonderConfig, AdaPonderLM, depth_histogram, load_checkpoint
from configurator import configure, die, pick_device

# -----------------------------------------------------------------------------
out_dir = 'out-toy'  # the folder holding ckpt.pt
data_dir = 'data'  # the vocabulary is data_dir/<the checkpoint's dataset>/meta.json
start = '\n'  # the prompt, or FILE:path to read it from a UTF-8 file
num_samples = 10  # samples to draw
max_new_tokens = 500  # tokens generated per sample
temperature = 0.8  # 1.0: the model's distribution, < 1 sharper, 0 greedy
top_k = 200  # sample among the top_k most likely tokens only (None: all)
seed = 1337
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto', 'float32', 'bfloat16' or 'float16'
halt_threshold = None  # tau at inference (None: the checkpoint's); higher = fewer passes
n_ponder = None  # a cap on the extra passes, at most the trained K (None: K)
plain = False  # text[passes] even on a terminal
html = ''  # also write the samples, coloured by passes, to this HTML file
# -----------------------------------------------------------------------------
PALETTE = [(33, '#0087ff'), (45, '#00d7ff'), (49, '#00ffaf'), (118, '#87ff00'),  # (xterm-256 code, its RGB)
           (226, '#ffff00'), (214, '#ffaf00'), (208, '#ff8700'), (196, '#ff0000')]  # from cool to hot


def load_tokenizer(data_dir, ckpt, vocab_size):
    """(encode: text -> ids, decode: ids -> text) of the checkpoint's dataset, from data_dir/<dataset>/meta.json:
    a character table ('itos', 'stoi'), GPT-2 BPE ('encoding': 'gpt2') or Pythia's GPT-NeoX BPE ('encoding':
    'neox', the file meta['tokenizer_json']). Padding ids past the tokenizer's vocabulary decode as '\ufffd'."""
    path = os.path.join(data_dir, ckpt.get('dataset') or '', 'meta.json')
    if not os.path.isfile(path) and vocab_size < 50257:
        die(f"no {path}, the vocabulary of this checkpoint's dataset; prepare the dataset or pass --data_dir")
    # as nanoGPT: without its meta.json, a GPT-2-sized model is taken to use GPT-2 BPE
    meta = json.loads(Path(path).read_text()) if os.path.isfile(path) else dict(encoding='gpt2')
    if 'itos' in meta:
        itos, stoi = meta['itos'], meta['stoi']
        n_vocab, decode_known = len(itos), lambda ids: ''.join(itos[i] for i in ids)

        def encode(text):
            if unknown := sorted(set(text) - set(stoi)):  # a clear error, not a KeyError
                die(f"the prompt has characters not in the vocabulary: {', '.join(map(repr, unknown))}; "
                    f"use only these: {''.join(itos)!r}")
            return [stoi[c] for c in text]
    else:
        try:  # not installed, offline without tiktoken's cached files, no tokenizer.json: one clear line
            if meta.get('encoding') == 'gpt2':
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


def show(text, depth, colours=None):
    """With colours (one PALETTE entry per depth): black on the depth's colour, a newline shown as a coloured '↵'
    (a coloured line break is invisible). Without: text[depth], a newline written as \\n[depth] and then kept."""
    if colours is None:
        return text.replace('\n', '\\n') + f'[{depth}]' + '\n' * text.endswith('\n')
    on = f'\x1b[30;48;5;{colours[depth - 1][0]}m'
    return on + text.replace('\n', '↵\x1b[0m\n' + on) + '\x1b[0m'


def write_html(path, prompt, samples, colours):
    """A page of the samples: each new token on its depth's colour, the depth as its tooltip."""
    def span(text, depth):  # a newline shows as '↵' here too, or its colour would not show
        shown = escape(text).replace('\n', '↵\n')
        return f'<span style="background:{colours[depth - 1][1]}" title="passes: {depth}">{shown}</span>'
    body = ''.join(f'<pre>{escape(prompt)}{"".join(span(*piece) for piece in pieces)}</pre>'
                   f'<p><code>{escape(stats)}</code></p>' for pieces, stats in samples)
    legend = ' '.join(span(f' {d} ', d) for d in range(1, len(colours) + 1))
    Path(path).write_text(f'<!doctype html><meta charset="utf-8"><title>AdaPonder samples</title><style>pre{{'
                          f'white-space:pre-wrap}}</style><p>passes per token: {legend}</p>{body}\n', encoding='utf-8')


if __name__ == '__main__':
    configure(globals())
    valid = [min(num_samples, max_new_tokens) >= 1, temperature >= 0, top_k is None or top_k >= 1,
             halt_threshold is None or type(halt_threshold) in (int, float) and halt_threshold >= 0,
             n_ponder is None or type(n_ponder) is int and n_ponder >= 0]
    if not all(valid):
        die("num_samples, max_new_tokens, top_k must be >= 1 (top_k=None: all tokens), temperature >= 0, "
            "halt_threshold a number >= 0, n_ponder an integer >= 0 (None: the checkpoint's); fix the setting")
    device, dtype, ctx = pick_device(device, dtype)
    try:  # the inference-time halting threshold and cap on passes, where set, replace the checkpoint's
        model, ckpt = load_checkpoint(os.path.join(out_dir, 'ckpt.pt'), device, **{k: v for k, v in dict(
            halt_threshold=halt_threshold, n_ponder=n_ponder).items() if v is not None})
    except (ValueError, FileNotFoundError) as e:
        die(e)
    model.eval()
    encode, decode = load_tokenizer(data_dir, ckpt, model.config.vocab_size)
    try:
        prompt = Path(start[len('FILE:'):]).read_text(encoding='utf-8') if start.startswith('FILE:') else start
    except (OSError, UnicodeDecodeError) as e:
        die(f"cannot read the prompt {start} ({getattr(e, 'strerror', None) or 'not UTF-8'}); pass a UTF-8 text file")
    if not prompt:
        die("the prompt is empty; pass --start=TEXT, or --start=FILE:path of a file that is not empty")
    idx = torch.tensor([encode(prompt)], dtype=torch.long, device=device)  # (1, T)
    n_pass, trained_K = model.config.n_ponder + 1, ckpt['model_args']['n_ponder']
    with torch.device('meta'):  # shapes only: flops_vs_full compares with the model as trained, at full depth
        as_trained = AdaPonderLM(AdaPonderConfig(**ckpt['model_args']))
    full_flops = as_trained.flops_per_token([0] * trained_K + [1])['total']
    colours = [PALETTE[round(d * (len(PALETTE) - 1) / max(n_pass - 1, 1))] for d in range(n_pass)]
    terminal = None if plain or not sys.stdout.isatty() else colours  # plain text[depth] unless on a terminal
    print(f"passes per token: {''.join(show(f' {d} ', d, colours) for d in range(1, n_pass + 1))} (cool = few, hot "
          "= many; ↵ is a newline)" if terminal else f"each new token as text[passes], passes 1..{n_pass}")
    samples = []
    with ctx:
        list(model.stream(idx, 2, temperature, top_k))  # warm-up: the first sample's tok/s without allocations
        torch.manual_seed(seed)
        for i in range(num_samples):
            print(prompt, end='', flush=True)
            pieces, pending, t0 = [], [], time.perf_counter()  # pieces: (text, depth) of each new token
            for token, depth in model.stream(idx, max_new_tokens, temperature, top_k):
                pending.append(token.item())  # a BPE token may end inside a UTF-8 character (4 bytes at most):
                text = decode(pending)  # then it shows nothing, and the character comes with the one completing it
                text, pending = ('', pending) if text.endswith('\ufffd') and len(pending) < 4 else (text, [])
                pieces.append((text, depth.item()))
                print(show(*pieces[-1], terminal), end='', flush=True)
            tok_s = max_new_tokens / (time.perf_counter() - t0)  # as the reader sees them, printing included
            hist = depth_histogram(torch.tensor([d for _, d in pieces]), n_pass)
            flops = model.flops_per_token(hist)  # with the mean passes
            stats = (f"sample i={i} tokens={max_new_tokens} tok/s={tok_s:.1f} passes={flops['mean_depth']:.2f} "
                     f"flops_vs_full={flops['total'] / full_flops:.2f} depth_hist=[{','.join(map(str, hist))}]")
            print(f"\n{stats}\n---------------")
            samples.append((pieces, stats))
    if html:
        write_html(html, prompt, samples, colours)
        print(f"wrote {html}")
