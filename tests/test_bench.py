"""bench.py runs end to end on the tiniest shape and prints every row of its table; with ckpt= it compares a
trained checkpoint's learned halting with full depth. The script runs in-process (runpy, as `python bench.py`)."""
import re
import runpy
import sys
from pathlib import Path

import pytest
import torch

from adaponder import AdaPonderLM, preset, save_checkpoint

BENCH = str(Path(__file__).resolve().parents[1] / 'bench.py')
TINY = ['--device=cpu', '--n_layer=1', '--n_head=2', '--n_embd=16', '--vocab_size=64', '--block_size=24',
        '--batch_size=1', '--warmup=1', '--iters=1', '--prompt_len=8', '--new_tokens=4', '--prefill_len=16',
        '--repeats=1', '--decode_batch_sizes=1,3', '--nocache_stride=2', '--n_ponder=2', '--fixed_mean_depth=2.0']


def run(monkeypatch, capsys, *args):
    """python bench.py ARGS, in-process; returns its stdout."""
    monkeypatch.setattr(sys, 'argv', ['bench.py', *args])
    runpy.run_path(BENCH, run_name='__main__')
    return capsys.readouterr().out


def fields(line):
    return dict(re.findall(r'(\S+?)=(\S+)', line))


def test_bench_prints_every_row(monkeypatch, capsys):
    lines = run(monkeypatch, capsys, *TINY).splitlines()
    rows = {}
    for line in lines:
        f = fields(line)
        key = ' '.join(filter(None, [line.split()[0], f.get('mode'), f.get('batch'), f.get('name')]))
        rows[key] = f
    expected = ['bench', 'train K0', 'train K2-none', 'train K2-learned', 'prefill cache-full',
                'prefill cache-halting']
    expected += [f'decode {mode} {b}' for b in (1, 3) for mode in ('nocache', 'cache-full', 'cache-halting')]
    expected += [f'target {name}' for name in (
        'train_mfu_K0', 'train_learned_vs_none', 'decode_cache_vs_nocache_b1', 'decode_halting_b1_frac_of_ideal',
        'decode_halting_b3_frac_of_ideal', 'prefill_halting_frac_of_ideal')]
    assert [k for k in expected if k not in rows] == []
    shapes = [line for line in lines if line.startswith('shape ')]
    assert len(shapes) == 5 and 'n_layer=1 ' in shapes[0] and 'new_tokens=4 ' in shapes[2]  # explicit settings win
    header = fields(lines[0])
    assert header['preset'] == 'small' and header['compile'] == 'False'  # the CPU's preset and default
    assert float(rows['train K2-learned']['tok/s']) > 0 and rows['train K0']['vs_K0'] == '1.00'
    for b in (1, 3):
        assert rows[f'decode cache-full {b}']['passes'] == '3.00'  # full depth: K+1 passes, every token
        halting = rows[f'decode cache-halting {b}']
        passes = float(halting['passes'])
        assert 1 <= passes <= float(halting['passes_run']) <= 3 and passes < 3  # halting did skip passes
        assert float(halting['ideal']) == pytest.approx(3 / passes, abs=0.02)  # ideal from the realised depth
        ratio = float(halting['vs_cache_full'])
        assert float(halting['frac_of_ideal']) == pytest.approx(ratio / float(halting['ideal']), rel=0.02, abs=0.02)
    assert rows['target train_mfu_K0']['status'] == 'n/a'  # no peak for a CPU
    assert rows['target train_learned_vs_none']['status'] in ('MET', 'MISSED')


def test_preset_values_unless_set(monkeypatch, capsys):
    """The device's preset ('small' on a CPU) fills every shape not set; a bad value stops before any timing."""
    monkeypatch.setattr(sys, 'argv', ['bench.py', '--device=cpu', '--n_head=3'])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(BENCH, run_name='__main__')  # 'small' has n_embd=256, not a multiple of 3
    assert str(e.value.code) == 'error: n_embd must be a multiple of n_head; fix the setting'
    assert capsys.readouterr().out == ''


def test_compare_a_checkpoint(tmp_path, monkeypatch, capsys):
    """ckpt=: only decoding, the checkpoint's learned halting against full depth, on the same greedy tokens.
    Gates at s ~ 0.5 with tau = 0.5 halt about half the tokens after each pass."""
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', n_ponder=3, gate_bias_init=0.0, halt_threshold=0.5))
    save_checkpoint(str(tmp_path / 'ckpt.pt'), model, dataset='toy')
    lines = run(monkeypatch, capsys, '--device=cpu', f'--ckpt={tmp_path / "ckpt.pt"}', '--prompt_len=8',
                '--new_tokens=16', '--repeats=1').splitlines()
    assert [line.split()[0] for line in lines] == ['bench', 'compare', 'bench']  # no training, no shapes
    f = fields(lines[1])
    assert f['passes_full'] == '4.00' and 1 <= float(f['passes']) < 4
    speedup = float(f['tok/s_adaptive']) / float(f['tok/s_full'])
    assert f['speedup'].endswith('x') and float(f['speedup'][:-1]) == pytest.approx(speedup, rel=0.01)
    model.eval()
    _, depth = model.generate(torch.randint(64, (1, 8), generator=torch.Generator().manual_seed(1337)), 16, 0)
    assert float(f['passes']) == pytest.approx(depth.float().mean().item(), abs=0.005)  # the same greedy run


@pytest.mark.parametrize('args,message', [(['--nope=1'], "unknown setting 'nope'"),
                                          (['--iters=many'], 'iters must be int'),
                                          (['--device=cpu', '--new_tokens=500'], 'must fit block_size'),
                                          (['--decode_batch_sizes=1,x'], 'is not integers and commas'),
                                          (['--preset=huge'], "unknown preset 'huge'"),
                                          (['--ckpt=nowhere.pt'], 'no checkpoint at nowhere.pt'),
                                          (['iters'], 'config file iters not found')])
def test_bad_settings_are_one_clear_line(args, message, monkeypatch):
    monkeypatch.setattr(sys, 'argv', ['bench.py', *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(BENCH, run_name='__main__')
    error = str(e.value.code)
    assert error.startswith('error: ') and '\n' not in error and message in error, error
