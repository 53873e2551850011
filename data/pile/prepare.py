"""A slice of the Pile, tokenized for training on real text with GPT-2's BPE (tiktoken, the default)
or, to continue from Pythia, its GPT-NeoX BPE (--encoding=neox, Hugging Face's tokenizers). Reads
JSON lines (.jsonl[.zst]): the uncopyrighted Pile's first shard, streamed as far as --max_tokens, or
--input. Writes train.bin, val.bin (each document, then end-of-text) and meta.json."""
import argparse
import importlib
import io
import json
import os
import sys

import numpy as np
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's root, for data.tokenizer
from configurator import die, first_line  # noqa: E402
from data.tokenizer import written  # noqa: E402

SHARD = "hf://datasets/monology/pile-uncopyrighted/train/00.jsonl.zst"

def needs(package, what, instead=""):  # imported only where needed: the rest runs without it
    try:
        return importlib.import_module(package)
    except ImportError:
        die(f"{what} needs the {package} package; pip install {package}{instead}")

def make_encoder(encoding, tokenizer_json=None):
    """(encode: text -> ids, what meta.json records about the tokenizer) for 'gpt2' or 'neox'."""
    if encoding == "gpt2":
        import tiktoken
        try:  # tiktoken downloads GPT-2's files once, into its cache
            enc = tiktoken.get_encoding("gpt2")
        except Exception as e:  # offline: requests' errors are not OSErrors
            die(f"could not load GPT-2's BPE ({first_line(e)[:200]}); run once online (tiktoken "
                "caches it), or point TIKTOKEN_CACHE_DIR at a copy")
        # encode_ordinary: a literal "<|endoftext|>" in a document is text, not our separator
        return enc.encode_ordinary, dict(encoding="gpt2", n_vocab=enc.n_vocab,
                                         eot_token=enc.eot_token)
    Tokenizer = needs("tokenizers", "--encoding=neox").Tokenizer
    if not tokenizer_json:  # downloads go through huggingface_hub: its cache, HF_ENDPOINT, HF_TOKEN
        try:  # all Pythias share it; downloaded once into the Hugging Face cache
            hub = needs("huggingface_hub", "downloading", ", or pass --tokenizer_json FILE")
            tokenizer_json = hub.hf_hub_download("EleutherAI/pythia-70m", "tokenizer.json")
        except OSError as e:  # offline or unreachable with nothing cached: huggingface_hub's errors
            die(f"could not download Pythia's tokenizer.json ({first_line(e)[:200]}); check the "
                "connection and HF_ENDPOINT, or pass --tokenizer_json FILE")
    path = os.path.abspath(tokenizer_json)
    try:
        tok = Tokenizer.from_file(path)
    except Exception as e:  # missing, or malformed: the Rust library raises plain Exceptions
        why = f"is unreadable ({first_line(e)[:200]})" if os.path.isfile(path) else "does not exist"
        die(f"{path} {why}; pass --tokenizer_json with Pythia's tokenizer.json")
    eot, n_vocab = tok.token_to_id("<|endoftext|>"), tok.get_vocab_size()
    if eot is None or n_vocab > 2**16:
        die(f"{path} needs an <|endoftext|> token and at most 65536 tokens (ids are stored as "
            "uint16); pass Pythia's tokenizer.json")
    tok.encode_special_tokens = True  # as encode_ordinary: a literal "<|endoftext|>" is text
    return (lambda text: tok.encode(text, add_special_tokens=False).ids,
            dict(encoding="neox", n_vocab=n_vocab, eot_token=eot, tokenizer_json=path))

def open_lines(source):
    """The text lines of a .jsonl or .jsonl.zst, a local path or streamed from an hf:// path."""
    if source.startswith("hf://"):
        try:  # block_size=0: a stream, read only as far as --max_tokens
            hub = needs("huggingface_hub", "downloading", ", or pass --input FILE")
            raw = hub.HfFileSystem().open(source, "rb", block_size=0)
        except Exception as e:  # offline, unreachable (httpx's errors are not OSErrors), no file
            die(f"could not open {source} ({first_line(e)[:200]}); check the connection and "
                "HF_ENDPOINT, or pass --input FILE")
    elif os.path.isfile(source):
        raw = open(source, "rb")
    else:
        die(f"{source} does not exist; pass --input with a .jsonl or .jsonl.zst file or hf:// path")
    if source.endswith(".zst"):
        zstandard = needs("zstandard", "reading .zst files")
        # the Pile was compressed with large windows; allow them rather than fail on some shards
        raw = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(raw)
    # errors="replace": an invalid byte costs one character, not the document or the run
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")

def main(argv=None):
    parser = argparse.ArgumentParser(description="tokenize a slice of the Pile with a BPE")
    parser.add_argument("--input", default=SHARD, help=".jsonl or .jsonl.zst, local or hf://")
    parser.add_argument("--out_dir", default=HERE)
    parser.add_argument("--max_tokens", type=int, default=10_000_000)
    parser.add_argument("--val_fraction", type=float, default=0.005,
                        help="share of tokens, in whole documents")
    parser.add_argument("--encoding", choices=["gpt2", "neox"], default="gpt2",
                        help="gpt2: GPT-2's BPE (tiktoken); neox: Pythia's GPT-NeoX BPE")
    parser.add_argument("--tokenizer_json", help="neox: a local tokenizer.json (default: Pythia's)")
    args = parser.parse_args(argv)
    if args.max_tokens < 2:
        die("--max_tokens must be at least 2 (one for train, one for val)")
    if not 0 < args.val_fraction < 1:
        die("--val_fraction must be between 0 and 1, e.g. 0.005")
    if args.tokenizer_json and args.encoding != "neox":
        die("--tokenizer_json is a NeoX tokenizer file; add --encoding=neox")
    encode, tokenizer = make_encoder(args.encoding, args.tokenizer_json)  # before any file
    # vocab_size: the tokenizer's padded to a multiple of 64 (GPT-2's 50257 and NeoX's 50277 both
    # give 50304, Pythia's own), as nanoGPT: round matmuls run faster
    meta = {"vocab_size": -(-tokenizer["n_vocab"] // 64) * 64, **tokenizer}
    n_tokens, n_docs, n_bad = {"train": 0, "val": 0}, 0, 0
    with written(args.out_dir, "train.bin", "val.bin", "meta.json") as (train, val, meta_json), \
            open_lines(args.input) as lines, \
            tqdm(total=args.max_tokens, unit="tok", unit_scale=True, disable=None) as bar:
        try:  # disable=None: a progress bar on a terminal, none in logs and pipes
            for line in filter(str.strip, lines):  # blank lines, e.g. at the end, are no documents
                try:
                    text = json.loads(line)["text"] + ""  # + "": a TypeError unless a string
                except (ValueError, TypeError, KeyError):  # not a Pile record
                    n_bad += 1
                    continue
                total = n_tokens["train"] + n_tokens["val"]
                ids = (encode(text) + [tokenizer["eot_token"]])[:args.max_tokens - total]
                # To val whenever val holds under val_fraction of the tokens so far: val stays near
                # it, no document straddles the split, and 2+ documents give each split one.
                split = "val" if n_tokens["val"] < args.val_fraction * total else "train"
                (val if split == "val" else train).write(np.array(ids, dtype=np.uint16).tobytes())
                n_tokens[split], n_docs = n_tokens[split] + len(ids), n_docs + 1
                bar.update(len(ids))
                if total + len(ids) >= args.max_tokens:
                    break  # the last document may be cut short: exactly max_tokens in all
        except OSError as e:  # a dropped connection, an unreadable file, a full disk
            die(f"{first_line(e)[:200]}; check the connection, --input and --out_dir, then rerun")
        except Exception as e:  # a corrupt .zst: zstandard's ZstdError is not an OSError
            if type(e).__name__ != "ZstdError":
                raise
            die(f"{args.input} is not a readable zstandard file ({e}); download it again or pass "
                "another --input")
        if n_docs == 0 or n_tokens["val"] == 0:  # nothing is renamed: no files that look prepared
            die(f'no valid documents in {args.input} ({n_bad} bad lines); pass JSON lines with a '
                '"text" string field' if n_docs == 0 else f"only one document from {args.input} "
                "fit, so val is empty; pass more documents or a larger --max_tokens")
        meta_json.write(json.dumps(meta, indent=1).encode())
    print(f"{n_docs:,} documents: " + ", ".join(f"{k} {n:,} tokens" for k, n in n_tokens.items()))
    print(f"skipped {n_bad:,} bad lines (invalid JSON or no string \"text\")")

if __name__ == "__main__":
    main()
