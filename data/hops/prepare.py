"""The depth task: pointer chasing, each answer a known number of sequential lookups (hops) away
(readme.md: a line, explained, and its labels). No download: a seeded generator. A binding `a>j `
is ONE token, so that one attention step finds it by its key (why: docs/results.md, 9). Writes
train.bin, val.bin, val_class.bin (hop1..hop4, look or other for each val token) and meta.json."""
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's root, for data.tokenizer
from data.tokenizer import generated_main, lines, save_dataset  # noqa: E402

KEYS, DIGITS = "abcdefghij", "0123456789"
CHAINS = (4, 3, 2, 1)  # hops of the chains in each line: ten keys, four ending digits
LOOKS = 2  # one-hop questions a line
CLASSES = ["other", "hop1", "hop2", "hop3", "hop4", "look"]
OTHER, LOOK = 0, 5
# the vocabulary is fixed, not read off the data, so every seed and split shares the same ids
ITOS = (["\n", "|"] + [f" {k}=" for k in KEYS] + [f" {k}:" for k in KEYS] + list(DIGITS)
        + [f"{k}>{v} " for k in KEYS for v in KEYS + DIGITS if v != k])

def line(rng):  # (tokens, labels)
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

def prepare(out_dir, seed=1337, train_tokens=1_000_000, val_tokens=100_000):
    rng = random.Random(seed)  # one stream: train first, then val, so the two never share lines
    (train, _), (val, labels) = lines(rng, train_tokens, line), lines(rng, val_tokens, line)
    meta = save_dataset(out_dir, ITOS, train, val, labels, classes=CLASSES, seed=seed,
                        train_tokens=len(train), val_tokens=len(val))
    return meta, labels

def main(argv=None):
    generated_main(argv, prepare, "tokens", "generate the pointer-chasing depth task", HERE)

if __name__ == "__main__":
    main()
