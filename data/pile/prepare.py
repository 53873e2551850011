"""
A slice of the Pile (https://pile.eleuther.ai), tokenized with GPT-2's BPE (tiktoken "gpt2"), for training
on real text. Reads Pile-format JSON lines ({"text": ..., "meta": ...}), plain .jsonl or zstandard-compressed
.jsonl.zst, streamed from a URL (default: the first shard of the public uncopyrighted Pile; only the part we
use is downloaded) or read from a local --input, and stops at --max_tokens.
Writes train.bin and val.bin (uint16 token ids, every document followed by the end-of-text token) and meta.json.
"""
import argparse
import io
import json
import os
import urllib.request

import numpy as np
import tiktoken
from tqdm import tqdm

URL = "https://huggingface.co/datasets/monology/pile-uncopyrighted/resolve/main/train/00.jsonl.zst"
HERE = os.path.dirname(os.path.abspath(__file__))
# The model's vocab_size: GPT-2's 50257 tokens padded up to a multiple of 64, as nanoGPT does, because
# matmuls with a round output dimension run faster; ids 50257..50303 never occur in the data.
VOCAB_SIZE = 50304


def open_lines(source):
    """The text lines of a .jsonl or .jsonl.zst, read from a local path or streamed from a URL."""
    compressed = source.split("?")[0].endswith(".zst")
    if compressed:
        try:
            import zstandard  # imported only here: plain .jsonl needs no extra package
        except ImportError:
            raise SystemExit("error: reading .zst files needs the zstandard package; pip install zstandard")
    if source.startswith(("http://", "https://")):
        try:
            raw = urllib.request.urlopen(source, timeout=60)  # a stream: we read only as far as --max_tokens
        except OSError as e:
            reason = getattr(e, "reason", e)
            raise SystemExit(f"error: could not open {source} ({reason}); "
                             "check the connection or pass --input FILE")
    elif os.path.isfile(source):
        raw = open(source, "rb")
    else:
        raise SystemExit(f"error: {source} does not exist; pass --input with a .jsonl or .jsonl.zst file or URL")
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


def tokenize(source, files, max_tokens, val_fraction):
    """Stream documents from source into files["train"] / files["val"]; returns (tokens per split, docs, bad)."""
    enc = tiktoken.get_encoding("gpt2")
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
            # encode_ordinary: a literal "<|endoftext|>" in a document is text, not our separator
            ids = (enc.encode_ordinary(text) + [enc.eot_token])[: max_tokens - total]
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


def prepare(out_dir, source=URL, max_tokens=10_000_000, val_fraction=0.005):
    os.makedirs(out_dir, exist_ok=True)
    paths = {split: os.path.join(out_dir, f"{split}.bin") for split in ("train", "val")}
    # write to .tmp files and rename at the end, so an interrupted run never leaves a bin that looks complete
    files = {split: open(path + ".tmp", "wb") for split, path in paths.items()}
    try:
        n_tokens, n_docs, n_bad = tokenize(source, files, max_tokens, val_fraction)
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
    finally:
        for split, path in paths.items():
            files[split].close()
            if os.path.exists(path + ".tmp"):
                os.remove(path + ".tmp")

    enc = tiktoken.get_encoding("gpt2")
    meta = {"vocab_size": VOCAB_SIZE, "encoding": "gpt2", "n_vocab": enc.n_vocab, "eot_token": enc.eot_token}
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{n_docs:,} documents: train {n_tokens['train']:,} tokens, val {n_tokens['val']:,} tokens")
    print(f"skipped {n_bad:,} bad lines (invalid JSON or no string \"text\")")
    return meta, n_tokens, n_bad


def main(argv=None):
    parser = argparse.ArgumentParser(description="tokenize a slice of the Pile with GPT-2's BPE")
    parser.add_argument("--input", default=URL, help="a .jsonl or .jsonl.zst, path or URL")
    parser.add_argument("--out_dir", default=HERE)
    parser.add_argument("--max_tokens", type=int, default=10_000_000)
    parser.add_argument("--val_fraction", type=float, default=0.005, help="share of tokens, in whole documents")
    args = parser.parse_args(argv)
    if args.max_tokens < 2:
        raise SystemExit("error: --max_tokens must be at least 2 (one document each for train and val)")
    if not 0 < args.val_fraction < 1:
        raise SystemExit("error: --val_fraction must be between 0 and 1, e.g. 0.005")
    prepare(args.out_dir, args.input, args.max_tokens, args.val_fraction)


if __name__ == "__main__":
    main()
