"""analyze.py: the tables agree with the model and with each other, the dial moves compute, clear errors."""
import contextlib
import importlib.util
import io
import json
import math
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import analyze
from adaponder import AdaPonderLM, random_depths
from pretrained import load_checkpoint, preset, save_checkpoint, score

ROOT = Path(__file__).resolve().parents[1]


def prepare_script(dataset):
    """data/<dataset>/prepare.py as a module."""
    spec = importlib.util.spec_from_file_location(f'{dataset}_prepare', ROOT / 'data' / dataset / 'prepare.py')
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare


def prepare_toy(data_dir):
    """The real toy dataset (data/toy/prepare.py), small: a few thousand characters."""
    meta, _ = prepare_script('toy').prepare(str(data_dir / 'toy'), seed=1, train_chars=20_000, val_chars=6_000)
    return meta


def train_checkpoint(out_dir, vocab_size, steps, data, dataset='toy', **config):
    """A tiny model trained a few AdamW steps on the toy train split. gate_bias_init=0 with tau=0.5 makes
    tokens halt after every pass from the start, so depths vary."""
    torch.manual_seed(0)
    cfg = preset('tiny', vocab_size=vocab_size, **{**dict(n_ponder=3, gate_bias_init=0.0, halt_threshold=0.5),
                                                   **config})
    model = AdaPonderLM(cfg)
    matrices = [p for p in model.parameters() if p.dim() >= 2]  # weight decay on these only, as train.py
    others = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([dict(params=matrices, weight_decay=0.1), dict(params=others, weight_decay=0.0)],
                                  lr=1e-2, betas=(0.9, 0.99))
    gen, T = torch.Generator().manual_seed(0), cfg.block_size
    for _ in range(steps):
        ix = torch.randint(len(data) - T - 1, (8,), generator=gen).tolist()
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        loss = model(x, y, bottom_k_frac=0.0).loss  # no gate loss: 20 steps of it would halt every token
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out_dir.mkdir()
    save_checkpoint(str(out_dir / 'ckpt.pt'), model, iter_num=steps, dataset=dataset)
    return str(out_dir)


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp('analyze')
    meta = prepare_toy(root / 'data')
    train = torch.from_numpy(np.fromfile(root / 'data' / 'toy' / 'train.bin', dtype=np.uint16).astype(np.int64))
    v = meta['vocab_size']
    return dict(root=root, data_dir=str(root / 'data'), meta=meta,
                learned=train_checkpoint(root / 'out-learned', v, 20, train),
                none=train_checkpoint(root / 'out-none', v, 5, train, halting='none'),
                vanilla=train_checkpoint(root / 'out-vanilla', v, 5, train, n_ponder=0),
                other_dataset=train_checkpoint(root / 'out-other', v, 0, train, dataset='shakespeare_char'),
                short_context=train_checkpoint(root / 'out-short', v, 0, train, block_size=32))


def run_script(*args):
    """python analyze.py ARGS, in this process (runpy); returns the SystemExit message, or None."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, 'argv', ['analyze.py', *args])
        try:
            runpy.run_path(str(ROOT / 'analyze.py'), run_name='__main__')
        except SystemExit as e:
            return str(e.code)


def run_main(capsys, *args):
    """(stdout, the SystemExit message or None) of python analyze.py ARGS."""
    message = run_script(*args)
    return capsys.readouterr().out, message


def toy_args(toy, *args):
    return (f'--out_dir={toy["learned"]}', f'--data_dir={toy["data_dir"]}', '--max_tokens=2048', *args)


def values(lines, key):
    return [re.search(rf'\b{key}=(\S+)', line).group(1) for line in lines]


def tagged(out, tag):
    return [line for line in out.splitlines() if line.startswith(tag + ' ')]

# ---- pure functions, by hand ----


def test_ranks_average_ties_and_spearman():
    assert analyze.ranks(torch.tensor([3, 1, 2, 2])).tolist() == [4.0, 1.0, 2.5, 2.5]
    x = torch.tensor([1, 1, 2, 3, 3, 3, 4])
    assert analyze.spearman(x, x.double() ** 3) == pytest.approx(1.0)
    assert analyze.spearman(x, -x.double()) == pytest.approx(-1.0)
    # by hand: ranks [1, 2.5, 2.5, 4] and [1, 3, 2, 4], centred dot product 4.5, squared norms 4.5 and 5
    rho = analyze.spearman(torch.tensor([1, 2, 2, 3]), torch.tensor([1., 3., 2., 4.]))
    assert rho == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_paired_standard_error_by_hand():
    a, b = torch.tensor([2., 3., 4., 7.]), torch.tensor([1., 1., 1., 1.])
    # differences 1, 2, 3, 6: mean 3, sample variance (4 + 1 + 0 + 9) / 3, s.e. sqrt(14/3) / 2
    assert analyze.paired_delta(a, b) == pytest.approx((3.0, math.sqrt(14 / 3) / 2))
    # windows of 2 tokens: means 1.5 and 4.5, sample variance 4.5, s.e. sqrt(4.5) / sqrt(2) = 1.5
    assert analyze.paired_delta(a, b, window=2) == pytest.approx((3.0, 1.5))


def test_knobs_are_restored_even_after_an_error():
    model = AdaPonderLM(preset('tiny', n_ponder=3))
    with pytest.raises(RuntimeError):
        with analyze.knobs(model, halting='random', n_ponder=1, fixed_mean_depth=1.5):
            assert model.config.halting == 'random' and model.config.n_ponder == 1
            raise RuntimeError
    assert model.config.halting == 'learned' and model.config.n_ponder == 3


def test_the_margin_is_over_the_strongest_baseline_and_a_win_needs_two_standard_errors():
    def ev(nll, depth=(1, 3, 1, 3)):
        nll = torch.tensor(nll)
        return dict(nll=nll, depth=torch.tensor(depth), loss=nll.mean().item(), passes=2.0, flops=50.0)
    # minus learned: uniform 1, 2, 3, 6 (mean 3, s.e. 1.08); geometric 0, 0, 1, 5 (mean 1.5, s.e. 1.19);
    # least_spread 2, 2, 2, 2.4 (mean 2.1, s.e. 0.1): the strongest baseline is geometric, within 2 s.e.
    run = dict(tau=0.01, cap=3, learned=ev([0., 0., 0., 0.]), uniform=ev([1., 2., 3., 6.]),
               geometric=ev([0., 0., 1., 5.]), least_spread=ev([2., 2., 2., 2.4]))
    row = analyze.dial_row(run, full_flops=100.0, window=1)
    assert (row['strongest'], row['margin'], row['wins']) == ('geometric', '+1.5000±1.1902', 'no')
    assert (row['d_uniform'], row['d_least_spread']) == ('+3.0000±1.0801', '+2.1000±0.1000')
    assert (row['passes'], row['flops_vs_full'], row['loss']) == ('2.00', '0.500', '0.0000')
    run['geometric'] = ev([2.5, 2.5, 2.5, 2.5])  # now least_spread is the strongest: above 2 s.e.
    assert analyze.dial_row(run, 100.0, 1)['wins'] == 'yes'
    run['learned'] = ev([2.5, 2.5, 2.5, 2.5])  # learned halting loses to it by 0.4 ± 0.1
    row = analyze.dial_row(run, 100.0, 1)
    assert (row['strongest'], row['margin'], row['wins']) == ('least_spread', '-0.4000±0.1000', 'LOSES')
    run['learned'] = ev([2.5, 2.5, 2.5, 2.5], depth=(2, 2, 2, 2))  # every token the same passes: no room
    assert analyze.dial_row(run, 100.0, 1)['wins'] == 'n/a'


# ---- the compute dial ----


@pytest.fixture(scope='module')
def dial(toy):
    """Every setting of the dial on the learned checkpoint, as analyze runs them."""
    model, _ = load_checkpoint(f'{toy["learned"]}/ckpt.pt')
    data = np.fromfile(f'{toy["data_dir"]}/toy/val.bin', dtype=np.uint16)
    analyze.max_tokens = 2048  # as --max_tokens=2048 sets it
    return model.eval(), data, analyze.dial(model, data)


def test_dial_passes_fall_as_tau_rises_and_the_cap_drops(dial):
    model, _, runs = dial
    by_tau = [r['learned']['passes'] for r in runs if r['cap'] == 3]
    assert [r['tau'] for r in runs if r['cap'] == 3][0] == 0.0 and by_tau[0] == 4.0  # tau = 0 never halts
    assert by_tau[-1] < 1.5 and all(b <= a + 0.02 for a, b in zip(by_tau, by_tau[1:])), by_tau
    by_cap = [r['learned']['passes'] for r in runs if r['tau'] == 0.5]
    assert len(by_cap) == 4 and all(b <= a for a, b in zip(by_cap, by_cap[1:])) and by_cap[-1] == 1.0 < by_cap[0]
    assert (model.config.halting, model.config.halt_threshold, model.config.n_ponder) == ('learned', 0.5, 3)


def test_random_depths_match_the_mean_passes_and_repeat(dial):
    model, data, runs = dial
    for r in runs:
        for dist in analyze.BASELINES:
            assert r[dist]['passes'] == pytest.approx(r['learned']['passes'], abs=0.05), (r['tau'], r['cap'], dist)
            assert torch.equal(r[dist]['targets'], r['learned']['targets'])  # the same tokens
            assert r[dist]['depth'].max() <= r['cap'] + 1  # and the same cap
    middle = next(r for r in runs if 1.5 < r['learned']['passes'] < 3.5)
    assert len(set(middle['uniform']['depth'].tolist())) > 1  # random depths really vary
    again = analyze.dial_run(model, data, middle['tau'], middle['cap'])
    assert torch.equal(again['geometric']['nll'], middle['geometric']['nll'])  # seeded: the same draws


def test_least_spread_depths_are_floor_or_ceil_of_the_mean(dial):
    _, _, runs = dial
    for m in [r['learned']['passes'] for r in runs] + [1.0, 1.37, 2.5, 3.0, 4.0]:
        torch.manual_seed(0)
        depth = random_depths((100_000,), 4, m, 'least_spread', 'cpu')
        assert set(depth.unique().tolist()) <= {math.floor(m), math.ceil(m)}, m
        assert depth.double().mean().item() == pytest.approx(m, abs=0.005)
    for r in runs:  # and as the dial draws them, on the same tokens as learned halting
        m, depth = r['learned']['passes'], r['least_spread']['depth']
        assert set(depth.unique().tolist()) <= {math.floor(m), math.ceil(m)}, (r['tau'], r['cap'], m)


def test_the_dial_reaches_each_whole_number_of_passes_where_least_spread_is_the_cap(dial):
    model, data, runs = dial
    for c in (2, 3):  # tau bisected until learned halting runs c passes on average, at the full cap
        r = next(r for r in runs if r['cap'] == 3 and abs(r['learned']['passes'] - c) <= 0.01)
        assert r['learned']['depth'].min() < c < r['learned']['depth'].max()  # learned depths vary there
        assert (r['least_spread']['depth'] == c).double().mean() >= 0.98
    with analyze.knobs(model, halting='none', n_ponder=1):  # every token exactly 2 passes: the cap...
        cap = analyze.evaluate(model, data)
    with analyze.knobs(model, halting='random', fixed_depth_dist='least_spread', fixed_mean_depth=2.0):
        spread = analyze.evaluate(model, data)  # ...is least-spread depths of mean 2
    assert cap['passes'] == spread['passes'] == 2.0
    torch.testing.assert_close(spread['nll'], cap['nll'])


@pytest.fixture(scope='module')
def analysis(toy):
    """One run of analyze that the table and plot tests share (a run costs a second): two other checkpoints and,
    where matplotlib is installed, the plot, drawn while a backend other than the Agg a file is drawn with is
    current (svg, as a notebook's would be). Returns (stdout, SystemExit message, figures drawn, backend after)."""
    try:
        import matplotlib
        import matplotlib.pyplot as plt
        from matplotlib.figure import Figure
    except ImportError:
        matplotlib = None
    args = toy_args(toy, f'--compare_ckpts={toy["none"]},{toy["vanilla"]}/ckpt.pt')
    drawn, backend, message = [], None, None
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as out:
        if matplotlib:
            args += (f'--plot={toy["root"] / "dial.png"}',)
            save, before = Figure.savefig, matplotlib.get_backend()
            patch.setattr(Figure, 'savefig', lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))[1])
            plt.switch_backend('svg')
        try:
            message = run_script(*args)
        finally:
            if matplotlib:
                backend = matplotlib.get_backend()
                plt.switch_backend(before)
    return out.getvalue(), message, drawn, backend


def test_analysis_prints_every_table_consistently(toy, dial, analysis):
    model, data, runs = dial
    out, message, _, _ = analysis
    assert message is None, message
    own = score(model, data, batch_size=16, max_tokens=2048)[0]  # the checkpoint's own per-token NLL, as trained
    # table 1: five equal quintiles whose passes average to the checkpoint's; the toy classes add up
    quintiles = tagged(out, 'nll_quantile')
    assert len(quintiles) == 5
    assert np.mean([float(p) for p in values(quintiles, 'passes')]) == pytest.approx(
        runs[[r['tau'] for r in runs].index(0.5)]['learned']['passes'], abs=0.01)
    assert -1 <= float(values(tagged(out, 'depth_vs_nll'), 'spearman')[0]) <= 1
    classes = tagged(out, 'class')
    assert values(classes, 'name') == toy['meta']['classes']
    assert sum(float(v.rstrip('%')) for v in values(classes, 'share')) == pytest.approx(100, abs=0.5)
    labels = torch.from_numpy(np.fromfile(f'{toy["data_dir"]}/toy/val_class.bin', dtype=np.uint8)[1:1 + len(own)])
    assert values(classes, 'loss') == [f'{own[labels == c].mean():.4f}' for c in range(4)]  # label j+1: nll[j]
    # table 2: one row per setting, the numbers the runs gave, the trained row the checkpoint's own loss
    rows = tagged(out, 'dial')
    assert len(rows) == len(runs)
    for line, r in zip(rows, runs):
        assert float(values([line], 'passes')[0]) == pytest.approx(r['learned']['passes'], abs=0.005)
        deltas = {dist: analyze.paired_delta(r[dist]['nll'], r['learned']['nll'], model.config.block_size)
                  for dist in analyze.BASELINES}
        for dist, (delta, se) in deltas.items():
            assert float(values([line], f'd_{dist}')[0].split('±')[0]) == pytest.approx(delta, abs=5e-5)
        strongest = min(deltas, key=lambda dist: r[dist]['loss'])
        delta, se = deltas[strongest]
        assert values([line], 'strongest') == [strongest] and values([line], 'margin')[0].startswith(f'{delta:+.4f}')
        verdicts = ['yes'] if delta > 2 * se else ['LOSES'] if delta < -2 * se else ['no', 'n/a']
        assert values([line], 'wins')[0] in verdicts
    summary = tagged(out, 'against')[0]
    assert f"wins at {values(rows, 'wins').count('yes')}," in summary
    trained = [line for line in rows if 'tau=0.5 ' in line and 'cap=3 ' in line]
    assert values(trained, 'loss') == [f'{own.mean():.4f}'] and values(trained, 'flops_vs_full') != ['1.000']
    assert values([rows[0]], 'flops_vs_full') == ['1.000']  # tau = 0: full depth
    # table 3: the other checkpoints, paired against this one
    compare = tagged(out, 'compare')
    assert values(compare, 'halting') == ['none', 'learned'] and values(compare, 'K') == ['3', '0']
    assert values(compare, 'passes') == ['4.00', '1.00']
    vanilla, _ = load_checkpoint(f'{toy["vanilla"]}/ckpt.pt')
    delta = score(vanilla.eval(), data, batch_size=16, max_tokens=2048)[0].mean() - own.mean()
    assert float(values(compare[1:], 'delta')[0]) == pytest.approx(delta.item(), abs=5e-5)


def test_plot_is_written(toy, analysis):
    pytest.importorskip('matplotlib')
    picture = toy['root'] / 'dial.png'
    out, message, _, _ = analysis
    assert message is None and f'wrote {picture}' in out
    assert picture.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and picture.stat().st_size > 20_000


def test_the_plot_names_checkpoints_by_what_they_are_and_leaves_the_backend_alone(analysis):
    """Title and legend describe each checkpoint from its contents (kind, shape, step), never by its folder's name;
    and drawing switches no matplotlib backend (a notebook's stays)."""
    pytest.importorskip('matplotlib')
    _, message, drawn, backend = analysis
    assert message is None and backend == 'svg'
    ax = drawn[0].axes[0]
    words = [ax.get_title()] + [t.get_text() for t in ax.get_legend().get_texts()]
    assert not [w for w in words if 'out-' in w or 'ckpt.pt' in w], words
    assert ax.get_title() == 'AdaPonderLM (2 x 32, K=3, gate-loss weight 0.1, step 20)\non toy, val: 1,984 tokens'
    assert 'plain model (2 x 32, K=0, step 5), as trained' in [w.replace('\n', ' ') for w in words]  # wrapped


# ---- the logit lens ----


def test_lens_matches_the_model(toy, capsys):
    prompt = 'A:12+34=64\nC:abc|ab'
    out, message = run_main(capsys, '--mode=lens', *toy_args(toy, f'--start={prompt}'))
    assert message is None, message
    rows = tagged(out, 'lens')
    assert len(rows) == len(prompt)
    ids = torch.tensor([[toy['meta']['stoi'][c] for c in prompt]])
    with torch.no_grad():  # pass j is the output of the model loaded with a cap of j passes
        ref = [load_checkpoint(f'{toy["learned"]}/ckpt.pt', n_ponder=j)[0].eval()(ids) for j in range(4)]
    depths = ref[-1].depth[0].tolist()
    assert len(set(depths)) > 1  # depths vary, so the '-' cells mean something
    for t, line in enumerate(rows):
        depth = int(values([line], 'depth')[0])
        assert depth == depths[t]
        cells = re.findall(r'pass\d=(\S+)', line)
        assert len(cells) == 4 and all(c == '-' for c in cells[depth:]) and '-' not in cells[:depth]
        for j, cell in enumerate(cells[:depth]):
            probs = ref[j].logits[0, t].softmax(-1)
            token, p = cell.rsplit('@', 1)
            assert token == repr(toy['meta']['itos'][probs.argmax()])
            assert float(p) == pytest.approx(probs.max().item(), abs=0.005)

# ---- clear errors ----


@pytest.mark.parametrize('args,fragments', [
    (['--bogus=1'], ['unknown setting']),
    (['--mode=dance'], ['mode=dance is not one of analyze, lens, curves']),
    (['--batch_size=None'], ['batch_size=None is out of range']),
    (['--max_tokens=0'], ['max_tokens=0', 'in [1, inf)']),
    (['--batch_size=many'], ['batch_size must be int']),
    (['--out_dir=out-nothing'], ['out-nothing: no checkpoint here', 'train.py']),
    (['--split=test'], ['test.bin', 'prepare.py']),
    (['--max_tokens=40'], ['shorter than one window', 'max_tokens']),
    (['--compare_ckpts=OTHER'], ['trained on shakespeare_char', 'same tokens']),
    (['--compare_ckpts=SHORT'], ['block_size=32', 'same tokens']),
    (['--mode=lens', '--start=A:Z1@'], ["'@', 'Z'"]),
    (['--mode=lens', '--start='], ['prompt is empty']),
    (['--mode=curves'], ['--plot=curves.png']),
    (['--mode=curves', '--plot=curves.png'], ['metrics.jsonl', 'train.py writes it']),
    (['--plot=no/such/folder/dial.png'], ['cannot write plot=no/such/folder/dial.png: no such folder']),
    (['--split=val_class'], ['val_class.bin', 'prepare the dataset']),
    (['--mode=lens', '--start=FILE:no/such/prompt.txt'], ['cannot read the prompt FILE:no/such/prompt.txt']),
    (['--device=xpu'], ['device xpu is not available here']),
])
def test_bad_input_is_one_clear_line(toy, capsys, args, fragments):
    args = [a.replace('OTHER', toy['other_dataset']).replace('SHORT', toy['short_context']) for a in args]
    _, message = run_main(capsys, *toy_args(toy), *args)
    assert message is not None and message.startswith('error: ') and '\n' not in message and '; ' in message
    assert all(f in message for f in fragments), message



def test_a_bad_compare_ckpts_entry_is_named(toy, capsys, tmp_path):
    _, message = run_main(capsys, *toy_args(toy, '--compare_ckpts=out-nothing'))
    assert message.startswith('error: out-nothing: no checkpoint here') and 'out_dir' not in message, message
    (tmp_path / 'ckpt.pt').write_bytes(b'not a checkpoint')
    _, message = run_main(capsys, *toy_args(toy, f'--compare_ckpts={tmp_path}'))
    assert message.startswith(f'error: {tmp_path}/ckpt.pt is damaged'), message


def test_missing_meta_and_corrupt_checkpoint(toy, capsys, tmp_path):
    (tmp_path / 'toy').mkdir()
    (tmp_path / 'toy' / 'val.bin').write_bytes((Path(toy['data_dir']) / 'toy' / 'val.bin').read_bytes())
    (tmp_path / 'toy' / 'val_class.bin').write_bytes(b'\0' * 10)
    _, message = run_main(capsys, *toy_args(toy), f'--data_dir={tmp_path}')
    assert message.startswith('error: no ') and 'meta.json' in message and 'prepare.py' in message
    (tmp_path / 'toy' / 'meta.json').write_text(json.dumps(toy['meta']))
    _, message = run_main(capsys, *toy_args(toy), f'--data_dir={tmp_path}')  # classes cut short
    assert message.startswith('error: ') and 'val_class.bin holds 10 classes' in message, message
    (tmp_path / 'toy' / 'val.bin').write_bytes(b'')
    _, message = run_main(capsys, *toy_args(toy), f'--data_dir={tmp_path}')
    assert 'val.bin holds 0 tokens' in message and 'prepare.py' in message, message
    (tmp_path / 'toy' / 'val.bin').write_bytes(b'\1' * 4001)  # cut short, or another file
    _, message = run_main(capsys, *toy_args(toy), f'--data_dir={tmp_path}')
    assert 'val.bin has an odd number of bytes, not 2-byte token ids' in message, message
    (tmp_path / 'ckpt.pt').write_bytes(b'not a checkpoint')
    _, message = run_main(capsys, f'--out_dir={tmp_path}')
    assert message.startswith('error: ') and 'is damaged or not an AdaPonder checkpoint' in message


def test_nan_weights_are_refused(toy, capsys, tmp_path):
    ckpt = torch.load(f'{toy["learned"]}/ckpt.pt', weights_only=True)
    ckpt['model']['lm_head.weight'][0, 0] = float('nan')
    torch.save(ckpt, tmp_path / 'ckpt.pt')
    _, message = run_main(capsys, *toy_args(toy), f'--out_dir={tmp_path}')
    assert message.startswith(f'error: {tmp_path}/ckpt.pt holds nan or inf weights'), message


def test_lens_reads_a_prompt_file(toy, capsys, tmp_path):
    (tmp_path / 'prompt.txt').write_text('C:abc|ab')
    out, message = run_main(capsys, '--mode=lens', *toy_args(toy, f'--start=FILE:{tmp_path / "prompt.txt"}'))
    assert message is None and len(tagged(out, 'lens')) == len('C:abc|ab'), message


def test_lens_cuts_a_hops_prompt_into_the_datasets_tokens(tmp_path, capsys):
    """The hops dataset's tokens are several characters long (a binding `a>j ` is one token): the lens has a row
    for each token the model reads, longest match first, as the data was cut."""
    prepare = prepare_script('hops')
    prepare.prepare(str(tmp_path / 'data' / 'hops'), train_tokens=100, val_tokens=100)
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', vocab_size=len(prepare.ITOS), n_ponder=3))
    (tmp_path / 'out').mkdir()
    save_checkpoint(str(tmp_path / 'out' / 'ckpt.pt'), model, dataset='hops')
    out, message = run_main(capsys, '--mode=lens', f'--out_dir={tmp_path / "out"}', f'--data_dir={tmp_path / "data"}',
                            '--start=a>j b>f c>3 | a=')
    assert message is None, message
    tokens = [repr(t).replace(' ', '\u2423') for t in ('a>j ', 'b>f ', 'c>3 ', '|', ' a=')]
    rows = tagged(out, 'lens')
    assert values(rows, 'token') == tokens and values(rows, 'next') == tokens[1:] + ['?']


@pytest.mark.parametrize('lines,words', [
    ([], ['holds no numbers to draw']),
    (['garbage', '{"kind": "iter"'], ['holds no numbers to draw']),
    (['{"kind": "iter", "step": 1}', '{"kind": "eval", "step": 2}'], ['holds no numbers to draw']),
])
def test_curves_without_numbers_are_one_line(toy, capsys, tmp_path, lines, words):
    pytest.importorskip('matplotlib')
    (tmp_path / 'metrics.jsonl').write_text(''.join(line + '\n' for line in lines))
    _, message = run_main(capsys, '--mode=curves', f'--out_dir={tmp_path}', f'--plot={tmp_path / "c.png"}')
    assert message.startswith('error: ') and all(w in message for w in words), message
    assert not (tmp_path / 'c.png').exists()


def test_curves_skip_a_step_that_is_not_a_number(toy, capsys, tmp_path):
    pytest.importorskip('matplotlib')
    rows = [dict(kind='iter', step=s, loss=3.0 - s / 10, passes=2.0, k=0.1) for s in range(5)]
    rows[2]['step'] = 'abc'
    (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    out, message = run_main(capsys, '--mode=curves', f'--out_dir={tmp_path}', f'--plot={tmp_path / "c.png"}')
    assert message is None and 'skipped 1 unreadable line' in out and (tmp_path / 'c.png').exists()


def test_plot_without_matplotlib_says_how_to_install(toy, capsys, monkeypatch):
    monkeypatch.setitem(__import__('sys').modules, 'matplotlib', None)  # import matplotlib now fails
    _, message = run_main(capsys, *toy_args(toy), '--plot=dial.png')
    assert message.startswith('error: ') and 'pip install matplotlib' in message
