"""bench.py runs end to end on the tiniest shape and prints every row of its table; with ckpt= it compares a
trained checkpoint's learned halting with full depth. The script runs in-process (runpy, as `python bench.py`)."""
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adaponder import AdaPonderLM
from pretrained import preset, save_checkpoint

BENCH = str(Path(__file__).resolve().parents[1] / 'bench.py')
TINY = ['--device=cpu', '--n_layer=1', '--n_head=2', '--n_embd=16', '--vocab_size=64', '--block_size=24',
        '--batch_size=1', '--warmup=1', '--iters=1', '--prompt_len=8', '--new_tokens=4', '--prefill_len=16',
        '--repeats=1', '--decode_batch_sizes=1,3', '--nocache_stride=2', '--n_ponder=2', '--fixed_mean_depth=2.0',
        '--sections=train,decode,prefill']


def run(monkeypatch, capsys, *args):
    """python bench.py ARGS, in-process; returns its stdout."""
    monkeypatch.setattr(sys, 'argv', ['bench.py', *args])
    runpy.run_path(BENCH, run_name='__main__')
    return re.sub(r'^settings overridden: .*\n', '', capsys.readouterr().out)  # configure's line: not a row


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
    expected += [f'ideal {name}' for name in (
        'train_mfu_K0', 'train_learned_vs_none', 'decode_cache_vs_nocache_b1', 'decode_halting_b1',
        'decode_halting_b3', 'prefill_halting')]
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
    assert rows['ideal train_mfu_K0']['measured'] == 'n/a'  # no peak for a CPU
    assert 'MET' not in ' '.join(lines) and 'MISSED' not in ' '.join(lines)  # measurements, not verdicts
    for b in (1, 3):  # each ratio beside its ideal: the same numbers as its row
        assert rows[f'ideal decode_halting_b{b}']['ideal'] == rows[f'decode cache-halting {b}']['ideal']
        assert rows[f'ideal decode_halting_b{b}']['measured'] == rows[f'decode cache-halting {b}']['vs_cache_full']
    assert rows['ideal train_learned_vs_none']['ideal'] == '1.00'
    # without the cache, new token j reruns its prefix of 8 + j tokens; with it, 8 + 4 - 1 tokens run in all
    assert float(rows['ideal decode_cache_vs_nocache_b1']['ideal']) == pytest.approx((4 * 8 + 6) / 11, abs=0.01)
    assert rows['ideal decode_cache_vs_nocache_b1']['measured'] == rows['decode cache-full 1']['vs_nocache']


def test_least_spread_depths_are_accepted(monkeypatch, capsys):
    """Every depth distribution the model has: least spread gives each token floor or ceil of the mean."""
    lines = run(monkeypatch, capsys, *TINY, '--fixed_depth_dist=least_spread', '--fixed_mean_depth=1.5').splitlines()
    halting = [fields(line) for line in lines if line.startswith('prefill') and 'mode=cache-halting' in line]
    assert len(halting) == 1 and float(halting[0]['passes']) == pytest.approx(1.5, abs=0.1)


def test_preset_values_unless_set(monkeypatch, capsys):
    """The device's preset ('small' on a CPU) fills every shape not set; a bad value stops before any timing."""
    monkeypatch.setattr(sys, 'argv', ['bench.py', '--device=cpu', '--n_head=3'])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(BENCH, run_name='__main__')  # 'small' has n_embd=256, not a multiple of 3
    assert str(e.value.code).startswith('error: n_embd 256 must split into n_head 3 heads')  # as the model says
    assert capsys.readouterr().out == 'settings overridden: device=cpu n_head=3\n'  # and no timing


def test_compare_a_checkpoint(tmp_path, monkeypatch, capsys):
    """ckpt=: only decoding, the checkpoint's learned halting against full depth, on the same greedy tokens, from a
    prompt that is the start of its dataset's val split, prompt and new tokens within its block size (64 here: 48 +
    48 asked, 32 + 32 run). Gates at s ~ 0.5 with tau = 0.5 halt about half the tokens after each pass."""
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', n_ponder=3, gate_bias_init=0.0, halt_threshold=0.5))
    save_checkpoint(str(tmp_path / 'ckpt.pt'), model, dataset='toy')
    (tmp_path / 'data' / 'toy').mkdir(parents=True)
    val = np.arange(200, dtype=np.uint16) * 7 % 64  # the val split: a text no random draw gives
    val.tofile(tmp_path / 'data' / 'toy' / 'val.bin')
    prompts, generate = [], AdaPonderLM.generate

    def recording(self, idx, max_new_tokens, *args, **kwargs):
        prompts.append((idx.tolist(), max_new_tokens))
        return generate(self, idx, max_new_tokens, *args, **kwargs)
    monkeypatch.setattr(AdaPonderLM, 'generate', recording)
    where = [f'--ckpt={tmp_path}', f'--data_dir={tmp_path / "data"}']  # the folder: its ckpt.pt
    lines = run(monkeypatch, capsys, '--device=cpu', *where, '--prompt_len=48', '--new_tokens=48',
                '--repeats=1').splitlines()
    assert [line.split()[0] for line in lines] == ['bench', 'compare', 'bench']  # no training, no shapes
    f = fields(lines[1])
    assert f['prompt_len'] == '32' and f['new_tokens'] == '32'
    assert {(tuple(p[0]), n) for p, n in prompts} == {(tuple(val[:32].tolist()), n) for n in (2, 32)}  # warm-up, timed
    assert f['passes_full'] == '4.00' and 1 <= float(f['passes']) < 4
    speedup = float(f['tok/s_adaptive']) / float(f['tok/s_full'])
    assert f['speedup'].endswith('x') and float(f['speedup'][:-1]) == pytest.approx(speedup, rel=0.01)
    model.eval()
    _, depth = generate(model, torch.from_numpy(val[:32].astype(np.int64))[None], 32, 0)
    assert float(f['passes']) == pytest.approx(depth.float().mean().item(), abs=0.005)  # the same greedy run
    # and its training step at its trained threshold against full depth, on val windows of its block size
    out = run(monkeypatch, capsys, '--device=cpu', *where, '--repeats=1', '--skip_batch=2', '--skip_iters=1')
    row = fields(next(line for line in out.splitlines() if 'halting=trained' in line))
    assert row['block'] == '64' and row['halting'] == 'trained' and 1 <= float(row['passes']) < 4
    assert float(row['ideal']) == pytest.approx(float(row['passes']) / 4, abs=0.01)
    (tmp_path / 'data' / 'toy' / 'val.bin').unlink()
    with pytest.raises(SystemExit) as e:
        run(monkeypatch, capsys, '--device=cpu', *where)
    assert 'val.bin' in str(e.value.code) and 'prepare' in str(e.value.code)


@pytest.mark.parametrize('args,message', [(['--nope=1'], "unknown setting 'nope'"),
                                          (['--iters=many'], 'iters must be int'),
                                          (['--device=cpu', '--new_tokens=500'], 'must fit block_size'),
                                          (['--decode_batch_sizes=1,x'], 'is malformed'),
                                          (['--seed=None'], 'seed=None is out of range'),
                                          (['--skip_shapes=1x30x8'], 'n_embd 30 must split'),
                                          (['--preset=huge'], "preset=huge is not one of"),
                                          (['--ckpt=nowhere.pt'], 'nowhere.pt: no checkpoint here'),
                                          (['iters'], 'config file iters not found')])

def test_bad_settings_are_one_clear_line(args, message, monkeypatch):
    monkeypatch.setattr(sys, 'argv', ['bench.py', *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(BENCH, run_name='__main__')
    error = str(e.value.code)
    assert error.startswith('error: ') and '\n' not in error and message in error, error


def test_training_with_halting_rows(monkeypatch, capsys):
    """Section 4: each halting setting's training step against full depth, beside its ideal. Every way of
    computing the same setting (the running rows, every row) gives the same loss."""
    out = run(monkeypatch, capsys, '--device=cpu', '--sections=skip', '--skip_shapes=1x16x24,1x32x32',
              '--skip_batch=4', '--skip_iters=1', '--skip_passes=2.0,1.5')
    rows = [fields(line) for line in out.splitlines() if line.startswith('train_skip ')]
    names = [(r['shape'], r['halting']) for r in rows]
    assert names == [(s, h) for s in ('1x16', '1x32')
                     for h in ('full', 'nobody_halts', 'learned@2', 'every_row@2', 'learned@1.5')]
    for r in rows:
        assert float(r['ideal']) == pytest.approx(float(r['passes']) / 4, abs=0.01)
        assert float(r['gap']) == pytest.approx(float(r['vs_full']) - float(r['ideal']), abs=0.011)
    for shape in ('1x16', '1x32'):
        by = {r['halting']: r for r in rows if r['shape'] == shape}
        assert by['full']['passes'] == by['nobody_halts']['passes'] == '4.00'
        assert float(by['learned@2']['passes']) == pytest.approx(2.0, abs=0.15)  # tau found by bisection
        same = [by[h]['loss'] for h in ('learned@2', 'every_row@2')]
        assert all(float(loss) == pytest.approx(float(same[0]), abs=1e-5) for loss in same)
    assert 'ideal name=train_skip_1x32_T32_learned@2' in out


def test_compiled_training_with_halting_rows(monkeypatch, capsys):
    """--compile=True: section 4 also times the compiled model, skip against compiled full depth, with its graphs
    (one per setting), recompiles (none while the halting mask changes step by step) and compile seconds.
    The 'eager' backend keeps it fast: graphs and recompiles are decided before a backend runs."""
    real_compile = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda model, **kwargs: real_compile(model, backend='eager'))
    out = run(monkeypatch, capsys, '--device=cpu', '--sections=skip', '--skip_shapes=1x16x24', '--compile=True',
              '--skip_batch=4', '--skip_iters=2', '--skip_passes=1.3', '--n_ponder=2')
    rows = {(r['compile'], r['halting']): r for r in map(fields, out.splitlines()) if 'compile' in r and 'halting' in r}
    compiled = {h: r for (c, h), r in rows.items() if c == 'True'}
    assert list(compiled) == ['full', 'learned@1.3']
    for name, r in compiled.items():
        assert r['graphs'] == '1' and r['recompiles'] == '0' and float(r['compile_s']) > 0
        assert r['passes'] == rows[('False', name)]['passes'] and r['loss'] == rows[('False', name)]['loss']
        assert float(r['vs_eager']) == pytest.approx(float(r['ms']) / float(rows[('False', name)]['ms']), abs=0.02)
    assert 'ideal name=train_skip_1x16_T24_learned@1.3_compiled' in out
