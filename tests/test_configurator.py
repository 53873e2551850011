"""configurator.py: config files then --key=value (or --key value), the settings overridden printed in one line,
--help with every setting's default and comment, and check()'s ranges."""
import math

import pytest

from configurator import check, configure


def settings(**extra):
    return dict(batch_size=32, learning_rate=1e-3, compile=False, dataset='toy', top_k=None, **extra)


def test_key_value_with_an_equals_sign_or_a_space(capsys):
    s = settings()
    assert set(configure(s, ['--batch_size', '8', '--learning_rate=3e-4', '--compile', '--dataset', 'hops',
                         '--top_k', '5'])) == {'batch_size', 'learning_rate', 'compile', 'dataset', 'top_k'}
    assert (s['batch_size'], s['learning_rate'], s['compile'], s['dataset'], s['top_k']) == (8, 3e-4, True, 'hops', 5)
    assert capsys.readouterr().out == ('settings overridden: batch_size=8 learning_rate=0.0003 compile=True '
                                       'dataset=hops top_k=5\n')
    s = settings()
    configure(s, ['--compile', 'False', '--learning_rate', '-1'])  # a bool takes True/False; a negative number
    assert s['compile'] is False and s['learning_rate'] == -1.0
    assert capsys.readouterr().out == 'settings overridden: compile=False learning_rate=-1.0\n'
    configure(settings(), [])
    assert capsys.readouterr().out == ''  # nothing is set, nothing is printed


@pytest.mark.parametrize('args,words', [
    (['--batch_size'], 'setting --batch_size has no value; write --batch_size=VALUE'),
    (['--batch_size', '--compile'], 'setting --batch_size has no value'),
    (['--batch_size', 'many'], "batch_size must be int, got 'many' (from --batch_size many)"),
    (['--batch_sise=3'], "unknown setting 'batch_sise' (from --batch_sise=3); did you mean batch_size?"),
])
def test_bad_arguments_are_one_line(args, words):
    with pytest.raises(SystemExit) as e:
        configure(settings(), args)
    assert str(e.value.code).startswith('error: ') and words in str(e.value.code)


def test_help_lists_every_setting_its_default_and_comment(tmp_path, capsys):
    script = tmp_path / 'script.py'
    script.write_text("batch_size = 32  # sequences per batch\nlearning_rate = 1e-3  # peak learning rate\n"
                      "start = '\\n'  # the prompt\n")
    with pytest.raises(SystemExit) as e:
        configure(dict(__file__=str(script), batch_size=32, learning_rate=1e-3, start='\n'), ['--batch_size=2', '-h'])
    assert e.value.code == 0
    assert capsys.readouterr().out.splitlines() == [
        'usage: python script.py [config/file.py ...] [--key=value ...]', 'settings (default, then what it does):',
        '  --batch_size=32  # sequences per batch', '  --learning_rate=0.001  # peak learning rate',
        "  --start='\\n'  # the prompt"]


def test_check_ranges():
    check(dict(a=0, b=0.5, c=None, d=3), dict(a='integer [0, inf)', b='(0, 1)', c='[0, 1] or None', d='[1, 3]'))  # all inside
    for value, rule in ((math.nan, '[0, 1]'), (math.inf, '[0, inf)'), (1, '[0, 1)'), (0, '(0, 1]'),
                        (1.5, 'integer [0, inf)'), (True, '[0, 1]'), ('x', '[0, 1]')):
        with pytest.raises(SystemExit) as e:
            check(dict(x=value), dict(x=rule))
        assert str(e.value.code).startswith(f'error: x={value} is out of range; pass --x=<')
        assert rule.removeprefix('integer ') in str(e.value.code)
