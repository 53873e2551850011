"""
The depth task: pointer chasing, each answer a known number of sequential lookups (hops) away
(readme.md: a line, explained). No download: a seeded generator. A binding `a>j ` is ONE token, so
that one attention step finds it by its key (with characters a lookup needs an induction circuit,
which small models did not form in minutes on a CPU). label[j]: hop1..hop4 for a chain's end k hops
away, look for a one-hop answer, other for the rest. Writes train.bin, val.bin (uint16 token ids),
val_class.bin (uint8 class ids of the val tokens) and meta.json (itos: each token's text).
"""
import argparse
import json
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
from data.tokenizer import written  # noqa: E402 (the repository root is on the path now)

KEYS, DIGITS = "abcdefghij", "0123456789"
CHAINS = (4, 3, 2, 1)  # hops of the chains in each line: ten keys, four ending digits
LOOKS = 2  # one-hop questions a line
CLASSES = ["other", "hop1", "hop2", "hop3", "hop4", "look"]
OTHER, LOOK = 0, 5
# the vocabulary is fixed, not read off the data, so every seed and split shares the same ids
ITOS = (["\n", "|"] + [f" {k}=" for k in KEYS] + [f" {k}:" for k in KEYS] + list(DIGITS)
        + [f"{k}>{v} " for k in KEYS for v in KEYS + DIGITS if v != k])


def line(rng):
    """One line as (tokens, labels)."""
    keys, ends = rng.sample(KEYS, len(KEYS)), rng.sample(DIGITS, len(CHAINS))
    points_to, starts, used = {}, [], 0
    for hops, end in zip(CHAINS, ends):
        chain = keys[used:used + hops] + [end]  # hops keys, then the digit they lead to
        used += hops
        points_to.update(zip(chain, chain[1:]))
        starts.append((chain[0], hops, end))
    tokens = [f"{k}>{points_to[k]} " for k in sorted(points_to)] + ["|"]
    labels = [OTHER] * len(tokens)
    for key, hops, end in rng.sample(starts, len(starts)):  # where each chain ends, shuffled
        tokens += [f" {key}=", end]
        labels += [OTHER, hops]
    for key in rng.sample(sorted(points_to), LOOKS):  # what a key points to: one hop
        value = points_to[key]
        tokens += [f" {key}:", value if value in DIGITS else f" {value}="]
        labels += [OTHER, LOOK]
    return tokens + ["\n"], labels + [OTHER]


def generate(rng, n_tokens):
    """Whole lines until there are at least n_tokens tokens; returns (tokens, labels)."""
    tokens, labels = [], []
    while len(tokens) < n_tokens:
        t, lab = line(rng)
        tokens += t
        labels += lab
    return tokens, labels


def prepare(out_dir, seed=1337, train_tokens=1_000_000, val_tokens=100_000):
    rng, stoi = random.Random(seed), {t: i for i, t in enumerate(ITOS)}  # one stream: train, val
    (train, _), (val, labels) = generate(rng, train_tokens), generate(rng, val_tokens)
    meta = dict(vocab_size=len(ITOS), itos=ITOS, stoi=stoi, classes=CLASSES, seed=seed)
    names = "train.bin", "val.bin", "val_class.bin", "meta.json"
    with written(out_dir, *names) as files:
        for tokens, file in ((train, files[0]), (val, files[1])):
            file.write(np.array([stoi[t] for t in tokens], dtype=np.uint16).tobytes())
        files[2].write(np.array(labels, dtype=np.uint8).tobytes())
        files[3].write(json.dumps(meta, indent=1).encode())
    return meta, labels


def main(argv=None):
    parser = argparse.ArgumentParser(description="generate the pointer-chasing depth task")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--train_tokens", type=int, default=1_000_000)
    parser.add_argument("--val_tokens", type=int, default=100_000)
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args(argv)
    if args.train_tokens < 1 or args.val_tokens < 1:
        raise SystemExit("error: --train_tokens and --val_tokens must be positive; pass e.g. "
                         "--val_tokens 100000")
    meta, labels = prepare(args.out_dir, args.seed, args.train_tokens, args.val_tokens)
    shares = np.bincount(labels, minlength=len(CLASSES)) / len(labels)
    print(f"vocab size {meta['vocab_size']}; val classes: "
          + ", ".join(f"{c} {p:.1%}" for c, p in zip(CLASSES, shares)))
    print(f"wrote train.bin, val.bin, val_class.bin, meta.json to {args.out_dir}")


if __name__ == "__main__":
    main()
