"""
The toy dataset: character-level lines of four tasks, every character labelled with how hard it is
to predict, to see whether the model ponders longer where pondering helps (readme.md: the lines and
the labels). No download: a seeded generator. Writes train.bin, val.bin (uint16 token ids),
val_class.bin (uint8, one class per val token) and meta.json.
"""
import argparse
import json
import os
import random
import string
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
from data.tokenizer import written  # noqa: E402 (the repository root is on the path now)

TRIVIAL, COPY, COMPUTED, NOISE = range(4)
CLASSES = ["trivial", "copy", "computed", "noise"]
LETTERS = string.ascii_lowercase
# the vocabulary is fixed, not read off the data, so every seed and split shares the same ids
CHARS = sorted(set("\n:|+=PCAN" + string.digits + LETTERS))
PATTERN_WIDTH = 16  # letters after "P:"; fixed, so the newline is forced
MAX_PERIOD = 4  # periods have 2..MAX_PERIOD distinct letters
COPY_LEN = (5, 10)  # min, max length of the string to copy
NOISE_LEN = (6, 16)  # min, max length of a noise line
MAX_DIGITS = 3  # operands have 1..MAX_DIGITS digits
# the mix that makes each class >= ~10% of the characters: add lines are short but hold all the
# computed characters, so they come most often; every other line type has plenty of noise
LINE_TYPES, LINE_WEIGHTS = "PCAN", [0.2, 0.25, 0.5, 0.05]

# -----------------------------------------------------------------------------
# one function per line type; each returns the line's text and one class per character


def pattern_line(rng):
    period = rng.sample(LETTERS, rng.randint(2, MAX_PERIOD))  # distinct letters: see below
    L = len(period)
    body = "".join(period[j % L] for j in range(PATTERN_WIDTH))
    # With distinct letters the period shows itself at its first repeat, body[L] == body[0]. Until
    # then any letter could be new or the repeat, so body[0..L] are noise -- except body[4] after 4
    # new letters, which must be the repeat because no period is longer.
    labels = [NOISE if j < L or (j == L < MAX_PERIOD) else TRIVIAL for j in range(PATTERN_WIDTH)]
    return "P:" + body + "\n", [NOISE, TRIVIAL] + labels + [TRIVIAL]


def copy_line(rng):
    s = "".join(rng.choices(LETTERS, k=rng.randint(*COPY_LEN)))
    # the separator ends a random-length string: unpredictable, unless the string is at its maximum
    sep = TRIVIAL if len(s) == COPY_LEN[1] else NOISE
    # the newline after the second copy is known only by lining the copy up with the first: copy
    labels = [NOISE, TRIVIAL] + [NOISE] * len(s) + [sep] + [COPY] * (len(s) + 1)
    return "C:" + s + "|" + s + "\n", labels


def number(rng):  # a uniform number of digits (not a uniform number): short operands are common
    n = rng.randint(1, MAX_DIGITS)
    return rng.randint(0 if n == 1 else 10 ** (n - 1), 10 ** n - 1)


def number_labels(x):
    # the digits are random; the '+' or '=' after them is forced only when no digit can follow:
    # after MAX_DIGITS digits, or after a lone 0 (there are no leading zeros)
    end = TRIVIAL if len(str(x)) == MAX_DIGITS or x == 0 else NOISE
    return [NOISE] * len(str(x)) + [end]


def add_line(rng):
    a, b = number(rng), number(rng)
    answer = str(a + b)[::-1]
    # every answer digit, and where the answer stops (the newline), follow from a, b and the carries
    labels = [NOISE, TRIVIAL] + number_labels(a) + number_labels(b) + [COMPUTED] * (len(answer) + 1)
    return f"A:{a}+{b}={answer}\n", labels


def noise_line(rng):
    s = "".join(rng.choices(LETTERS, k=rng.randint(*NOISE_LEN)))
    end = TRIVIAL if len(s) == NOISE_LEN[1] else NOISE  # a newline forced only at max length
    return "N:" + s + "\n", [NOISE, TRIVIAL] + [NOISE] * len(s) + [end]


MAKE_LINE = {"P": pattern_line, "C": copy_line, "A": add_line, "N": noise_line}

# -----------------------------------------------------------------------------


def generate(rng, n_chars):
    """Whole lines until there are at least n_chars characters; returns (text, labels)."""
    texts, labels, n = [], [], 0
    while n < n_chars:  # the tag that starts a line is a random choice: labelled noise
        text, lab = MAKE_LINE[rng.choices(LINE_TYPES, weights=LINE_WEIGHTS)[0]](rng)
        assert len(text) == len(lab)
        texts.append(text)
        labels.extend(lab)
        n += len(text)
    return "".join(texts), labels


def prepare(out_dir, seed=1337, train_chars=1_000_000, val_chars=100_000):
    rng = random.Random(seed)  # one stream: train first, then val, so the two never share lines
    train_text, _ = generate(rng, train_chars)
    val_text, val_labels = generate(rng, val_chars)
    stoi = {ch: i for i, ch in enumerate(CHARS)}
    meta = dict(vocab_size=len(CHARS), itos=CHARS, stoi=stoi, classes=CLASSES,  # val_class: index
                seed=seed, train_chars=len(train_text), val_chars=len(val_text))
    names = "train.bin", "val.bin", "val_class.bin", "meta.json"
    with written(out_dir, *names) as (train, val, val_class, meta_json):
        train.write(np.array([stoi[c] for c in train_text], dtype=np.uint16).tobytes())
        val.write(np.array([stoi[c] for c in val_text], dtype=np.uint16).tobytes())
        val_class.write(np.array(val_labels, dtype=np.uint8).tobytes())
        meta_json.write(json.dumps(meta, indent=1).encode())
    return meta, val_labels


def main(argv=None):
    parser = argparse.ArgumentParser(description="generate the toy difficulty-labelled dataset")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--train_chars", type=int, default=1_000_000)
    parser.add_argument("--val_chars", type=int, default=100_000)
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args(argv)
    if args.train_chars < 1 or args.val_chars < 1:
        raise SystemExit("error: --train_chars and --val_chars must be positive; pass e.g. "
                         "--val_chars 100000")
    meta, val_labels = prepare(args.out_dir, args.seed, args.train_chars, args.val_chars)
    shares = np.bincount(val_labels, minlength=len(CLASSES)) / len(val_labels)
    print(f"vocab size {meta['vocab_size']}, train {meta['train_chars']:,} chars, val "
          f"{meta['val_chars']:,} chars")
    print("val classes: " + ", ".join(f"{c} {p:.1%}" for c, p in zip(CLASSES, shares)))
    print(f"wrote train.bin, val.bin, val_class.bin, meta.json to {args.out_dir}")


if __name__ == "__main__":
    main()
