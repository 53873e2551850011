"""
Downstream tasks through lm-evaluation-harness (pip install lm-eval): each task's metrics and the
mean passes the model spent per scored token, at one or more settings of the compute dial (halting
threshold tau, cap on passes). Settings follow lm-eval's names; tasks may be lm-eval's own or YAML
files under include_path.

$ python downstream.py --out_dir=out-pile --tasks=lambada_openai,piqa --halt_threshold=0,1e-4,0.1
$ python downstream.py --init_from=zeng123/PonderingPythia-1.4B --tasks=piqa --n_ponder=3,1,0
$ python downstream.py --include_path=data/toy/tasks --tasks=toy_copy,toy_add   # the toy model
"""
from configurator import check, configure, die, first_line, interrupted, or_die, print_table
import difflib
import itertools
import json
import logging
import os
import signal
from collections import defaultdict

import torch
from torch.nn import functional as F
from tqdm import tqdm

from data.tokenizer import load_tokenizer
from pretrained import from_pretrained, load_checkpoint, pick_device

try:  # an optional extra: without it, main() says how to install it
    from lm_eval.api.model import LM
except ImportError:
    LM = object

# -----------------------------------------------------------------------------
out_dir = 'out-toy'  # the checkpoint: out_dir/ckpt.pt, or its path
init_from = ''  # or a GPT-NeoX model (hub id or local dir, as from_pretrained reads), without gates
dataset = 'pile_neox'  # init_from only: the tokenizer is data_dir/<dataset>/meta.json
data_dir = 'data'  # the vocabulary is data_dir/<the checkpoint's dataset>/meta.json
tasks = ''  # comma-separated lm-eval task names (or groups, or patterns like arc_*)
include_path = ''  # a folder of local task YAMLs
num_fewshot = None  # examples in each prompt (None: the task's default)
limit = None  # at most this many documents per task (a float below 1: this share of them)
batch_size = 16  # sequences per forward
output_path = ''  # a folder: results_tau<tau>_cap<cap>.json for each setting
log_samples = False  # and samples_<task>_tau<tau>_cap<cap>.jsonl, each document with its passes
halt_threshold = None  # tau, or several: 0,1e-4,0.1 (None: the checkpoint's); higher = fewer passes
n_ponder = None  # a cap on extra passes, or several: 3,1,0 (None: K); 0: a Pythia (imported, K=3)
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto', 'float32', 'bfloat16' or 'float16'
# -----------------------------------------------------------------------------
CHECKS = dict(batch_size='integer [1, inf)', num_fewshot='integer [0, inf) or None',
              limit='(0, inf) or None', halt_threshold='[0, 1] or None',
              n_ponder='integer [0, inf) or None')  # limit < 1: a share of the documents

class AdaPonderHarness(LM):
    """An AdaPonderLM as lm-eval sees it: its three kinds of request, scored with the training
    forward, and the passes of every scored token recorded per task and per request."""

    def __init__(self, model, encode, decode, start_token, batch_size, end_token=None):
        super().__init__()
        self.model, self.encode, self.decode = model, encode, decode
        self.start_token, self.batch_size = start_token, batch_size  # start: an empty context
        self.end_token = end_token  # the dataset's end-of-text token, if any: generation ends there
        # [passes summed over the scored tokens, tokens] of each task and each (task, doc_id, idx)
        self.passes = defaultdict(lambda: [0, 0])

    def record(self, request, depth):
        """Add the passes of a request's scored tokens (depth: one each) to its task's, its own."""
        for key in (request.task_name, (request.task_name, request.doc_id, request.idx)):
            self.passes[key][0] += depth.sum().item()
            self.passes[key][1] += len(depth)

    def encode_pair(self, context, continuation):
        """Token ids of (context, continuation) split as lm-eval's own models split them: spaces
        ending the context go to the continuation; the whole text is encoded at once (BPE)."""
        n = len(context.rstrip(' '))
        context, continuation = context[:n], context[n:] + continuation
        if not context:
            return [self.start_token], self.encode(continuation)
        whole, n_context = self.encode(context + continuation), len(self.encode(context))
        return whole[:n_context], whole[n_context:]

    @torch.no_grad()
    def score_pairs(self, pairs, owners, desc):
        """(log p(continuation | context), whether greedy decoding gives it) of each pair of token
        lists, a batch at a time, longest first (less padding). Padding goes on the right, where a
        causal model never looks."""
        L, device = self.model.config.block_size, self.model.wte.weight.device
        if any(len(continuation) > L for _, continuation in pairs):
            die(f"a continuation is longer than the model's context of {L} tokens; lower "
                "num_fewshot or use another task")
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
        results = [None] * len(pairs)
        for first in tqdm(range(0, len(order), self.batch_size), desc=desc, leave=False):
            batch = order[first:first + self.batch_size]
            rows = [(pairs[i][0] + pairs[i][1])[-(L + 1):] for i in batch]  # last L inputs, targets
            x = torch.zeros(len(rows), max(map(len, rows)) - 1, dtype=torch.long)
            for j, row in enumerate(rows):
                x[j, :len(row) - 1] = torch.tensor(row[:-1])
            out = self.model(x.to(device))  # the training forward, as pretrained.score
            for j, i in enumerate(batch):
                n, end = len(pairs[i][1]), len(rows[j]) - 1  # the continuation's: end - n .. end
                logits = out.logits[j, end - n:end].float()
                targets = torch.tensor(rows[j][-n:], device=device)
                nll = F.cross_entropy(logits, targets, reduction='sum')
                results[i] = (-nll.item(), bool((logits.argmax(-1) == targets).all()))
                self.record(owners[i], out.depth[j, end - n:end])
        return results

    def loglikelihood(self, requests):
        return self.score_pairs([self.encode_pair(*r.args) for r in requests], requests,
                                'loglikelihood')

    def loglikelihood_rolling(self, requests):
        """Each text's log-likelihood after the document-start token, in windows of block_size
        predictions, each with the longest context available (lm-eval's rolling windows)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
        pairs, owners = [], []
        for r in requests:
            windows = get_rolling_token_windows(self.encode(r.args[0]), self.start_token,
                                                self.model.config.block_size, context_len=1)
            pairs += [make_disjoint_window(w) for w in windows]
            owners += [r] * (len(pairs) - len(owners))
        lls = defaultdict(float)  # every window's passes are recorded for its text
        for r, (ll, _) in zip(owners, self.score_pairs(pairs, owners, 'loglikelihood_rolling')):
            lls[id(r)] += ll
        return [lls[id(r)] for r in requests]

    def generate_until(self, requests):
        """Greedy continuation (sampled with do_sample) by model.stream(), stopped before the first
        `until` string, at the end-of-text token (as lm-eval's own models stop) or after
        max_gen_toks tokens; the passes of the tokens generated are recorded."""
        device, texts = self.model.wte.weight.device, []
        for r in tqdm(requests, desc='generate_until', leave=False):
            context, kwargs = r.args
            until = [kwargs['until']] if isinstance(kwargs.get('until'), str) else \
                kwargs.get('until') or []
            temperature = kwargs.get('temperature', 1.0) if kwargs.get('do_sample') else 0.0
            ids = torch.tensor([self.encode(context) if context else [self.start_token]],
                               device=device)
            new, depths, text = [], [], ''
            n_new = kwargs.get('max_gen_toks', 256)
            for token, depth in self.model.stream(ids, n_new, temperature):
                depths.append(depth.item())
                if token.item() == self.end_token:  # the text ends: the token is not part of it
                    break
                new.append(token.item())
                text = self.decode(new)
                if stops := [text.index(u) for u in until if u in text]:
                    text = text[:min(stops)]
                    break
            self.record(r, torch.tensor(depths))
            texts.append(text)
        return texts

# -----------------------------------------------------------------------------
def as_list(setting):
    """A setting given once (0.1) or several times (0,1e-4,0.1: a tuple) as a list; None: [None]."""
    return list(setting) if isinstance(setting, (tuple, list)) else [setting]

def load_model():
    """(model in eval mode, its checkpoint dict, its name): out_dir's checkpoint, or a GPT-NeoX
    import without gates (halting='none': its passes are the cap's) of the dataset's tokenizer."""
    if init_from:
        model = or_die(from_pretrained, init_from, halting='none').to(device)
        return model.eval(), dict(dataset=dataset, model_args=dict(n_ponder=model.K)), init_from
    model, ckpt = or_die(load_checkpoint, out_dir, device)
    return model.eval(), ckpt, os.path.join(out_dir, 'ckpt.pt') if os.path.isdir(out_dir) else \
        out_dir

def document_tokens(ckpt, encode):
    """(the token an empty context stands for, the end-of-text token or None): a BPE dataset's
    end-of-text token ends every document (GPT-2's where there is no meta.json, as load_tokenizer
    assumes), a newline every line of a character dataset, which has no end-of-text token."""
    path = os.path.join(data_dir, ckpt.get('dataset') or '', 'meta.json')
    meta = json.load(open(path)) if os.path.isfile(path) else {}
    return (encode('\n')[-1], None) if 'itos' in meta else (meta.get('eot_token', 50256),) * 2

def task_manager(names):
    """lm-eval's index of the tasks. include_path's alone when it holds them all: indexing
    lm-eval's own thousands of task files takes seconds."""
    from lm_eval.tasks import TaskManager
    if include_path:
        if not os.path.isdir(include_path):
            die(f"include_path={include_path} is not a folder; pass the folder of your task YAMLs")
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(local.match_tasks([name]) for name in names):
            return local
    manager = TaskManager(include_path=include_path or None)
    if unknown := [name for name in names if not manager.match_tasks([name])]:
        guesses = sorted({g for name in unknown
                          for g in difflib.get_close_matches(name, manager.all_tasks, n=2)})
        die(f"unknown task {', '.join(unknown)}; " +
            (f"did you mean {', '.join(guesses)}? " if guesses else '') + "lm-eval ls tasks lists "
            "lm-eval's own; local task YAMLs go in the folder include_path names")
    return manager

def evaluate(harness, manager, names):
    """One setting of the dial: lm-eval's results, each task's mean passes added to its metrics."""
    from lm_eval import simple_evaluate
    try:
        results = simple_evaluate(model=harness, tasks=names, num_fewshot=num_fewshot, limit=limit,
                                  task_manager=manager, log_samples=log_samples,
                                  batch_size=batch_size)
    except OSError as e:  # datasets' ConnectionError too: a hub task's data, offline, not cached
        die(f"could not load the documents of {', '.join(names)} ({type(e).__name__}: "
            f"{first_line(e)}); run once online (the hub's datasets are cached after that), or "
            "use local tasks from --include_path")
    except ValueError as e:  # our tokenizer: a character model cannot encode a document
        die(f"a document of {', '.join(names)}: {first_line(e)}")
    subtasks = results.get('group_subtasks', {})

    def leaves(name):  # a group's passes pool those of its tasks
        return [leaf for sub in subtasks.get(name) or () for leaf in leaves(sub)] or [name]
    for name, metrics in results['results'].items():
        total, tokens = (sum(harness.passes[leaf][j] for leaf in leaves(name)) for j in (0, 1))
        metrics['passes'] = total / max(tokens, 1)
    for task, samples in results.get('samples', {}).items():
        for s in samples:  # each request's mean passes, in the order of its arguments
            s['passes'] = [p / max(n, 1) for p, n in (harness.passes[task, s['doc_id'], i]
                                                      for i in range(len(s['arguments'])))]
    return results

def task_rows(results, tau, cap):
    """A row per task: the setting, its mean passes per scored token, the task's metrics and their
    standard errors."""
    table = []
    for name, metrics in results['results'].items():
        row = dict(name=name, tau=f'{tau:g}', cap=cap, passes=f"{metrics['passes']:.2f}")
        if name in results.get('n-samples', {}):  # documents scored (groups have none of their own)
            row['docs'] = results['n-samples'][name]['effective']
        for key, value in metrics.items():
            metric, _, kind = key.partition(',')  # 'acc,none', 'acc_stderr,none', 'em,flex'
            if kind and isinstance(value, (int, float)):  # not the alias, nor N/A standard errors
                se = metric.endswith('_stderr')
                column = f"se_{metric.removesuffix('_stderr')}" if se else metric
                row[column if kind == 'none' else f'{column}[{kind}]'] = f'{value:.4f}'
        table.append(row)
    return table

def save(results, tau, cap):
    """output_path/results_<setting>.json; with log_samples each task's documents, a line each."""
    from lm_eval.utils import handle_non_serializable as plain
    setting = f'tau{tau:g}_cap{cap}'
    for task, samples in results.pop('samples', {}).items():
        with open(os.path.join(output_path, f'samples_{task}_{setting}.jsonl'), 'w') as f:
            f.writelines(json.dumps(s, default=plain, ensure_ascii=False) + '\n' for s in samples)
    with open(path := os.path.join(output_path, f'results_{setting}.json'), 'w') as f:
        json.dump(results, f, indent=2, default=plain, ensure_ascii=False)
    print(f"wrote {path}")

def main(argv=None):
    global device
    configure(globals(), argv)
    names = [name.strip() for name in tasks.split(',') if name.strip()]  # 'piqa, sciq' too
    taus, caps = as_list(halt_threshold), as_list(n_ponder)
    if not names:
        die("tasks must name at least one task; pass e.g. --tasks=piqa,arc_easy")
    for tau, cap in itertools.product(taus, caps):  # --halt_threshold=0,1e-4,0.1: each is checked
        check(dict(globals(), halt_threshold=tau, n_ponder=cap), CHECKS)
    if log_samples and not output_path:
        die("log_samples writes the samples into output_path; pass --output_path=FOLDER too")
    if LM is object:
        die("downstream.py runs lm-evaluation-harness, which is not installed; pip install lm-eval")
    if output_path:
        try:
            os.makedirs(output_path, exist_ok=True)
        except OSError as e:
            die(f"cannot make the folder output_path={output_path} ({e.strerror}); pass a folder "
                "you can write")
    device, _, autocast = or_die(pick_device, device, dtype)
    model, ckpt, model_name = load_model()
    cfg, K = model.config, ckpt['model_args']['n_ponder']
    if any(c is not None and c > K for c in caps):
        die(f"n_ponder can only lower the passes at inference (a cap); this model was trained "
            f"with {K}")
    encode, decode = or_die(load_tokenizer, data_dir, ckpt, cfg.vocab_size)
    manager = task_manager(names)
    # lm-eval tells each task made by a function (custom_dataset) to pass --metadata: not ours
    logging.getLogger('lm_eval.api.task').addFilter(lambda r: 'Custom kwargs' not in r.getMessage())
    print(f"downstream ckpt={model_name} dataset={ckpt.get('dataset')} halting={cfg.halting} "
          f"K={K} tau={cfg.halt_threshold:g} tasks={','.join(names)} num_fewshot={num_fewshot} "
          f"limit={limit}")
    start_token, end_token = document_tokens(ckpt, encode)
    table = []
    for tau, cap in itertools.product(taus, caps):
        tau, cap = cfg.halt_threshold if tau is None else tau, K if cap is None else cap
        model.set_inference(halt_threshold=tau, n_ponder=cap)
        with autocast:
            results = evaluate(AdaPonderHarness(model, encode, decode, start_token, batch_size,
                                                end_token), manager, names)
        for row in task_rows(results, tau, cap):
            print_table('task', [row])  # tasks have different metrics: a line each
            table.append(row)
        if output_path:
            save(results, tau, cap)
    if len(taus) * len(caps) > 1:  # a table of accuracy against passes for each task
        print("\n== the compute dial on each task: its metrics against mean passes per scored "
              "token ==")
        for name in dict.fromkeys(row['name'] for row in table):
            print_table('dial', sorted((r for r in table if r['name'] == name),
                                       key=lambda r: -float(r['passes'])))
    return table

if __name__ == '__main__':  # Ctrl-C: one line, after the progress bars close
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except KeyboardInterrupt:
        interrupted("the settings finished before it were printed (and saved, with --output_path)")
