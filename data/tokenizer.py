"""A prepared dataset's files, both ways: data/*/prepare.py write them (written, save_dataset;
lines, generated_main for datasets made on the spot); sample.py, analyze.py, downstream.py and the
tutorial read their tokenizer (load_tokenizer). From the root: `from data.tokenizer import ...`."""
import argparse
import itertools
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from configurator import die, first_line

@contextmanager
def written(out_dir, *names):
    """Files out_dir/<name> to write, via <name>.tmp, renamed once all are whole: a full disk or
    Ctrl-C leaves what was there, never a truncated train.bin that looks prepared. Error: 1 line."""
    paths, files = [os.path.join(out_dir, name) for name in names], []
    try:
        os.makedirs(out_dir, exist_ok=True)
        for path in paths:  # one by one: if one fails, those opened are removed below
            files.append(open(f'{path}.tmp', 'wb'))
        yield files
        for file, path in zip(files, paths):
            file.close()
            os.replace(f'{path}.tmp', path)
    except OSError as e:
        reason = "a file, not a folder" if os.path.isfile(out_dir) else e.strerror or e
        die(f"cannot write into --out_dir {out_dir} ({reason}); pass a folder you can write")
    finally:
        for file, path in zip(files, paths):
            file.close()
            Path(f'{path}.tmp').unlink(missing_ok=True)

def save_dataset(out_dir, itos, train, val, labels=None, **meta):
    """train.bin, val.bin (uint16 ids of itos's token texts), val_class.bin (uint8, a class per val
    token) if labels, and meta.json: the vocabulary as JSON (no pickle to trust), meta; returned."""
    stoi = {t: i for i, t in enumerate(itos)}
    meta = dict(vocab_size=len(itos), itos=itos, stoi=stoi, **meta)
    names = ['train.bin', 'val.bin'] + ['val_class.bin'] * (labels is not None) + ['meta.json']
    with written(out_dir, *names) as files:
        for tokens, file in zip((train, val), files):
            file.write(np.array([stoi[t] for t in tokens], dtype=np.uint16).tobytes())
        if labels is not None:
            files[2].write(np.array(labels, dtype=np.uint8).tobytes())
        files[-1].write(json.dumps(meta, indent=1).encode())
    return meta

def lines(rng, n_tokens, make_line):
    """(tokens, labels) of whole lines make_line(rng) (a line may be a str), n_tokens or more."""
    tokens, labels = [], []
    while len(tokens) < n_tokens:
        line, line_labels = make_line(rng)
        assert len(line) == len(line_labels)
        tokens += line
        labels += line_labels
    return tokens, labels

def generated_main(argv, prepare, unit, description, out_dir):
    """The command line of toy and hops: prepare(out_dir, seed, train_<unit>, val_<unit>)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--seed', type=int, default=1337)
    parser.add_argument(f'--train_{unit}', type=int, default=1_000_000)
    parser.add_argument(f'--val_{unit}', type=int, default=100_000)
    parser.add_argument('--out_dir', default=out_dir)
    args = vars(parser.parse_args(argv))
    if args[f'train_{unit}'] < 1 or args[f'val_{unit}'] < 1:
        die(f"--train_{unit} and --val_{unit} must be positive; pass e.g. --val_{unit} 100000")
    meta, labels = prepare(**args)
    shares = np.bincount(labels, minlength=len(meta['classes'])) / len(labels)
    print(f"vocab size {meta['vocab_size']}, train {meta[f'train_{unit}']:,} {unit}, val "
          f"{meta[f'val_{unit}']:,} {unit}")
    print("val classes: " + ", ".join(f"{c} {p:.1%}" for c, p in zip(meta['classes'], shares)))
    print(f"wrote train.bin, val.bin, val_class.bin, meta.json to {args['out_dir']}")

def load_tokenizer(data_dir, ckpt, vocab_size):
    """(encode, decode) of the checkpoint's dataset, from data_dir/<dataset>/meta.json: a table of
    token texts ('itos', matched longest first), or 'encoding': 'gpt2' or 'neox' (Pythia's BPE). A
    vocabulary over vocab_size (the model's), or a table of another size, is another dataset's."""
    path = os.path.join(data_dir, ckpt.get('dataset') or '', 'meta.json')
    if not os.path.isfile(path) and vocab_size < 50257:  # as nanoGPT: no meta.json means GPT-2 BPE
        raise ValueError(f"no {path}, the vocabulary of this checkpoint's dataset; prepare the "
                         "dataset or pass --data_dir")
    try:  # not JSON, not installed, offline without tiktoken's cache, no tokenizer.json: one line
        meta = json.loads(Path(path).read_text()) if os.path.isfile(path) else dict(encoding='gpt2')
        if 'itos' in meta:
            itos, stoi, longest = meta['itos'], meta['stoi'], max(map(len, meta['itos']))
            n_vocab, decode_known = len(itos), lambda ids: ''.join(itos[i] for i in ids)
            def encode(text):  # the longest token that matches, then on: as the data was cut
                if longest == 1 and (unknown := sorted(set(text) - set(stoi))):  # not a KeyError
                    raise ValueError(f"the prompt has characters not in the vocabulary: "
                                     f"{', '.join(map(repr, unknown))}; use only these: "
                                     f"{''.join(itos)!r}")
                ids, i = [], 0
                while i < len(text):
                    n = next((n for n in range(longest, 0, -1) if text[i:i + n] in stoi), 0)
                    if not n:
                        raise ValueError(f"no token of the vocabulary matches the prompt at "
                                         f"{text[i:i + 12]!r}; use only the tokens in {path}")
                    ids, i = ids + [stoi[text[i:i + n]]], i + n
                return ids
        elif meta.get('encoding') == 'gpt2':
            import tiktoken
            enc = tiktoken.get_encoding('gpt2')
            n_vocab, decode_known = enc.n_vocab, enc.decode
            encode = lambda text: enc.encode(text, allowed_special='all')
        else:  # 'neox'
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(meta['tokenizer_json'])
            n_vocab, encode, decode_known = (tok.get_vocab_size(), lambda s: tok.encode(s).ids,
                                             lambda ids: tok.decode(ids, skip_special_tokens=False))
    except Exception as e:  # requests' and the Rust library's errors have no common class
        raise ValueError(f"cannot load the tokenizer of {path} ({type(e).__name__}: "
                         f"{first_line(e)[:200]}); install it or prepare the data again") from None
    if n_vocab > vocab_size or ('itos' in meta and n_vocab != vocab_size):  # ids without a row
        raise ValueError(f"{path} holds {n_vocab} tokens but the model has {vocab_size}: the "
                         "checkpoint was trained on another vocabulary; pass the --data_dir it was "
                         "trained with, or prepare its dataset again")
    def decode(ids):  # runs of real ids decode together (a BPE character spans tokens), pads \ufffd
        return ''.join(decode_known(list(run)) if real else '\ufffd' * len(list(run))
                       for real, run in itertools.groupby(ids, key=lambda i: i < n_vocab))
    return encode, decode

def read_prompt(start):
    """The prompt a script was given: the text itself, or FILE:path for a UTF-8 file's."""
    try:
        prompt = Path(start[5:]).read_text('utf-8') if start.startswith('FILE:') else start
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, 'strerror', None) or 'not UTF-8'
        raise ValueError(f"cannot read the prompt {start} ({why}); pass a UTF-8 file") from None
    if not prompt:
        raise ValueError("the prompt is empty; pass --start=TEXT, or --start=FILE:path of a file "
                         "that is not empty")
    return prompt
