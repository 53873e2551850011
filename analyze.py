"""Analyse a trained AdaPonderLM on a split: (1) depth vs difficulty, (2) the compute dial: halting
thresholds and caps on passes, each paired token by token against random depths of the same mean,
(3) other checkpoints. --mode=lens: each pass's predictions; --mode=curves: training curves.
$ python analyze.py --out_dir=out-shakespeare-char --plot=dial.png --compare_ckpts=out-none
$ python analyze.py --mode=lens --start="C:abc|ab"    # or --mode=curves --plot=curves.png"""
from configurator import check, configure, die, or_die  # first: Ctrl-C in imports
import json
import math
import os
import textwrap
from contextlib import contextmanager, suppress

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from adaponder import depth_histogram
from data.show import check_files, print_table
from data.tokenizer import load_tokenizer, read_prompt
from pretrained import load_checkpoint, pick_device, read_meta, read_tokens, score, tau_for_passes

# -----------------------------------------------------------------------------
mode = 'analyze'  # 'analyze': tables (and plot) | 'lens': passes on start | 'curves': metrics.jsonl
out_dir = 'out-toy'  # the checkpoint: out_dir/ckpt.pt, or the path of a .pt file
data_dir = 'data'  # the checkpoint's dataset lives in data_dir/<dataset>/
split = 'val'  # score <split>.bin
max_tokens = 16384  # score at most this many of its tokens (16k: minutes on a CPU, linear)
batch_size = 16  # windows of block_size tokens per forward
compare_ckpts = ''  # comma-separated checkpoints of the same dataset, e.g. out-none,out-vanilla
plot = ''  # draw the dial (loss against passes) or the curves into this file, e.g. dial.png
start = '\n'  # lens: the prompt, or FILE:path to read it from a UTF-8 file
seed = 1337  # reseeded before every score, so random depths are the same draws on every run
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto', 'float32', 'bfloat16' or 'float16'
# -----------------------------------------------------------------------------
BASELINES = ('uniform', 'geometric', 'least_spread')  # random depths of learned halting's mean

def load(where, like=None):
    """(model in eval mode, checkpoint, path); like: the (dataset, block_size) it must share."""
    model, ckpt = or_die(load_checkpoint, where, device)
    path = os.path.join(where, 'ckpt.pt') if os.path.isdir(where) else where
    if not ckpt.get('dataset'):
        die(f"{path} does not name its dataset; save it with save_checkpoint(..., dataset=NAME)")
    if like and (ckpt['dataset'], model.config.block_size) != like:
        die(f"{path} was trained on {ckpt['dataset']} with block_size={model.config.block_size}, "
            f"not on {like[0]} with {like[1]}; compare checkpoints scored on the same tokens")
    return model.eval(), ckpt, path

def load_split(dataset, cfg):
    """The split's tokens; for the toy and hops datasets also each token's class and their names."""
    folder = os.path.join(data_dir, dataset)
    fix = f"run python data/{dataset}/prepare.py (or fix data_dir or split)"
    data = or_die(read_tokens, tokens := os.path.join(folder, f'{split}.bin'), 1, fix)
    if min(len(data), max_tokens) <= cfg.block_size:
        die(f"{tokens} with max_tokens={max_tokens} is shorter than one window of "
            f"{cfg.block_size + 1} tokens; raise max_tokens or prepare a larger split")
    if (top := int(data[:max_tokens].max())) >= cfg.vocab_size:  # not a crash inside the model
        die(f"{tokens} holds token id {top}, outside the model's vocabulary of {cfg.vocab_size}; "
            "it was prepared with another tokenizer: prepare the dataset again or fix data_dir")
    if not os.path.isfile(classes := os.path.join(folder, f'{split}_class.bin')):
        return data, None, None
    if not os.path.isfile(meta := os.path.join(folder, 'meta.json')):
        die(f"no {meta}; {fix}")
    if len(labels := np.fromfile(classes, dtype=np.uint8)) < min(len(data), max_tokens):
        die(f"{classes} holds {len(labels)} classes for {len(data)} tokens; {fix}")
    return data, labels, or_die(read_meta, folder, fix)['classes']

@contextmanager
def knobs(model, **changes):
    saved = model.set_inference(**changes)
    try:
        yield
    finally:
        model.set_inference(**saved)

def evaluate(model, data, progress=False, **changes):
    """Per-token NLL and depth of the model with its knobs changed, their means, FLOPs per token."""
    torch.manual_seed(seed)  # the random depths of halting='random' come from torch's RNG
    with knobs(model, **changes):
        nll, depth, targets, correct = score(model, data, batch_size=batch_size,
                                             max_tokens=max_tokens, progress=progress)
        hist = depth_histogram(depth, model.config.n_ponder + 1)
        flops = model.flops_per_token(hist)['total']
    return dict(nll=nll, depth=depth, targets=targets, correct=correct, hist=hist, flops=flops,
                loss=nll.mean().item(), passes=depth.float().mean().item())

def paired_delta(a, b, window=1):
    """Mean of a - b and its standard error over means of `window` tokens (neighbours correlate)."""
    d = (a - b).double().view(-1, window).mean(dim=1)
    return d.mean().item(), (d.std() / math.sqrt(len(d))).item()

def ranks(x):
    """Ranks 1..n of a 1-D tensor, ties sharing their average rank (depths are mostly ties)."""
    values, order = x.double().sort()
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    return (counts.cumsum(0).double() - (counts - 1) / 2)[group][order.argsort()]  # x's order

def spearman(x, y):
    """The Pearson correlation of the tie-averaged ranks (nan if x or y is constant)."""
    return torch.corrcoef(torch.stack([ranks(x), ranks(y)]))[0, 1].item()

def dial_run(model, data, tau, cap):
    """One setting: learned halting, then random depths (same cap) of the mean passes it got."""
    with knobs(model, halt_threshold=tau, n_ponder=cap):
        learned = evaluate(model, data)
        return dict(tau=tau, cap=cap, learned=learned, **{dist: evaluate(
            model, data, halting='random', fixed_depth_dist=dist,
            fixed_mean_depth=learned['passes']) for dist in BASELINES})

def dial(model, data):
    """The dial: taus from 0 to 0.9, caps K-1..0 at the trained tau, and taus giving 2..K passes."""
    cfg = model.config
    K, tau, learned = cfg.n_ponder, cfg.halt_threshold, cfg.halting == 'learned'
    taus = {0.0, 0.5, 0.9} | {tau * m for m in (0.01, 0.1, 0.3, 1, 3, 10, 30, 100, 1000)}
    settings = [(t, K) for t in sorted(taus) if t < 1] if learned else [(tau, K)]  # gates are < 1
    settings += [(tau, cap) for cap in range(K - 1, -1, -1)]
    runs = [dial_run(model, data, t, cap) for t, cap in tqdm(settings, desc='dial', leave=False)]
    if learned:  # bisect between the settings either side of c
        tried = [(r['tau'], r['learned']['passes']) for r in runs if r['cap'] == K] + [(1.0, 1.0)]
        taus = {tau_for_passes(lambda t: evaluate(model, data, halt_threshold=t)['passes'], c,
                               lo=max(t for t, p in tried if p >= c),
                               hi=min(t for t, p in tried if p <= c))
                for c in range(2, K + 1) if all(abs(p - c) > 0.01 for _, p in tried)}
        runs += [dial_run(model, data, t, K) for t in taus - {r['tau'] for r in runs}]
    return sorted(runs, key=lambda r: (-r['cap'], r['tau']))

def dial_row(run, full_flops, window):
    """Table 2's row: learned halting's loss, each baseline's minus it (paired, ± s.e.), wins."""
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

def describe(model, ckpt):
    """A checkpoint as its contents say, not its folder's name: kind, shape, training, step."""
    cfg, seed = model.config, (ckpt.get('config') or {}).get('seed')
    kind = ('plain model' if cfg.n_ponder == 0 else 'PonderLM' if cfg.halting == 'none' else
            'AdaPonderLM' if cfg.halting == 'learned' else 'trained with random depths')
    parts = [f'{cfg.n_layer} x {cfg.n_embd}', f'K={cfg.n_ponder}',  # False: does not apply
             kind == 'AdaPonderLM' and f'gate-loss weight {cfg.ponder_lambda:g}',
             seed is not None and f'seed {seed}', 'iter_num' in ckpt and f"step {ckpt['iter_num']}"]
    return f"{kind} ({', '.join(filter(None, parts))})"

def plot_dial(runs, here, points, trained, title):
    """Loss against mean passes: the four curves over the dial (solid: tau, dotted: cap), others."""
    from matplotlib.figure import Figure  # not pyplot: no backend is switched (a notebook's stays)
    ax = (fig := Figure(figsize=(9.5, 4.5))).subplots()
    styles = dict(learned=('C0', 'learned halting'), uniform=('C1', 'random depths, uniform'),
                  geometric=('C2', 'random depths, geometric'), least_spread=(
                      'C3', 'random depths, least spread:\nfloor or ceil of the mean (a cap)'))
    for name, (colour, label) in styles.items():  # the legend names each once, then each line
        for style, face, held in ((':', 'white', 'tau'), ('-', colour, 'cap')):  # cap moves, tau
            xy = sorted((r[name]['passes'], r[name]['loss']) for r in runs
                        if r[held] == trained[held])
            ax.plot(*zip(*xy), style, color=colour, marker='o', mfc=face, ms=5,
                    zorder=3 if name == 'learned' else 2, label=label if style == '-' else None)
    ax.plot([], [], color='grey', marker='o', label='halting threshold tau, 0 .. 1')
    ax.plot([], [], ':', color='grey', marker='o', mfc='white', label='cap on passes, trained tau')
    ax.annotate('as trained', (here['passes'], here['loss']), (6, 6), textcoords='offset points')
    for (label, ev), marker in zip(points, '*Dsv^P'):
        ax.plot(ev['passes'], ev['loss'], marker, color='black', ms=9,
                label=textwrap.fill(label, 44))
    ax.legend(fontsize=9, frameon=False, loc='upper left', bbox_to_anchor=(1.01, 1))  # off the axes
    title = '\n'.join(textwrap.fill(line, 60) for line in title.split('\n'))  # the axes stay wide
    ax.set(xlabel='mean passes per token', ylabel=f'{split} loss (nats per token)', title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(plot, dpi=150)
    print(f"wrote {plot}")

def analyze(model, ckpt, path):
    cfg, dataset = model.config, ckpt['dataset']
    data, labels, classes = load_split(dataset, cfg)
    others = [load(where, (dataset, cfg.block_size)) for where in compare_ckpts.split(',') if where]
    full_flops = model.flops_per_token([0] * cfg.n_ponder + [1])['total']  # as trained, full depth
    print(f"analyze ckpt={path} dataset={dataset} split={split} halting={cfg.halting} "
          f"K={cfg.n_ponder} tau={cfg.halt_threshold:g} iter={ckpt.get('iter_num', '?')}  (loss: "
          "cross-entropy, nats per token)")
    base = evaluate(model, data, progress=True)
    nll, depth = base['nll'], base['depth']
    print("\n== 1. depth vs difficulty: mean passes per NLL quintile, easiest first ==")
    print_table('nll_quantile', [dict(  # c: the tokens of the (q+1)-th easiest fifth
        q=f'{q + 1}/5', nll=f'{nll[c].min():.3f}..{nll[c].max():.3f}', loss=f'{nll[c].mean():.4f}',
        passes=f'{depth[c].float().mean():.2f}', depth_pct=','.join(
            str(round(n * 100 / len(c))) for n in depth_histogram(depth[c], len(base['hist']))))
        for q, c in enumerate(nll.argsort().tensor_split(5))])
    print(f"depth_vs_nll spearman={spearman(depth, nll):.3f} tokens={len(nll)}"
          "  (> 0: more passes on harder tokens; nan: every token ran the same passes)")
    if labels is not None:
        labels = torch.as_tensor(labels[1:1 + len(nll)].astype(np.int64))  # nll[j]: token j + 1
        print_table('class', [dict(
            name=name, share=f'{m.double().mean():.1%}', passes=f'{depth[m].float().mean():.2f}',
            loss=f'{nll[m].mean():.4f}', acc=f"{base['correct'][m].float().mean():.3f}")
            for c, name in enumerate(classes) if (m := labels == c).any()])  # m: class c's tokens
    print("\n== 2. the compute dial: learned halting against random depths with the same mean "
          "passes ==")
    runs = dial(model, data)
    rows = [dial_row(run, full_flops, cfg.block_size) for run in runs]
    print_table('dial', rows)
    print("(d_*: random minus learned loss, paired over the same tokens, ± its standard error "
          "over windows of block_size tokens; margin: the strongest baseline's d_; wins: yes above "
          "2 s.e., LOSES below -2 s.e.; at exactly c mean passes least_spread is the cap of c)")
    verdicts = [row['wins'] for row in rows if row['wins'] != 'n/a']
    print(f"against the strongest baseline: wins at {verdicts.count('yes')}, LOSES at "
          f"{verdicts.count('LOSES')}, neither at {verdicts.count('no')} of the {len(verdicts)} "
          "settings where depths differ")
    rows, points = [], []  # 3. other checkpoints on the same tokens, paired against this one
    for other, other_ckpt, other_path in tqdm(others, desc='checkpoints', leave=False):
        ev = evaluate(other, data)
        delta, se = paired_delta(ev['nll'], nll, cfg.block_size)
        rows.append(dict(ckpt=other_path, halting=other.config.halting, K=other.config.n_ponder,
                         passes=f"{ev['passes']:.2f}",
                         flops_vs_full=f"{ev['flops'] / full_flops:.3f}",
                         loss=f"{ev['loss']:.4f}", delta=f'{delta:+.4f}', se=f'{se:.4f}'))
        points.append((describe(other, other_ckpt) + ', as trained', ev))
    if others:
        print("\n== 3. other checkpoints; delta: their loss minus this one's as trained, paired ==")
        print_table('compare', rows)
    if plot:
        title = f"{describe(model, ckpt)}\non {dataset}, {split}: {len(nll):,} tokens"
        plot_dial(runs, base, points, dict(tau=cfg.halt_threshold, cap=cfg.n_ponder), title)

@torch.no_grad()
def lens(model, ckpt, path):
    """The logit lens: the greedy prediction after each pass j = 1..K+1 at each prompt position."""
    encode, decode = or_die(load_tokenizer, data_dir, ckpt, model.config.vocab_size)
    ids = or_die(encode, or_die(read_prompt, start))[-model.config.block_size:]  # its last tokens
    idx = torch.tensor([ids], device=model.wte.weight.device)
    depth, per_pass = model(idx).depth[0], []  # (T,)
    for j in range(model.config.n_ponder + 1):
        with knobs(model, n_ponder=j):  # exact: passes 1..j do not depend on those after
            per_pass.append(F.softmax(model(idx).logits[0].float(), -1).max(dim=-1))  # (T,) each
    quoted = lambda i: repr(decode([i])).replace(' ', '\u2423')  # noqa: E731 (a cell: one word)
    rows = [dict(pos=t, token=quoted(token), next=quoted(ids[t + 1]) if t + 1 < len(ids) else '?',
                 **{f'pass{j + 1}': f'{quoted(pred[t].item())}@{p[t].item():.2f}'
                    if j < depth[t] else '-' for j, (p, pred) in enumerate(per_pass)},
                 depth=depth[t].item()) for t, token in enumerate(ids)]
    print(f"== logit lens of {path}: the greedy next token@probability after each pass; '-': "
          "halted before ==")
    print_table('lens', rows)

def curves(path):
    """Loss, mean passes and bottom-k fraction k (passes fall as it ramps up) against the step."""
    try:
        lines = open(path, errors='replace').readlines()
    except OSError as e:
        die(f"cannot read {path} ({type(e).__name__}: {e}); train.py writes it into its out_dir")
    rows = []
    for line in lines:  # one a crash cut short is skipped, so is a step that is not a number
        with suppress(ValueError):  # (it would turn the axis into categories)
            row = json.loads(line)
            rows += [row] if isinstance(row, dict) and 'kind' in row and \
                isinstance(row.get('step'), (int, float)) else []
    if len(rows) < len(lines):
        print(f"skipped {len(lines) - len(rows)} unreadable line(s) of {path}")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 7))
    loss, passes, k = fig.subplots(3, 1, sharex=True, height_ratios=(3, 3, 1.5))
    def draw(ax, kind, key, *style, **kwargs):  # the rows of a kind that hold this number
        xy = [(r['step'], r[key]) for r in rows
              if r['kind'] == kind and isinstance(r.get(key), (int, float))]
        ax.plot([x for x, _ in xy], [y for _, y in xy], *style, **kwargs)
        return len(xy)
    if not sum([draw(loss, 'iter', 'loss', color='C0', lw=1, alpha=0.5, label='train, one batch'),
                draw(loss, 'eval', 'train_loss', 'o-', color='C0', ms=4, label='train'),
                draw(loss, 'eval', 'val_loss', 'o-', color='C1', ms=4, label='val'),
                draw(passes, 'iter', 'passes', color='C2', lw=1, alpha=0.5,
                     label='train, one batch'),
                draw(passes, 'eval', 'passes', 'o-', color='C2', ms=4, label='val'),
                draw(k, 'iter', 'k', color='C3')]):  # an empty picture is no picture
        die(f"{path} holds no numbers to draw ({len(lines)} lines); pass the out_dir of a run "
            "train.py has logged")
    n_pass = max([len(h) for r in rows if isinstance(h := r.get('depth_hist'), list)] or [0])
    loss.set(ylabel='cross-entropy (nats/token)', title=f'{path}: training curves')
    passes.set(ylabel='mean passes per token', ylim=(0.9, n_pass + 0.1) if n_pass else None)
    k.set(xlabel='step', ylabel='bottom-k fraction k', ylim=(0, None))
    for ax in (loss, passes, k):
        ax.grid(alpha=0.3)
    for ax in (loss, passes):
        ax.legend(frameon=False, loc='upper right')
    fig.tight_layout()
    fig.savefig(plot, dpi=150)
    print(f"wrote {plot}")

# -----------------------------------------------------------------------------
if __name__ == '__main__':  # the tests import the functions above; Ctrl-C: configurator's line
    configure(globals())
    check(globals(), dict(mode=('analyze', 'lens', 'curves'), batch_size='integer [1, inf)',
                          max_tokens='integer [1, inf)', seed='integer [0, 1e19)'))
    if mode == 'curves' and not plot:
        die("mode=curves draws a picture; pass its file, e.g. --plot=curves.png")
    if plot and mode != 'lens':  # now, not after minutes of scoring (and never over ckpt.pt)
        or_die(check_files, plot=plot)
    if mode == 'curves':  # train.py's numbers: no model to load
        curves(os.path.join(out_dir, 'metrics.jsonl'))
    else:
        device, _, autocast = or_die(pick_device, device, dtype)
        with autocast:
            (analyze if mode == 'analyze' else lens)(*load(out_dir))
