"""train.py's promises: exact resume, atomic checkpoints, DDP ranks that agree, continued pretraining whose
gate warm-up freezes the backbone, config precedence, the metrics file and its curves, and one-line errors for
bad input. Each test runs train.py as a subprocess with a tiny model on a small toy dataset."""
import contextlib
import importlib.util
import io
import json
import os
import re
import runpy
import shutil
import subprocess
import sys

import pytest
import torch

from adaponder import AdaPonderLM
from pretrained import from_pretrained, load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--device=cpu', '--n_layer=1', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=4',
        '--eval_iters=2', '--log_interval=1', '--warmup_iters=2']
# Runs train.py in this process after the prelude has patched something: how the tests "kill" a run.
RUN_TRAIN = "\nimport runpy, sys; sys.argv[0] = 'train.py'; runpy.run_path('train.py', run_name='__main__')"


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    """A small toy dataset (the real generator, fewer characters) in data_dir/toy."""
    spec = importlib.util.spec_from_file_location('toy_prepare', os.path.join(ROOT, 'data', 'toy', 'prepare.py'))
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    root = tmp_path_factory.mktemp('data')
    toy.prepare(str(root / 'toy'), train_chars=50_000, val_chars=5_000)
    return root


def train(*args, prelude=None, launcher=(), expect_ok=True):
    cmd = [sys.executable, '-c', prelude + RUN_TRAIN] if prelude else [sys.executable, *launcher, 'train.py']
    result = subprocess.run(cmd + list(args), cwd=ROOT, capture_output=True, text=True, timeout=120)
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def load(out_dir):
    return torch.load(os.path.join(out_dir, 'ckpt.pt'), weights_only=True)


def assert_same(a, b):
    """Nested dicts/lists of tensors and numbers, equal bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


def logged(stdout):
    """The numbers of the iter and eval lines a run printed, as metrics.jsonl should hold them."""
    def number(text):  # n/a, [0.10,0.20], 12.3% (a percentage), 1.23e-03, 20
        if text == 'n/a':
            return None
        return [float(t) for t in text[1:-1].split(',')] if text.startswith('[') else float(text.rstrip('%'))
    rows = [line.split() for line in stdout.splitlines() if line.startswith(('iter ', 'eval '))]
    return [dict(kind=kind, **{key: number(text) for key, text in (p.split('=', 1) for p in pairs)})
            for kind, *pairs in rows]


def metrics(out_dir):
    with open(os.path.join(out_dir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def untimed(rows):
    """Metrics without the ones that measure time, which no two runs share."""
    return [{key: value for key, value in row.items() if key not in ('ms', 'tok/s', 'mfu')} for row in rows]


@pytest.fixture(scope='module')
def straight(data_dir, tmp_path_factory):
    """An uninterrupted 6-step run; the bottom-k ramp starts at step 1.2 and ends at step 3. Its shape comes
    from a config file (a preset, and n_layer over it) and the command line (block_size over the preset)."""
    out = tmp_path_factory.mktemp('straight')
    config = out / 'my_config.py'
    config.write_text("model_preset = 'tiny'  # n_layer=2, n_head=2, n_embd=32, block_size=64\nn_layer = 1\n")
    args = [str(config), f'--data_dir={data_dir}', '--max_iters=6', '--eval_interval=3', '--block_size=32',
            '--device=cpu', '--batch_size=4', '--eval_iters=2', '--log_interval=1', '--warmup_iters=2']
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert train_in_process(patch, *args, f'--out_dir={out}') is None
    return args, out, stdout.getvalue()


def test_config_file_then_overrides_win_over_preset(straight):
    _, out, _ = straight
    ckpt = load(out)
    shape = {k: ckpt['model_args'][k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'vocab_size')}
    assert shape == dict(n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=45)
    assert ckpt['config']['model_preset'] == 'tiny' and ckpt['config']['max_iters'] == 6


def test_logs_and_toy_class_report(straight):
    _, out, stdout = straight
    evals = [line for line in stdout.splitlines() if line.startswith('eval ')]
    assert [re.search(r'step=(\d+)', line).group(1) for line in evals] == ['0', '3', '6']
    for key in ('train_loss=', 'val_loss=', 'passes=', 'depth_hist=[', 'flops_vs_full=', 'tok/s=', 'mfu=n/a'):
        assert key in evals[-1]
    hist = [float(x) for x in re.search(r'depth_hist=\[(.*?)\]', evals[-1]).group(1).split(',')]
    assert len(hist) == 4 and abs(sum(hist) - 1) < 0.02
    iters = [line for line in stdout.splitlines() if line.startswith('iter ')]
    assert len(iters) == 6 and float(re.search(r' k=([\d.]+)', iters[0]).group(1)) == 0.0  # CE only at first
    assert float(re.search(r' k=([\d.]+)', iters[-1]).group(1)) == pytest.approx(0.1)  # then ramped to bottom_k_frac
    classes = re.findall(r'^class name=(\w+) passes=([\d.]+) loss=([\d.]+) acc=([\d.]+) share=([\d.]+)$', stdout, re.M)
    assert [c[0] for c in classes] == ['trivial', 'copy', 'computed', 'noise']
    assert all(1.0 <= float(c[1]) <= 4.0 and 0.0 <= float(c[3]) <= 1.0 for c in classes)
    assert load(out)['iter_num'] == 6


def test_metrics_file_holds_the_numbers_of_every_logged_line(straight):
    _, out, stdout = straight
    rows = metrics(out)
    assert len(rows) == 9 and len(logged(stdout)) == 9  # a line for each of the 6 iter and 3 eval lines printed
    for row, printed in zip(rows, logged(stdout)):  # the numbers, to the digits printed
        assert row.keys() == printed.keys()
        for key, value in printed.items():
            close = pytest.approx(value, rel=1e-2, abs=0.51 if key in ('ms', 'tok/s') else 6e-3)
            assert row[key] == (value if key == 'kind' or value is None else close)


def test_curves_are_drawn_from_the_metrics_file(straight, tmp_path, monkeypatch):
    pytest.importorskip('matplotlib')
    _, out, _ = straight
    picture = tmp_path / 'curves.png'
    monkeypatch.setattr(sys, 'argv', ['analyze.py', '--mode=curves', f'--out_dir={out}', f'--plot={picture}'])
    runpy.run_path(os.path.join(ROOT, 'analyze.py'), run_name='__main__')
    assert picture.read_bytes().startswith(b'\x89PNG')


def test_killed_save_keeps_previous_checkpoint_and_resume_is_exact(straight, tmp_path, monkeypatch):
    args, straight_out, _ = straight
    die_in_second_save = ("import os, torch\nsave, calls = torch.save, []\n"
                          "def half_save(obj, f, *args, **kwargs):\n"
                          "    calls.append(f)\n"
                          "    if len(calls) == 2:\n"
                          "        open(f, 'wb').write(b'half a checkpoint'); os._exit(9)\n"
                          "    save(obj, f, *args, **kwargs)\n"
                          "torch.save = half_save")
    (tmp_path / 'metrics.jsonl').write_text('{"kind": "iter", "step": 99}\n')  # a run from scratch starts anew
    result = train(*args, f'--out_dir={tmp_path}', prelude=die_in_second_save, expect_ok=False)
    assert result.returncode == 9
    assert os.path.exists(tmp_path / 'ckpt.pt.tmp')  # it died halfway through writing step 6's checkpoint
    _, halfway = load_checkpoint(str(tmp_path / 'ckpt.pt'))  # step 3's checkpoint is still whole
    assert halfway['iter_num'] == 3
    assert [row['step'] for row in metrics(tmp_path)] == [0, 1, 2, 3, 3, 4, 5, 6, 6]  # logged past step 3
    with open(tmp_path / 'metrics.jsonl', 'a') as f:
        f.write('{"kind": "iter", "st')  # as if it had died writing a line

    assert train_in_process(monkeypatch, *args, f'--out_dir={tmp_path}', '--init_from=resume') is None
    # the lines past step 3 are dropped and written again, from the eval at step 3 on: the same numbers
    assert untimed(metrics(tmp_path)) == untimed(metrics(straight_out))
    resumed, uninterrupted = load(tmp_path), load(straight_out)
    assert not torch.equal(halfway['model']['lm_head.weight'], resumed['model']['lm_head.weight'])  # it trained on
    for key in ('model', 'optimizer', 'scaler', 'iter_num', 'best_val_loss', 'rng'):
        assert_same(resumed[key], uninterrupted[key])


def test_ddp_two_cpu_processes_agree_and_toy_data_is_made_when_missing(tmp_path):
    data_dir = tmp_path / 'data'  # empty: rank 0 prepares the toy dataset while rank 1 waits
    # tau = 1: every token halts after its first pass, so the later passes run on no rows at all; DDP must
    # still find every gate in the graph (no unused-parameter error)
    # one_pass_iters: the first 2 steps run one pass, where the gates get no gradient at all (DDP must look
    # for unused parameters then)
    result = train(f'--data_dir={data_dir}', f'--out_dir={tmp_path}', '--max_iters=3', '--eval_interval=3',
                   '--gradient_accumulation_steps=2', '--halt_threshold=1.0', '--one_pass_iters=2', *TINY,
                   launcher=['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2'])
    assert os.path.getsize(data_dir / 'toy' / 'train.bin') > 0
    assert 'ddp ranks_agree=True world_size=2' in result.stdout  # each rank's weights vs rank 0's, bit for bit
    assert load(tmp_path)['iter_num'] == 3 and 'passes=1.00' in result.stdout


def test_ddp_a_loss_diverged_on_one_rank_stops_every_rank_with_one_line(data_dir, tmp_path):
    """Rank 1's weights turn to inf after its 2nd update: rank 1's loss is nan at step 3, rank 0's is not. Both
    ranks stop at the next check, and only rank 0 says so (on NCCL the other rank would otherwise hang)."""
    script = tmp_path / 'diverge.py'
    script.write_text(
        "import os, runpy, sys, torch\nreal, n = torch.optim.AdamW.step, []\n"
        "def step(self, *a, **k):\n    out = real(self, *a, **k)\n    n.append(1)\n"
        "    if len(n) == 2 and os.environ['RANK'] == '1':\n"
        "        self.param_groups[0]['params'][0].data.fill_(float('inf'))\n    return out\n"
        f"torch.optim.AdamW.step = step\nsys.argv[0] = 'train.py'\nsys.path.insert(0, {ROOT!r})\n"
        "runpy.run_path('train.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                             str(script), f'--data_dir={data_dir}', f'--out_dir={tmp_path / "out"}', '--max_iters=6',
                             '--eval_interval=6', '--gradient_accumulation_steps=2', *TINY], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert result.returncode != 0 and errors == [errors[0]] and 'became nan or inf at step 3' in errors[0]
    assert 'gloo' not in result.stderr.lower() and 'Connection closed' not in result.stderr


@pytest.mark.parametrize('world_size', [2, 8])
def test_the_documented_torchrun_line_passes_its_set_up(data_dir, tmp_path, monkeypatch, world_size):
    """torchrun --standalone --nproc_per_node=8 train.py config/pile_pythia70m.py, as far as the process group:
    its settings (gradient_accumulation_steps among them) must suit 2 and 8 processes."""
    import torch.distributed
    for key, value in dict(RANK=0, LOCAL_RANK=0, WORLD_SIZE=world_size, TORCHELASTIC_RUN_ID='t').items():
        monkeypatch.setenv(key, str(value))

    def reached(*args, **kwargs):
        raise RuntimeError('the set-up passed')
    monkeypatch.setattr(torch.distributed, 'init_process_group', reached)
    with pytest.raises(RuntimeError, match='the set-up passed'):
        train_in_process(monkeypatch, 'config/pile_pythia70m.py', '--device=cpu')


def test_continued_pretraining_with_gate_warmup_keeps_the_backbone(data_dir, tmp_path, monkeypatch):
    """init_from a GPT-NeoX directory; during gate warm-up only the new gates may move (no weight decay either)."""
    transformers = pytest.importorskip('transformers')
    torch.manual_seed(0)
    neox = transformers.GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=128, max_position_embeddings=64)
    transformers.GPTNeoXForCausalLM(neox).save_pretrained(tmp_path / 'neox')
    assert train_in_process(monkeypatch, f'--data_dir={data_dir}', f'--out_dir={tmp_path}',
                            f'--init_from={tmp_path / "neox"}', '--max_iters=3', '--eval_interval=3',
                            '--gate_warmup_iters=100', '--gate_lr_mult=10', *TINY) is None
    checkpoint = load(tmp_path)
    rates = {group['lr_mult']: group['lr'] for group in checkpoint['optimizer']['param_groups']}
    assert rates.keys() == {1.0, 10.0} and rates[10.0] == pytest.approx(10 * rates[1.0])  # the gates learn faster
    trained = checkpoint['model']
    pretrained = from_pretrained(str(tmp_path / 'neox')).state_dict()
    backbone = [k for k in pretrained if not k.startswith('gates.')]
    assert backbone and all(torch.equal(trained[k], pretrained[k]) for k in backbone)
    assert (trained['gates.0.2.bias'] != pretrained['gates.0.2.bias']).all()  # the gates did train


def test_one_pass_iters_trains_a_plain_model_first(data_dir, tmp_path, monkeypatch, capsys):
    """one_pass_iters: the first steps run one pass per token, the rest all K+1; the checkpoint keeps K."""
    assert train_in_process(monkeypatch, f'--data_dir={data_dir}', f'--out_dir={tmp_path}', '--max_iters=5',
                            '--eval_interval=5', '--one_pass_iters=3', *TINY) is None
    out = capsys.readouterr().out
    passes = [float(p) for p in re.findall(r'^iter step=\d+ .*? passes=([\d.]+)', out, re.M)]
    assert passes == [1.0, 1.0, 1.0, 4.0, 4.0]
    assert re.findall(r'^eval step=\d+ .*? passes=([\d.]+)', out, re.M) == ['1.00', '4.00']  # evals follow
    assert load(tmp_path)['model_args']['n_ponder'] == 3


def train_in_process(monkeypatch, *args):
    """Run train.py in this process (no interpreter start-up); returns the SystemExit message, or None."""
    monkeypatch.setattr(sys, 'argv', ['train.py', *args])
    monkeypatch.chdir(ROOT)
    try:
        runpy.run_path('train.py', run_name='__main__')
    except SystemExit as e:
        return str(e.code)
    return None


def bad_inputs(data_dir, tmp_path):
    """(arguments, words the error line must contain) for each kind of bad input."""
    empty = tmp_path / 'empty'
    shutil.copytree(data_dir / 'toy', empty / 'toy')
    open(empty / 'toy' / 'train.bin', 'wb').close()
    (tmp_path / 'corrupt').mkdir()
    (tmp_path / 'corrupt' / 'ckpt.pt').write_bytes(b'not a checkpoint')
    return {
        'missing dataset': ([f'--data_dir={tmp_path}', '--dataset=shakespeare_char'],
                            'train.bin not found; run python data/shakespeare_char/prepare.py'),
        'unknown setting': (['--max_iter=5'], "unknown setting 'max_iter' (from --max_iter=5); did you mean max_iters"),
        'wrong type': (['--max_iters=many'], 'max_iters must be int'),
        'missing config file': (['config/nope.py'], 'config file config/nope.py not found'),
        'zero batch': (['--batch_size=0'], 'batch_size=0 is out of range; pass --batch_size=<an integer in [1, '),
        'corrupt checkpoint': (['--init_from=resume', f'--out_dir={tmp_path / "corrupt"}'],
                               'is damaged or not an AdaPonder checkpoint (UnpicklingError)'),
        'empty train.bin': ([f'--data_dir={empty}'], 'train.bin holds 0 tokens'),
    }


@pytest.mark.parametrize('case', ['missing dataset', 'unknown setting', 'wrong type', 'missing config file',
                                  'zero batch', 'corrupt checkpoint', 'empty train.bin'])
def test_bad_input_gives_one_line_error(case, data_dir, tmp_path, monkeypatch):
    args, words = bad_inputs(data_dir, tmp_path)[case]
    message = train_in_process(monkeypatch, f'--data_dir={data_dir}', f'--out_dir={tmp_path / "out"}', *TINY, *args)
    assert message is not None and message.startswith('error: ') and '\n' not in message, message
    assert words in message


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    """A weight turned to inf after the 4th update stands for a diverging run (as --learning_rate=100 would
    be, only sooner and surely): step 5's loss is nan. The run must stop at the next check - here the eval
    at step 6, which would otherwise save nan weights - and leave step 3's checkpoint as it was."""
    real_step, updates = torch.optim.AdamW.step, []

    def step_then_diverge(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        updates.append(1)
        if len(updates) == 4:
            with torch.no_grad():
                self.param_groups[0]['params'][0].fill_(float('inf'))
        return result
    monkeypatch.setattr(torch.optim.AdamW, 'step', step_then_diverge)
    args = (f'--data_dir={data_dir}', f'--out_dir={tmp_path}', *TINY, '--max_iters=9', '--eval_interval=3',
            '--log_interval=100')
    message = train_in_process(monkeypatch, *args)
    assert message.startswith('error: the training loss became nan or inf at step 5;') and '--learning_rate' in message
    assert len(updates) == 6  # it stopped at the check before the eval at step 6
    kept = load(tmp_path)
    assert kept['iter_num'] == 3 and all(torch.isfinite(t).all() for t in kept['model'].values())


def test_a_compiled_run_compiles_one_graph_to_train_and_one_to_evaluate(data_dir, tmp_path, monkeypatch, capsys):
    """one_pass_iters' plain model first (run eagerly: no graph), then a graph for training and one for
    evaluation (no grad), and no more while the halting masks change every step, the bottom-k fraction ramps
    (steps 2 to 4) and the evals at steps 4 and 8 come between. The 'eager' backend keeps the test fast:
    graphs and recompiles are decided before any backend runs."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    real_compile = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda model, **kwargs: real_compile(model, backend='eager'))
    torch._dynamo.reset()
    counters.clear()
    try:  # gates at sigmoid(3) = 0.9526 +- a little: about half the tokens halt at each pass
        assert train_in_process(monkeypatch, f'--data_dir={data_dir}', f'--out_dir={tmp_path}', *TINY,
                                '--compile=True', '--max_iters=8', '--eval_interval=4', '--one_pass_iters=2',
                                '--halt_threshold=0.9526') is None
    finally:
        torch._dynamo.reset()
        torch.compiler.set_stance('default')
    out = capsys.readouterr().out
    passes = [float(p) for p in re.findall(r'^iter step=\d+ .*? passes=([\d.]+)', out, re.M)]
    assert passes[:2] == [1.0, 1.0] and len(set(passes[2:])) == 6 and 1 < min(passes[2:])  # masks change
    assert re.findall(r'^compile .*', out, re.M) == ['compile graphs=2 recompiles=1']
    assert load(tmp_path)['iter_num'] == 8
