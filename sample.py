"""Sample from a trained AdaPonderLM, each new token shown with the number of passes the model spent choosing it:
$ python sample.py --start="A:57+486=" --halt_threshold=1e-2 --html=samples.html  # any setting below as --key=value
"""
import itertools
import os
import signal
import sys
import time
from html import escape
from importlib.util import find_spec
from pathlib import Path

import torch

from adaponder import AdaPonderConfig, AdaPonderLM, depth_histogram
from configurator import check, configure, die, interrupted
from data.tokenizer import load_tokenizer
from pretrained import load_checkpoint, pick_device

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
image = ''  # and draw them into this PNG picture (needs matplotlib)
# -----------------------------------------------------------------------------
PICTURES = ('.png', '.svg', '.pdf', '.jpg', '.jpeg', '.webp')  # the kinds of file image= may write
PALETTE = [(33, '#0087ff'), (45, '#00d7ff'), (49, '#00ffaf'), (118, '#87ff00'),  # (xterm-256 code, its RGB)
           (226, '#ffff00'), (214, '#ffaf00'), (208, '#ff8700'), (196, '#ff0000')]  # from cool to hot


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


def write_image(path, prompt, samples, colours, width=80):
    """The page as a PNG: the legend, then each sample in monospace cells (a new token's characters on its depth's
    colour, a newline as '↵' and then a new row), rows wrapped at width columns, and its stats in small grey."""
    from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched (a notebook keeps its own)
    from matplotlib.patches import Rectangle
    rows = [[(c, 0) for c in 'passes per token: '] + [(c, d) for d in range(1, len(colours) + 1) for c in f' {d} ']]
    for pieces, stats in samples:  # rows of (character, depth) cells, depth 0 black on white; the stats: a str
        rows += [[], []]  # a blank row, then the sample's first
        for c, d in [(c, 0) for c in prompt] + [(c, d) for text, d in pieces for c in text.replace('\n', '↵\n')]:
            if c == '\n' or len(rows[-1]) == width:
                rows.append([])
            if c != '\n':
                rows[-1].append((c, d))
        rows.append(stats)
    cols = max(len(row) for row in rows if isinstance(row, list))
    fig = Figure(figsize=(cols * 6.5 / 72, len(rows) * 14 / 72))  # cells of 6.5 x 14 points: 13 x 28 pixels
    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, cols), ylim=(len(rows), 0))
    ax.set_axis_off()
    for y, row in enumerate(rows):
        if isinstance(row, str):
            ax.text(0, y + .5, row, color='grey', va='center', family='monospace', fontsize=7)
            continue
        x = 0
        for d, run in itertools.groupby(d for _, d in row):  # a rectangle per run of a colour: no seams inside it
            n = len(list(run))
            if d:
                ax.add_patch(Rectangle((x, y + .1), n, .8, color=colours[d - 1][1], lw=0))
            x += n
        for x, (c, _) in enumerate(row):
            ax.text(x + .5, y + .5, c, ha='center', va='center', family='monospace', fontsize=10)
    fig.savefig(path, dpi=144, bbox_inches='tight', pad_inches=.125)  # tight: a stats line may be the longest


if __name__ == '__main__':
    configure(globals())
    check(globals(), num_samples='integer [1, inf)', max_new_tokens='integer [1, inf)', top_k='integer [1, inf)',
          temperature='[0, inf)', halt_threshold='[0, 1]', n_ponder='integer [0, inf)')  # None: all, the checkpoint's
    for what, path, kinds in (('html', html, ('.html', '.htm')), ('image', image, PICTURES)):  # now, not after sampling
        if path and not path.lower().endswith(kinds):  # nor over a checkpoint: --image=out-toy/ckpt.pt
            die(f"{what}={path} is not a file name ending in {', '.join(kinds)}; pass e.g. --{what}=samples{kinds[0]}")
        folder = os.path.dirname(os.path.abspath(path))
        if path and (os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK)):
            why = 'it is a folder' if os.path.isdir(path) else 'no such folder, or read-only'
            die(f"cannot write {what}={path}: {why}; pass a file in a folder you can write")
    if image and find_spec('matplotlib') is None:  # now, not after minutes of sampling
        die("image= draws with matplotlib, which is not installed; pip install matplotlib")
    try:
        device, dtype, ctx = pick_device(device, dtype)
    except ValueError as e:
        die(e)
    try:  # the inference-time halting threshold and cap on passes, where set, replace the checkpoint's
        model, ckpt = load_checkpoint(os.path.join(out_dir, 'ckpt.pt'), device, **{k: v for k, v in dict(
            halt_threshold=halt_threshold, n_ponder=n_ponder).items() if v is not None})
    except (ValueError, FileNotFoundError) as e:
        die(e)
    model.eval()
    try:
        prompt = Path(start[len('FILE:'):]).read_text(encoding='utf-8') if start.startswith('FILE:') else start
    except (OSError, UnicodeDecodeError) as e:
        die(f"cannot read the prompt {start} ({getattr(e, 'strerror', None) or 'not UTF-8'}); pass a UTF-8 text file")
    if not prompt:
        die("the prompt is empty; pass --start=TEXT, or --start=FILE:path of a file that is not empty")
    try:  # a missing or mismatched vocabulary, characters it lacks
        encode, decode = load_tokenizer(data_dir, ckpt, model.config.vocab_size)
        idx = torch.tensor([encode(prompt)], dtype=torch.long, device=device)  # (1, T)
    except ValueError as e:
        die(e)
    n_pass, trained_K = model.config.n_ponder + 1, ckpt['model_args']['n_ponder']
    with torch.device('meta'):  # shapes only: flops_vs_full compares with the model as trained, at full depth
        as_trained = AdaPonderLM(AdaPonderConfig(**ckpt['model_args']))
    full_flops = as_trained.flops_per_token([0] * trained_K + [1])['total']
    colours = [PALETTE[round(d * (len(PALETTE) - 1) / max(n_pass - 1, 1))] for d in range(n_pass)]
    terminal = None if plain or not sys.stdout.isatty() else colours  # plain text[depth] unless on a terminal
    print(f"passes per token: {''.join(show(f' {d} ', d, colours) for d in range(1, n_pass + 1))} (cool = few, hot "
          "= many; ↵ is a newline)" if terminal else f"each new token as text[passes], passes 1..{n_pass}")
    samples = []  # Ctrl-C from here: one line, not a traceback
    signal.signal(signal.SIGINT, lambda *_: interrupted("the samples above were printed, no file written"))
    with ctx:
        torch.manual_seed(seed)
        for i in range(num_samples):
            print(prompt, end='', flush=True)
            pieces, pending, busy = [], [], 0.0  # pieces: (text, depth) of each new token; busy: seconds computing
            t0 = time.perf_counter()
            for token, depth in model.stream(idx, max_new_tokens, temperature, top_k):
                pending.append(token.item())  # a BPE token may end inside a UTF-8 character (4 bytes at most):
                text = decode(pending)  # then it shows nothing, and the character comes with the one completing it
                text, pending = ('', pending) if text.endswith('\ufffd') and len(pending) < 4 else (text, [])
                pieces.append((text, depth.item()))
                busy += time.perf_counter() - t0
                print(show(*pieces[-1], terminal), end='', flush=True)
                t0 = time.perf_counter()  # the terminal's time is not the model's: the clock stops while printing
            tok_s = max_new_tokens / busy
            hist = depth_histogram(torch.tensor([d for _, d in pieces]), n_pass)
            flops = model.flops_per_token(hist)  # with the mean passes
            stats = (f"sample i={i} tokens={max_new_tokens} tok/s={tok_s:.1f} passes={flops['mean_depth']:.2f} "
                     f"flops_vs_full={flops['total'] / full_flops:.2f} depth_hist=[{','.join(map(str, hist))}]")
            print(f"\n{stats}\n---------------")
            samples.append((pieces, stats))
    for path, write in ((html, write_html), (image, write_image)):
        if path:
            try:
                write(path, prompt, samples, colours)
            except OSError as e:  # a full disk: the samples above are printed, the file is not
                die(f"could not write {path} ({e.strerror}); free some space or pass another path")
            print(f"wrote {path}")
