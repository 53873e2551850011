"""
The depth task: pointer chasing, where every answer needs a known number of sequential lookups (hops).
No download: a seeded generator. Each line lists ten bindings, then asks questions about them:

    a>j b>f c>3 d>e e>c f>5 g>7 h>i i>b j>2 | a=2 g=7 h=5 d=3 i: b= c:3

`a>j` says a points to j; a digit ends a chain. The keys form four chains of 4, 3, 2 and 1 hops, each ending
in its own digit (d, e, c, 3 is three hops). ` a=` asks where a's chain ends: 2 (a, j, 2: two hops); it is
asked once for the start of each chain. ` i:` asks only what i points to: b, written as b's own question
` b=`, so that the token a model predicts after one hop is the very token that asks for the next one.

A binding like `a>j ` is ONE token, so that one attention step can find it by its key; with single characters a
lookup needs an induction circuit, which small models did not form in minutes on a CPU (docs/results.md).
label[j] is what predicting token j takes: hop1..hop4 for the end of a chain k hops away, look for a one-hop
answer, other for everything else (bindings, questions, layout). Writes train.bin, val.bin (uint16 token ids),
val_class.bin (uint8 class ids of the val tokens) and meta.json, whose itos holds each token's text.
"""
import argparse
import json
import os
import random

import numpy as np

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
    for key, hops, end in rng.sample(starts, len(starts)):  # where each chain ends, in a random order
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
    rng = random.Random(seed)  # one stream: train first, then val
    stoi = {t: i for i, t in enumerate(ITOS)}
    os.makedirs(out_dir, exist_ok=True)
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        tokens, labels = generate(rng, n)
        np.array([stoi[t] for t in tokens], dtype=np.uint16).tofile(os.path.join(out_dir, f"{split}.bin"))
        if split == "val":
            np.array(labels, dtype=np.uint8).tofile(os.path.join(out_dir, "val_class.bin"))
    meta = dict(vocab_size=len(ITOS), itos=ITOS, stoi=stoi, classes=CLASSES, seed=seed)
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta, labels


def main(argv=None):
    parser = argparse.ArgumentParser(description="generate the pointer-chasing depth task")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--train_tokens", type=int, default=1_000_000)
    parser.add_argument("--val_tokens", type=int, default=100_000)
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args(argv)
    if args.train_tokens < 1 or args.val_tokens < 1:
        raise SystemExit("error: --train_tokens and --val_tokens must be positive; pass e.g. --val_tokens 100000")
    try:
        meta, labels = prepare(args.out_dir, args.seed, args.train_tokens, args.val_tokens)
    except OSError as e:  # --out_dir a file, read-only, a full disk
        reason = 'a file, not a folder' if os.path.isfile(args.out_dir) else e.strerror
        raise SystemExit(f"error: cannot write into --out_dir {args.out_dir} ({reason}); pass a folder you can write")
    shares = np.bincount(labels, minlength=len(CLASSES)) / len(labels)
    print(f"vocab size {meta['vocab_size']}; val classes: " + ", ".join(f"{c} {p:.1%}" for c, p in zip(CLASSES, shares)))
    print(f"wrote train.bin, val.bin, val_class.bin, meta.json to {args.out_dir}")


if __name__ == "__main__":
    main()
