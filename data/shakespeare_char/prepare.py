"""
Tiny Shakespeare (1.1M characters) at the character level, as in char-rnn and nanoGPT.
Downloads input.txt next to this script, or reads --input PATH. Splits 90/10 and writes train.bin and
val.bin (uint16 token ids) and meta.json (the vocabulary, as JSON: no pickle to trust).
"""
import argparse
import json
import os
import urllib.request

import numpy as np

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
HERE = os.path.dirname(os.path.abspath(__file__))


def download(path):
    if os.path.exists(path):  # downloaded by an earlier run
        return
    try:
        with urllib.request.urlopen(URL, timeout=60) as r:
            data = r.read()
    except OSError as e:  # URLError, timeouts, refused connections: all mean we are offline or blocked
        reason = getattr(e, "reason", e)
        raise SystemExit(f"error: could not download {URL} ({reason}); "
                         "get input.txt another way and pass --input PATH")
    with open(path, "wb") as f:  # only after the whole file arrived, so a failed download leaves nothing behind
        f.write(data)


def prepare(out_dir, input_path=None):
    os.makedirs(out_dir, exist_ok=True)
    if input_path is None:
        input_path = os.path.join(out_dir, "input.txt")
        download(input_path)
    if not os.path.isfile(input_path):
        raise SystemExit(f"error: {input_path} is not a file; pass --input with a text file")
    try:
        with open(input_path, encoding="utf-8", newline="") as f:  # newline="": keep "\r\n" as it is
            text = f.read()
    except UnicodeDecodeError as e:
        raise SystemExit(f"error: {input_path} is not UTF-8 ({e.reason} at byte {e.start}); pass UTF-8 text")
    if not text:
        raise SystemExit(f"error: {input_path} is empty; pass --input with a non-empty text file")

    chars = sorted(set(text))
    if len(chars) > 65536:  # ids are stored as uint16
        raise SystemExit(f"error: {input_path} has {len(chars):,} distinct characters, too many for uint16 ids; "
                         "pass a smaller text")
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = int(0.9 * len(text))  # a plain cut, not a shuffle: val is the end of the text, unseen in training
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    ids[:n].tofile(os.path.join(out_dir, "train.bin"))
    ids[n:].tofile(os.path.join(out_dir, "val.bin"))
    meta = {"vocab_size": len(chars), "itos": chars, "stoi": stoi}
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{len(text):,} characters, vocab size {len(chars)}: train {n:,} tokens, val {len(text) - n:,} tokens")
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description="prepare Tiny Shakespeare at the character level")
    parser.add_argument("--input", default=None, help="a local text file instead of downloading")
    parser.add_argument("--out_dir", default=HERE)
    args = parser.parse_args(argv)
    try:
        prepare(args.out_dir, args.input)
    except OSError as e:  # --out_dir a file, read-only, a full disk; --input a folder
        raise SystemExit(f"error: {e.strerror}: {e.filename}; pass an --input text file and an --out_dir folder you "
                         "can write")


if __name__ == "__main__":
    main()
