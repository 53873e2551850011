"""Downstream tasks through lm-evaluation-harness (pip install lm-eval): each task's metrics and the
mean passes the model spent per scored token, at one or more settings of the compute dial (halting
threshold tau, cap on passes). Settings follow lm-eval's names; tasks: lm-eval's or include_path's.
$ python downstream.py --out_dir=out-pile --tasks=lambada_openai,piqa --halt_threshold=0,1e-4,0.1
$ python downstream.py --init_from=zeng123/PonderingPythia-1.4B --tasks=piqa --n_ponder=3,1,0
$ python downstream.py --include_path=data/toy/tasks --tasks=toy_copy,toy_add   # the toy model"""
from configurator import check, configure, die, first_line, interrupted, or_die
import difflib
import itertools
import json
import logging
import os
from collections import defaultdict
from signal import SIGINT, signal

import torch
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from data.show import print_table
from data.tokenizer import load_tokenizer
from pretrained import from_pretrained, load_checkpoint, pick_device

try:  # an optional extra: without it, the script says how to install it
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
class AdaPonderHarness(LM):
    """An AdaPonderLM as lm-eval sees it: its three kinds of request, by the training forward."""

    def __init__(self, model, encode, decode, start_token, batch_size, end_token=None):
        super().__init__()
        self.model, self.encode, self.decode, self.batch_size = model, encode, decode, batch_size
        self.start_token, self.end_token = start_token, end_token  # see document_tokens
        # [passes summed over the scored tokens, tokens] of each task and each (task, doc_id, idx)
        self.passes = defaultdict(lambda: [0, 0])

    def record(self, request, depth):  # depth: the passes of each of the request's scored tokens
        for key in (request.task_name, (request.task_name, request.doc_id, request.idx)):
            self.passes[key][0] += depth.sum().item()
            self.passes[key][1] += len(depth)

    def encode_pair(self, context, continuation):
        """Split as lm-eval's models do: end spaces go to the continuation; BPE on the whole."""
        n = len(context.rstrip(' '))
        context, continuation = context[:n], context[n:] + continuation
        if not context:
            return [self.start_token], self.encode(continuation)
        whole, n_context = self.encode(context + continuation), len(self.encode(context))
        return whole[:n_context], whole[n_context:]

    @torch.no_grad()
    def score_pairs(self, pairs, owners, desc):
        """(log p(continuation | context), whether greedy decoding gives it) of each pair of token
        lists, longest first (less padding), padded on the right (a causal model never looks)."""
        L, device = self.model.config.block_size, self.model.wte.weight.device
        if any(len(continuation) > L for _, continuation in pairs):
            die(f"a continuation is longer than the model's context of {L} tokens; lower "
                "num_fewshot or use another task")
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
        results = [None] * len(pairs)
        for first in tqdm(range(0, len(order), self.batch_size), desc=desc, leave=False):
            batch = order[first:first + self.batch_size]
            rows = [(pairs[i][0] + pairs[i][1])[-(L + 1):] for i in batch]  # last L inputs, targets
            x = pad_sequence([torch.tensor(row[:-1]) for row in rows], batch_first=True)
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
        """Each text's log-likelihood after the start token, in lm-eval's rolling windows."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
        windows = [[make_disjoint_window(w) for w in get_rolling_token_windows(
            self.encode(r.args[0]), self.start_token, self.model.config.block_size, context_len=1)]
            for r in requests]
        owners = [r for r, text in zip(requests, windows) for _ in text]  # passes go to the text
        lls = iter(self.score_pairs([w for text in windows for w in text], owners,
                                    'loglikelihood_rolling'))
        return [sum((next(lls)[0] for _ in text), 0.0) for text in windows]

    def generate_until(self, requests):
        """Greedy (do_sample: sampled) by model.stream(), stopped where lm-eval's models stop."""
        device, texts = self.model.wte.weight.device, []
        for r in tqdm(requests, desc='generate_until', leave=False):
            context, kwargs = r.args
            until = kwargs.get('until') or []
            until = [until] if isinstance(until, str) else until
            temperature = kwargs.get('temperature', 1.0) if kwargs.get('do_sample') else 0.0
            ids = torch.tensor([self.encode(context) or [self.start_token]], device=device)
            new, depths, text, n_new = [], [], '', kwargs.get('max_gen_toks', 256)
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

def document_tokens(ckpt, encode):
    """(the token an empty context stands for, the end-of-text token or None): a BPE dataset's
    end-of-text token (GPT-2's without a meta.json, as load_tokenizer reads it), else a newline."""
    path = os.path.join(data_dir, ckpt.get('dataset') or '', 'meta.json')
    meta = json.load(open(path)) if os.path.isfile(path) else {}
    return (encode('\n')[-1], None) if 'itos' in meta else (meta.get('eot_token', 50256),) * 2

# -----------------------------------------------------------------------------
if __name__ == '__main__':  # (the tests import the harness above)
    configure(globals())
    names = [name.strip() for name in tasks.split(',') if name.strip()]  # 'piqa, sciq' too
    taus, caps = ([*s] if isinstance(s, (tuple, list)) else [s] for s in (halt_threshold, n_ponder))
    if not names:
        die("tasks must name at least one task; pass e.g. --tasks=piqa,arc_easy")
    for tau, cap in itertools.product(taus, caps):  # --halt_threshold=0,1e-4,0.1: each is checked
        check(dict(globals(), halt_threshold=tau, n_ponder=cap), dict(
            batch_size='integer [1, inf)', num_fewshot='integer [0, inf) or None',
            limit='(0, inf) or None', halt_threshold='[0, 1] or None',  # limit < 1: a share
            n_ponder='integer [0, inf) or None'))
    if log_samples and not output_path:
        die("log_samples writes the samples into output_path; pass --output_path=FOLDER too")
    if LM is object:
        die("downstream.py runs lm-evaluation-harness, which is not installed; pip install lm-eval")
    try:  # output_path='' makes nothing
        os.makedirs(output_path or '.', exist_ok=True)
    except OSError as e:
        die(f"cannot make the folder output_path={output_path} ({e.strerror}); pass a folder you "
            "can write")
    device, _, autocast = or_die(pick_device, device, dtype)
    if init_from:  # a GPT-NeoX import without gates (halting='none': its passes are the cap's)
        model, ckpt = or_die(from_pretrained, init_from, halting='none'), dict(dataset=dataset)
    else:
        model, ckpt = or_die(load_checkpoint, out_dir, device)
    where = init_from or (os.path.join(out_dir, 'ckpt.pt') if os.path.isdir(out_dir) else out_dir)
    cfg, K = model.to(device).eval().config, model.trained_K
    if any(c is not None and c > K for c in caps):
        die(f"n_ponder only lowers the passes at inference (a cap); the model was trained with {K}")
    encode, decode = or_die(load_tokenizer, data_dir, ckpt, cfg.vocab_size)
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager  # the tasks' index: include_path's alone if it has all
    if include_path and not os.path.isdir(include_path):
        die(f"include_path={include_path} is not a folder; pass the folder of your task YAMLs")
    manager = include_path and TaskManager(include_path=include_path, include_defaults=False)
    if not manager or not all(manager.match_tasks([name]) for name in names):
        manager = TaskManager(include_path=include_path or None)  # lm-eval's own too: seconds
    if unknown := [name for name in names if not manager.match_tasks([name])]:
        guesses = sorted({g for name in unknown
                          for g in difflib.get_close_matches(name, manager.all_tasks, n=2)})
        die(f"unknown task {', '.join(unknown)}; " +
            (f"did you mean {', '.join(guesses)}? " if guesses else '') + "lm-eval ls tasks lists "
            "lm-eval's own; local task YAMLs go in the folder include_path names")
    # lm-eval tells each task made by a function (custom_dataset) to pass --metadata: not ours
    logging.getLogger('lm_eval.api.task').addFilter(lambda r: 'Custom kwargs' not in r.getMessage())
    print(f"downstream ckpt={where} dataset={ckpt.get('dataset')} halting={cfg.halting} "
          f"K={K} tau={cfg.halt_threshold:g} tasks={','.join(names)} num_fewshot={num_fewshot} "
          f"limit={limit}")
    start_token, end_token = document_tokens(ckpt, encode)
    # Ctrl-C from here: one line saying what was kept (before here, configurator's: nothing)
    signal(SIGINT, lambda *_: interrupted("the settings finished before it were printed (and "
                                          "saved, with --output_path)"))
    table = []
    for tau, cap in itertools.product(taus, caps):
        tau, cap = cfg.halt_threshold if tau is None else tau, K if cap is None else cap
        model.set_inference(halt_threshold=tau, n_ponder=cap)
        harness = AdaPonderHarness(model, encode, decode, start_token, batch_size, end_token)
        try:
            with autocast:
                results = simple_evaluate(model=harness, tasks=names, num_fewshot=num_fewshot,
                                          limit=limit, task_manager=manager,
                                          log_samples=log_samples, batch_size=batch_size)
        except OSError as e:  # datasets' ConnectionError too: a hub task's data offline, uncached
            die(f"could not load the documents of {', '.join(names)} ({type(e).__name__}: "
                f"{first_line(e)}); run once online (the hub's datasets are cached after that), "
                "or use local tasks from --include_path")
        except ValueError as e:  # our tokenizer: a character model cannot encode a document
            die(f"a document of {', '.join(names)}: {first_line(e)}")
        subtasks = results.get('group_subtasks', {})  # a group's passes pool those of its tasks
        leaves = lambda name: [leaf for sub in subtasks.get(name) or ()  # noqa: E731
                               for leaf in leaves(sub)] or [name]
        for name, metrics in results['results'].items():  # a line each: tasks' metrics differ
            total, tokens = (sum(harness.passes[leaf][j] for leaf in leaves(name)) for j in (0, 1))
            metrics['passes'] = total / max(tokens, 1)
            row = dict(name=name, tau=f'{tau:g}', cap=cap, passes=f"{metrics['passes']:.2f}")
            if name in results.get('n-samples', {}):  # documents scored (none of a group's own)
                row['docs'] = results['n-samples'][name]['effective']
            for key, value in metrics.items():  # 'acc,none', 'acc_stderr,none', 'em,flex'
                metric, _, kind = key.partition(',')
                if kind and isinstance(value, (int, float)):  # not the alias, nor N/A errors
                    column = 'se_' * metric.endswith('_stderr') + metric.removesuffix('_stderr')
                    row[column + f'[{kind}]' * (kind != 'none')] = f'{value:.4f}'
            print_table('task', [row])
            table.append(row)
        if output_path:  # results_<setting>.json; with log_samples, samples_<task>_<setting>.jsonl
            from lm_eval.utils import handle_non_serializable as plain
            setting = f'tau{tau:g}_cap{cap}'
            for task, samples in results.pop('samples', {}).items():
                for s in samples:  # each request's mean passes, in the order of its arguments
                    s['passes'] = [p / max(n, 1) for p, n in (harness.passes[task, s['doc_id'], i]
                                                              for i in range(len(s['arguments'])))]
                with open(os.path.join(output_path, f'samples_{task}_{setting}.jsonl'), 'w') as f:
                    f.writelines(json.dumps(s, default=plain, ensure_ascii=False) + '\n'
                                 for s in samples)
            with open(path := os.path.join(output_path, f'results_{setting}.json'), 'w') as f:
                json.dump(results, f, indent=2, default=plain, ensure_ascii=False)
            print(f"wrote {path}")
    if len(taus) * len(caps) > 1:  # a table of accuracy against passes for each task
        print("\n== the compute dial on each task: metrics against mean passes per scored token ==")
        for name in dict.fromkeys(row['name'] for row in table):
            print_table('dial', sorted((r for r in table if r['name'] == name),
                                       key=lambda r: -float(r['passes'])))
