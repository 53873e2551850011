"""sample.py: the depth shown is the depth generated, colours, the plain form and the picture, BPE text, one clear line
per error.
The script runs in-process (runpy, as `python sample.py`): a subprocess costs seconds, and only one test needs it."""
import importlib.util
import json
import re
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from adaponder import AdaPonderLM
from pretrained import load_checkpoint, preset, save_checkpoint
from data import show
from data.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXT = '🦜 héllo wörld<|endoftext|>'  # an emoji is several BPE tokens


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """The real toy dataset's vocabulary (data/toy/prepare.py, a small run) and a tiny untrained model on it.
    Its gates start at s ~ 0.5 (gate_bias_init=0) and tau=0.5 halts about half the tokens after each pass, so
    depths vary; its text is random characters, newlines among them."""
    root = tmp_path_factory.mktemp('sample')
    spec = importlib.util.spec_from_file_location('toy_prepare', ROOT / 'data' / 'toy' / 'prepare.py')
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    meta, _ = prepare.prepare(str(root / 'data' / 'toy'), seed=1, train_chars=1_000, val_chars=1_000)
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', vocab_size=meta['vocab_size'], gate_bias_init=0.0, halt_threshold=0.5))
    (root / 'out').mkdir()
    save_checkpoint(str(root / 'out' / 'ckpt.pt'), model, dataset='toy')
    return dict(root=root, meta=meta, args=[f'--out_dir={root / "out"}', f'--data_dir={root / "data"}'])


def run(monkeypatch, capsys, *args):
    """python sample.py ARGS, in-process; returns (stdout, the one-line error or None)."""
    monkeypatch.setattr(sys, 'argv', ['sample.py', *args])
    try:
        runpy.run_path(str(ROOT / 'sample.py'), run_name='__main__')
        error = None
    except SystemExit as e:
        error = str(e.code)
        assert error.startswith('error: ') and '\n' not in error and '; ' in error, error  # problem; fix
    return re.sub(r'^settings overridden: .*\n', '', capsys.readouterr().out), error  # configure's line: not samples


def parse_plain(text):
    """The plain form back into (token texts, depths): text[d] per token, \\n[d] and a newline for a newline."""
    pairs = re.findall(r'(.*?)\[(\d+)\]\n?', text, flags=re.S)
    return [t.replace('\\n', '\n') for t, _ in pairs], [int(d) for _, d in pairs]


def stats(out):
    return [dict(re.findall(r'(\S+?)=(\S+)', line)) for line in out.splitlines() if line.startswith('sample i=')]


# ---- the depth shown is the depth generated ----

def test_depth_shown_equals_depth_generated(toy, monkeypatch, capsys):
    """Token for token and depth for depth, past the context (block_size 64) too, where the cache restarts;
    the stats line counts the same depths. Output to a pipe (here: captured) is the plain form."""
    n = 90
    out, error = run(monkeypatch, capsys, *toy['args'], '--start=C:', '--num_samples=2', f'--max_new_tokens={n}',
                     '--seed=7')
    assert error is None
    first = out.split('C:', 1)[1].split('\nsample i=0')[0]
    texts, depths = parse_plain(first)
    model, _ = load_checkpoint(str(toy['root'] / 'out' / 'ckpt.pt'))
    torch.manual_seed(7)
    ref_idx, ref_depth = model.eval().generate(torch.tensor([[toy['meta']['stoi'][c] for c in 'C:']]), n, 0.8, 200)
    assert texts == [toy['meta']['itos'][i] for i in ref_idx[0, 2:].tolist()] and depths == ref_depth[0].tolist()
    assert len(set(depths)) > 1 and '\n' in texts  # depths vary, and newlines round-trip
    s = stats(out)
    assert [x['i'] for x in s] == ['0', '1'] and s[0]['tokens'] == str(n)
    hist = torch.bincount(ref_depth[0] - 1, minlength=4).tolist()
    assert s[0]['depth_hist'] == f"[{','.join(map(str, hist))}]"
    assert float(s[0]['passes']) == pytest.approx(ref_depth.float().mean().item(), abs=0.005)
    assert float(s[0]['flops_vs_full']) == pytest.approx(model.flops_per_token(hist)['vs_full_depth'], abs=0.005)


def test_a_cap_counts_flops_against_the_trained_full_depth(toy, monkeypatch, capsys):
    out, error = run(monkeypatch, capsys, *toy['args'], '--num_samples=1', '--max_new_tokens=30', '--n_ponder=1',
                     '--halt_threshold=0.3')
    assert error is None
    s = stats(out)[0]
    hist = [int(c) for c in s['depth_hist'].strip('[]').split(',')]
    assert len(hist) == 2 and sum(hist) == 30
    capped, _ = load_checkpoint(str(toy['root'] / 'out' / 'ckpt.pt'), n_ponder=1)
    full, _ = load_checkpoint(str(toy['root'] / 'out' / 'ckpt.pt'))
    expected = capped.flops_per_token(hist)['total'] / full.flops_per_token([0, 0, 0, 1])['total']
    assert float(s['flops_vs_full']) == pytest.approx(expected, abs=0.005)
    assert expected < capped.flops_per_token(hist)['vs_full_depth'] - 0.05  # not the capped model's full depth



def test_tokens_per_second_leave_out_the_terminal(toy, monkeypatch, capsys):
    """tok/s is the model's speed: a slow terminal (here 50 ms a print) does not lower it. With the printing
    counted, 20 tokens would take over 1 s: under 20 tok/s (the tiny model alone, on a loaded 2-core machine:
    80 tok/s and up)."""
    import builtins
    print_, slow = builtins.print, lambda *args, **kwargs: (time.sleep(0.05), print_(*args, **kwargs))
    monkeypatch.setattr(builtins, 'print', slow)
    out, error = run(monkeypatch, capsys, *toy['args'], '--num_samples=1', '--max_new_tokens=20')
    assert error is None and float(stats(out)[0]['tok/s']) > 40


# ---- colours, the plain form, the HTML page ----

def test_colours_on_a_terminal_and_the_html_page(toy, monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: True)
    page = toy['root'] / 'samples.html'
    out, error = run(monkeypatch, capsys, *toy['args'], '--num_samples=2', '--max_new_tokens=40', '--seed=7',
                     f'--html={page}')
    assert error is None
    codes = re.findall(r'\x1b\[30;48;5;(\d+)m', out)
    assert len(codes) >= 4 + 2 * 40 and not re.search(r'\[\d\]', out)  # the legend's 4 keys and every token
    assert set(codes) <= {str(code) for code, _ in show.PALETTE} and '↵\x1b[0m\n' in out
    html = page.read_text(encoding='utf-8')
    depths = [int(d) for d in re.findall(r'title="passes: (\d)"', html)][4:]  # after the legend's keys
    hists = [s['depth_hist'] for s in stats(out)]
    assert [f"[{','.join(str(depths[40 * i:40 * (i + 1)].count(d)) for d in (1, 2, 3, 4))}]" for i in (0, 1)] == hists
    out, _ = run(monkeypatch, capsys, *toy['args'], '--num_samples=1', '--max_new_tokens=5', '--plain=True')
    assert '\x1b[' not in out and len(re.findall(r'\[\d\]', out)) == 5  # plain on a terminal when asked


def test_show_and_html_forms(tmp_path):
    colours = [show.PALETTE[0], show.PALETTE[-1]]
    assert show.show('a\n', 3) == 'a\\n[3]\n' and show.show('\nb', 1) == '\\nb[1]'
    assert show.show('\nb', 2, colours) == '\x1b[30;48;5;196m↵\x1b[0m\n\x1b[30;48;5;196mb\x1b[0m'
    page = tmp_path / 'x.html'
    show.write_html(str(page), '<p>', [([('<b>&', 2), ('\n', 1)], 'sample i=0 <x>')], colours)
    html = page.read_text(encoding='utf-8')
    assert '&lt;p&gt;' in html and '&lt;b&gt;&amp;' in html and '&lt;x&gt;' in html and '<b>&' not in html
    assert 'background:#ff0000" title="passes: 2">&lt;b&gt;&amp;</span>' in html
    assert 'title="passes: 1">↵\n</span>' in html


# ---- the PNG picture ----

def colours_below_legend(picture):
    """The PALETTE entries (1-based) whose exact colour some pixel of the picture has, below its legend: the legend
    (every depth's colour) is the first band of ink, down to the first all-white row of pixels."""
    from matplotlib import colors, image
    pixels = image.imread(picture)[..., :3]
    ink = (pixels < 1).any(axis=(1, 2))
    top = ink.argmax()
    body = pixels[top + (~ink[top:]).argmax():]
    return [i for i, (_, rgb) in enumerate(show.PALETTE, 1) if (abs(body - colors.to_rgb(rgb)).max(-1) < 1e-3).any()]


def test_image_colours_the_depths_generated(toy, monkeypatch, capsys):
    """--image: a PNG in which, below the legend, a depth's colour shows iff some new token ran that many passes
    (the picture is drawn from what was sampled); a K=3 model's depths 1..4 take PALETTE entries 1, 3, 6, 8."""
    pytest.importorskip('matplotlib')
    from matplotlib import image
    picture = toy['root'] / 'samples.png'
    out, error = run(monkeypatch, capsys, *toy['args'], '--num_samples=2', '--max_new_tokens=3', '--seed=1',
                     f'--image={picture}')
    assert error is None and f'wrote {picture}' in out and picture.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    height, width, _ = image.imread(picture).shape
    assert 150 < height < 600 and 400 < width < 1200  # 2 samples of a few characters, their stats the widest rows
    depths = {d for s in stats(out) for d, n in enumerate(json.loads(s['depth_hist']), 1) if n}
    assert 1 < len(depths) < 4  # some depths drawn, some not
    assert colours_below_legend(picture) == [[1, 3, 6, 8][d - 1] for d in sorted(depths)]


def test_image_rows(tmp_path):
    """Drawn directly: the prompt black on white, a newline token's colour shown (as '↵'), a token's cells one band
    of colour with no gap between them, a long line wrapped at 80 columns: as wide as 80 characters, and taller."""
    pytest.importorskip('matplotlib')
    import numpy as np
    from matplotlib import colors, image
    colours = [show.PALETTE[i] for i in (0, 2, 5, 7)]

    def draw(name, prompt, pieces):
        show.write_image(str(tmp_path / name), prompt, [(pieces, 'sample i=0')], colours)
        return tmp_path / name
    picture = draw('a.png', 'A:1\n', [('xyz' * 10, 2), ('\n', 4), ('z', 2)])
    assert colours_below_legend(picture) == [3, 8]  # 4 passes: the newline
    green = (abs(image.imread(picture)[..., :3] - colors.to_rgb(colours[1][1])).max(-1) < 1e-3)
    xs = np.nonzero(green[green.sum(1).argmax()])[0]  # a row of pixels through the token's cells, above the glyphs
    assert len(xs) == xs[-1] - xs[0] + 1 > 300  # one unbroken band, 30 cells wide
    (h80, w80, _), (h200, w200, _) = (image.imread(draw(f'{n}.png', '', [('x' * n, 1)])).shape for n in (80, 200))
    assert w200 == w80 and h200 > h80



def test_drawing_leaves_the_matplotlib_backend_alone(tmp_path):
    """write_image draws without pyplot: a notebook's or a GUI's backend is the same after a picture."""
    matplotlib = pytest.importorskip('matplotlib')
    import matplotlib.pyplot as plt
    before = matplotlib.get_backend()
    plt.switch_backend('svg')  # any backend but the Agg a file is drawn with
    try:
        show.write_image(str(tmp_path / 'a.png'), 'A:', [([('12', 2)], 'sample i=0')], show.PALETTE[:4])
        assert matplotlib.get_backend() == 'svg' and (tmp_path / 'a.png').read_bytes()[:4] == b'\x89PNG'
    finally:
        plt.switch_backend(before)


def test_image_without_matplotlib_fails_before_sampling(toy, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import matplotlib now fails
    out, error = run(monkeypatch, capsys, *toy['args'], '--image=samples.png')
    assert error == "error: image= draws with matplotlib, which is not installed; pip install matplotlib"
    assert out == ''  # not a token sampled


# ---- BPE: whole characters, padding ids, a GPT-2 checkpoint without meta.json ----

def neox_tokenizer(path):
    """A small byte-level BPE like Pythia's, trained here: the real tokenizer.json is a download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=['<|endoftext|>'],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(['hello world, héllo wörld'] * 10, trainer)
    tok.save(str(path))
    return tok


def bpe_checkpoint(root, encoding):
    """A tiny checkpoint whose vocabulary is GPT-2's (and no meta.json: as nanoGPT, GPT-2 BPE is assumed) or a
    GPT-NeoX tokenizer.json named by meta.json. The vocabulary is padded past the tokenizer's, as in training."""
    if encoding == 'neox':
        (root / 'data' / 'bpe').mkdir(parents=True)
        n_vocab = neox_tokenizer(root / 'tokenizer.json').get_vocab_size()
        meta = dict(encoding='neox', tokenizer_json=str(root / 'tokenizer.json'), vocab_size=n_vocab)
        (root / 'data' / 'bpe' / 'meta.json').write_text(json.dumps(meta))
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', vocab_size=50304 if encoding == 'gpt2' else 320))
    (root / 'out').mkdir()
    save_checkpoint(str(root / 'out' / 'ckpt.pt'), model, dataset='bpe')
    return [f'--out_dir={root / "out"}', f'--data_dir={root / "data"}']


@pytest.mark.parametrize('encoding', ['gpt2', 'neox'])
def test_bpe_streams_whole_characters(encoding, tmp_path, monkeypatch, capsys):
    """The model is made to choose the tokens of TEXT, a padding id and ' ok': every piece shown is whole text, a
    token that ends inside a character shows nothing, and the padding id shows as U+FFFD."""
    args = bpe_checkpoint(tmp_path, encoding)
    vocab_size = 50304 if encoding == 'gpt2' else 320
    encode, _ = load_tokenizer(str(tmp_path / 'data'), dict(dataset='bpe'), vocab_size)
    ids = encode(TEXT) + [vocab_size - 1] + encode(' ok')

    def scripted(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        for j in range(max_new_tokens):
            yield torch.tensor([ids[j % len(ids)]]), torch.tensor([1 + j % 4])
    monkeypatch.setattr(AdaPonderLM, 'stream', scripted)
    out, error = run(monkeypatch, capsys, *args, '--start=hello', '--num_samples=1', f'--max_new_tokens={len(ids)}')
    assert error is None
    texts, depths = parse_plain(out.split('hello', 1)[1].split('\nsample i=0')[0])
    assert ''.join(texts) == TEXT + '\ufffd ok' and '' in texts and sum(t.count('\ufffd') for t in texts) == 1
    assert depths == [1 + j % 4 for j in range(len(ids))]


def test_gpt2_checkpoint_without_meta_samples(tmp_path, monkeypatch, capsys):
    args = bpe_checkpoint(tmp_path, 'gpt2')
    out, error = run(monkeypatch, capsys, *args, '--start=Hello', '--num_samples=1', '--max_new_tokens=5')
    assert error is None and re.findall(r'\[(\d)\]', out) == ['4'] * 5  # gates start open: every pass runs
    assert stats(out)[0]['depth_hist'] == '[0,0,0,5]'


# ---- bad input: one line naming the problem and the fix ----

@pytest.mark.parametrize('args,fragment', [
    (['--bogus=1'], "unknown setting 'bogus'"),
    (['--top_k=0'], 'top_k=0 is out of range; pass --top_k=<an integer in [1, inf) or None>'),
    (['--max_new_tokens=0'], 'max_new_tokens'),
    (['--temperature=-1'], 'temperature=-1.0 is out of range; pass --temperature=<a number in [0, inf)>'),
    (['--halt_threshold=abc'], 'halt_threshold=abc is out of range; pass --halt_threshold=<a number in [0, 1] or None>'),
    (['--n_ponder=-1'], 'n_ponder=-1 is out of range; pass --n_ponder=<an integer in [0, inf) or None>'),
    (['--n_ponder=7'], 'n_ponder is a cap on passes; pass at most K = 3'),
    (['--start=A:Z1@'], "characters not in the vocabulary: '@', 'Z'; use only these: "),
    (['--start='], 'the prompt is empty'),
    (['--start=FILE:absent.txt'], 'cannot read the prompt FILE:absent.txt (No such file or directory)'),
    (['--start=FILE:empty.txt'], 'the prompt is empty'),
    (['--start=FILE:latin1.txt'], 'cannot read the prompt FILE:latin1.txt (not UTF-8)'),
    (['--data_dir=nowhere'], 'no nowhere/toy/meta.json'),
    (['--out_dir=nowhere'], 'nowhere/ckpt.pt: no checkpoint here'),
    (['--html=no/such/folder/s.html'], 'cannot write html=no/such/folder/s.html: no such folder'),
    (['--num_samples=None'], 'num_samples=None is out of range; pass --num_samples=<an integer in [1, inf)>'),
    (['--temperature=None'], 'temperature=None is out of range'),
    (['--seed=100000000000000000000000'], 'seed=100000000000000000000000 is out of range'),
    (['--device=xpu'], 'xpu'),
])
def test_bad_input_is_one_clear_line(args, fragment, toy, monkeypatch, capsys):
    monkeypatch.chdir(toy['root'])
    (toy['root'] / 'empty.txt').write_text('')
    (toy['root'] / 'latin1.txt').write_bytes('héllo'.encode('latin-1'))
    _, error = run(monkeypatch, capsys, *toy['args'], *args)
    assert error is not None and fragment in error, error
    if 'vocabulary' in fragment:
        assert "'1'" not in error.split(';')[0]  # only the unknown characters are named


def test_unreadable_checkpoint_and_tokenizer(tmp_path, monkeypatch, capsys):
    (tmp_path / 'bad').mkdir()
    (tmp_path / 'bad' / 'ckpt.pt').write_bytes(b'not a checkpoint')
    _, error = run(monkeypatch, capsys, f'--out_dir={tmp_path / "bad"}')
    assert 'is damaged or not an AdaPonder checkpoint' in error
    args = bpe_checkpoint(tmp_path, 'neox')
    (tmp_path / 'tokenizer.json').unlink()
    _, error = run(monkeypatch, capsys, *args, '--start=hello')
    assert 'cannot load the tokenizer of' in error and 'prepare the data again' in error


def test_none_lets_top_k_halt_threshold_and_n_ponder_default(toy, monkeypatch, capsys):
    """None is refused where a number is needed (above), taken where the setting says what it means."""
    out, error = run(monkeypatch, capsys, *toy['args'], '--num_samples=1', '--max_new_tokens=5', '--top_k=None',
                     '--halt_threshold=None', '--n_ponder=None')
    assert error is None and len(stats(out)) == 1


def test_a_checkpoint_with_nan_weights_is_refused_in_one_line(toy, tmp_path, monkeypatch, capsys):
    model, _ = load_checkpoint(str(toy['root'] / 'out' / 'ckpt.pt'))
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float('nan')
    (tmp_path / 'out').mkdir()
    save_checkpoint(str(tmp_path / 'out' / 'ckpt.pt'), model, dataset='toy')
    out, error = run(monkeypatch, capsys, f'--out_dir={tmp_path / "out"}', f'--data_dir={toy["root"] / "data"}')
    assert 'holds nan or inf weights' in error and out == ''  # not a sample of nan probabilities


def test_a_hops_prompt_is_cut_into_the_datasets_tokens(tmp_path, monkeypatch, capsys):
    """The depth task's tokens are several characters ('a>j ', ' a='): a prompt is cut longest token first, as
    the data was, and text no token matches is named."""
    spec = importlib.util.spec_from_file_location('hops_prepare', ROOT / 'data' / 'hops' / 'prepare.py')
    hops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hops)
    meta, _ = hops.prepare(str(tmp_path / 'data' / 'hops'), train_tokens=100, val_tokens=100)
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', vocab_size=meta['vocab_size']))
    (tmp_path / 'out').mkdir()
    save_checkpoint(str(tmp_path / 'out' / 'ckpt.pt'), model, dataset='hops')
    args = [f'--out_dir={tmp_path / "out"}', f'--data_dir={tmp_path / "data"}', '--num_samples=1',
            '--max_new_tokens=3']
    out, error = run(monkeypatch, capsys, *args, '--start=a>j b>f c>3 | a=')
    assert error is None and out.splitlines()[1].startswith('a>j b>f c>3 | a=')
    encode, decode = load_tokenizer(str(tmp_path / 'data'), dict(dataset='hops'), meta['vocab_size'])
    assert [decode([i]) for i in encode('a>j b>f c>3 | a=')] == ['a>j ', 'b>f ', 'c>3 ', '|', ' a=']
    _, error = run(monkeypatch, capsys, *args, '--start=a>j b>x | a=')
    assert "no token of the vocabulary matches the prompt at 'b>x | a='" in error and 'meta.json' in error


def test_the_script_exits_1_with_one_line_on_stderr(toy):
    """The one subprocess: the real exit status and stderr of `python sample.py` on bad input."""
    result = subprocess.run([sys.executable, str(ROOT / 'sample.py'), *toy['args'], '--start=C:@'],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout.startswith('settings overridden: out_dir=')  # and no sample
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith('error: ')
    assert "not in the vocabulary: '@'" in result.stderr and 'Traceback' not in result.stderr
