"""Every bad input ends the way the project promises: one line 'error: ...' naming the setting or file and the fix,
a non-zero exit status, no traceback, and nothing lost. One class of input per section (issue 25); the cases share
one tiny trained checkpoint, and the scripts run in this process (runpy), as `python SCRIPT ARGS` would."""
import contextlib
import errno
import importlib.util
import io
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adaponder import AdaPonderLM
from pretrained import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ['--device=cpu', '--n_layer=1', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=4',
        '--eval_iters=2', '--log_interval=1', '--warmup_iters=2']


def module(path, name):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(monkeypatch, capsys, script, *args):
    """python SCRIPT ARGS in this process: (exit status, stdout, stderr). SystemExit's message is what Python
    would print on stderr; any other exception is a traceback, and fails the test."""
    monkeypatch.setattr(sys, 'argv', [script, *map(str, args)])
    monkeypatch.chdir(ROOT)
    status, message = 0, ''
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as e:
        status, message = (1, f'{e.code}\n') if isinstance(e.code, str) else (e.code or 0, '')
    out, err = capsys.readouterr()
    return status, out, err + message


def assert_error(result, *words):
    """One line 'error: ...' holding every word, on a line of its own (after train.py's progress bar, if any),
    exit status 1, no traceback."""
    status, _, err = result
    assert status == 1 and err.endswith('\n') and 'Traceback' not in err, err
    err = err.splitlines()[-1]
    assert err.startswith('error: ') and err.count('error:') == 1, err
    assert all(w in err for w in words), err


def files(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir()}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A small toy dataset and a 4-step model trained on it, checkpointed at steps 2 and 4."""
    root = tmp_path_factory.mktemp('errors')
    module('data/toy/prepare.py', 'toy_prepare').prepare(str(root / 'data' / 'toy'), train_chars=50_000,
                                                         val_chars=5_000)
    args = [f'--data_dir={root / "data"}', f'--out_dir={root / "out"}', '--max_iters=4', '--eval_interval=2', *TINY]
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()):
        patch.setattr(sys, 'argv', ['train.py', *args])
        patch.chdir(ROOT)
        runpy.run_path('train.py', run_name='__main__')
    signal.signal(signal.SIGINT, signal.default_int_handler)  # train.py's own Ctrl-C handler, installed above
    return dict(root=root, data=root / 'data', out=root / 'out', args=args)


def copy_out(trained, tmp_path):
    shutil.copytree(trained['out'], tmp_path / 'out')
    return [a.replace(str(trained['out']), str(tmp_path / 'out')) for a in trained['args']]


# ---- 1. work lost: a trained model is never replaced, eval_only writes nothing ----

def test_a_trained_model_is_never_replaced(trained, monkeypatch, capsys):
    before = files(trained['out'])
    assert_error(run(monkeypatch, capsys, 'train.py', *trained['args']),
                 'ckpt.pt already holds a trained model', '--init_from=resume', 'another --out_dir')
    assert_error(run(monkeypatch, capsys, 'train.py', *trained['args'], '--eval_only'),
                 'eval_only', "init_from='scratch' would score random weights", '--init_from=resume')
    status, out, _ = run(monkeypatch, capsys, 'train.py', *trained['args'], '--eval_only', '--init_from=resume')
    assert status == 0 and 'eval step=4 ' in out  # it scores the trained model...
    assert files(trained['out']) == before  # ...and every file is as it was, byte for byte


def test_the_real_exit_status_and_stderr(trained):
    """The one subprocess: what a shell sees."""
    result = subprocess.run([sys.executable, 'train.py', *trained['args']], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()] and 'already holds a trained model' in result.stderr


# ---- 2. settings a run cannot honour are refused, not ignored ----

@pytest.mark.parametrize('args,words', [
    (['--n_layer=2'], ["n_layer=2 (the checkpoint's: 1)"]),
    (['--dataset=hops'], ["dataset='hops' (the checkpoint's: 'toy')"]),
    (['--halting=none', '--dropout=0.1'], ["dropout=0.1 (the checkpoint's: 0.0), halting='none'"]),
    (['--one_pass_iters=10', '--max_iters=8'], ["one_pass_iters=10 (the checkpoint's: 0)"]),
])
def test_a_resumed_run_refuses_to_change_its_model(trained, monkeypatch, capsys, args, words):
    before = files(trained['out'])
    assert_error(run(monkeypatch, capsys, 'train.py', *trained['args'], '--init_from=resume', *args),
                 'a resumed run keeps its model and data', *words, 'another --out_dir')
    assert files(trained['out']) == before


def test_a_resumed_run_goes_on_with_the_checkpoints_settings(trained, tmp_path, monkeypatch, capsys):
    """Only what is given again changes: the shape, dataset and batch come from the checkpoint, not the defaults
    (block_size 64 would not even fit the model's 32)."""
    copy_out(trained, tmp_path)
    status, out, _ = run(monkeypatch, capsys, 'train.py', f'--out_dir={tmp_path / "out"}',
                         f'--data_dir={trained["data"]}', '--device=cpu', '--init_from=resume', '--max_iters=6')
    assert status == 0 and 'settings overridden: out_dir=' in out
    config = torch.load(tmp_path / 'out' / 'ckpt.pt', weights_only=True)['config']
    assert config['block_size'] == 32 and config['batch_size'] == 4 and config['n_layer'] == 1
    assert config['max_iters'] == 6 and config['eval_iters'] == 2


def neox_folder(root):
    transformers = pytest.importorskip('transformers')
    torch.manual_seed(0)
    config = transformers.GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=128, max_position_embeddings=64)
    transformers.GPTNeoXForCausalLM(config).save_pretrained(root / 'neox')
    return root / 'neox'


def test_an_import_refuses_another_shape_and_names_a_corrupt_file(trained, tmp_path, monkeypatch, capsys):
    neox = neox_folder(tmp_path)
    capsys.readouterr()  # transformers' progress bar
    args = [f'--data_dir={trained["data"]}', f'--out_dir={tmp_path / "out"}', *TINY[:1]]
    assert_error(run(monkeypatch, capsys, 'train.py', *args, f'--init_from={neox}', '--n_layer=2'),
                 "n_layer=2 conflicts with the checkpoint's 1")
    shutil.copytree(neox, tmp_path / 'bad')
    (tmp_path / 'bad' / 'config.json').write_text('{"vocab_size": 64,')
    assert_error(run(monkeypatch, capsys, 'train.py', *args, f'--init_from={tmp_path / "bad"}'),
                 'config.json', 'download it again')
    shutil.copy(neox / 'config.json', tmp_path / 'bad' / 'config.json')
    weights = next(p for p in (tmp_path / 'bad').iterdir() if p.name.startswith(('model', 'pytorch_model')))
    weights.write_bytes(weights.read_bytes()[:100])  # cut short
    assert_error(run(monkeypatch, capsys, 'train.py', *args, f'--init_from={tmp_path / "bad"}'),
                 str(tmp_path / 'bad'), 'download it again')


# ---- 3. numbers that mean nothing: one line naming the setting and its range ----

@pytest.mark.parametrize('args,words', [
    (['--learning_rate=-0.001'], ['learning_rate=-0.001', '(0, inf)']),
    (['CONFIG:learning_rate = float("nan")'], ['learning_rate=nan', '(0, inf)']),
    (['CONFIG:grad_clip = float("inf")'], ['grad_clip=inf', '[0, inf)']),
    (['--beta2=1.0'], ['beta2=1.0', '[0, 1)']),
    (['--beta1=-0.5'], ['beta1=-0.5']),
    (['--weight_decay=-0.1'], ['weight_decay=-0.1']),
    (['--gate_lr_mult=-10'], ['gate_lr_mult=-10']),
    (['--warmup_iters=-5'], ['warmup_iters=-5', 'integer']),
    (['--bottom_k_start=0.9'], ['bottom_k_start=0.9', 'bottom_k_end=0.5']),
    (['--min_lr=0.1', '--learning_rate=0.01'], ['min_lr=0.1', 'learning_rate=0.01']),
    (['--bottom_k_frac=1.5'], ['bottom_k_frac']),
    (['--halt_threshold=2.0'], ['halt_threshold']),
    (['--n_ponder=-1'], ['n_ponder']),
    (['--dropout=1.0'], ['dropout']),
    (['--n_embd=33'], ['n_embd']),
    (['--halting=sometimes'], ['halting', 'learned']),
    (['--halting=random', '--fixed_depth_dist=normal'], ['fixed_depth_dist', 'uniform']),
    (['--device=tpu'], ['device', 'cpu']),
    (['--model_preset=gpt5'], ['model_preset', 'pythia-70m']),
])
def test_meaningless_numbers_are_refused_when_the_run_starts(trained, tmp_path, monkeypatch, capsys, args, words):
    if args[0].startswith('CONFIG:'):
        (tmp_path / 'bad.py').write_text(args[0][len('CONFIG:'):] + '\n')
        args = [str(tmp_path / 'bad.py')]
    config_file = args if args[0].endswith('.py') else []  # config files come first
    assert_error(run(monkeypatch, capsys, 'train.py', *config_file, f'--data_dir={trained["data"]}',
                     f'--out_dir={tmp_path / "o"}', '--max_iters=2', *TINY, *args[len(config_file):]), *words)
    assert not (tmp_path / 'o' / 'ckpt.pt').exists()


@pytest.mark.parametrize('script,args,words', [
    ('sample.py', ['--temperature=-1'], ['temperature=-1.0', '[0, inf)']),
    ('sample.py', ['--top_k=0'], ['top_k=0', '[1, inf)']),
    ('sample.py', ['--halt_threshold=1.5'], ['halt_threshold=1.5', '[0, 1]']),
    ('sample.py', ['--html=.'], ['html=. is not a file name ending in .html, .htm']),
    ('sample.py', ['--html=OUT/ckpt.pt/s.html'], ['cannot write html=OUT/ckpt.pt/s.html: no such folder']),
    ('sample.py', ['--image=OUT/ckpt.pt'], ['image=OUT/ckpt.pt is not a file name ending in .png']),
    ('analyze.py', ['--batch_size=0'], ['batch_size=0']),
    ('analyze.py', ['--plot=OUT/ckpt.pt'], ['plot=OUT/ckpt.pt is not a file name ending in .png']),
    ('bench.py', ['--n_ponder=0'], ['n_ponder=0']),
    ('bench.py', ['--peak_tflops=-1'], ['peak_tflops=-1.0']),
])
def test_other_scripts_check_their_settings(trained, monkeypatch, capsys, script, args, words):
    where = [] if script == 'bench.py' else [f'--out_dir={trained["out"]}', f'--data_dir={trained["data"]}']
    before = files(trained['out'])
    assert_error(run(monkeypatch, capsys, script, *where, *[a.replace('OUT', str(trained['out'])) for a in args]),
                 *[w.replace('OUT', str(trained['out'])) for w in words])
    assert files(trained['out']) == before


# ---- 4. files and folders ----

def test_out_dir_a_file_or_empty(trained, monkeypatch, capsys):
    args = [f'--data_dir={trained["data"]}', *TINY]
    assert_error(run(monkeypatch, capsys, 'train.py', *args, f'--out_dir={trained["out"] / "metrics.jsonl"}'),
                 'metrics.jsonl (a file, not a folder)')
    assert_error(run(monkeypatch, capsys, 'train.py', *args, '--out_dir='), 'out_dir is empty')

    def read_only(*args, **kwargs):  # as a read-only folder answers (root may write anywhere: a real one is no test)
        raise PermissionError(errno.EACCES, 'Permission denied')
    monkeypatch.setattr(os, 'makedirs', read_only)
    assert_error(run(monkeypatch, capsys, 'train.py', *args, f'--out_dir={trained["root"] / "new"}'),
                 f'cannot write into out_dir={trained["root"] / "new"} (Permission denied)')


def test_a_full_disk_leaves_the_last_checkpoint_and_no_stray_file(trained, tmp_path, monkeypatch, capsys):
    real_save, calls = torch.save, []

    def save_on_a_full_disk(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # the second checkpoint: the disk fills up halfway through
            Path(f).write_bytes(b'half a checkpoint')
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, 'save', save_on_a_full_disk)
    args = [a.replace(str(trained['out']), str(tmp_path)) for a in trained['args']]
    assert_error(run(monkeypatch, capsys, 'train.py', *args), 'could not write', 'No space left on device',
                 f'the last checkpoint is {tmp_path / "ckpt.pt"}, step 2, kept as it was', '--init_from=resume')
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pt', 'metrics.jsonl', 'train.lock']  # no ckpt.pt.tmp
    assert load_checkpoint(str(tmp_path / 'ckpt.pt'))[1]['iter_num'] == 2


def test_data_files_that_cannot_be_trained_on(trained, tmp_path, monkeypatch, capsys):
    shutil.copytree(trained['data'], tmp_path / 'data')
    args = [f'--data_dir={tmp_path / "data"}', f'--out_dir={tmp_path / "out"}', *TINY]
    (tmp_path / 'data' / 'toy' / 'val.bin').write_bytes(b'\x01\x00' * 10)
    assert_error(run(monkeypatch, capsys, 'train.py', *args), 'val.bin holds 10 tokens', '--block_size')
    shutil.copy(trained['data'] / 'toy' / 'val.bin', tmp_path / 'data' / 'toy' / 'val.bin')
    np.full(1000, 300, dtype=np.uint16).tofile(tmp_path / 'data' / 'toy' / 'train.bin')  # the vocabulary has 45
    assert_error(run(monkeypatch, capsys, 'train.py', *args), 'train.bin holds token id 300', 'prepare the dataset')
    shutil.copy(tmp_path / 'data' / 'toy' / 'train.bin', tmp_path / 'data' / 'toy' / 'val.bin')
    assert_error(run(monkeypatch, capsys, 'analyze.py', f'--out_dir={trained["out"]}',
                     f'--data_dir={tmp_path / "data"}'), 'val.bin holds token id 300', "model's vocabulary of 45")
    meta = json.loads((trained['data'] / 'toy' / 'meta.json').read_text())
    meta['itos'], meta['stoi'] = meta['itos'][:40], {c: i for i, c in enumerate(meta['itos'][:40])}
    meta['vocab_size'] = 40
    (tmp_path / 'data' / 'toy' / 'meta.json').write_text(json.dumps(meta))  # another vocabulary than the model's
    shutil.copytree(trained['out'], tmp_path / 'resumed')
    assert_error(run(monkeypatch, capsys, 'train.py', *args, f'--out_dir={tmp_path / "resumed"}', '--init_from=resume',
                     '--max_iters=6'),
                 "model's vocab_size 45 does not fit the 40 tokens", 'meta.json')
    assert_error(run(monkeypatch, capsys, 'sample.py', f'--out_dir={trained["out"]}',
                     f'--data_dir={tmp_path / "data"}'),
                 'meta.json holds 40 tokens but the model has 45', '--data_dir')


def test_a_garbled_metrics_line_does_not_block_a_resume(trained, tmp_path, monkeypatch, capsys):
    args = copy_out(trained, tmp_path)
    metrics = tmp_path / 'out' / 'metrics.jsonl'
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text(''.join(lines[:2]) + '{"kind": "iter", "st\x00\n' + ''.join(lines[2:]))
    if importlib.util.find_spec('matplotlib'):
        status, out, _ = run(monkeypatch, capsys, 'analyze.py', '--mode=curves', f'--out_dir={tmp_path / "out"}',
                             f'--plot={tmp_path / "curves.png"}')
        assert status == 0 and 'skipped 1 unreadable line' in out
    status, out, _ = run(monkeypatch, capsys, 'train.py', *args, '--init_from=resume', '--max_iters=6')
    assert status == 0 and 'dropped 1 unreadable line' in out
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r['step'] for r in rows if r['kind'] == 'eval'] == [0, 2, 4, 6]


def test_prepare_scripts_name_a_bad_folder_or_a_corrupt_shard(tmp_path, capsys):
    (tmp_path / 'file').write_text('not a folder')
    for script, sizes in (('toy', ['--train_chars', '100', '--val_chars', '100']),
                          ('hops', ['--train_tokens', '100', '--val_tokens', '100'])):
        with pytest.raises(SystemExit) as e:
            module(f'data/{script}/prepare.py', 'prepare').main(['--out_dir', str(tmp_path / 'file'), *sizes])
        assert f"error: cannot write into --out_dir {tmp_path / 'file'} (a file, not a folder)" in str(e.value.code)
    zstandard = pytest.importorskip('zstandard')
    text = b''.join(json.dumps(dict(text=f'document {i} ' * 20)).encode() + b'\n' for i in range(200))
    packed = zstandard.ZstdCompressor().compress(text)
    damaged = packed[:100] + bytes(b ^ 0xff for b in packed[100:116]) + packed[116:]  # bits flipped in transit
    (tmp_path / 'shard.jsonl.zst').write_bytes(damaged)
    os.environ.setdefault('TIKTOKEN_CACHE_DIR', str(ROOT.parent / 'shared' / 'tiktoken_cache'))
    with pytest.raises(SystemExit) as e:
        module('data/pile/prepare.py', 'pile_prepare').main([f'--input={tmp_path / "shard.jsonl.zst"}',
                                                             f'--out_dir={tmp_path / "pile"}'])
    assert 'shard.jsonl.zst is not a readable zstandard file' in str(e.value.code), e.value.code
    assert os.listdir(tmp_path / 'pile') == []  # no half-written split


# ---- 5. downstream.py ----

def test_downstream_bad_counts_and_an_offline_hub(trained, monkeypatch, capsys):
    lm_eval = pytest.importorskip('lm_eval')
    common = [f'--out_dir={trained["out"]}', f'--data_dir={trained["data"]}', '--device=cpu', '--tasks=piqa']
    for args, words in ((['--limit=0'], ['limit=0', '(0, inf)']), (['--limit=-1'], ['limit=-1']),
                        (['--num_fewshot=-1'], ['num_fewshot=-1', 'integer']), (['--num_fewshot=0.5'], ['num_fewshot']),
                        (['--halt_threshold=0,2'], ['halt_threshold=2']),
                        ([f'--output_path={trained["out"] / "ckpt.pt"}'], ['cannot make the folder output_path'])):
        assert_error(run(monkeypatch, capsys, 'downstream.py', *common, *args), *words)

    def offline(**kwargs):  # what datasets raises for a hub task with HF_HUB_OFFLINE=1 and nothing cached
        raise ConnectionError("Couldn't reach 'baber/piqa' on the Hub (OfflineModeIsEnabled)")
    monkeypatch.setattr(lm_eval, 'simple_evaluate', offline)
    monkeypatch.setattr(lm_eval.tasks, 'TaskManager', lambda *args, **kwargs: type(
        'Tasks', (), dict(match_tasks=lambda self, names: names, all_tasks=[]))())
    assert_error(run(monkeypatch, capsys, 'downstream.py', *common), 'could not load the documents of piqa',
                 'OfflineModeIsEnabled', 'run once online')


# ---- 6. interrupts and edges ----

def test_ctrl_c_says_where_the_last_checkpoint_is(trained, tmp_path, monkeypatch, capsys):
    real_step, steps = torch.optim.AdamW.step, []

    def step_then_ctrl_c(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 3:  # during step 3, after the checkpoint of step 2
            signal.raise_signal(signal.SIGINT)
        return real_step(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.AdamW, 'step', step_then_ctrl_c)
    args = [a.replace(str(trained['out']), str(tmp_path)) for a in trained['args']]
    status, _, err = run(monkeypatch, capsys, 'train.py', *args, '--max_iters=8')
    assert status == 130 and len(steps) == 3 and 'Traceback' not in err
    assert err.splitlines()[-1] == (f"interrupted; at step 3; the last checkpoint is {tmp_path / 'ckpt.pt'}, step 2, "
                                    "kept as it was; continue with --init_from=resume")
    assert load_checkpoint(str(tmp_path / 'ckpt.pt'))[1]['iter_num'] == 2



KEPT = {'sample.py': 'the samples above were printed, no file written', 'analyze.py': 'nothing was written',
        'bench.py': 'the rows above were measured, the rest not',
        'downstream.py': 'the settings finished before it were printed (and saved, with --output_path)'}


@pytest.mark.parametrize('script', KEPT)
def test_ctrl_c_in_the_other_scripts_is_one_line_and_status_130(trained, monkeypatch, capsys, script):
    """A real SIGINT while the script works (in its second forward; downstream: in lm-eval): one line saying what
    was kept, the shell's status for Ctrl-C, no traceback."""
    calls, ponder = [], AdaPonderLM.ponder

    def ponder_then_ctrl_c(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return ponder(self, *args, **kwargs)
    monkeypatch.setattr(AdaPonderLM, 'ponder', ponder_then_ctrl_c)
    args = [f'--out_dir={trained["out"]}', f'--data_dir={trained["data"]}', '--device=cpu']
    if script == 'bench.py':
        args = [f'--ckpt={trained["out"] / "ckpt.pt"}', f'--data_dir={trained["data"]}', '--device=cpu']
    if script == 'downstream.py':
        lm_eval = pytest.importorskip('lm_eval')
        monkeypatch.setattr(lm_eval, 'simple_evaluate', lambda **kwargs: signal.raise_signal(signal.SIGINT))
        monkeypatch.setattr(lm_eval.tasks, 'TaskManager', lambda *args, **kwargs: type(
            'Tasks', (), dict(match_tasks=lambda self, names: names, all_tasks=[]))())
        args.append('--tasks=piqa')
    try:
        status, _, err = run(monkeypatch, capsys, script, *args)
    except KeyboardInterrupt as e:  # caught here, so that a failure does not stop the whole test run
        if script != 'analyze.py':  # analyze leaves Ctrl-C to configurator's excepthook, as Python would:
            pytest.fail(f'{script} let Ctrl-C out as a traceback')
        sys.excepthook(type(e), e, e.__traceback__)  # its one line, then Python's own status 130 (see
        status, err = 130, capsys.readouterr().err  # test_bad_input.py: the same hook, a real process)
    assert status == 130 and 'Traceback' not in err, err
    assert err.splitlines()[-1] == f'interrupted; {KEPT[script]}'
    assert script == 'downstream.py' or len(calls) == 2

def test_divergence_names_the_likely_setting_and_claims_no_checkpoint_it_lacks(trained, tmp_path, monkeypatch,
                                                                                capsys):
    real_step = torch.optim.AdamW.step

    def step_then_diverge(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]['params'][0].fill_(float('inf'))
        return result
    monkeypatch.setattr(torch.optim.AdamW, 'step', step_then_diverge)
    args = [a.replace(str(trained['out']), str(tmp_path / 'a')) for a in trained['args']]
    assert_error(run(monkeypatch, capsys, 'train.py', *args, '--log_interval=100'),
                 'nan or inf at step 2', 'no checkpoint was saved', 'learning_rate=0.001 is likely too high')
    assert not (tmp_path / 'a' / 'ckpt.pt').exists()
    err = run(monkeypatch, capsys, 'train.py', *args, '--log_interval=100', '--grad_clip=0')[2]
    assert 'grad_clip=0' in err and '--grad_clip=1.0' in err and 'then --init_from=resume' not in err


def test_a_temperature_that_underflows_samples_greedily(trained, monkeypatch, capsys):
    common = [f'--out_dir={trained["out"]}', f'--data_dir={trained["data"]}', '--device=cpu', '--num_samples=1',
              '--max_new_tokens=20', '--start=C:ab', '--plain']
    cold = run(monkeypatch, capsys, 'sample.py', *common, '--temperature=1e-300')
    greedy = run(monkeypatch, capsys, 'sample.py', *common, '--temperature=0')
    text = [[line for line in out.splitlines() if not line.startswith(('settings', 'sample i='))]
            for _, out, _ in (cold, greedy)]
    assert cold[0] == greedy[0] == 0 and text[0] == text[1]


def test_a_checkpoint_that_does_not_fit_its_config_names_the_tensors(trained, tmp_path, monkeypatch, capsys):
    ckpt = torch.load(trained['out'] / 'ckpt.pt', weights_only=True)
    ckpt['model_args']['n_layer'] = 2  # its weights hold one block
    (tmp_path / 'out').mkdir()
    torch.save(ckpt, tmp_path / 'out' / 'ckpt.pt')
    assert_error(run(monkeypatch, capsys, 'sample.py', f'--out_dir={tmp_path / "out"}',
                     f'--data_dir={trained["data"]}'),
                 'its own config: first mismatched tensors', 'blocks.1.')
