"""The toy dataset: character-level lines of four tasks, each character labelled with how hard it is
to predict, to see if the model ponders longer where pondering helps (readme.md: lines, labels). No
download: a seeded generator. Writes train.bin, val.bin, val_class.bin and meta.json."""
import os
import random
import string
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # the repository's root, for data.tokenizer
from data.tokenizer import generated_main, lines, save_dataset  # noqa: E402

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
LINE_WEIGHTS = [0.2, 0.25, 0.5, 0.05]  # P, C, A, N

# one function per line type; each returns the line's text and one class per character
def pattern_line(rng):
    period = rng.sample(LETTERS, rng.randint(2, MAX_PERIOD))  # distinct letters: see below
    L = len(period)
    body = "".join(period[j % L] for j in range(PATTERN_WIDTH))
    # Distinct letters show the period at its first repeat, body[L] == body[0]. Until then a letter
    # may be new, so body[0..L] are noise -- but a 5th letter must repeat: no period is longer.
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

def make_line(rng):  # the tag that starts a line is a random choice: labelled noise
    return rng.choices([pattern_line, copy_line, add_line, noise_line], LINE_WEIGHTS)[0](rng)

def prepare(out_dir, seed=1337, train_chars=1_000_000, val_chars=100_000):
    rng = random.Random(seed)  # one stream: train first, then val, so the two never share lines
    (train, _), (val, labels) = lines(rng, train_chars, make_line), lines(rng, val_chars, make_line)
    meta = save_dataset(out_dir, CHARS, train, val, labels, classes=CLASSES, seed=seed,
                        train_chars=len(train), val_chars=len(val))  # val_class: index in classes
    return meta, labels

def main(argv=None):
    generated_main(argv, prepare, "chars", "generate the toy difficulty-labelled dataset", HERE)

if __name__ == "__main__":
    main()
