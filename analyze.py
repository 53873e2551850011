"""
Analyse a trained AdaPonderLM on the same tokens of a split: (1) depth vs difficulty, (2) the compute dial:
other halting thresholds and caps on passes, each against random depths with the same mean passes (uniform,
geometric, least spread: every token floor or ceil of the mean, at an integer mean a cap), paired token by
token, (3) other checkpoints of the dataset. --mode=lens: what each pass predicts. --mode=curves:
the training curves train.py logged into out_dir/metrics.jsonl.

$ python analyze.py                                      # out-toy/ckpt.pt on the val split of its dataset
$ python analyze.py --out_dir=out-shakespeare-char --plot=dial.png --compare_ckpts=out-none,out-vanilla
$ python analyze.py --mode=lens --start="C:abc|ab"
$ python analyze.py --mode=curves --plot=curves.png
"""
import json
import math
import os
import textwrap
from contextlib import contextmanager

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from adaponder import depth_histogram
from configurator import check, configure, die, interrupted
from data.tokenizer import load_tokenizer
from pretrained import load_checkpoint, pick_device

# -----------------------------------------------------------------------------
mode = 'analyze'  # 'analyze': the tables (and the plot) | 'lens': what each pass predicts for `start` |
# 'curves': draw into `plot` the loss, passes and bottom-k fraction train.py logged in out_dir/metrics.jsonl
out_dir = 'out-toy'  # the checkpoint: out_dir/ckpt.pt, or the path of a .pt file
data_dir = 'data'  # the checkpoint's dataset lives in data_dir/<dataset>/
split = 'val'  # score <split>.bin
max_tokens = 16384  # score at most this many tokens of it (16k: minutes on a CPU; 4x the tokens, 4x the time)
batch_size = 16  # windows of block_size tokens per forward
compare_ckpts = ''  # comma-separated checkpoints of the same dataset, e.g. out-none,out-vanilla
plot = ''  # also draw loss against passes over the dial into this file, e.g. dial.png (needs matplotlib)
start = '\n'  # lens: the prompt
seed = 1337  # reseeded before every score, so random depths are the same draws on every run
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto', 'float32', 'bfloat16' or 'float16'
# -----------------------------------------------------------------------------


def load(where, like=None):
    """(model in eval mode, checkpoint, path) of out_dir/ckpt.pt or a .pt path; `like`: the model it will be
    paired with, token by token, so it must score the same tokens in the same windows (and then `where` is an
    entry of compare_ckpts, which an error names)."""
    path = where if where.endswith('.pt') else os.path.join(where, 'ckpt.pt')
    try:
        model, ckpt = load_checkpoint(path, device)
    except FileNotFoundError as e:
        if like:
            die(f"compare_ckpts: no checkpoint at {path}; train it first (python train.py --out_dir={where}, with the "
                "flags of the model to compare, e.g. --halting=none) or fix compare_ckpts")
        die(e)
    except ValueError as e:
        die(f"compare_ckpts: {e}" if like else e)
    if not ckpt.get('dataset'):
        die(f"{path} does not name its dataset; save it with save_checkpoint(..., dataset=NAME)")
    if like and (ckpt['dataset'], model.config.block_size) != like:
        die(f"{path} was trained on {ckpt['dataset']} with block_size={model.config.block_size}, not on "
            f"{like[0]} with {like[1]}; compare checkpoints that are scored on the same tokens")
    return model.eval(), ckpt, path


def load_split(dataset, block_size):
    """The split's tokens; for the toy dataset also each token's difficulty class and the class names."""
    folder = os.path.join(data_dir, dataset)
    tokens, classes, meta = (os.path.join(folder, name) for name in (f'{split}.bin', f'{split}_class.bin', 'meta.json'))
    for path in (tokens, meta) if os.path.isfile(classes) else (tokens,):
        if not os.path.isfile(path):
            die(f"no {path}; prepare the dataset (python data/{dataset}/prepare.py) or fix data_dir or split")
    data = np.memmap(tokens, dtype=np.uint16, mode='r')
    if min(len(data), max_tokens) <= block_size:
        die(f"{tokens} with max_tokens={max_tokens} is shorter than one window of {block_size + 1} tokens; "
            "raise max_tokens or prepare a larger split")
    if not os.path.isfile(classes):
        return data, None, None
    with open(meta) as f:
        return data, np.fromfile(classes, dtype=np.uint8), json.load(f)['classes']


@contextmanager
def knobs(model, **changes):
    """model.set_inference(**changes) for the block inside the with, the previous settings back after it."""
    saved = model.set_inference(**changes)
    try:
        yield
    finally:
        model.set_inference(**saved)


@torch.no_grad()
def score(model, data, batch_size=16, max_tokens=None, progress=False):
    """Per-token NLL, depth and whether the most likely token was right, over a 1-D token array (e.g. a val
    split), in non-overlapping windows of block_size. Returns (nll, depth, targets, correct), 1-D and aligned:
    entry j scores the prediction of targets[j] (so a per-target label, like the toy difficulty class, indexes
    them directly)."""
    L, device = model.config.block_size, model.wte.weight.device
    n_win = (min(len(data), max_tokens or len(data)) - 1) // L
    windows = torch.as_tensor(data[:n_win * L + 1].astype('int64'))
    nll, depth, correct = [], [], []
    for start in tqdm(range(0, n_win, batch_size), disable=not progress, desc='scoring'):
        rows = range(start, min(start + batch_size, n_win))
        x = torch.stack([windows[r * L:(r + 1) * L] for r in rows]).to(device)
        y = torch.stack([windows[r * L + 1:(r + 1) * L + 1] for r in rows]).to(device)
        out = model(x)
        nll.append(F.cross_entropy(out.logits.flatten(0, 1).float(), y.flatten(), reduction='none').cpu())
        depth.append(out.depth.flatten().cpu())
        correct.append((out.logits.argmax(-1) == y).flatten().cpu())
    return torch.cat(nll), torch.cat(depth), windows[1:n_win * L + 1], torch.cat(correct)


def evaluate(model, data, progress=False):
    """Per-token NLL and depth of the model as its knobs stand now, their means and FLOPs per token."""
    torch.manual_seed(seed)  # the random depths of halting='fixed' come from torch's RNG
    nll, depth, targets, correct = score(model, data, batch_size, max_tokens, progress)
    hist = depth_histogram(depth, model.config.n_ponder + 1)
    return dict(nll=nll, depth=depth, targets=targets, correct=correct, hist=hist, loss=nll.mean().item(),
                passes=depth.float().mean().item(), flops=model.flops_per_token(hist)['total'])


def paired_delta(a, b, window=1):
    """Mean of a - b over the same tokens and its standard error. Neighbouring tokens' losses move together,
    so the error is taken over the means of windows of `window` tokens (block_size: one scored window each)."""
    d = (a - b).double().view(-1, window).mean(dim=1)
    return d.mean().item(), (d.std() / math.sqrt(len(d))).item()


def print_table(tag, rows):
    """Rows of key=value pairs behind a tag, padded into columns: a table to read, lines to grep."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[f'{key}={row[key]}' if key in row else '' for key in keys] for row in rows]
    widths = [max(len(line[j]) for line in cells) for j in range(len(keys))]
    for line in cells:
        print(tag, ' '.join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())

# -----------------------------------------------------------------------------
# 1. depth vs difficulty


def ranks(x):
    """Ranks 1..n of a 1-D tensor, ties sharing their average rank (depths are nearly all ties)."""
    values, order = x.double().sort()
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # the rank of each group's last member
    r = torch.empty(len(x), dtype=torch.float64)
    r[order] = (last - (counts - 1) / 2)[group]  # the mean of ranks last-count+1 .. last
    return r


def spearman(x, y):
    """Spearman correlation: the Pearson correlation of the tie-averaged ranks (nan if x or y is constant)."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return ((rx * ry).sum() / (rx.norm() * ry.norm())).item()


def depth_vs_difficulty(ev, labels, classes, n_bins=5):
    """Table 1: mean passes per NLL quantile, the rank correlation of depth and NLL, the toy classes."""
    nll, depth = ev['nll'], ev['depth']
    rows = []
    for q, chunk in enumerate(nll.argsort().tensor_split(n_bins)):  # the easiest fifth first
        shares = torch.tensor(depth_histogram(depth[chunk], len(ev['hist']))) * 100 / len(chunk)
        rows.append(dict(q=f'{q + 1}/{n_bins}', nll=f'{nll[chunk].min():.3f}..{nll[chunk].max():.3f}',
                         loss=f'{nll[chunk].mean():.4f}', passes=f'{depth[chunk].float().mean():.2f}',
                         depth_pct=','.join(str(round(s)) for s in shares.tolist())))
    print_table('nll_quantile', rows)
    print(f"depth_vs_nll spearman={spearman(depth, nll):.3f} tokens={len(nll)}"
          "  (> 0: more passes on harder tokens; nan: every token ran the same passes)")
    if labels is not None:
        labels = torch.as_tensor(labels[1:1 + len(nll)].astype(np.int64))  # nll[j] predicts token j + 1
        print_table('class', [dict(name=name, share=f'{(labels == c).double().mean():.1%}',
                                   passes=f'{depth[labels == c].float().mean():.2f}',
                                   loss=f'{nll[labels == c].mean():.4f}',
                                   acc=f"{ev['correct'][labels == c].float().mean():.3f}")
                              for c, name in enumerate(classes) if (labels == c).any()])

# -----------------------------------------------------------------------------
# 2. the compute dial, 3. other checkpoints


def dial_settings(cfg):
    """(tau, cap) pairs: tau from 0 (never halt) over the decades around the trained tau up to 0.9, then
    caps on passes (n_ponder = K-1 .. 0) at the trained tau."""
    K, tau = cfg.n_ponder, cfg.halt_threshold
    if cfg.halting != 'learned':  # no gates: only the cap moves compute
        return [(tau, cap) for cap in range(K, -1, -1)]
    taus = {0.0, 0.5, 0.9} | {tau * m for m in (0.01, 0.1, 0.3, 1, 3, 10, 30, 100, 1000)}
    taus = sorted(t for t in taus if t < 1)  # gate values are < 1: tau >= 1 halts every token after one pass
    return [(t, K) for t in taus] + [(tau, cap) for cap in range(K - 1, -1, -1)]


BASELINES = ('uniform', 'geometric', 'least_spread')  # random depths with learned halting's mean, widest first


def dial_run(model, data, tau, cap):
    """One setting: learned halting, then random depths (same cap) with the mean passes learned halting got."""
    with knobs(model, halt_threshold=tau, n_ponder=cap):
        run = dict(tau=tau, cap=cap, learned=evaluate(model, data))
        for dist in BASELINES:
            with knobs(model, halting='fixed', fixed_depth_dist=dist, fixed_mean_depth=run['learned']['passes']):
                run[dist] = evaluate(model, data)
    return run


def tau_for_passes(model, data, c, runs, tol=0.01):
    """The tau at which learned halting runs c passes per token on average (to tol): bisection on log tau
    (gate values span decades) between the dial's settings either side of c; tau 1 halts every token."""
    tried = [(r['tau'], r['learned']['passes']) for r in runs if r['cap'] == model.config.n_ponder] + [(1.0, 1.0)]
    lo, hi = max(t for t, p in tried if p >= c), min(t for t, p in tried if p <= c)
    best = min(tried, key=lambda tp: abs(tp[1] - c))
    for _ in range(30):
        if abs(best[1] - c) <= tol:
            break
        tau = math.sqrt(max(lo, 1e-30) * hi)
        with knobs(model, halt_threshold=tau):
            passes = evaluate(model, data)['passes']
        lo, hi = (tau, hi) if passes > c else (lo, tau)  # passes fall as tau rises
        best = min(best, (tau, passes), key=lambda tp: abs(tp[1] - c))
    return best[0]


def dial(model, data):
    """Every setting of the dial, then, for c = 2..K, the tau at which learned halting runs c passes on average:
    there the least-spread baseline is the cap, every token exactly c passes (1 and K+1 passes are settings
    already: the cap of 0 extra passes, and tau 0)."""
    K = model.config.n_ponder
    runs = [dial_run(model, data, tau, cap) for tau, cap in tqdm(dial_settings(model.config), desc='dial', leave=False)]
    if model.config.halting == 'learned':
        taus = {tau_for_passes(model, data, c, runs) for c in range(2, K + 1)} - {r['tau'] for r in runs}
        runs += [dial_run(model, data, tau, K) for tau in taus]
    return sorted(runs, key=lambda r: (-r['cap'], r['tau']))


def dial_row(run, full_flops, window):
    """Table 2's row for one setting: learned halting's loss, each baseline's minus it, paired per token, with
    its standard error, and the margin over the strongest baseline: wins=yes above 2 s.e., LOSES below -2 s.e.,
    no between, n/a where learned halting ran every token the same passes (every baseline then does too)."""
    learned = run['learned']
    row = dict(tau=f"{run['tau']:.3g}", cap=run['cap'], passes=f"{learned['passes']:.2f}",
               flops_vs_full=f"{learned['flops'] / full_flops:.3f}", loss=f"{learned['loss']:.4f}")
    deltas = {dist: paired_delta(run[dist]['nll'], learned['nll'], window) for dist in BASELINES}
    row.update({f'd_{dist}': f'{d:+.4f}±{se:.4f}' for dist, (d, se) in deltas.items()})
    strongest = min(BASELINES, key=lambda dist: deltas[dist][0])  # the lowest loss
    margin, se = deltas[strongest]
    same = learned['depth'].min() == learned['depth'].max()
    wins = 'n/a' if same else 'yes' if margin > 2 * se else 'LOSES' if margin < -2 * se else 'no'
    return dict(row, strongest=strongest, margin=f'{margin:+.4f}±{se:.4f}', wins=wins)


def compare(others, base, data, full_flops):
    """Table 3: other checkpoints on the same tokens, paired against this one as trained."""
    rows, points = [], []
    for model, ckpt, path in tqdm(others, desc='checkpoints', leave=False):
        ev = evaluate(model, data)
        delta, se = paired_delta(ev['nll'], base['nll'], model.config.block_size)
        rows.append(dict(ckpt=path, halting=model.config.halting, K=model.config.n_ponder,
                         passes=f"{ev['passes']:.2f}", flops_vs_full=f"{ev['flops'] / full_flops:.3f}",
                         loss=f"{ev['loss']:.4f}", delta=f'{delta:+.4f}', se=f'{se:.4f}'))
        points.append((describe(model, ckpt) + ', as trained', ev))
    print_table('compare', rows)
    return points


def describe(model, ckpt):
    """A checkpoint as its contents say, not its folder's name: the kind of model, its shape, the gate-loss weight
    and seed it was trained with, the step it was saved at."""
    cfg, trained = model.config, ckpt.get('config') or {}
    kind = ('plain model' if cfg.n_ponder == 0 else 'PonderLM' if cfg.halting == 'none' else
            'AdaPonderLM' if cfg.halting == 'learned' else 'trained with random depths')
    parts = [f'{cfg.n_layer} x {cfg.n_embd}', f'K={cfg.n_ponder}']
    parts += [f'gate-loss weight {cfg.ponder_lambda:g}'] if cfg.halting == 'learned' and cfg.n_ponder else []
    parts += [f"seed {trained['seed']}"] if 'seed' in trained else []
    parts += [f"step {ckpt['iter_num']}"] if 'iter_num' in ckpt else []
    return f"{kind} ({', '.join(parts)})"


def plot_dial(runs, points, trained, title, file):
    """Loss against mean passes: the four curves over the dial (solid: tau, dotted: the cap), checkpoints."""
    from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched (a notebook keeps its own)
    from matplotlib.lines import Line2D
    fig = Figure(figsize=(9.5, 4.5))
    ax = fig.subplots()
    curves = dict(learned=('C0', 'learned halting'), uniform=('C1', 'random depths, uniform'),
                  geometric=('C2', 'random depths, geometric'),
                  least_spread=('C3', 'random depths, least spread:\nfloor or ceil of the mean (a cap)'))
    for name, (colour, _) in curves.items():
        for style, face, held in ((':', 'white', 'tau'), ('-', colour, 'cap')):  # the cap moves, then tau
            xy = sorted((r[name]['passes'], r[name]['loss']) for r in runs if r[held] == trained[held])
            ax.plot(*zip(*xy), style, color=colour, marker='o', mfc=face, ms=5, zorder=3 if name == 'learned' else 2)
    here = next(r['learned'] for r in runs if r['tau'] == trained['tau'] and r['cap'] == trained['cap'])
    ax.annotate('as trained', (here['passes'], here['loss']), xytext=(6, 6), textcoords='offset points')
    for (label, ev), marker in zip(points, '*Dsv^P'):
        ax.plot(ev['passes'], ev['loss'], marker, color='black', ms=9, label=textwrap.fill(label, 44))
    handles = [Line2D([], [], color=c, marker='o', label=label) for c, label in curves.values()] + [
        Line2D([], [], color='grey', marker='o', label='halting threshold tau, 0 .. 1'),
        Line2D([], [], color='grey', marker='o', mfc='white', ls=':', label='cap on passes, trained tau')]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=9, frameon=False,
              loc='upper left', bbox_to_anchor=(1.01, 1))  # beside the axes: the curves stay visible
    title = '\n'.join(textwrap.fill(line, 60) for line in title.split('\n'))  # long lines: the axes stay wide
    ax.set(xlabel='mean passes per token', ylabel=f'{split} loss (nats per token)', title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(file, dpi=150)
    print(f"wrote {file}")


def analyze(model, ckpt, path):
    cfg, dataset = model.config, ckpt['dataset']
    data, labels, classes = load_split(dataset, cfg.block_size)
    if (top := int(data[:max_tokens].max())) >= cfg.vocab_size:  # an id the model has no row for: not a crash inside
        die(f"{data_dir}/{dataset}/{split}.bin holds token id {top}, outside the model's vocabulary of "
            f"{cfg.vocab_size}; it was prepared with another tokenizer: prepare the dataset again or fix data_dir")
    others = [load(where, like=(dataset, cfg.block_size)) for where in compare_ckpts.split(',') if where]
    full_flops = model.flops_per_token([0] * cfg.n_ponder + [1])['total']  # as trained, at full depth
    print(f"analyze ckpt={path} dataset={dataset} split={split} halting={cfg.halting} K={cfg.n_ponder} "
          f"tau={cfg.halt_threshold:g} iter={ckpt.get('iter_num', '?')}  (loss: cross-entropy, nats per token)")
    base = evaluate(model, data, progress=True)
    print("\n== 1. depth vs difficulty: mean passes per NLL quintile, easiest first ==")
    depth_vs_difficulty(base, labels, classes)
    print("\n== 2. the compute dial: learned halting against random depths with the same mean passes ==")
    runs = dial(model, data)
    rows = [dial_row(run, full_flops, cfg.block_size) for run in runs]
    print_table('dial', rows)
    print("(d_*: random minus learned loss, paired over the same tokens, ± its standard error over windows of "
          "block_size tokens; margin: the d_ of the strongest baseline; wins: yes if above 2 s.e., LOSES if "
          "below -2 s.e.; at a mean of exactly c passes least_spread is the cap, every token c passes)")
    verdicts = [row['wins'] for row in rows if row['wins'] != 'n/a']
    print(f"against the strongest baseline: wins at {verdicts.count('yes')}, LOSES at {verdicts.count('LOSES')}, "
          f"neither at {verdicts.count('no')} of the {len(verdicts)} settings where depths differ")
    points = []
    if others:
        print("\n== 3. other checkpoints; delta: their loss minus this one's as trained, paired ==")
        points = compare(others, base, data, full_flops)
    if plot:
        title = f"{describe(model, ckpt)}\non {dataset}, {split}: {len(base['nll']):,} tokens"
        plot_dial(runs, points, dict(tau=cfg.halt_threshold, cap=cfg.n_ponder), title, plot)

# -----------------------------------------------------------------------------
# the logit lens: what each pass predicts before the gate stops it


@torch.no_grad()
def logit_lens(model, idx):
    """Greedy prediction (probability, token) after each pass j = 1..K+1 at every position of idx (1, T),
    and each token's depth. Capping the model at j passes reproduces pass j exactly: passes 1..j, and every
    halting decision in them, do not depend on the passes after."""
    depth = model(idx).depth[0]  # (T,)
    per_pass = []
    for j in range(model.config.n_ponder + 1):
        with knobs(model, n_ponder=j):
            per_pass.append(F.softmax(model(idx).logits[0].float(), dim=-1).max(dim=-1))  # (T,) each
    return per_pass, depth


def lens(model, ckpt, path):
    if not start:
        die("the prompt is empty; pass --start=TEXT")
    try:  # a missing or mismatched vocabulary, characters it lacks
        encode, decode = load_tokenizer(data_dir, ckpt, model.config.vocab_size)
        ids = encode(start)[-model.config.block_size:]  # the last block_size tokens of a long prompt
    except ValueError as e:
        die(e)
    per_pass, depth = logit_lens(model, torch.tensor([ids], device=model.wte.weight.device))

    def show(i):  # quoted, with spaces made visible: each cell stays one greppable word
        return repr(decode([i])).replace(' ', '\u2423')

    rows = []
    for t, token in enumerate(ids):
        row = dict(pos=t, token=show(token), next=show(ids[t + 1]) if t + 1 < len(ids) else '?')
        for j, (p, pred) in enumerate(per_pass):
            row[f'pass{j + 1}'] = f'{show(pred[t].item())}@{p[t].item():.2f}' if j < depth[t] else '-'
        rows.append(dict(row, depth=depth[t].item()))
    print(f"== logit lens of {path}: the greedy next token@probability after each pass; '-': halted before ==")
    print_table('lens', rows)

# -----------------------------------------------------------------------------
# the training curves: the numbers train.py logged, one JSON object per `iter` or `eval` line


def curves(path, file):
    """Loss, mean passes and the bottom-k fraction k against the step: passes fall as the gate loss's k ramps up."""
    try:
        with open(path, errors='replace') as f:
            lines = f.readlines()
    except OSError as e:
        die(f"cannot read {path} ({type(e).__name__}: {e}); train.py writes it into its out_dir")

    def parse(line):  # a garbled line, or one a crash cut short, is skipped: the rest still draws
        try:
            row = json.loads(line)
        except ValueError:
            return None
        return row if isinstance(row, dict) and {'kind', 'step'} <= set(row) else None
    rows = [row for row in map(parse, lines) if row is not None]
    if len(rows) < len(lines):
        print(f"skipped {len(lines) - len(rows)} unreadable line(s) of {path}")
    iters, evals = ([row for row in rows if row['kind'] == kind] for kind in ('iter', 'eval'))
    from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched (a notebook keeps its own)
    fig = Figure(figsize=(8, 7))
    loss, passes, k = fig.subplots(3, 1, sharex=True, height_ratios=(3, 3, 1.5))

    def draw(ax, rows, key, *style, **kwargs):
        ax.plot([row['step'] for row in rows], [row[key] for row in rows], *style, **kwargs)

    draw(loss, iters, 'loss', color='C0', lw=1, alpha=0.5, label='train, one batch')
    draw(loss, evals, 'train_loss', 'o-', color='C0', ms=4, label='train')
    draw(loss, evals, 'val_loss', 'o-', color='C1', ms=4, label='val')
    draw(passes, iters, 'passes', color='C2', lw=1, alpha=0.5, label='train, one batch')
    draw(passes, evals, 'passes', 'o-', color='C2', ms=4, label='val')
    draw(k, iters, 'k', color='C3')
    loss.set(ylabel='cross-entropy (nats/token)', title=f'{path}: training curves')
    passes.set(ylabel='mean passes per token', ylim=(0.9, len(evals[0]['depth_hist']) + 0.1) if evals else None)
    k.set(xlabel='step', ylabel='bottom-k fraction k', ylim=(0, None))
    for ax in (loss, passes, k):
        ax.grid(alpha=0.3)
    for ax in (loss, passes):
        ax.legend(frameon=False, loc='upper right')
    fig.tight_layout()
    fig.savefig(file, dpi=150)
    print(f"wrote {file}")

# -----------------------------------------------------------------------------


def main(argv=None):
    global device
    configure(globals(), argv)
    if mode not in ('analyze', 'lens', 'curves'):
        die(f"mode={mode!r} must be analyze, lens or curves; fix the setting")
    check(globals(), batch_size='integer [1, inf)', max_tokens='integer [1, inf)')
    if mode == 'curves' and not plot:
        die("mode=curves draws a picture; pass its file, e.g. --plot=curves.png")
    if plot and mode != 'lens':  # now, not after minutes of scoring
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            die("plot= draws with matplotlib, which is not installed; pip install matplotlib")
        if not os.path.isdir(os.path.dirname(os.path.abspath(plot))):
            die(f"plot={plot}: its folder does not exist; create it or write the plot elsewhere")
        if not plot.lower().endswith(kinds := ('.png', '.svg', '.pdf', '.jpg', '.jpeg', '.webp')):  # nor over ckpt.pt
            die(f"plot={plot} is not a file name ending in {', '.join(kinds)}; pass e.g. --plot=dial.png")
        if os.path.isdir(plot) or not os.access(os.path.dirname(os.path.abspath(plot)), os.W_OK):
            die(f"plot={plot}: {'it is a folder' if os.path.isdir(plot) else 'its folder is read-only'}; pass a "
                "file in a folder you can write")
    if mode == 'curves':  # train.py's numbers: no model to load
        return curves(os.path.join(out_dir, 'metrics.jsonl'), plot)
    try:
        device, _, ctx = pick_device(device, dtype)
    except ValueError as e:
        die(e)
    model, ckpt, path = load(out_dir)
    with ctx:
        (analyze if mode == 'analyze' else lens)(model, ckpt, path)


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; the plot, if asked for, is written last
        interrupted("nothing was written")
