"""sample.py: clear errors, the depth shown is the depth generated, every analysis table on a tiny checkpoint."""
import importlib.util
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import sample
from adaponder import AdaPonderLM, load_checkpoint, preset, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def prepare_toy(data_dir):
    """The real toy dataset (data/toy/prepare.py), small: a few thousand characters."""
    spec = importlib.util.spec_from_file_location('toy_prepare', ROOT / 'data' / 'toy' / 'prepare.py')
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    meta, _ = prepare.prepare(str(data_dir / 'toy'), seed=1, train_chars=20_000, val_chars=6_000)
    return meta


def train_checkpoint(out_dir, vocab_size, halting, steps, data):
    """A tiny model trained a few AdamW steps on the toy train split. gate_bias_init=0 with tau=0.5 makes
    tokens halt after every pass from the start, so depths vary."""
    torch.manual_seed(0)
    cfg = preset('tiny', vocab_size=vocab_size, n_ponder=3, halting=halting, gate_bias_init=0.0, halt_threshold=0.5)
    model = AdaPonderLM(cfg)
    optimizer = model.configure_optimizers(0.1, 1e-2, (0.9, 0.99), 'cpu')
    gen, T = torch.Generator().manual_seed(0), cfg.block_size
    for _ in range(steps):
        ix = torch.randint(len(data) - T - 1, (8,), generator=gen).tolist()
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        loss = model(x, y, ponder_k=0.0).loss  # no gate loss: 20 steps of it would halt every token
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out_dir.mkdir()
    save_checkpoint(str(out_dir / 'ckpt.pt'), model, iter_num=steps, config={'halting': halting}, dataset='toy')
    return str(out_dir)


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than two threads on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp('sample')
    meta = prepare_toy(root / 'data')
    train = torch.from_numpy(np.fromfile(root / 'data' / 'toy' / 'train.bin', dtype=np.uint16).astype(np.int64))
    ckpts = {h: train_checkpoint(root / f'out-{h}', meta['vocab_size'], h, steps, train)
             for h, steps in (('learned', 20), ('none', 5), ('fixed', 5))}
    return dict(root=root, data_dir=str(root / 'data'), meta=meta, **ckpts)


def cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, str(ROOT / 'sample.py'), *args], cwd=cwd, env=env, capture_output=True,
                          text=True)


def run_main(capsys, *args):
    """sample.main in-process; returns (stdout, the SystemExit message or None)."""
    try:
        sample.main(list(args))
        message = None
    except SystemExit as e:
        message = str(e.code)
    return capsys.readouterr().out, message


def assert_clear_error(result, *fragments):
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and '; ' in lines[0], result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# ---- clear errors ----

def test_missing_checkpoint(tmp_path):
    result = cli('--out_dir=out-nothing', cwd=tmp_path)
    assert_clear_error(result, 'no checkpoint at out-nothing/ckpt.pt', 'train.py')


def test_unknown_prompt_characters(toy):
    r = cli(f'--out_dir={toy["learned"]}', f'--data_dir={toy["data_dir"]}', '--start=A:Z1@', cwd=toy['root'])
    assert_clear_error(r, "characters not in the vocabulary: '@', 'Z'")
    assert "'1'" not in r.stderr.split(';')[0]  # only the unknown ones are named


def test_prompt_file_errors(toy, capsys):
    empty = toy['root'] / 'empty.txt'
    empty.write_text('')
    base = (f'--out_dir={toy["learned"]}', f'--data_dir={toy["data_dir"]}')
    _, message = run_main(capsys, *base, f'--start=FILE:{empty}')
    assert message.startswith('error: prompt file') and 'is empty' in message
    _, message = run_main(capsys, *base, f'--start=FILE:{toy["root"] / "absent.txt"}')
    assert message.startswith('error: prompt file') and 'does not exist' in message
    _, message = run_main(capsys, *base, '--start=')
    assert message.startswith('error: the prompt is empty')


def test_corrupt_checkpoint_missing_meta_and_split(toy, capsys, tmp_path):
    (tmp_path / 'ckpt.pt').write_bytes(b'not a checkpoint')
    _, message = run_main(capsys, f'--out_dir={tmp_path}')
    assert message.startswith('error: ') and 'not a readable AdaPonder checkpoint' in message
    _, message = run_main(capsys, f'--out_dir={toy["learned"]}', f'--data_dir={tmp_path}')
    assert message.startswith('error: no ') and 'meta.json' in message and 'prepare.py' in message
    _, message = run_main(capsys, '--mode=analyze', f'--out_dir={toy["learned"]}', f'--data_dir={toy["data_dir"]}',
                          '--split=test')
    assert message.startswith('error: no ') and 'test.bin' in message and 'prepare.py' in message


@pytest.mark.parametrize('arg,fragment', [('--bogus=1', 'unknown option'), ('out', 'unknown option'),
                                          ('--top_k=many', 'is not an integer'), ('--mode=dance', '--mode must be'),
                                          ('--temperature=-1', 'temperature'), ('--num_samples', 'needs a value')])
def test_bad_options(arg, fragment, capsys):
    _, message = run_main(capsys, arg)
    assert message.startswith('error: ') and fragment in message


def test_options_parse_like_nanogpt():
    opt = sample.parse_args(['--start=123', '--top_k=None', '--plain', '--compare=false', '--temperature=0'])
    assert opt['start'] == '123' and opt['top_k'] is None and opt['plain'] is True and opt['compare'] is False
    assert opt['temperature'] == 0.0 and isinstance(opt['temperature'], float)

# ---- the depth shown is the depth generated ----


@pytest.mark.parametrize('temperature,top_k', [(0, None), (1.0, None), (0.8, 20)])
def test_streaming_equals_generate(toy, temperature, top_k):
    """Token for token and depth for depth, past the context (block_size 64) too, where both restart
    the cache from its last half. Sampling is compared under the same seed."""
    model, _ = load_checkpoint(f'{toy["learned"]}/ckpt.pt')
    model.eval()
    idx = torch.tensor([sample.Vocab(toy['meta']).encode('C:')])
    torch.manual_seed(3)
    ref_idx, ref_depth = model.generate(idx, 90, temperature, top_k)
    seen = []
    torch.manual_seed(3)
    out_idx, depth, seconds = sample.generate_stream(model, idx, 90, temperature, top_k,
                                                     on_token=lambda t, d: seen.append((t[0], d[0])))
    assert torch.equal(out_idx, ref_idx) and torch.equal(depth, ref_depth) and seconds > 0
    assert seen == list(zip(ref_idx[0, 2:].tolist(), ref_depth[0].tolist()))
    if temperature == 1.0:  # the depths really vary, so the check means something (greedy text repeats itself)
        assert len(set(ref_depth.flatten().tolist())) > 1


def parse_plain(text, vocab):
    """Back from the plain form: text[d] per token, \\n[d] then a real newline for a newline."""
    pairs = re.findall(r'(\\n|[^\[\]\n])\[(\d+)\]', text)
    return [vocab.stoi['\n' if t == '\\n' else t] for t, _ in pairs], [int(d) for _, d in pairs]


def test_depth_shown_equals_depth_generated(toy, capsys):
    n = 60
    out, message = run_main(capsys, f'--out_dir={toy["learned"]}', f'--data_dir={toy["data_dir"]}', '--start=C:',
                            '--num_samples=1', f'--max_new_tokens={n}', '--seed=7', '--plain')
    assert message is None
    generated = out.split('C:', 1)[1].split('\nsample i=0')[0]
    vocab = sample.Vocab(toy['meta'])
    tokens, depths = parse_plain(generated, vocab)
    model, _ = load_checkpoint(f'{toy["learned"]}/ckpt.pt')
    torch.manual_seed(7)  # sample 0 is drawn with the seed itself
    ref_idx, ref_depth = model.eval().generate(torch.tensor([vocab.encode('C:')]), n, temperature=0.8, top_k=200)
    assert tokens == ref_idx[0, 2:].tolist() and depths == ref_depth[0].tolist()
    assert len(set(depths)) > 1
    stats = re.search(r'sample i=0 tokens=60 tok/s=\S+ passes=(\S+) flops_vs_full=(\S+) depth_hist=\[(.*)\]', out)
    hist = torch.bincount(ref_depth[0] - 1, minlength=4).tolist()
    assert [int(c) for c in stats.group(3).split(',')] == hist
    assert float(stats.group(1)) == pytest.approx(ref_depth.float().mean().item(), abs=0.005)
    assert float(stats.group(2)) == pytest.approx(model.flops_per_token(hist)['vs_full_depth'], abs=0.005)


def test_colour_html_and_compare(toy, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: True)
    page = toy['root'] / 'samples.html'
    out, message = run_main(capsys, f'--out_dir={toy["learned"]}', f'--data_dir={toy["data_dir"]}', '--start=N:',
                            '--num_samples=2', '--max_new_tokens=20', '--compare', f'--html={page}')
    assert message is None
    assert out.count('\x1b[30;48;5;') >= 2 * 20 and '[1]' not in out  # coloured, not plain
    speed = re.findall(r'compare tok/s_adaptive=(\S+) tok/s_full=(\S+) speedup=(\S+)x passes=\S+ passes_full=4\.00',
                       out)
    assert len(speed) == 2 and all(float(a) > 0 and float(f) > 0 for a, f, _ in speed)
    text = page.read_text()
    assert text.count('<pre>') == 2 and text.count('<span') == 2 * 20 + 4  # tokens + the legend's 4 keys


def test_html_escapes(tmp_path):
    page = tmp_path / 'x.html'
    sample.write_html(str(page), [('<p>', [('<b>&', 2), ('\n', 1)], 'sample i=0')], n_pass=4)
    text = page.read_text()
    assert '&lt;p&gt;' in text and '&lt;b&gt;&amp;' in text and '<b>&' not in text
    assert 'title="passes: 1">↵\n</span>' in text


def test_plain_and_colour_forms():
    assert sample.format_token('a\n', 3, 4, colour=False) == 'a\\n[3]\n'
    coloured = sample.format_token('\nb', 4, 4, colour=True)
    assert coloured.startswith('\x1b[30;48;5;196m↵') and coloured.endswith('b' + sample.RESET)
    assert sample.depth_colour(1, 4) == sample.PALETTE[0] and sample.depth_colour(4, 4) == sample.PALETTE[-1]

# ---- analysis ----


def test_ranks_average_ties_and_spearman():
    assert sample.ranks(torch.tensor([3, 1, 2, 2])).tolist() == [4.0, 1.0, 2.5, 2.5]
    x = torch.tensor([1, 1, 2, 3, 3, 3, 4])
    assert sample.spearman(x, x.double() ** 3) == pytest.approx(1.0)
    assert sample.spearman(x, -x.double()) == pytest.approx(-1.0)
    # by hand: ranks [1, 2.5, 2.5, 4] and [1, 3, 2, 4], centred dot product 4.5, squared norms 4.5 and 5
    rho = sample.spearman(torch.tensor([1, 2, 2, 3]), torch.tensor([1., 3., 2., 4.]))
    assert rho == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_pareto():
    rows = [dict(flops=1, loss=3), dict(flops=2, loss=2), dict(flops=3, loss=2.5), dict(flops=2, loss=2)]
    assert sample.pareto(rows) == [True, True, False, True]


def test_sweep_passes_fall_as_threshold_rises(toy):
    model, _ = load_checkpoint(f'{toy["learned"]}/ckpt.pt')
    model.eval()
    data = np.fromfile(f'{toy["data_dir"]}/toy/val.bin', dtype=np.uint16)
    opt = dict(sample.DEFAULTS, batch_size=16, max_tokens=4096)
    rows = sample.compute_quality_dial(model, data, opt, sample.nullcontext(), 1.0, 'val_loss')
    by_tau = [r['passes'] for r in rows if r['cap'] == model.config.n_ponder]
    assert by_tau[0] == 4.0 and by_tau[-1] < by_tau[0]  # tau = 0 never halts
    assert all(b <= a + 0.02 for a, b in zip(by_tau, by_tau[1:])), by_tau
    by_cap = [r['passes'] for r in rows if r['tau'] == model.config.halt_threshold]
    assert all(b <= a for a, b in zip(by_cap, by_cap[1:])) and by_cap[-1] == 1.0
    assert model.config.halt_threshold == 0.5 and model.config.n_ponder == 3  # restored afterwards


def values(lines, key):
    return [re.search(rf'{key}=(\S+)', line).group(1) for line in lines]


def test_analysis_prints_every_table_in_seconds(toy, capsys):
    t0 = time.perf_counter()
    others = f'{toy["none"]},{toy["fixed"]}/ckpt.pt'
    out, message = run_main(capsys, '--mode=analyze', f'--out_dir={toy["learned"]}',
                            f'--data_dir={toy["data_dir"]}', '--max_tokens=4096', f'--compare_ckpts={others}')
    assert message is None and time.perf_counter() - t0 < 30
    table = {tag: [line for line in out.splitlines() if line.startswith(tag + ' ')]
             for tag in ('nll_quantile', 'depth_vs_nll', 'class', 'dial', 'iso')}
    iso = table['iso']
    assert values(iso, 'halting') == ['learned', 'fixed-uniform', 'fixed-geometric', 'none', 'fixed']
    passes = [float(p) for p in values(iso, 'passes')]
    assert abs(passes[1] - passes[0]) < 0.1 and abs(passes[2] - passes[0]) < 0.1  # iso: the same mean passes
    assert passes[3] == 4.0 and all('val_loss=' in line and 'se=' in line for line in iso)
    # table 1: five equal quintiles, their passes averaging to the checkpoint's; the toy classes' shares add up
    assert len(table['nll_quantile']) == 5
    quintile_passes = [float(p) for p in values(table['nll_quantile'], 'passes')]
    assert np.mean(quintile_passes) == pytest.approx(passes[0], abs=0.01)
    assert -1 <= float(values(table['depth_vs_nll'], 'spearman')[0]) <= 1
    assert values(table['class'], 'name') == toy['meta']['classes']
    assert sum(float(v.rstrip('%')) for v in values(table['class'], 'share')) == pytest.approx(100, abs=0.5)
    # table 2: one row per setting, the trained setting's row equal to the checkpoint's own numbers
    config = load_checkpoint(f'{toy["learned"]}/ckpt.pt')[0].config
    dial = table['dial']
    assert len(dial) == len(sample.dial_settings(config)) and any('pareto=yes' in line for line in dial)
    trained = [line for line in dial if 'tau=0.5 ' in line and 'cap=3 ' in line]
    assert values(trained, 'val_loss') == values(iso[:1], 'val_loss')


def test_lens_matches_the_model(toy, capsys):
    prompt = 'A:12+34=64\nC:abc|ab'
    out, message = run_main(capsys, '--mode=lens', f'--out_dir={toy["learned"]}', f'--data_dir={toy["data_dir"]}',
                            f'--start={prompt}')
    assert message is None
    rows = [line for line in out.splitlines() if line.startswith('lens ')]
    assert len(rows) == len(prompt)
    model, _ = load_checkpoint(f'{toy["learned"]}/ckpt.pt')
    vocab = sample.Vocab(toy['meta'])
    ref = model.eval()(torch.tensor([vocab.encode(prompt)]))
    for t, line in enumerate(rows):
        depth = int(re.search(r'depth=(\d+)', line).group(1))
        assert depth == ref.depth[0, t].item()
        cells = re.findall(r'pass\d=(\S+)', line)
        assert len(cells) == 4 and all(c == '-' for c in cells[depth:]) and '-' not in cells[:depth]
        final = vocab.itos[ref.logits[0, t].argmax().item()]  # the last pass that ran is the model's output
        assert cells[depth - 1].startswith(repr(final))


def neox_meta(tmp_path):
    """A small byte-level BPE like Pythia's, trained here: the real tokenizer.json is a download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=['<|endoftext|>'],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(['hello world, héllo wörld'] * 10, trainer)
    tok.save(str(tmp_path / 'tokenizer.json'))
    return {'encoding': 'neox', 'tokenizer_json': str(tmp_path / 'tokenizer.json')}


@pytest.mark.parametrize('encoding', ['gpt2', 'neox'])
def test_bpe_streams_whole_characters(encoding, tmp_path):
    """BPE splits an emoji over several tokens: each piece shown is whole text, and together they are the text."""
    vocab = sample.Vocab({'encoding': 'gpt2'} if encoding == 'gpt2' else neox_meta(tmp_path))
    text = '🦜 héllo wörld<|endoftext|>'
    ids = vocab.encode(text)
    text_of = vocab.streamer()
    pieces = [text_of(i) for i in ids]
    assert ''.join(pieces) == text and '\ufffd' not in ''.join(pieces) and '' in pieces
    assert vocab.decode(ids + [vocab.n_vocab + 3] + ids[-1:]) == text + '\ufffd<|endoftext|>'  # a padding id


def test_gpt2_checkpoint_without_meta(tmp_path, capsys):
    """A checkpoint without its meta.json but with a GPT-2-sized vocabulary samples with GPT-2 BPE (as nanoGPT)."""
    torch.manual_seed(0)
    save_checkpoint(str(tmp_path / 'ckpt.pt'), AdaPonderLM(preset('tiny', vocab_size=50304)), dataset='pile')
    out, message = run_main(capsys, f'--out_dir={tmp_path}', f'--data_dir={tmp_path}', '--start=Hello',
                            '--num_samples=1', '--max_new_tokens=5', '--plain')
    assert message is None and re.findall(r'\[(\d)\]', out) == ['4'] * 5 and 'sample i=0 tokens=5' in out
