"""Documents for the toy tasks (the YAML files beside this one) for lm-evaluation-harness, made on
the spot: lines in the toy dataset's formats, with the right ending and three one character off."""
import random
import string

import datasets

def choices(right, alphabet, rng):
    """The right ending and three others, one character changed: a model must read every one."""
    wrong = set()
    while len(wrong) < 3:
        j = rng.randrange(len(right))
        wrong.add(right[:j] + rng.choice(alphabet.replace(right[j], '')) + right[j + 1:])
    endings = [right, *sorted(wrong)]
    rng.shuffle(endings)
    return dict(choices=endings, answer=endings.index(right))

def copy_docs(n=500, seed=0, **_):  # C:<letters>| then the same letters again
    rng, docs = random.Random(seed), []
    for _ in range(n):
        s = ''.join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 10)))
        docs.append(dict(prompt=f'C:{s}|', target=s, **choices(s, string.ascii_lowercase, rng)))
    return datasets.DatasetDict(test=datasets.Dataset.from_list(docs))

def add_docs(n=500, seed=0, **_):  # A:<a>+<b>= then the sum, least-significant digit first
    rng, docs = random.Random(seed), []
    for _ in range(n):
        a, b = (rng.randint(0, 10 ** rng.randint(1, 3) - 1) for _ in range(2))
        s = str(a + b)[::-1]
        docs.append(dict(prompt=f'A:{a}+{b}=', target=s, **choices(s, string.digits, rng)))
    return datasets.DatasetDict(test=datasets.Dataset.from_list(docs))
