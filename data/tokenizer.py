"""
The tokenizer of a prepared dataset, for the scripts that turn text into ids and back (sample.py, analyze.py,
downstream.py, the tutorial): `from data.tokenizer import load_tokenizer`, run from the repository's root.
"""
import itertools
import json
import os
from pathlib import Path


def load_tokenizer(data_dir, ckpt, vocab_size):
    """(encode: text -> ids, decode: ids -> text) of the checkpoint's dataset, from data_dir/<dataset>/meta.json:
    a character table ('itos', 'stoi'), GPT-2 BPE ('encoding': 'gpt2') or Pythia's GPT-NeoX BPE ('encoding':
    'neox', the file meta['tokenizer_json']). vocab_size is the model's: a vocabulary larger than it (or a
    character table of another size) belongs to another dataset. Padding ids past the tokenizer's vocabulary
    decode as '\ufffd'. Raises ValueError, in one line naming the fix, for a missing, unreadable or mismatched
    vocabulary; encode raises it for characters a character table lacks."""
    path = os.path.join(data_dir, ckpt.get('dataset') or '', 'meta.json')
    if not os.path.isfile(path) and vocab_size < 50257:  # as nanoGPT: a GPT-2-sized model without one: GPT-2 BPE
        raise ValueError(f"no {path}, the vocabulary of this checkpoint's dataset; prepare the dataset or pass "
                         "--data_dir")
    try:  # not JSON, not installed, offline without tiktoken's cached files, no tokenizer.json: one clear line
        meta = json.loads(Path(path).read_text()) if os.path.isfile(path) else dict(encoding='gpt2')
        if 'itos' in meta:
            itos, stoi = meta['itos'], meta['stoi']
            n_vocab, decode_known = len(itos), lambda ids: ''.join(itos[i] for i in ids)

            def encode(text):
                if unknown := sorted(set(text) - set(stoi)):  # a clear error, not a KeyError
                    raise ValueError(f"the prompt has characters not in the vocabulary: {', '.join(map(repr, unknown))}"
                                     f"; use only these: {''.join(itos)!r}")
                return [stoi[c] for c in text]
        elif meta.get('encoding') == 'gpt2':
            import tiktoken
            enc = tiktoken.get_encoding('gpt2')
            n_vocab, decode_known, encode = enc.n_vocab, enc.decode, lambda s: enc.encode(s, allowed_special='all')
        else:  # 'neox'
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(meta['tokenizer_json'])
            n_vocab, encode, decode_known = (tok.get_vocab_size(), lambda s: tok.encode(s).ids,
                                             lambda ids: tok.decode(ids, skip_special_tokens=False))
    except Exception as e:  # requests' and the Rust library's errors have no common class
        first_line = (str(e).strip().splitlines() or [''])[0]
        raise ValueError(f"cannot load the tokenizer of {path} ({type(e).__name__}: {first_line}); install it or "
                         "prepare the data again") from None
    if n_vocab > vocab_size or ('itos' in meta and n_vocab != vocab_size):  # ids the model has no row for
        raise ValueError(f"{path} holds {n_vocab} tokens but the model has {vocab_size}: the checkpoint was trained "
                         "on another vocabulary; pass the --data_dir it was trained with, or prepare its dataset again")

    def decode(ids):  # runs of real ids decode together (BPE characters span tokens); padding ids have no text
        runs = itertools.groupby(ids, key=lambda i: i < n_vocab)
        return ''.join(decode_known(list(run)) if real else '\ufffd' * len(list(run)) for real, run in runs)
    return encode, decode
