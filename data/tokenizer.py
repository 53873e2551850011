"""
A prepared dataset's files, both ways: the prepare scripts write them through written(), and the
scripts that turn text into ids and back (sample.py, analyze.py, downstream.py, the tutorial) read
its tokenizer with load_tokenizer(). `from data.tokenizer import ...`, from the repository's root.
"""
import itertools
import json
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written(out_dir, *names):
    """Files out_dir/<name> to write: each goes to <name>.tmp, all renamed once all are whole, so
    a full disk or Ctrl-C leaves what was there before, never a truncated train.bin that looks
    prepared. An error writing them ends the script with one line."""
    paths, files = [os.path.join(out_dir, name) for name in names], []
    try:
        os.makedirs(out_dir, exist_ok=True)
        files += [open(f'{path}.tmp', 'wb') for path in paths]
        yield files
        for file, path in zip(files, paths):
            file.close()
            os.replace(f'{path}.tmp', path)
    except OSError as e:
        reason = "a file, not a folder" if os.path.isfile(out_dir) else e.strerror or e
        raise SystemExit(f"error: cannot write into --out_dir {out_dir} ({reason}); pass a folder "
                         "you can write") from None
    finally:
        for file, path in zip(files, paths):
            file.close()
            if os.path.exists(f'{path}.tmp'):
                os.remove(f'{path}.tmp')


def load_tokenizer(data_dir, ckpt, vocab_size):
    """(encode: text -> ids, decode: ids -> text) of the checkpoint's dataset, from
    data_dir/<dataset>/meta.json: a table of token texts ('itos': characters, or the hops task's
    multi-character tokens, matched longest first), GPT-2 BPE ('encoding': 'gpt2') or Pythia's
    GPT-NeoX BPE ('encoding': 'neox', the file meta['tokenizer_json']). vocab_size is the model's: a
    larger vocabulary (or a table of another size) is another dataset's. Padding ids decode as
    '\ufffd'. A missing or mismatched vocabulary, or text a table cannot encode: ValueError."""
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
        first_line = (str(e).strip().splitlines() or [''])[0]
        raise ValueError(f"cannot load the tokenizer of {path} ({type(e).__name__}: {first_line}); "
                         "install it or prepare the data again") from None
    if n_vocab > vocab_size or ('itos' in meta and n_vocab != vocab_size):  # ids without a row
        raise ValueError(f"{path} holds {n_vocab} tokens but the model has {vocab_size}: the "
                         "checkpoint was trained on another vocabulary; pass the --data_dir it was "
                         "trained with, or prepare its dataset again")

    def decode(ids):  # runs of real ids decode together (a BPE character spans tokens)
        runs = itertools.groupby(ids, key=lambda i: i < n_vocab)
        return ''.join(decode_known(list(run)) if real else '\ufffd' * len(list(run))
                       for real, run in runs)
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
