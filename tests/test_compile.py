"""torch.compile trains on the running rows only: equal to eager training on every row, one graph for every
row count, under DDP too. A tiny model and dynamo's 'eager' backend where the backend does not matter (graphs,
guards and recompiles are decided before a backend runs); one test with inductor."""
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from test_model import make_model, tokens


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test starts with no compiled code and zero counters, whichever tests ran before it."""
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def recorded(graphs):
    """dynamo's 'eager' backend that keeps each graph it is given, to read which ops it holds."""
    def backend(gm, example_inputs):
        graphs.append(gm.graph)
        return gm.forward
    return backend


def train_step(model, run, step, static=False):
    """One training step of run (model, or model compiled) on batch `step`, whose tokens halt at other
    passes than the last step's; returns its output and the gradients."""
    model.train().zero_grad(set_to_none=True)
    model.static_shapes = static
    torch.manual_seed(step)  # halting='random' draws its depths here: the same draws on both paths
    out = run(tokens(seed=step), tokens(seed=step + 100), bottom_k_frac=torch.tensor(0.3))
    out.loss.backward()
    return out, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def assert_trains_as_every_row(model, compiled, steps):
    """Compiled training equals eager training on every row (AllRows, where a halted token's key/value is
    put back with torch.where): loss to 1e-5, each gradient to 1e-4 of its norm (fp32)."""
    for step in range(steps):
        every, every_grads = train_step(model, model, step, static=True)
        out, grads = train_step(model, compiled, step)
        assert torch.equal(out.depth, every.depth)
        torch.testing.assert_close(out.loss, every.loss, atol=1e-5, rtol=0)
        assert grads.keys() == every_grads.keys()
        for name, grad in every_grads.items():
            assert (grads[name] - grad).norm() <= 1e-4 * grad.norm() + 1e-12, name


@pytest.mark.parametrize('halting', ['learned', 'random', 'none'])
def test_compiled_training_skips_halted_tokens_and_equals_every_row(halting):
    model, graphs = make_model(halting, n_layer=1), []
    assert_trains_as_every_row(model, torch.compile(model, backend=recorded(graphs)), steps=2)
    gathers = any(node.target in ('nonzero', torch.nonzero) for graph in graphs for node in graph.nodes)
    assert gathers == (halting != 'none')  # the running rows are packed in the graph; nobody halts: all run
    assert counters['stats']['unique_graphs'] == 1  # two steps, two masks, one graph


def test_compiled_training_with_inductor_equals_every_row():
    """The real backend: its kernels, compiled cold, at -O0 in this process (about a minute here; the
    code it generates is the same, only gcc's optimisation of it is skipped)."""
    import torch._inductor.config
    model = make_model(n_layer=1, n_ponder=1)  # two passes: the second gathers, as every later one
    with torch._inductor.config.patch({'aot_inductor.debug_compile': True, 'compile_threads': 1}):
        assert_trains_as_every_row(model, torch.compile(model), steps=2)


def run_counts():
    return counters['stats']['unique_graphs'], counters['frames']['ok'] - 1  # graphs, recompiles


def test_a_training_run_compiles_one_graph_for_training_and_one_for_evaluation():
    """The halting mask changes every step, the bottom-k fraction ramps, evaluation comes between: the
    graph for training and the one for evaluation (no grad) are all. (train.py runs one_pass_iters' plain
    model eagerly: test_train.py counts a real run's graphs.)"""
    model = make_model(n_layer=1, n_ponder=2)
    compiled = torch.compile(model, backend='eager')

    def run(steps):
        passes = set()
        for step in steps:
            model.train()
            out = compiled(tokens(seed=step), tokens(seed=step + 100), bottom_k_frac=torch.tensor(0.02 * step))
            out.loss.backward()
            passes.add(out.depth.sum().item())
            model.eval()
            with torch.no_grad():
                compiled(tokens(), tokens(), bottom_k_frac=torch.tensor(0.0))
        return passes

    assert len(run(range(3))) == 3  # three masks
    assert run_counts() == (2, 1)
    assert len(run(range(3, 8))) > 1 and run_counts() == (2, 1)  # more masks, no more graphs


def ddp_training(rank, port, results):  # forked: no second import of torch
    """Two gloo processes train a compiled DDP model on different batches: gradients must agree."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    model = make_model(n_layer=1, n_ponder=2).train()
    compiled = torch.compile(DDP(model), backend='eager')
    for step in range(2):
        out = compiled(tokens(seed=2 * step + rank), tokens(seed=step), bottom_k_frac=torch.tensor(0.3))
        out.loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    both = [torch.zeros_like(grads) for _ in range(2)]
    dist.all_gather(both, grads)
    results.put((torch.equal(*both), out.depth.float().mean().item(), counters['stats']['unique_graphs']))
    dist.barrier()
    dist.destroy_process_group()


def test_compiled_ddp_trains_on_the_running_rows():
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    results = mp.get_context('fork').SimpleQueue()
    mp.start_processes(ddp_training, args=(port, results), nprocs=2, start_method='fork')
    for _ in range(2):
        agree, passes, graphs = results.get()
        assert agree and 1 < passes < 3 and graphs == 1
