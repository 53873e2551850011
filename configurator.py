"""
The one way every script (train.py, sample.py, analyze.py, bench.py, downstream.py) takes its settings, after
nanoGPT's configurator: a script's settings are its plain global variables, and

    python train.py config/shakespeare_char.py --batch_size=32 --compile=False

runs config files (plain Python assignments) and then --key=value overrides over them, in order. A value is
a Python literal (--learning_rate=3e-4, --compile=False, --top_k=None) or else a string (--dataset=toy);
`--key value` works too, and a bare --flag sets a boolean setting to True. --help lists the settings with
their defaults. check() tests the numbers a script cannot use (out of range, NaN) once, as a run starts,
die() is the one-line error for bad input, and interrupted() the one line for Ctrl-C.
"""
import ast
import difflib
import os
import sys
import types


def die(message):
    """Bad input: one line 'error: ...' on stderr and exit status 1, never a traceback."""
    raise SystemExit(f"error: {' '.join(str(message).split())}")


def interrupted(what_was_kept):
    """Ctrl-C: one line 'interrupted; ...' on stderr (on a line of its own, after any half-printed one) and the
    shell's status for Ctrl-C, 130, never a traceback."""
    print(f"\ninterrupted; {what_was_kept}", file=sys.stderr)
    raise SystemExit(130)


def configure(settings, argv=None):
    """Override settings (a script's globals()) from config files and --key=value arguments (default:
    sys.argv[1:]). Only keys the script defines can be set, each keeping its type (an int is a float too;
    a setting whose default is None takes any value). Prints the settings changed; returns their keys."""
    keys = [k for k, v in settings.items() if not k.startswith('_') and isinstance(v, (int, float, str, type(None)))]
    args, explicit = list(sys.argv[1:] if argv is None else argv), {}
    if '--help' in args or '-h' in args:
        print_help(settings, keys)

    def set_one(key, value, source):
        if key not in keys:
            guess = ''.join(f"did you mean {k}? " for k in difflib.get_close_matches(key, keys, n=1))
            die(f"unknown setting {key!r} (from {source}); {guess}settings are: {', '.join(sorted(keys))}")
        default = settings[key]
        same_kind = default is None or value is None or type(value) is type(default) or \
            (type(default) is float and type(value) is int)
        if not same_kind:
            die(f"{key} must be {type(default).__name__}, got {value!r} (from {source}); e.g. --{key}={default!r}")
        settings[key] = explicit[key] = float(value) if type(default) is float and type(value) is int else value

    while args:
        arg = args.pop(0)
        if not arg.startswith('--'):  # a config file
            if not os.path.isfile(arg):
                die(f"config file {arg} not found; pass a file like config/toy.py or a --key=value setting")
            namespace = {}
            try:
                exec(open(arg).read(), namespace)
            except Exception as e:
                die(f"config file {arg} failed to run ({type(e).__name__}: {e}); fix that file")
            for key, value in namespace.items():
                if not key.startswith('_') and not isinstance(value, types.ModuleType):
                    set_one(key, value, arg)
            continue
        key, has_value, text = arg[2:].partition('=')
        flag = isinstance(settings.get(key), bool)
        if not has_value and args and not args[0].startswith('--') and (not flag or args[0] in ('True', 'False')):
            text = args.pop(0)  # --key value
            has_value, arg = True, f'{arg} {text}'
        if not has_value and not flag:  # a bare --flag turns a bool setting on
            die(f"setting {arg} has no value; write --{key}=VALUE")
        text = text if has_value else 'True'
        try:
            value = ast.literal_eval(text)  # numbers, booleans, None, quoted strings
        except (ValueError, SyntaxError):
            value = text  # a bare word is a string: --dataset=shakespeare_char
        if isinstance(settings.get(key), str) and not isinstance(value, str):
            value = text  # a string setting keeps what was typed: --start=123 is the prompt "123"
        set_one(key, value, arg)
    if explicit and os.environ.get('RANK', '0') == '0':  # under torchrun, once
        print('settings overridden: ' + ' '.join(f'{k}={shown(v)}' for k, v in explicit.items()))
    return set(explicit)


def shown(value):
    """A setting's value as it would be typed after --key=."""
    return value if isinstance(value, str) and value.split() == [value] else repr(value)


def print_help(settings, keys):
    """--help: the settings, their defaults and the comment each has in the script's source; then exit."""
    script = settings.get('__file__') or sys.argv[0]
    comments = {}
    if script and os.path.isfile(script):
        for line in open(script, encoding='utf-8'):
            name, _, rest = line.partition(' = ')
            if name in keys and '  # ' in rest:
                comments.setdefault(name, rest.split('  # ', 1)[1].strip())
    lines = [f"  --{key}={shown(settings[key])}" + (f"  # {comments[key]}" if key in comments else '') for key in keys]
    print(f"usage: python {os.path.basename(script or 'script.py')} [config/file.py ...] [--key=value ...]\n"
          "settings (default, then what it does):", *lines, sep='\n')
    raise SystemExit(0)


def check(settings, **ranges):
    """Die at the first setting outside its range, an interval like '[0, 1)' or '(0, inf)', 'integer [1, inf)'
    for whole numbers. None passes (it stands for a default); NaN lies in no interval."""
    for key, rule in ranges.items():
        value, integer = settings[key], rule.startswith('integer ')
        interval = rule.removeprefix('integer ')
        lo, hi = (float(bound) for bound in interval[1:-1].split(','))
        number = type(value) is int or type(value) is float and not integer
        inside = number and (lo <= value if interval[0] == '[' else lo < value) and \
            (value <= hi if interval[-1] == ']' else value < hi)
        if value is not None and not inside:
            die(f"{key}={shown(value)} is out of range; pass --{key}=<{'an integer' if integer else 'a number'} "
                f"in {interval}>")
