"""bench.py runs end to end on the tiniest shape and prints every row of its table."""
import re

import pytest

import bench

TINY = ['--device=cpu', '--n_layer=1', '--n_head=2', '--n_embd=16', '--vocab_size=64', '--block_size=24',
        '--batch_size=1', '--warmup=1', '--iters=1', '--prompt_len=8', '--new_tokens=4', '--prefill_len=16',
        '--repeats=1', '--decode_batch_sizes=1,3', '--nocache_stride=2', '--n_ponder=2', '--fixed_mean_depth=2.0']


def fields(line):
    return dict(re.findall(r'(\S+?)=(\S+)', line))


def test_bench_prints_every_row(capsys):
    bench.main(TINY)
    lines = capsys.readouterr().out.splitlines()
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
    assert sum(line.startswith('shape ') for line in lines) == 5  # every shape is printed
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


@pytest.mark.parametrize('argv,message', [(['--nope=1'], 'unknown setting --nope'),
                                          (['--iters=many'], '--iters=many is not like'),
                                          (['--device=cpu', '--new_tokens=500'], 'must fit --block_size'),
                                          (['--device=cpu', 'iters'], 'write settings as --key=value')])
def test_bad_settings_are_one_clear_line(argv, message):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert str(e.value).startswith('error: ') and message in str(e.value)
