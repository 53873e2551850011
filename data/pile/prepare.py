"""
A slice of the Pile (https://pile.eleuther.ai), tokenized for training on real text: with GPT-2's BPE
(tiktoken "gpt2", the default) or, for continued pretraining from Pythia, with Pythia's own GPT-NeoX-20B BPE
(--encoding=neox, through Hugging Face's tokenizers package). Reads Pile-format JSON lines ({"text": ...,
"meta": ...}), plain .jsonl or zstandard-compressed .jsonl.zst, streamed from the Hugging Face Hub by
huggingface_hub (default: the first shard of the public uncopyrighted Pile; only the part we use is downloaded)
or read from a local --input, and stops at --max_tokens. Writes train.bin and val.bin (uint16 token ids, every
document followed by the end-of-text token) and meta.json.
"""
import argparse
import io
import json
import os

import numpy as np
from tqdm import tqdm

SHARD = "hf://datasets/monology/pile-uncopyrighted/train/00.jsonl.zst"
HERE = os.path.dirname(os.path.abspath(__file__))


def hub(instead):
    """huggingface_hub, which every download goes through: its cache, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE."""
    try:
        import huggingface_hub  # imported only here: local files need no extra package
    except ImportError:
        raise SystemExit(f"error: downloading needs the huggingface_hub package; pip install huggingface_hub, "
                         f"or pass {instead}")
    return huggingface_hub


def pythia_tokenizer():
    """Path of Pythia's tokenizer.json (all Pythias share it) in the Hugging Face cache, downloaded once."""
    try:
        return hub("--tokenizer_json FILE").hf_hub_download("EleutherAI/pythia-70m", "tokenizer.json")
    except OSError as e:  # offline or unreachable, with nothing cached: huggingface_hub's errors are OSErrors
        reason = (str(e).strip().splitlines() or [""])[0]
        raise SystemExit(f"error: could not download Pythia's tokenizer.json ({type(e).__name__}: {reason}); "
                         "check the connection and HF_ENDPOINT, or pass --tokenizer_json FILE")


def make_encoder(encoding, tokenizer_json=None):
    """(encode: text -> token ids, meta: what meta.json records about the tokenizer) for 'gpt2' or 'neox'."""
    if encoding == "gpt2":
        import tiktoken
        try:  # tiktoken downloads GPT-2's files once, into its cache
            enc = tiktoken.get_encoding("gpt2")
        except Exception as e:  # offline: requests' errors are not OSErrors
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            raise SystemExit(f"error: could not load GPT-2's BPE ({type(e).__name__}: {reason}); run once online "
                             "(tiktoken caches it), or point TIKTOKEN_CACHE_DIR at a cached copy")
        # encode_ordinary: a literal "<|endoftext|>" in a document is text, not our separator
        return enc.encode_ordinary, {"encoding": "gpt2", "n_vocab": enc.n_vocab, "eot_token": enc.eot_token}
    try:
        from tokenizers import Tokenizer  # imported only here: gpt2 needs no extra package
    except ImportError:
        raise SystemExit("error: --encoding=neox needs Hugging Face's tokenizers package; pip install tokenizers")
    path = os.path.abspath(tokenizer_json or pythia_tokenizer())
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path} does not exist; pass --tokenizer_json with Pythia's tokenizer.json")
    try:
        tok = Tokenizer.from_file(path)
    except Exception as e:  # the Rust library raises plain Exceptions for malformed files
        raise SystemExit(f"error: could not read {path} ({e}); pass --tokenizer_json with Pythia's tokenizer.json")
    eot, n_vocab = tok.token_to_id("<|endoftext|>"), tok.get_vocab_size()
    if eot is None or n_vocab > 2**16:
        raise SystemExit(f"error: {path} needs an <|endoftext|> token and at most 65536 tokens (ids are "
                         "stored as uint16); pass Pythia's tokenizer.json")
    tok.encode_special_tokens = True  # as encode_ordinary: a literal "<|endoftext|>" in a document is text
    encode = lambda text: tok.encode(text, add_special_tokens=False).ids
    return encode, {"encoding": "neox", "n_vocab": n_vocab, "eot_token": eot, "tokenizer_json": path}


def open_lines(source):
    """The text lines of a .jsonl or .jsonl.zst, read from a local path or streamed from an hf:// path."""
    compressed = source.endswith(".zst")
    if compressed:
        try:
            import zstandard  # imported only here: plain .jsonl needs no extra package
        except ImportError:
            raise SystemExit("error: reading .zst files needs the zstandard package; pip install zstandard")
    if source.startswith("hf://"):
        try:  # block_size=0: a stream, read only as far as --max_tokens
            raw = hub("--input FILE").HfFileSystem().open(source, "rb", block_size=0)
        except Exception as e:  # offline, unreachable (httpx's errors are not OSErrors), no such file
            reason = (str(e).strip().splitlines() or [""])[0]
            raise SystemExit(f"error: could not open {source} ({type(e).__name__}: {reason}); "
                             "check the connection and HF_ENDPOINT, or pass --input FILE")
    elif os.path.isfile(source):
        raw = open(source, "rb")
    else:
        raise SystemExit(f"error: {source} does not exist; pass --input with a .jsonl or .jsonl.zst file or hf:// path")
    if compressed:
        # the Pile was compressed with large windows; allow them rather than fail on some shards
        raw = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(raw)
    # errors="replace": an invalid byte costs one character, not the document or the run
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


def parse(line):
    """The document text of one JSON line, or None if the line is not a Pile record."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        return None
    text = doc.get("text") if isinstance(doc, dict) else None
    return text if isinstance(text, str) else None


def tokenize(source, files, encode, eot, max_tokens, val_fraction):
    """Stream documents from source into files["train"] / files["val"]; returns (tokens per split, docs, bad)."""
    n_tokens, n_docs, n_bad = {"train": 0, "val": 0}, 0, 0
    # disable=None: a bar on a terminal, none in logs and pipes
    with open_lines(source) as lines, tqdm(total=max_tokens, unit="tok", unit_scale=True, disable=None) as bar:
        for line in lines:
            if not line.strip():
                continue  # blank lines, e.g. at the end of a file, are not documents
            text = parse(line)
            if text is None:
                n_bad += 1
                continue
            total = n_tokens["train"] + n_tokens["val"]
            ids = (encode(text) + [eot])[: max_tokens - total]
            # A document goes to val whenever val holds less than val_fraction of the tokens so far: val stays
            # near val_fraction all along, whole documents never straddle the split, and with two or more
            # documents both splits are non-empty (the first trains, the second validates).
            split = "val" if n_tokens["val"] < val_fraction * total else "train"
            files[split].write(np.array(ids, dtype=np.uint16).tobytes())
            n_tokens[split] += len(ids)
            n_docs += 1
            bar.update(len(ids))
            if total + len(ids) >= max_tokens:
                break  # the last document may be cut short, so the total is exactly max_tokens
    return n_tokens, n_docs, n_bad


def prepare(out_dir, source=SHARD, max_tokens=10_000_000, val_fraction=0.005, encoding="gpt2", tokenizer_json=None):
    encode, tokenizer_meta = make_encoder(encoding, tokenizer_json)  # first: a bad tokenizer leaves no files
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:  # --out_dir a file
        reason = 'a file, not a folder' if os.path.isfile(out_dir) else e.strerror
        raise SystemExit(f"error: cannot make --out_dir {out_dir} ({reason}); pass a folder you can write")
    paths = {split: os.path.join(out_dir, f"{split}.bin") for split in ("train", "val")}
    # write to .tmp files and rename at the end, so an interrupted run never leaves a bin that looks complete
    files = {split: open(path + ".tmp", "wb") for split, path in paths.items()}
    try:
        n_tokens, n_docs, n_bad = tokenize(source, files, encode, tokenizer_meta["eot_token"], max_tokens,
                                           val_fraction)
        if n_docs == 0:
            raise SystemExit(f'error: no valid documents in {source} ({n_bad} bad lines); '
                             'pass JSON lines with a "text" string field')
        if n_tokens["val"] == 0:
            raise SystemExit(f"error: only one document from {source} fit, so val is empty; "
                             "pass more documents or a larger --max_tokens")
        for split, path in paths.items():
            files[split].close()
            os.replace(path + ".tmp", path)
    except OSError as e:  # a dropped connection, an unreadable file, a full disk
        raise SystemExit(f"error: {e}; check the connection, --input and --out_dir, then rerun")
    except Exception as e:  # a corrupt .zst: zstandard's ZstdError is not an OSError
        if type(e).__name__ != "ZstdError":
            raise
        raise SystemExit(f"error: {source} is not a readable zstandard file ({e}); download it again or pass "
                         "another --input")
    finally:
        for split, path in paths.items():
            files[split].close()
            if os.path.exists(path + ".tmp"):
                os.remove(path + ".tmp")

    # The model's vocab_size: the tokenizer's vocabulary padded up to a multiple of 64 (50257 for GPT-2 and 50277
    # for NeoX both give 50304, Pythia's own embedding size), as nanoGPT does, because matmuls with a round
    # output dimension run faster; the padding ids never occur in the data.
    meta = {"vocab_size": -(-tokenizer_meta["n_vocab"] // 64) * 64, **tokenizer_meta}
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{n_docs:,} documents: train {n_tokens['train']:,} tokens, val {n_tokens['val']:,} tokens")
    print(f"skipped {n_bad:,} bad lines (invalid JSON or no string \"text\")")
    return meta, n_tokens, n_bad


def main(argv=None):
    parser = argparse.ArgumentParser(description="tokenize a slice of the Pile with GPT-2's or Pythia's BPE")
    parser.add_argument("--input", default=SHARD, help="a .jsonl or .jsonl.zst, local or an hf:// path")
    parser.add_argument("--out_dir", default=HERE)
    parser.add_argument("--max_tokens", type=int, default=10_000_000)
    parser.add_argument("--val_fraction", type=float, default=0.005, help="share of tokens, in whole documents")
    parser.add_argument("--encoding", choices=["gpt2", "neox"], default="gpt2",
                        help="gpt2: GPT-2's BPE (tiktoken); neox: Pythia's GPT-NeoX BPE, to continue from Pythia")
    parser.add_argument("--tokenizer_json", help="neox: a local tokenizer.json (default: download Pythia's once)")
    args = parser.parse_args(argv)
    if args.max_tokens < 2:
        raise SystemExit("error: --max_tokens must be at least 2 (one document each for train and val)")
    if not 0 < args.val_fraction < 1:
        raise SystemExit("error: --val_fraction must be between 0 and 1, e.g. 0.005")
    if args.tokenizer_json and args.encoding != "neox":
        raise SystemExit("error: --tokenizer_json is a NeoX tokenizer file; add --encoding=neox")
    prepare(args.out_dir, args.input, args.max_tokens, args.val_fraction, args.encoding, args.tokenizer_json)


if __name__ == "__main__":
    main()
