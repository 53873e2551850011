"""
The toy dataset: a character-level corpus in which every character has a known difficulty class, so we
can see whether the model ponders longer where pondering helps. No download: a seeded generator.

Each line is one task, announced by a tag:
    P:abcabcabcabcabca      pattern: a period of 2-4 distinct letters repeated to a fixed width
    C:qwhzkbe|qwhzkbe       copy: random letters, a separator, the same letters again
    A:57+486=345            add: 57+486=543 with the sum written least-significant digit first,
                            so each answer digit needs only the two operand digits and the last carry
    N:xkqjwpeuvz            noise: random letters

label[j] is the class of predicting character j from the characters before it:
    trivial  - fixed by the format: ':' after a tag, a pattern once its period is known, a forced newline
    copy     - equal to an earlier character the model has to find: the second copy
    computed - a function of earlier characters the model has to compute: the answer digits
    noise    - not determined by what precedes it: random letters and digits, where a random-length field
               ends, the next line's tag
Writes train.bin, val.bin (uint16 token ids), val_class.bin (uint8, one class id per val token), meta.json.
"""
import argparse
import json
import os
import random
import string

import numpy as np

TRIVIAL, COPY, COMPUTED, NOISE = range(4)
CLASSES = ["trivial", "copy", "computed", "noise"]
LETTERS = string.ascii_lowercase
# the vocabulary is fixed, not read off the data, so every seed and split shares the same ids
CHARS = sorted(set("\n:|+=PCAN" + string.digits + LETTERS))

PATTERN_WIDTH = 16         # letters after "P:"; fixed, so the newline is forced
MAX_PERIOD = 4             # periods have 2..MAX_PERIOD distinct letters
COPY_LEN = (5, 10)         # min, max length of the string to copy
NOISE_LEN = (6, 16)        # min, max length of a noise line
MAX_DIGITS = 3             # operands have 1..MAX_DIGITS digits
# line-type mix, chosen so each class is >= ~10% of the characters (about 27% trivial, 14% copy,
# 12% computed, 47% noise): add lines are short but hold all the computed characters, so they come most
# often; noise lines are rare because every other line type already has plenty of noise
LINE_TYPES = "PCAN"
LINE_WEIGHTS = [0.2, 0.25, 0.5, 0.05]

# -----------------------------------------------------------------------------
# one function per line type; each returns the line's text and one class per character

def pattern_line(rng):
    period = rng.sample(LETTERS, rng.randint(2, MAX_PERIOD))  # distinct letters: see below
    L = len(period)
    body = "".join(period[j % L] for j in range(PATTERN_WIDTH))
    # With distinct letters the period shows itself at its first repeat, body[L] == body[0]. Until then any
    # letter could be new or the repeat, so body[0..L] are noise -- except body[4] after 4 new letters,
    # which must be the repeat because no period is longer.
    labels = [NOISE if j < L or (j == L < MAX_PERIOD) else TRIVIAL for j in range(PATTERN_WIDTH)]
    return "P:" + body + "\n", [NOISE, TRIVIAL] + labels + [TRIVIAL]


def copy_line(rng):
    s = "".join(rng.choices(LETTERS, k=rng.randint(*COPY_LEN)))
    # the separator ends a random-length string: unpredictable, unless the string is at its maximum length
    sep = TRIVIAL if len(s) == COPY_LEN[1] else NOISE
    # the newline after the second copy is known only by lining the copy up with the first, so it is copy too
    labels = [NOISE, TRIVIAL] + [NOISE] * len(s) + [sep] + [COPY] * (len(s) + 1)
    return "C:" + s + "|" + s + "\n", labels


def number(rng):
    # a uniform number of digits (not a uniform number), so short operands are common too
    n = rng.randint(1, MAX_DIGITS)
    return rng.randint(0 if n == 1 else 10 ** (n - 1), 10 ** n - 1)


def number_labels(x):
    # the digits are random; the '+' or '=' after them is forced only when no further digit can follow:
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
    end = TRIVIAL if len(s) == NOISE_LEN[1] else NOISE  # the newline is forced only at the maximum length
    return "N:" + s + "\n", [NOISE, TRIVIAL] + [NOISE] * len(s) + [end]


MAKE_LINE = {"P": pattern_line, "C": copy_line, "A": add_line, "N": noise_line}

# -----------------------------------------------------------------------------

def generate(rng, n_chars):
    """Whole lines until there are at least n_chars characters; returns (text, labels)."""
    texts, labels, n = [], [], 0
    while n < n_chars:
        # the tag, the first character of every line, is a random choice: labelled noise by each line function
        kind = rng.choices(LINE_TYPES, weights=LINE_WEIGHTS)[0]
        text, lab = MAKE_LINE[kind](rng)
        assert len(text) == len(lab)
        texts.append(text)
        labels.extend(lab)
        n += len(text)
    return "".join(texts), labels


def prepare(out_dir, seed=1337, train_chars=1_000_000, val_chars=100_000):
    rng = random.Random(seed)  # one stream: train first, then val, so the two never share lines by design
    train_text, _ = generate(rng, train_chars)
    val_text, val_labels = generate(rng, val_chars)
    stoi = {ch: i for i, ch in enumerate(CHARS)}
    os.makedirs(out_dir, exist_ok=True)
    np.array([stoi[c] for c in train_text], dtype=np.uint16).tofile(os.path.join(out_dir, "train.bin"))
    np.array([stoi[c] for c in val_text], dtype=np.uint16).tofile(os.path.join(out_dir, "val.bin"))
    np.array(val_labels, dtype=np.uint8).tofile(os.path.join(out_dir, "val_class.bin"))
    meta = {
        "vocab_size": len(CHARS),
        "itos": CHARS,
        "stoi": stoi,
        "classes": CLASSES,  # val_class.bin holds indices into this list
        "seed": seed,
        "train_chars": len(train_text),
        "val_chars": len(val_text),
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta, val_labels


def main(argv=None):
    parser = argparse.ArgumentParser(description="generate the toy difficulty-labelled dataset")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--train_chars", type=int, default=1_000_000)
    parser.add_argument("--val_chars", type=int, default=100_000)
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args(argv)
    if args.train_chars < 1 or args.val_chars < 1:
        raise SystemExit("error: --train_chars and --val_chars must be positive; pass e.g. --val_chars 100000")
    try:
        meta, val_labels = prepare(args.out_dir, args.seed, args.train_chars, args.val_chars)
    except OSError as e:  # --out_dir a file, read-only, a full disk
        reason = 'a file, not a folder' if os.path.isfile(args.out_dir) else e.strerror
        raise SystemExit(f"error: cannot write into --out_dir {args.out_dir} ({reason}); pass a folder you can write")
    counts = np.bincount(val_labels, minlength=len(CLASSES)) / len(val_labels)
    print(f"vocab size {meta['vocab_size']}, train {meta['train_chars']:,} chars, val {meta['val_chars']:,} chars")
    print("val classes: " + ", ".join(f"{c} {p:.1%}" for c, p in zip(CLASSES, counts)))
    print(f"wrote train.bin, val.bin, val_class.bin, meta.json to {args.out_dir}")


if __name__ == "__main__":
    main()
