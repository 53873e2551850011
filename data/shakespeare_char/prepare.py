"""Tiny Shakespeare (1.1M characters) at the character level, as in char-rnn and nanoGPT: downloads
input.txt beside this script, or reads --input PATH; splits 90/10: train.bin, val.bin, meta.json."""
import argparse
import os
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's root, for data.tokenizer
from configurator import die  # noqa: E402
from data.tokenizer import save_dataset, written  # noqa: E402

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"

parser = argparse.ArgumentParser(description="prepare Tiny Shakespeare at the character level")
parser.add_argument("--input", default=None, help="a local text file instead of downloading")
parser.add_argument("--out_dir", default=HERE)
args = parser.parse_args()
path = args.input or os.path.join(args.out_dir, "input.txt")
if not args.input and not os.path.exists(path):  # not downloaded by an earlier run
    try:
        with urllib.request.urlopen(URL, timeout=60) as r:
            data = r.read()
    except OSError as e:  # URLError, timeouts, refused connections: offline or blocked
        die(f"could not download {URL} ({getattr(e, 'reason', e)}); get input.txt another way and "
            "pass --input PATH")
    with written(args.out_dir, "input.txt") as (f,):  # whole or not at all
        f.write(data)
try:
    with open(path, encoding="utf-8", newline="") as f:  # newline="": keep "\r\n" as it is
        text = f.read()
except UnicodeDecodeError as e:
    die(f"{path} is not UTF-8 ({e.reason} at byte {e.start}); pass UTF-8 text")
except OSError as e:  # a folder, no such file
    die(f"{e.strerror}: {path}; pass --input with a text file")
chars = sorted(set(text))
if not text or len(chars) > 65536:  # ids are stored as uint16
    die(f"{path} is empty or has over 65536 distinct characters; pass --input with another text "
        "file")
n = int(0.9 * len(text))  # a plain cut, not a shuffle: val is the end of the text, never trained on
save_dataset(args.out_dir, chars, text[:n], text[n:])
print(f"{len(text):,} characters, vocab size {len(chars)}: train {n:,} tokens, val "
      f"{len(text) - n:,} tokens")
