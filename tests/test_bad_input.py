"""The second bad-input sweep (issue 31) and the bugs a read of train.py found (issue 30): each class is
handled in one central place (the configurator's check table, the device set-up, the checkpoint loader and
saver, the out_dir lock) and ends in one line with nothing lost. Scripts run in this process where they can
(runpy), as real processes where the point is a process: a lock, a signal, a pipe, torchrun."""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrained import load_checkpoint, save_checkpoint
from test_errors import ROOT, TINY, assert_error, copy_out, neox_folder, run, trained  # noqa: F401


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_args(trained, out, *more):
    return [f'--data_dir={trained["data"]}', f'--out_dir={out}', *TINY, *more]


# ---- work at risk: two runs in one out_dir, a good checkpoint called unreadable ----

def test_a_second_run_in_the_same_out_dir_is_refused_and_a_crashed_run_leaves_no_lock(trained, tmp_path,
                                                                                     monkeypatch, capsys):
    args = train_args(trained, tmp_path / 'same', '--max_iters=100000')
    first = subprocess.Popen([sys.executable, 'train.py', *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # another process: the lock is per process
    lock = tmp_path / 'same' / 'train.lock'
    try:
        for _ in range(600):  # until the first run holds the lock
            if lock.exists() and lock.read_text() == str(first.pid):
                break
            time.sleep(0.05)
        assert_error(run(monkeypatch, capsys, 'train.py', *args, '--seed=7'),
                     f"another run (pid {first.pid}) is training in {tmp_path / 'same'}", 'another --out_dir')
    finally:
        first.kill()  # a crash: no clean-up ran, and the lock is gone with the process
        first.wait()
    status, _, err = run(monkeypatch, capsys, 'train.py', *args[:-1], '--max_iters=2', '--eval_interval=2',
                         '--init_from=resume')
    assert 'another run' not in err


def test_the_loader_names_the_real_cause_and_leaves_the_file_as_it_was(trained, tmp_path, monkeypatch):
    path = trained['out'] / 'ckpt.pt'
    before = digest(path)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='device cuda is not available here .* pass --device=cpu'):
            load_checkpoint(str(path), device='cuda')
    for device in ('xpu', 'meta', 'cuda:7'):
        with pytest.raises(ValueError, match=f'device {device}'):
            load_checkpoint(str(path), device=device)
    real_load = torch.load

    def denied(*args, **kwargs):
        raise PermissionError(13, 'Permission denied', str(path))
    monkeypatch.setattr(torch, 'load', denied)
    with pytest.raises(PermissionError):  # a script says "ckpt.pt: Permission denied", not "damaged"
        load_checkpoint(str(path))
    monkeypatch.setattr(torch, 'load', real_load)
    ckpt = torch.load(path, weights_only=True)
    ckpt['model_args']['n_experts'] = 4  # as another version might write
    torch.save(ckpt, tmp_path / 'newer.pt')
    with pytest.raises(ValueError, match='another version of adaponder.py: it has config fields n_experts'):
        load_checkpoint(str(tmp_path / 'newer.pt'))
    ckpt = torch.load(path, weights_only=True)
    ckpt['model']['lm_head.weight'][0, 0] = float('nan')
    torch.save(ckpt, tmp_path / 'nan.pt')
    with pytest.raises(ValueError, match='holds nan or inf weights .lm_head.weight'):
        load_checkpoint(str(tmp_path / 'nan.pt'))
    assert digest(path) == before


def test_the_saver_refuses_what_the_loader_could_not_read(trained, tmp_path):
    model, _ = load_checkpoint(str(trained['out']))  # a folder is taken for its ckpt.pt
    for extra, where in ((dict(best=np.float32(1.5)), "extra['best'] (a float32)"),
                         (dict(config=dict(out=Path('x'))), "extra['config']['out'] (a PosixPath)")):
        with pytest.raises(ValueError, match=re.escape(f'cannot save {where}')):
            save_checkpoint(str(tmp_path / 'x.pt'), model, **extra)
        assert not (tmp_path / 'x.pt').exists()
    save_checkpoint(str(tmp_path / 'x.pt'), model, best=1.5, config=dict(out='x'))
    assert load_checkpoint(str(tmp_path / 'x.pt'))[1]['best'] == 1.5


def test_scripts_name_a_device_that_is_not_here(trained, monkeypatch, capsys):
    for device in ('meta', 'xpu', 'xla'):
        assert_error(run(monkeypatch, capsys, 'sample.py', f'--out_dir={trained["out"]}', f'--device={device}'),
                     f'device {device} is not available here', '--device=cpu')
    assert_error(run(monkeypatch, capsys, 'train.py', *train_args(trained, trained['out'], '--device=xpu',
                                                                 '--init_from=resume', '--eval_only')),
                 'device xpu is not available here')


# ---- settings: None, huge numbers, config order and kind, paths ----

@pytest.mark.parametrize('args,words', [
    (['--batch_size=None'], ['batch_size=None is out of range', 'an integer in [1, ']),
    (['--learning_rate=None'], ['learning_rate=None is out of range']),
    ([f'--seed={10 ** 23}'], ['seed=100000000000000000000000 is out of range']),
    (['--batch_size=1000000000'], ['batch_size=1000000000 is out of range']),
    (['--max_iters=1e23'], ['max_iters must be int']),
])
def test_numbers_a_run_cannot_use(trained, tmp_path, monkeypatch, capsys, args, words):
    assert_error(run(monkeypatch, capsys, 'train.py', *train_args(trained, tmp_path, *args)), *words)


def test_config_files_come_first_are_python_and_a_home_path_is_expanded(trained, tmp_path, monkeypatch, capsys):
    (tmp_path / 'c.py').write_text('max_iters = 2\n')
    (tmp_path / 'c.json').write_text('{"max_iters": 2}\n')
    assert_error(run(monkeypatch, capsys, 'train.py', '--max_iters=3', str(tmp_path / 'c.py')),
                 'c.py comes after --max_iters: put it first')
    assert_error(run(monkeypatch, capsys, 'train.py', str(tmp_path / 'c.json')), 'c.json not found or not a .py file')
    monkeypatch.setenv('HOME', str(tmp_path))
    status, _, _ = run(monkeypatch, capsys, 'train.py', str(tmp_path / 'c.py'),
                       *train_args(trained, '~/home-out', '--eval_interval=2'))
    assert status == 0 and (tmp_path / 'home-out' / 'ckpt.pt').exists() and not (ROOT / '~').exists()


# ---- signals and pipes: one line, the promised status, nothing lost ----

def test_ctrl_c_while_torch_imports_and_during_set_up_is_one_line(trained, tmp_path, monkeypatch, capsys):
    (tmp_path / 'script.py').write_text(f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                                        "import configurator, os, signal\n"  # as every script starts
                                        "os.kill(os.getpid(), signal.SIGINT)\nimport torch\n")
    result = subprocess.run([sys.executable, str(tmp_path / 'script.py')], capture_output=True, text=True)
    assert result.returncode in (130, -signal.SIGINT)  # the shell's 130: killed by SIGINT, as Python exits
    assert result.stderr.strip() == 'interrupted; nothing was written'  # configurator's excepthook

    def ctrl_c(*args, **kwargs):  # while the model is built: a plain KeyboardInterrupt, for that hook
        raise KeyboardInterrupt
    import adaponder
    monkeypatch.setattr(adaponder.AdaPonderLM, '__init__', ctrl_c)
    with pytest.raises(KeyboardInterrupt):  # (it was a NameError, from a handler set up too early)
        run(monkeypatch, capsys, 'train.py', *train_args(trained, tmp_path / 'out'))


def test_sigterm_in_training_finishes_the_step_and_says_where_the_checkpoint_is(trained, tmp_path, monkeypatch,
                                                                              capsys):
    real_step, steps = torch.optim.AdamW.step, []

    def step_then_sigterm(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 3:
            signal.raise_signal(signal.SIGTERM)
        return real_step(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.AdamW, 'step', step_then_sigterm)
    status, _, err = run(monkeypatch, capsys, 'train.py', *train_args(trained, tmp_path, '--max_iters=8',
                                                                     '--eval_interval=2'))
    assert status == 143 and len(steps) == 3 and err.splitlines()[-1] == (
        f"interrupted; at step 3; the last checkpoint is {tmp_path / 'ckpt.pt'}, step 2, kept as it was; "
        "continue with --init_from=resume")


def test_a_reader_that_leaves_does_not_end_the_run(trained, tmp_path):
    command = f"{sys.executable} train.py {' '.join(train_args(trained, tmp_path, '--max_iters=6'))} | head -1"
    result = subprocess.run(['bash', '-c', command + '; echo "status=${PIPESTATUS[0]}"'], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.stdout.splitlines()[-1] == 'status=0' and 'Error' not in result.stderr, result.stderr
    assert load_checkpoint(str(tmp_path))[1]['iter_num'] == 6


# ---- DDP's environment, resume, init_from, data files ----

@pytest.mark.parametrize('env', [dict(RANK='0'), dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='two'),
                                 dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='2', MASTER_ADDR='localhost')])
def test_a_ddp_environment_not_made_by_torchrun(trained, tmp_path, monkeypatch, capsys, env):
    for key, value in env.items():  # (WORLD_SIZE=2 in one process used to wait forever)
        monkeypatch.setenv(key, value)
    assert_error(run(monkeypatch, capsys, 'train.py', *train_args(trained, tmp_path)),
                 'RANK is set, but this process was not started by torchrun; unset RANK, or run torchrun')


def test_resume_edges(trained, tmp_path, monkeypatch, capsys):
    args = copy_out(trained, tmp_path)
    out = tmp_path / 'out'
    assert_error(run(monkeypatch, capsys, 'train.py', *args, '--init_from=resume'),
                 'is at step 4 already, max_iters=4: nothing to train', '--max_iters')
    rows = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    status, _, _ = run(monkeypatch, capsys, 'train.py', *args, '--init_from=resume', '--max_iters=6')
    again = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
    assert status == 0 and again[:len(rows)] == rows  # the checkpoint step's row keeps its tok/s
    assert [r['step'] for r in again if r['kind'] == 'eval'] == [0, 2, 4, 6]
    (out / 'metrics.jsonl').unlink()
    (out / 'metrics.jsonl').mkdir()
    assert_error(run(monkeypatch, capsys, 'train.py', *args, '--init_from=resume', '--max_iters=8'),
                 'metrics.jsonl is a folder')


@pytest.mark.parametrize('value,words', [('resum', 'did you mean resume?'), ('Scratch', 'did you mean scratch?'),
                                         ('OUT', 'is an AdaPonder checkpoint: continue it with --init_from=resume'),
                                         ('OUT/ckpt.pt', '--init_from=resume --out_dir=OUT')])
def test_init_from_that_names_ours_or_is_a_typo(trained, tmp_path, monkeypatch, capsys, value, words):
    out = str(trained['out'])
    assert_error(run(monkeypatch, capsys, 'train.py', *train_args(trained, tmp_path),
                     f"--init_from={value.replace('OUT', out)}"), words.replace('OUT', out))


def test_data_files_with_an_odd_size_or_a_bad_vocabulary(trained, tmp_path, monkeypatch, capsys):
    data = tmp_path / 'data' / 'toy'
    data.mkdir(parents=True)
    for name in ('train.bin', 'val.bin', 'meta.json', 'val_class.bin'):
        (data / name).write_bytes((trained['data'] / 'toy' / name).read_bytes())
    args = [f'--data_dir={tmp_path / "data"}', f'--out_dir={tmp_path / "out"}', *TINY]
    with open(data / 'val.bin', 'ab') as f:
        f.write(b'\x01')
    assert_error(run(monkeypatch, capsys, 'train.py', *args), 'val.bin has an odd number of bytes', 'prepare.py')
    (data / 'val.bin').write_bytes((trained['data'] / 'toy' / 'val.bin').read_bytes())
    meta = json.loads((data / 'meta.json').read_text())
    for vocab_size in ('45', 70000, None):
        (data / 'meta.json').write_text(json.dumps(dict(meta, vocab_size=vocab_size)))
        assert_error(run(monkeypatch, capsys, 'train.py', *args), f'{data}/meta.json', 'vocab_size')


# ---- the bugs of issue 30 ----

def test_a_run_that_never_improves_still_keeps_a_checkpoint(trained, tmp_path, monkeypatch, capsys):
    status, _, _ = run(monkeypatch, capsys, 'train.py', *train_args(
        trained, tmp_path, '--always_save_checkpoint=False', '--learning_rate=1e-30', '--min_lr=0', '--max_iters=2',
        '--eval_interval=1'))
    assert status == 0 and load_checkpoint(str(tmp_path))[1]['iter_num'] == 1  # the first eval after step 0


def test_no_loop_variable_leaks_into_the_saved_config(trained, tmp_path, monkeypatch, capsys):
    run(monkeypatch, capsys, 'train.py', *train_args(trained, tmp_path, '--model_preset=tiny', '--block_size=32',
                                                     '--max_iters=1', '--eval_interval=1'))
    config = torch.load(tmp_path / 'ckpt.pt', weights_only=True)['config']
    assert config['model_preset'] == 'tiny' and not {'key', 'value', 'k', 'v', 'saved', 'given'} & set(config)
    assert config['lr_decay_iters'] == 0  # "decay to max_iters", so that a longer resumed run decays later


def test_continued_pretraining_resumes_with_its_own_context_and_vocabulary(trained, tmp_path, monkeypatch, capsys):
    """A GPT-NeoX model (64 ids, context 64) continued on the toy characters (45) with block_size 32: the resumed
    run keeps block_size 32 (not the model's 64) and resumes at all (its vocabulary is not the data's)."""
    neox = neox_folder(tmp_path)
    args = train_args(trained, tmp_path / 'out', f'--init_from={neox}', '--max_iters=2', '--eval_interval=2')
    status, out, err = run(monkeypatch, capsys, 'train.py', *args)
    assert status == 0, err
    status, resumed, err = run(monkeypatch, capsys, 'train.py', *train_args(trained, tmp_path / 'out'),
                               '--init_from=resume', '--max_iters=4')
    assert status == 0, err
    tokens = [line.split(' tokens per iteration')[0].split(', ')[-1] for line in (out, resumed)
              for line in line.splitlines() if 'tokens per iteration' in line]
    assert tokens == ['128', '128']  # batch 4 x block 32, before and after
    assert torch.load(tmp_path / 'out' / 'ckpt.pt', weights_only=True)['config']['block_size'] == 32


# ---- the Python API checks its arguments where they enter ----

def test_generate_stream_and_set_inference_refuse_what_they_cannot_use():
    from adaponder import AdaPonderLM
    from pretrained import preset
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', n_ponder=2)).eval()
    idx = torch.randint(64, (2, 5))
    same, depth = model.generate(idx, 0)  # nothing to generate: the prompt back, no depths
    assert torch.equal(same, idx) and depth.shape == (2, 0)
    for kwargs, words in ((dict(max_new_tokens=-2), 'max_new_tokens'), (dict(max_new_tokens=2.5), 'max_new_tokens'),
                          (dict(top_k=0), 'top_k'), (dict(top_k=-3), 'top_k'),
                          (dict(temperature=float('nan')), 'temperature'), (dict(temperature=-1), 'temperature')):
        with pytest.raises(ValueError, match=words):
            model.generate(idx, **{'max_new_tokens': 3, **kwargs})
    for bad in (torch.zeros(2, 0, dtype=torch.long), torch.zeros(5, dtype=torch.long), torch.full((1, 3), 64),
                torch.full((1, 3), -1), torch.zeros(1, 3)):
        with pytest.raises(ValueError, match='idx'):
            model.generate(bad, 2)
    assert model.set_inference(n_ponder=1) == {'n_ponder': 2} and model.config.n_ponder == 1
    model.set_inference(n_ponder=None)  # None: no cap, the trained K again
    assert model.config.n_ponder == 2
    with pytest.raises(ValueError, match='halt_threshold'):
        model.set_inference(halt_threshold=True)


@pytest.mark.parametrize('field,value', [('bias', 'False'), ('gated', 'no'), ('n_layer', True),
                                         ('halt_threshold', True), ('parallel_residual', 1)])
def test_the_config_refuses_values_of_the_wrong_type(field, value):
    from pretrained import preset
    with pytest.raises(ValueError, match=field):
        preset('tiny', **{field: value})


def test_halting_random_is_the_random_depth_baseline_and_its_old_name_still_loads(tmp_path):
    from adaponder import AdaPonderLM
    from pretrained import preset
    model = AdaPonderLM(preset('tiny', halting='fixed', gated=False))  # as older configs say it
    assert model.config.halting == 'random'
    save_checkpoint(str(tmp_path / 'old.pt'), model)
    ckpt = torch.load(tmp_path / 'old.pt', weights_only=True)
    ckpt['model_args']['halting'] = 'fixed'  # as older checkpoints hold it
    torch.save(ckpt, tmp_path / 'old.pt')
    assert load_checkpoint(str(tmp_path / 'old.pt'))[0].config.halting == 'random'
