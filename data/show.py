"""New tokens shown on the colour of the passes that chose them, as sample.py and the tutorial
show them: on a terminal (show), as an HTML page (write_html) and as a PNG picture (write_image);
and the scripts' numbers: tables (print_table), a training run's lines (metrics_line)."""
import itertools
import os
from html import escape
from importlib.util import find_spec
from pathlib import Path

PALETTE = [(33, '#0087ff'), (45, '#00d7ff'), (49, '#00ffaf'), (118, '#87ff00'),  # cool: few passes
           (226, '#ffff00'), (214, '#ffaf00'), (208, '#ff8700'), (196, '#ff0000')]  # hot: many
PICTURES = ('.png', '.svg', '.pdf', '.jpg', '.jpeg', '.webp')  # what write_image can write

def depth_colours(n_pass):  # (xterm-256 code, RGB) for depths 1..n_pass, spread from cool to hot
    return [PALETTE[round(d * (len(PALETTE) - 1) / max(n_pass - 1, 1))] for d in range(n_pass)]

def show(text, depth, colours=None):
    """With colours: black on the depth's colour, a newline as a coloured '↵' (a coloured break
    is invisible). Without: text[depth], a newline written as \\n[depth] and then kept."""
    if colours is None:
        return text.replace('\n', '\\n') + f'[{depth}]' + '\n' * text.endswith('\n')
    on = f'\x1b[30;48;5;{colours[depth - 1][0]}m'
    return on + text.replace('\n', '↵\x1b[0m\n' + on) + '\x1b[0m'

def check_files(**paths):
    """ValueError now, not minutes later, for a page (html=) or picture that cannot be made."""
    for what, path in paths.items():
        kinds = ('.html', '.htm') if what == 'html' else PICTURES
        folder = os.path.dirname(os.path.abspath(path))
        if path and not path.lower().endswith(kinds):  # nor over a checkpoint: --image=out/ckpt.pt
            raise ValueError(f"{what}={path} is not a file name ending in {', '.join(kinds)}; "
                             f"pass e.g. --{what}=out{kinds[0]}")
        if path and (os.path.isdir(path) or not os.path.isdir(folder) or
                     not os.access(folder, os.W_OK)):
            why = 'it is a folder' if os.path.isdir(path) else 'no such folder, or read-only'
            raise ValueError(f"cannot write {what}={path}: {why}; pass a file in a folder you can "
                             "write")
        if path and kinds is PICTURES and find_spec('matplotlib') is None:
            raise ValueError(f"{what}= draws with matplotlib, which is not installed; pip install "
                             "matplotlib")

def write_html(path, prompt, samples, colours):
    """A page of samples ((pieces, stats), a piece (text, depth)): a token on its depth's colour."""
    def span(text, depth):  # a newline shows as '↵' here too, or its colour would not show
        text, colour = escape(text).replace('\n', '↵\n'), colours[depth - 1][1]
        return f'<span style="background:{colour}" title="passes: {depth}">{text}</span>'
    body = ''.join(f'<pre>{escape(prompt)}{"".join(span(*piece) for piece in pieces)}</pre>'
                   f'<p><code>{escape(stats)}</code></p>' for pieces, stats in samples)
    legend = ' '.join(span(f' {d} ', d) for d in range(1, len(colours) + 1))
    Path(path).write_text(f'<!doctype html><meta charset="utf-8"><title>AdaPonder samples</title>'
                          f'<style>pre{{white-space:pre-wrap}}</style><p>passes per token: {legend}'
                          f'</p>{body}\n', encoding='utf-8')

def write_image(path, prompt, samples, colours, width=80):
    """The page as a picture: the legend, then each sample in monospace cells (a new token on its
    depth's colour; a newline: '↵', a new row) wrapped at width columns; its stats in grey."""
    from matplotlib.figure import Figure  # not pyplot: a notebook's backend stays as it is
    from matplotlib.patches import Rectangle
    rows = [[(c, 0) for c in 'passes per token: '] +
            [(c, d) for d in range(1, len(colours) + 1) for c in f' {d} ']]
    for pieces, stats in samples:  # rows of (character, depth) cells, 0: black on white
        rows += [[], []]  # a blank row, then the sample's first
        for c, d in [(c, 0) for c in prompt] + [(c, d) for text, d in pieces
                                                for c in text.replace('\n', '↵\n')]:
            if c == '\n' or len(rows[-1]) == width:
                rows.append([])
            if c != '\n':
                rows[-1].append((c, d))
        rows.append(stats)
    cols = max(len(row) for row in rows if isinstance(row, list))
    fig = Figure(figsize=(cols * 6.5 / 72, len(rows) * 14 / 72))  # cells of 6.5 x 14 points
    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, cols), ylim=(len(rows), 0))
    ax.set_axis_off()
    for y, row in enumerate(rows):
        if isinstance(row, str):
            ax.text(0, y + .5, row, color='grey', va='center', family='monospace', fontsize=7)
            continue
        x = 0
        for d, run in itertools.groupby(d for _, d in row):  # a rectangle per run: no seams
            n = len(list(run))
            if d:
                ax.add_patch(Rectangle((x, y + .1), n, .8, color=colours[d - 1][1], lw=0))
            x += n
        for x, (c, _) in enumerate(row):
            ax.text(x + .5, y + .5, c, ha='center', va='center', family='monospace', fontsize=10)
    fig.savefig(path, dpi=144, bbox_inches='tight', pad_inches=.125)  # a stats line may be widest

def print_table(tag, rows):
    """Rows of key=value pairs behind a tag, padded into columns: a table to read, lines to grep."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[f'{key}={row[key]}' if key in row else '' for key in keys] for row in rows]
    widths = [max(map(len, column)) for column in zip(*cells)]
    for line in cells:
        print(tag, ' '.join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())

FORMATS = {'loss': '.4f', 'gate_loss': '.2e', 'passes': '.2f', 'k': '.3f', 'lr': '.2e', 'ms': '.0f',
           'train_loss': '.4f', 'val_loss': '.4f', 'depth_hist': '.2f', 'flops_vs_full': '.2f',
           'tok/s': '.0f', 'mfu': '.1%'}  # how each number train.py logs is printed

def metrics_line(kind, metrics):
    """`kind key=value ...`: each number in its FORMATS format (else an integer), None as n/a."""
    def text(v, spec):
        return 'n/a' if v is None else f"[{','.join(text(x, spec) for x in v)}]" \
            if isinstance(v, list) else f'{v:{spec}}'
    return ' '.join([kind] + [f"{k}={text(v, FORMATS.get(k, 'd'))}" for k, v in metrics.items()])
