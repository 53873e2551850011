"""downstream.py through lm-evaluation-harness, offline: local task YAMLs on JSON lines, a tiny random model on a
character vocabulary. The harness's log-likelihoods are the model's own scoring, passes are reported, generation
stops at its `until` string, and bad input is one line."""
import functools
import json
import runpy
import string
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

lm_eval = pytest.importorskip('lm_eval')  # an optional extra: pip install lm-eval
import lm_eval.evaluator  # noqa: E402
import lm_eval.tasks  # noqa: E402

import downstream  # noqa: E402
import pretrained  # noqa: E402
from adaponder import AdaPonderLM  # noqa: E402
from pretrained import preset, save_checkpoint, score  # noqa: E402

SCRIPT = str(Path(__file__).resolve().parents[1] / 'downstream.py')
CHARS = sorted(set('\n:|+=CA' + string.digits + string.ascii_lowercase))
TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
  cache_dir: {cache}
test_split: test
target_delimiter: ""
"""
KINDS = {  # each task's output type, fields and metric
    't_choice': 'output_type: multiple_choice\ndoc_to_text: "{{prompt}}"\ndoc_to_choice: "{{choices}}"\n'
                'doc_to_target: "{{answer}}"\nmetric_list:\n  - metric: acc\n',
    't_text': 'output_type: loglikelihood_rolling\ndoc_to_text: ""\ndoc_to_target: "{{text}}"\n'
              'metric_list:\n  - metric: bits_per_byte\n',
    't_gen': 'output_type: generate_until\ndoc_to_text: "{{prompt}}"\ndoc_to_target: "{{target}}"\n'
             'generation_kwargs:\n  until: ["{until}"]\n  max_gen_toks: 20\nmetric_list:\n  - metric: exact_match\n',
}


def greedy(model, text, n=20):
    """The greedy continuation of text by the model, as text."""
    ids, _ = model.generate(torch.tensor([[CHARS.index(c) for c in text]]), n, temperature=0)
    return ''.join(CHARS[i] for i in ids[0, len(text):].tolist())


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The checkpoint (gates at s ~ 0.5, tau 0.5: depths vary), its vocabulary, two documents and the three tasks.
    Each document's text is 128 characters: two whole windows of block_size 64, as AdaPonderLM.score reads them.
    The generation task stops at a character the greedy continuation of the first prompt holds, not at its start."""
    root = tmp_path_factory.mktemp('downstream')
    (root / 'data' / 'chars').mkdir(parents=True)
    meta = dict(vocab_size=len(CHARS), itos=CHARS, stoi={c: i for i, c in enumerate(CHARS)})
    (root / 'data' / 'chars' / 'meta.json').write_text(json.dumps(meta))
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', vocab_size=len(CHARS), gate_bias_init=0.0, halt_threshold=0.5)).eval()
    (root / 'out').mkdir()
    save_checkpoint(str(root / 'out' / 'ckpt.pt'), model, dataset='chars')
    rng = np.random.default_rng(0)
    docs = [dict(prompt=prompt, choices=choices, answer=0, target=choices[0],
                 text=''.join(rng.choice(list('abcdefgh\n:|'), 128))) for prompt, choices in
            [('C:abcde|', ['abcde\n', 'abxde\n', 'qbcde']), ('A:12+34=', ['64', '65\n', '46'])]]
    (root / 'docs.jsonl').write_text(''.join(json.dumps(d) + '\n' for d in docs))
    out = greedy(model, docs[0]['prompt'])
    until = next(c for c in out[2:] if c not in out[:2] and c in string.ascii_lowercase + string.digits)
    (root / 'tasks').mkdir()
    for name, kind in KINDS.items():
        yaml = TASK.format(name=name, docs=root / 'docs.jsonl', cache=root / 'hf') + kind.replace('{until}', until)
        (root / 'tasks' / f'{name}.yaml').write_text(yaml)
    args = [f'--out_dir={root / "out"}', f'--data_dir={root / "data"}', f'--include_path={root / "tasks"}']
    return dict(root=root, model=model, docs=docs, args=args, generated=out[:out.index(until)])


def run(monkeypatch, capsys, *args):
    """python downstream.py ARGS in this process (runpy); (stdout, the one-line error or None). lm-eval's report
    of the machine (pip list and the like, seconds) is left out."""
    monkeypatch.setattr(lm_eval.evaluator, 'add_env_info', lambda results: None)
    monkeypatch.setattr(sys, 'argv', ['downstream.py', *args])
    try:
        runpy.run_path(SCRIPT, run_name='__main__')
        error = None
    except SystemExit as e:
        error = str(e.code)
        assert error.startswith('error: ') and '\n' not in error and '; ' in error, error  # problem; fix
    return capsys.readouterr().out, error


def own_scoring(model, context, continuation):
    """log p(continuation | context) and the passes of its predictions, from the training forward."""
    ids = torch.tensor([[CHARS.index(c) for c in context + continuation]])
    out = model(ids[:, :-1])
    n = len(continuation)
    return -F.cross_entropy(out.logits[0, -n:], ids[0, -n:], reduction='sum').item(), out.depth[0, -n:]


def test_harness_scores_as_the_model_does(setup, monkeypatch, capsys):
    """Multiple choice and rolling log-likelihoods, sample by sample, equal the model's own scoring; each task's
    passes are its scored tokens' mean; the generation stops before its `until` string."""
    results = setup['root'] / 'results'
    out, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choice,t_text,t_gen', f'--output_path={results}',
                     '--log_samples', '--batch_size=2')
    assert error is None
    lines = {line.split()[1]: dict(w.split('=') for w in line.split()[1:]) for line in out.splitlines()
             if line.startswith('task ')}
    assert set(lines) == {'name=t_choice', 'name=t_text', 'name=t_gen'}

    def samples(task):
        return [json.loads(line) for line in (results / f'samples_{task}_tau0.5_cap3.jsonl').read_text().splitlines()]
    model, depths = setup['model'], []
    for s in samples('t_choice'):
        for (context, continuation), resp, passes in zip(s['arguments'], s['resps'], s['passes']):
            ll, depth = own_scoring(model, context, continuation)
            assert resp[0][0] == pytest.approx(ll, abs=1e-5) and passes == pytest.approx(depth.float().mean().item())
            depths.append(depth)
    assert float(lines['name=t_choice']['passes']) == pytest.approx(torch.cat(depths).float().mean().item(), abs=5e-3)
    assert 1 < torch.cat(depths).float().mean() < 4  # depths vary

    start = CHARS.index('\n')  # an empty context is a newline on a character vocabulary
    for s, doc in zip(samples('t_text'), setup['docs']):
        nll, depth, *_ = score(model, np.array([start] + [CHARS.index(c) for c in doc['text']]))
        assert len(nll) == 128 and s['resps'][0][0] == pytest.approx(-nll.sum().item(), abs=1e-4)
        assert s['passes'] == [pytest.approx(depth.float().mean().item())]
    assert 'bits_per_byte' in lines['name=t_text']

    first = samples('t_gen')[0]
    assert first['resps'][0][0] == setup['generated'] and len(first['passes']) == 1
    assert json.loads((results / 'results_tau0.5_cap3.json').read_text())['results']['t_gen']['passes'] > 0



def test_generation_stops_at_the_end_of_text(setup, monkeypatch):
    """A dataset with an end-of-text token (the BPE ones): generation stops there, before the task's `until` string
    or max_gen_toks, and the passes of the end token, which was computed, are counted. Here the end token stands
    for a character the greedy continuation holds; a character dataset has none (end_of_text: None)."""
    from types import SimpleNamespace
    model, prompt = setup['model'], setup['docs'][0]['prompt']
    out = greedy(model, prompt)
    k = next(i for i in range(1, len(out)) if out[i] not in out[:i])  # its first appearance, not at the start
    harness = downstream.AdaPonderHarness(model, lambda s: [CHARS.index(c) for c in s], lambda ids: ''.join(
        CHARS[i] for i in ids), CHARS.index('\n'), 1, end_token=CHARS.index(out[k]))
    request = SimpleNamespace(args=(prompt, dict(until=['never'], max_gen_toks=20)), task_name='t', doc_id=0, idx=0)
    assert harness.generate_until([request]) == [out[:k]]
    assert harness.passes['t'][1] == k + 1  # k tokens of text and the end token
    monkeypatch.setattr(downstream, 'data_dir', str(setup['root'] / 'data'))
    encode = lambda s: [CHARS.index(c) for c in s]  # noqa: E731
    assert downstream.document_tokens(dict(dataset='chars'), encode) == (CHARS.index('\n'), None)  # no end token
    assert downstream.document_tokens(dict(dataset='no_meta'), encode) == (50256, 50256)  # GPT-2's, as there


def test_the_dial_prints_passes_against_accuracy(setup, monkeypatch, capsys):
    """(and task names may have spaces after the commas)"""
    out, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choice, t_text', '--halt_threshold=0,0.5',
                     '--n_ponder=3,1', '--limit=1')
    assert error is None
    dial = [dict(w.split('=') for w in line.split()[1:]) for line in out.splitlines() if line.startswith('dial ')]
    passes = {(row['tau'], row['cap']): float(row['passes']) for row in dial}
    assert passes[('0', '3')] == 4 and passes[('0', '1')] == 2 and passes[('0.5', '1')] < 2
    assert all('acc' in row for row in dial if row['name'] == 't_choice')
    assert {row['name'] for row in dial} == {'t_choice', 't_text'}


def test_bad_input_is_one_line(setup, monkeypatch, capsys, tmp_path):
    """(the one-line check is in run()); lm-eval's own tasks are not indexed here: seconds, and not offline"""
    monkeypatch.setattr(lm_eval.tasks, 'TaskManager',
                        functools.partial(lm_eval.tasks.TaskManager, include_defaults=False))
    _, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choise')
    assert 'unknown task t_choise' in error and 'did you mean t_choice' in error
    _, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choice', f'--out_dir={tmp_path}')
    assert 'no checkpoint' in error
    _, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choice', '--n_ponder=4')
    assert 'trained with 3' in error
    _, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choice', '--log_samples')
    assert 'log_samples writes the samples into output_path' in error
    _, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choice', '--batch_size=None')
    assert 'batch_size=None is out of range' in error
    monkeypatch.setitem(sys.modules, 'lm_eval.api.model', None)  # as when lm_eval is not installed
    _, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choice')
    assert 'pip install lm-eval' in error


def test_the_harness_loads_a_checkpoint_without_gates(setup, tmp_path, monkeypatch, capsys):
    """PonderLM (halting='none') and a K=0 model go through the same class: passes are K+1."""
    for name, config in dict(none=dict(halting='none'), vanilla=dict(n_ponder=0)).items():
        model = AdaPonderLM(preset('tiny', vocab_size=len(CHARS), **config))
        (tmp_path / name).mkdir()
        save_checkpoint(str(tmp_path / name / 'ckpt.pt'), model, dataset='chars')
        out, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choice', f'--out_dir={tmp_path / name}')
        assert error is None and f"passes={model.config.n_ponder + 1}.00" in out


def test_init_from_imports_without_gates(setup, monkeypatch, capsys):
    """init_from: the model from_pretrained reads (here a stand-in: the import is tests/test_pretrained.py's), with
    halting='none', its tokenizer the dataset's; a cap of 0 is the plain one-pass model."""
    def stand_in(name, **overrides):
        assert name == 'some/ponderlm' and overrides == dict(halting='none')
        return AdaPonderLM(preset('tiny', vocab_size=len(CHARS), **overrides))
    monkeypatch.setattr(pretrained, 'from_pretrained', stand_in)
    out, error = run(monkeypatch, capsys, *setup['args'], '--tasks=t_choice', '--init_from=some/ponderlm',
                     '--dataset=chars', '--n_ponder=3,0')
    assert error is None and 'ckpt=some/ponderlm dataset=chars halting=none K=3' in out
    assert 'cap=3 passes=4.00' in out and 'cap=0 passes=1.00' in out
