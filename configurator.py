"""Every script's settings, after nanoGPT's configurator: config files, then --key=value (a Python
literal, else a string; --key value, a bare --flag, --help); one line on bad input or Ctrl-C."""
import ast
import difflib
import os
import re
import sys

KINDS = (int, float, bool, str, type(None))  # the types a setting may have
RANK0 = os.environ.get('RANK', '0') == '0'  # under torchrun only rank 0 prints what all would

def die(message):  # bad input: one line 'error: ...' on stderr, exit status 1, no traceback
    raise SystemExit(f"error: {' '.join(str(message).split())}" if RANK0 else 1)

def interrupted(what_was_kept, status=130):  # Ctrl-C (130) or SIGTERM (143): one line
    if RANK0:
        print(f"\ninterrupted; {what_was_kept}", file=sys.stderr)
    raise SystemExit(status)

def first_line(error):  # an exception in a few words
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

def or_die(fn, *args, **kwargs):  # fn(...) in a script: ValueError, OSError: one error line
    try:
        return fn(*args, **kwargs)
    except (ValueError, OSError) as e:
        die(first_line(e) if isinstance(e, ValueError) else f"{e.filename}: {e.strerror or e}")

def ctrl_c_in_one_line(kind, error, traceback):  # a Ctrl-C no script caught, while torch imports
    if not issubclass(kind, KeyboardInterrupt):  # say (so scripts import this module first): one
        return sys.__excepthook__(kind, error, traceback)  # line, and Python's status, 130
    print("\ninterrupted; nothing was written", file=sys.stderr)
sys.excepthook = ctrl_c_in_one_line

def reader_gone(method):  # `python train.py | head`: when the reader leaves, go on printing nowhere
    def safely(*args):
        try:
            return method(*args)
        except BrokenPipeError:  # stdout is /dev/null from now on: no error again, not even at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return safely
sys.stdout.write, sys.stdout.flush = reader_gone(sys.stdout.write), reader_gone(sys.stdout.flush)

def configure(settings, argv=None):
    """Set settings (a script's globals()) from argv, types kept; print and return those given."""
    keys = [k for k, v in settings.items() if not k.startswith('_') and type(v) in KINDS]
    args, given, key = list(sys.argv[1:] if argv is None else argv), {}, None
    if '--help' in args or '-h' in args:  # each setting, its default and its comment; then exit
        script = settings.get('__file__') or sys.argv[0]
        source = open(script, encoding='utf-8').read() if os.path.isfile(script) else ''
        comments = dict(re.findall(r'^(\w+) = .*?  # (.*?)\s*$', source, re.M)[::-1])  # 1st wins
        print(f"usage: python {os.path.basename(script) or 'script.py'} [config/file.py ...] "
              "[--key=value ...]\nsettings (default, then what it does):")
        for k in keys:
            print(f"  --{k}={shown(settings[k])}" + (f"  # {comments[k]}" if k in comments else ''))
        raise SystemExit(0)
    while args:
        arg = args.pop(0)
        if not arg.startswith('--'):  # a config file, first: after a flag it would undo the flag
            if not arg.endswith('.py') or not os.path.isfile(arg) or key:
                die(f"config file {arg} comes after --{key}: put it first" if key and
                    os.path.isfile(arg) else f"config file {arg} not found or not a .py file")
            try:
                exec(open(arg).read(), namespace := {})
            except Exception as e:
                die(f"config file {arg} failed ({type(e).__name__}: {first_line(e)}); fix it")
            given.update({k: typed(settings, keys, k, v, arg) for k, v in namespace.items()
                          if not k.startswith('_') and type(v) in KINDS})
            continue
        key, has_value, text = arg[2:].partition('=')
        flag = isinstance(settings.get(key), bool)
        if not has_value and args and not args[0].startswith('--') and \
                (not flag or args[0] in ('True', 'False')):
            text, has_value, arg = args[0], True, f'{arg} {args.pop(0)}'  # --key value
        if not has_value and not flag:
            die(f"setting {arg} has no value; write --{key}=VALUE")
        text = text if has_value else 'True'
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = text  # a bare word: --dataset=toy
        string = isinstance(settings.get(key), str) and value is not None  # --start=123: "123"
        given[key] = typed(settings, keys, key, text if string else value, arg)
    if given and RANK0:
        print('settings overridden: ' + ' '.join(f'{k}={shown(v)}' for k, v in given.items()))
    settings.update(given)
    return given

def typed(settings, keys, key, value, source):  # an existing setting's value, of its type
    if key not in keys:
        guess = ''.join(f"did you mean {k}? " for k in difflib.get_close_matches(key, keys, n=1))
        die(f"unknown setting {key!r} (from {source}); {guess}settings are: {', '.join(keys)}")
    default = settings[key]
    value = float(value) if type(default) is float and type(value) is int else value
    if default is not None and value is not None and type(value) is not type(default):
        die(f"{key} must be {type(default).__name__}, got {value!r} (from {source}); "
            f"e.g. --{key}={shown(default)}")
    return os.path.expanduser(value) if isinstance(value, str) else value

def shown(value):  # a value as typed after --key=
    return value if isinstance(value, str) and value.split() == [value] else repr(value)

def check(settings, table):
    """Die at the first setting its rule refuses: a tuple of the values allowed, or an interval like
    '[0, 1)', 'integer [1, inf)', '[0, learning_rate]' (another setting); ' or None': None too."""
    for key, rule in table.items():
        value, none_ok = settings[key], isinstance(rule, str) and rule.endswith(' or None')
        if isinstance(rule, tuple) and value not in rule:
            die(f"{key}={shown(value)} is not one of {', '.join(map(shown, rule))}; pass one")
        if isinstance(rule, tuple) or value is None and none_ok:
            continue
        interval = re.sub(r'\w+', lambda m: f'{m[0]}={settings[m[0]]}' if m[0] in settings else
                          m[0], rule.removesuffix(' or None').removeprefix('integer '))
        integer = rule.startswith('integer ')
        lo, hi = (float(bound.split('=')[-1]) for bound in interval[1:-1].split(','))
        number = type(value) is int or type(value) is float and not integer
        if not (number and (lo <= value if interval[0] == '[' else lo < value) and
                (value <= hi if interval[-1] == ']' else value < hi)):
            die(f"{key}={shown(value)} is out of range; pass --{key}=<"
                f"{'an integer' if integer else 'a number'} in {interval}{' or None' * none_ok}>")
