"""Tests of the data/*/prepare.py scripts: small inputs in tmp_path, CPU only, a few seconds in all."""
import collections
import importlib.util
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# tiktoken downloads its BPE files on first use; offline (CI, our sandbox) a shared cache next to the clone
# has them
TIKTOKEN_CACHE = Path(__file__).resolve().parents[2] / "shared" / "tiktoken_cache"
if TIKTOKEN_CACHE.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))


def run(name, *args):
    """Run data/<name>/prepare.py as a user would; returns the CompletedProcess."""
    cmd = [sys.executable, str(ROOT / "data" / name / "prepare.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def run_here(monkeypatch, capsys, name, *args):
    """data/<name>/prepare.py ARGS in this process (runpy, as `python prepare.py ARGS`), for runs that succeed: no
    interpreter start-up, and tiktoken's BPE loads once. An error would fail the test. Returns its stdout."""
    script = str(ROOT / "data" / name / "prepare.py")
    monkeypatch.setattr(sys, "argv", [script, *map(str, args)])
    runpy.run_path(script, run_name="__main__")
    return capsys.readouterr().out


def load(name):
    """Import data/<name>/prepare.py as a module (data/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"prepare_{name}", ROOT / "data" / name / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_one_line_error(result, *words):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error"), result.stderr
    for word in words:
        assert word in lines[0]


# -----------------------------------------------------------------------------
# toy

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The default toy dataset, made through the command line: (val text, val classes, meta)."""
    out = tmp_path_factory.mktemp("toy")
    result = run("toy", "--out_dir", out)
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    val = np.fromfile(out / "val.bin", dtype=np.uint16)
    classes = np.fromfile(out / "val_class.bin", dtype=np.uint8)
    assert len(classes) == len(val) and len(np.fromfile(out / "train.bin", dtype=np.uint16)) >= 1_000_000
    return "".join(meta["itos"][i] for i in val), classes, meta


def test_toy_is_deterministic(tmp_path):
    prepare = load("toy").prepare
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        prepare(tmp_path / name, seed=seed, train_chars=5000, val_chars=1000)
    for f in ["train.bin", "val.bin", "val_class.bin", "meta.json"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    for f in ["train.bin", "val.bin"]:
        assert (tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes()


def test_a_file_that_cannot_be_opened_leaves_no_tmp_file(tmp_path, monkeypatch):
    """written() opens its .tmp files one by one: when the second cannot be opened (a full disk, too many open
    files), the first is closed and removed too, and the script ends with one line."""
    from data.tokenizer import written
    real_open, opened = open, []
    def open_but_the_second(path, *args, **kwargs):
        opened.append(path)
        if len(opened) == 2:
            raise OSError(28, "No space left on device")
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", open_but_the_second)
    with pytest.raises(SystemExit, match="No space left on device"):
        with written(str(tmp_path), "train.bin", "val.bin"):
            pass
    monkeypatch.undo()
    assert len(opened) == 2 and os.listdir(tmp_path) == []


@pytest.mark.parametrize("name,args", [("toy", ["--train_chars", 200_000]), ("hops", ["--train_tokens", 200_000])])
def test_a_full_disk_leaves_no_truncated_bin(tmp_path, name, args):
    """A disk that fills up while train.bin is written (here: a file-size limit of 100 kB, which a write past it
    hits as a full disk would): one line, and the folder holds what it held before, no half a train.bin, whose
    odd byte count or missing tokens would look prepared to train.py."""
    import resource
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "train.bin").write_bytes(b"\0\0" * 10)  # an earlier, whole dataset
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    result = subprocess.run([sys.executable, str(ROOT / "data" / name / "prepare.py"), "--out_dir",
                             str(tmp_path / "out"), *map(str, args)], capture_output=True, text=True,
                            preexec_fn=limit, timeout=120)
    assert_one_line_error(result, "File too large")
    assert os.listdir(tmp_path / "out") == ["train.bin"] and (tmp_path / "out" / "train.bin").stat().st_size == 20


def test_hops_labels_are_the_hops_a_pointer_chase_takes(tmp_path):
    """Every answer of the depth task, chased through its line's bindings: the label is the number of hops to a
    digit (a one-hop question is `look`), the answer token is where the chase ends, and the same seed makes the
    same files."""
    prepare = load("hops").prepare
    meta, _ = prepare(tmp_path / "a", seed=3, train_tokens=2000, val_tokens=3000)
    prepare(tmp_path / "b", seed=3, train_tokens=2000, val_tokens=3000)
    for f in ["train.bin", "val.bin", "val_class.bin", "meta.json"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    itos, classes = meta["itos"], meta["classes"]
    tokens = [itos[i] for i in np.fromfile(tmp_path / "a" / "val.bin", dtype=np.uint16)]
    labels = np.fromfile(tmp_path / "a" / "val_class.bin", dtype=np.uint8)
    seen = collections.Counter()
    points_to = {}
    for j, (token, label) in enumerate(zip(tokens, labels)):
        if token == "\n":
            points_to = {}
        elif ">" in token:
            points_to[token[0]] = token[2]
        elif classes[label].startswith("hop"):
            question, hops, at = tokens[j - 1], 0, tokens[j - 1][1]
            while not at.isdigit():
                at, hops = points_to[at], hops + 1
            assert question.endswith("=") and token == at and classes[label] == f"hop{hops}"
            seen[hops] += 1
        elif classes[label] == "look":
            value = points_to[tokens[j - 1][1]]
            assert tokens[j - 1].endswith(":") and token == (value if value.isdigit() else f" {value}=")
            seen["look"] += 1
    assert seen.keys() == {1, 2, 3, 4, "look"} and len(set(seen[k] for k in (1, 2, 3, 4))) == 1  # one each a line


def test_toy_decodes_to_well_formed_lines(toy):
    text, _, meta = toy
    assert meta["vocab_size"] == len(meta["itos"]) == len(meta["stoi"])
    assert meta["classes"] == ["trivial", "copy", "computed", "noise"]
    assert all(meta["stoi"][ch] == i for i, ch in enumerate(meta["itos"]))
    assert text.endswith("\n")
    line_format = re.compile(r"P:[a-z]{16}|C:([a-z]+)\|\1|A:\d{1,3}\+\d{1,3}=\d{1,4}|N:[a-z]+")
    lines = text[:-1].split("\n")
    assert all(line_format.fullmatch(line) for line in lines)
    assert max(len(line) for line in lines) < 40  # several lines fit in a 64-128 token context
    assert {line[0] for line in lines} == set("PCAN")


def test_toy_every_class_is_common(toy):
    _, classes, _ = toy
    fractions = np.bincount(classes, minlength=4) / len(classes)
    assert len(fractions) == 4 and all(fractions >= 0.1), fractions


def lines_with_classes(text, classes):
    """(line, classes of its characters and of its newline) for every line of text."""
    start = 0
    for line in text[:-1].split("\n"):
        yield line, classes[start:start + len(line) + 1]
        start += len(line) + 1


def test_toy_labels_hand_checked(toy):
    TRIVIAL, COPY, COMPUTED, NOISE = range(4)
    text, classes, _ = toy
    for line, c in lines_with_classes(text, classes):
        assert c[0] == NOISE and c[1] == TRIVIAL  # the tag is a random choice; ':' always follows it
        body = line[2:]
        if line[0] == "A":  # the answer is the sum, least-significant digit first, and labelled computed
            a, b, answer = re.fullmatch(r"(\d+)\+(\d+)=(\d+)", body).groups()
            assert answer[::-1] == str(int(a) + int(b))
            assert all(c[-len(answer) - 1:] == COMPUTED)
            assert all(c[2:2 + len(a)] == NOISE)  # operand digits are random
        elif line[0] == "C":  # the second copy equals the first and is labelled copy
            first, second = body.split("|")
            assert first == second
            assert all(c[2:2 + len(first)] == NOISE) and all(c[-len(second) - 1:] == COPY)
        elif line[0] == "P":  # a trivial letter is the letter one period back
            period = body.index(body[0], 1)  # distinct letters: the first repeat ends the period
            assert all(c[2:2 + period] == NOISE) and c[-1] == TRIVIAL
            for j in np.flatnonzero(c[2:-1] == TRIVIAL):
                assert j >= period and body[j] == body[j - period]
        else:
            assert all(c[2:-1] == NOISE)


def test_toy_labels_are_honest(toy):
    # Lines are independent, so what matters before a character is its line so far. A label must be a function
    # of that prefix, and wherever it is not noise, every occurrence of the prefix must be followed by the
    # same character.
    text, classes, _ = toy
    seen = {}  # line prefix -> (class, set of next characters)
    for line, c in lines_with_classes(text, classes):
        for j, ch in enumerate(line + "\n"):
            label, nexts = seen.setdefault(line[:j], (c[j], set()))
            assert label == c[j], (line[:j], label, c[j])
            nexts.add(ch)
    assert all(len(nexts) == 1 for label, nexts in seen.values() if label != 3)
    assert sum(len(nexts) > 1 for label, nexts in seen.values()) > 1000  # the check had something to bite on


# -----------------------------------------------------------------------------
# shakespeare_char

def test_shakespeare_round_trip(tmp_path, monkeypatch, capsys):
    # non-ASCII characters and a "\r\n" must come back exactly
    text = "First Citizen:\nBefore we proceed any further, hear me.\r\n\nÄll:\nSpeak, speak. — ’tis so\n" * 7
    (tmp_path / "in.txt").write_bytes(text.encode("utf-8"))
    run_here(monkeypatch, capsys, "shakespeare_char", "--input", tmp_path / "in.txt", "--out_dir", tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    train = np.fromfile(tmp_path / "out" / "train.bin", dtype=np.uint16)
    val = np.fromfile(tmp_path / "out" / "val.bin", dtype=np.uint16)
    decode = lambda ids: "".join(meta["itos"][i] for i in ids)
    assert decode(train) + decode(val) == text
    assert len(train) == int(0.9 * len(text))
    assert meta["vocab_size"] == len(set(text))


def test_shakespeare_empty_input_is_a_one_line_error(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    result = run("shakespeare_char", "--input", tmp_path / "empty.txt", "--out_dir", tmp_path / "out")
    assert_one_line_error(result, "is empty")
    assert not (tmp_path / "out" / "train.bin").exists()


# -----------------------------------------------------------------------------
# pile

DOCS = ["Hello world.", "A literal <|endoftext|> is just text here.", "", "ünïcödé, 漢字, 🎉\n\nnew lines",
        "The quick brown fox jumps over the lazy dog. " * 5]


def write_pile(path, docs, bad_lines=()):
    lines = [json.dumps({"text": d, "meta": {"pile_set_name": "test"}}) for d in docs]
    for i, bad in enumerate(bad_lines):
        lines.insert(1 + 2 * i, bad)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.name.endswith(".zst"):
        zstandard = pytest.importorskip("zstandard")
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)


def read_pile(out):
    meta = json.loads((out / "meta.json").read_text())
    return (meta, np.fromfile(out / "train.bin", dtype=np.uint16).tolist(),
            np.fromfile(out / "val.bin", dtype=np.uint16).tolist())


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.zst"])
def test_pile_round_trip_and_bad_lines(tmp_path, name, monkeypatch, capsys):
    tiktoken = pytest.importorskip("tiktoken")
    bad = ["{not json", json.dumps({"meta": {}}), json.dumps({"text": 42})]
    write_pile(tmp_path / name, DOCS * 3, bad)
    out = run_here(monkeypatch, capsys, "pile", "--input", tmp_path / name, "--out_dir", tmp_path / "out")
    assert "skipped 3 bad lines" in out
    meta, train, val = read_pile(tmp_path / "out")
    enc = tiktoken.get_encoding("gpt2")
    assert meta["encoding"] == "gpt2" and meta["eot_token"] == enc.eot_token and meta["vocab_size"] >= enc.n_vocab
    assert train[-1] == val[-1] == enc.eot_token and len(val) > 0
    # every document, whole, in train or val, each followed by EOT; the order within each split is kept
    docs = []
    for ids in (train, val):
        ends = [i for i, t in enumerate(ids) if t == enc.eot_token]
        docs += [enc.decode(ids[s + 1:e]) for s, e in zip([-1] + ends[:-1], ends)]
    assert sorted(docs) == sorted(DOCS * 3)
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_pile_max_tokens(tmp_path, monkeypatch, capsys):
    write_pile(tmp_path / "docs.jsonl", DOCS * 3)
    run_here(monkeypatch, capsys, "pile", "--input", tmp_path / "docs.jsonl", "--out_dir", tmp_path / "full")
    run_here(monkeypatch, capsys, "pile", "--input", tmp_path / "docs.jsonl", "--out_dir", tmp_path / "cut",
             "--max_tokens", 40)
    _, full_train, full_val = read_pile(tmp_path / "full")
    _, train, val = read_pile(tmp_path / "cut")
    assert len(full_train) + len(full_val) > 40 and len(train) + len(val) == 40
    # the split decision depends only on the tokens before a document, so the cut run is a prefix of the full one
    assert train == full_train[:len(train)] and val == full_val[:len(val)]


@pytest.mark.parametrize("content", ["", "{broken\n" + json.dumps({"title": "no text"}) + "\n"])
def test_pile_no_valid_documents_is_a_one_line_error(tmp_path, content):
    (tmp_path / "bad.jsonl").write_text(content)
    result = run("pile", "--input", tmp_path / "bad.jsonl", "--out_dir", tmp_path / "out")
    assert_one_line_error(result, "no valid documents")
    assert not list((tmp_path / "out").glob("*.bin")) and not list((tmp_path / "out").glob("*.tmp"))


# pile, --encoding=neox: a tiny byte-level BPE made here stands in for Pythia's tokenizer.json (no network)

def save_tiny_neox_tokenizer(path, with_eot=True):
    """A byte-level BPE like GPT-NeoX's, trained on DOCS; "<|endoftext|>" is added last, so its id is not 0
    (Pythia's) nor 50256 (GPT-2's): prepare.py must look it up."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(DOCS, trainer)
    if with_eot:
        tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(path))
    return tok


def test_pile_neox_round_trip(tmp_path, monkeypatch, capsys):
    tok = save_tiny_neox_tokenizer(tmp_path / "tokenizer.json")
    eot = tok.token_to_id("<|endoftext|>")
    write_pile(tmp_path / "docs.jsonl", DOCS * 3)
    run_here(monkeypatch, capsys, "pile", "--input", tmp_path / "docs.jsonl", "--out_dir", tmp_path / "out",
             "--encoding=neox", "--tokenizer_json", tmp_path / "tokenizer.json")
    meta, train, val = read_pile(tmp_path / "out")
    assert meta["encoding"] == "neox" and meta["eot_token"] == eot == tok.get_vocab_size() - 1 > 0
    assert meta["n_vocab"] == tok.get_vocab_size() and meta["vocab_size"] % 64 == 0
    assert meta["tokenizer_json"] == str(tmp_path / "tokenizer.json")
    assert max(train + val) < meta["n_vocab"] and train[-1] == val[-1] == eot and len(val) > 0
    docs = []  # a literal "<|endoftext|>" in a document must come back as text, not split it in two
    for ids in (train, val):
        ends = [i for i, t in enumerate(ids) if t == eot]
        docs += [tok.decode(ids[s + 1:e]) for s, e in zip([-1] + ends[:-1], ends)]
    assert sorted(docs) == sorted(DOCS * 3)


def test_pile_neox_tokenizer_through_the_hugging_face_cache(tmp_path, hf_cache):
    """Without --tokenizer_json, Pythia's tokenizer.json comes from huggingface_hub's cache (offline here: a file
    not there would be an error, not a download), and meta.json names the cached file."""
    save_tiny_neox_tokenizer(tmp_path / "tokenizer.json")
    snapshot = hf_cache("EleutherAI/pythia-70m", {"tokenizer.json": tmp_path / "tokenizer.json"})
    encode, meta = load("pile").make_encoder("neox")
    assert meta["tokenizer_json"] == str(snapshot / "tokenizer.json") and encode(DOCS[0])


def test_pile_downloads_offline_are_one_line_errors(hf_cache, monkeypatch):
    pytest.importorskip("tokenizers")
    pile = load("pile")
    with pytest.raises(SystemExit, match=r"^error: could not download Pythia's tokenizer.json .*--tokenizer_json"):
        pile.make_encoder("neox")  # offline, nothing cached
    with pytest.raises(SystemExit, match=r"^error: could not open hf://datasets/.*offline.*--input FILE") as e:
        pile.open_lines(pile.SHARD)
    assert "\n" not in str(e.value)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(SystemExit, match=r"pip install huggingface_hub, or pass --tokenizer_json FILE"):
        pile.make_encoder("neox")


def test_pile_neox_bad_tokenizer_is_a_one_line_error(tmp_path):
    write_pile(tmp_path / "docs.jsonl", DOCS)
    neox = lambda path: run("pile", "--input", tmp_path / "docs.jsonl", "--out_dir", tmp_path / "out",
                            "--encoding=neox", "--tokenizer_json", path)
    assert_one_line_error(neox(tmp_path / "missing.json"), "missing.json does not exist", "--tokenizer_json")
    save_tiny_neox_tokenizer(tmp_path / "no_eot.json", with_eot=False)
    assert_one_line_error(neox(tmp_path / "no_eot.json"), "<|endoftext|>")
    assert not (tmp_path / "out").exists()  # the tokenizer is checked before anything is written


def test_pile_neox_without_tokenizers_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` raise ImportError
    with pytest.raises(SystemExit, match="pip install tokenizers"):
        load("pile").make_encoder("neox", "tokenizer.json")
