"""GPU smoke tests: what only a GPU exercises (bf16 autocast on CUDA kernels, torch.compile with inductor, fused
AdamW, train.py's CUDA path). Skipped where CUDA is not available; run them on a GPU with
python -m pytest -q tests/test_cuda.py"""
import math
import os
import subprocess
import sys

import pytest
import torch

from adaponder import AdaPonderLM
from pretrained import preset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, T = 64, 48


def varied_depth_model():
    """As in test_model.py: wide random gates and tau = 0.5, so tokens halt after every pass."""
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', vocab_size=V, halt_threshold=0.5, gate_bias_init=0.0)).cuda().eval()
    for gate in model.gates:
        for p in gate.parameters():
            torch.nn.init.normal_(p, std=1.0)
    return model


def test_compiled_bf16_training_steps_with_fused_adamw():
    torch.manual_seed(0)
    model = AdaPonderLM(preset('tiny', vocab_size=V)).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), fused=True)
    compiled = torch.compile(model)
    x = torch.randint(0, V, (8, T), device='cuda')
    ce = []
    for k in (0.0, 0.0, 0.05, 0.1, 0.1):  # the bottom-k ramp, as train.py passes it: one graph throughout
        with torch.autocast('cuda', dtype=torch.bfloat16):
            out = compiled(x, x.roll(-1, dims=1), bottom_k_frac=torch.tensor(k, device='cuda'))
        out.loss.backward()
        assert all(gate[-1].bias.grad.abs().item() > 0 for gate in model.gates)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ce.append(out.ce.item())  # the loss adds the gate loss once k > 0: compare the cross-entropy
    assert all(math.isfinite(c) for c in ce) and ce[-1] < ce[0]


@pytest.mark.parametrize('sizes', [[T], [1] * T, [7, 1, 20, 1, 19]])
def test_cached_decoding_equals_forward_under_cuda_autocast(sizes):
    """The tolerance of the CPU test (tests/test_model.py): 4 bfloat16 rounding steps at the logits' scale."""
    model = varied_depth_model()
    idx = torch.randint(0, V, (2, T), device='cuda', generator=torch.Generator('cuda').manual_seed(1))
    with torch.autocast('cuda', dtype=torch.bfloat16):
        ref = model(idx)
        cache, outs, t = model.new_cache(2, T), [], 0
        for n in sizes:
            outs.append(model.step(idx[:, t:t + n], cache))
            t += n
    depth, logits = torch.cat([o.depth for o in outs], 1), torch.cat([o.logits for o in outs], 1)
    assert torch.equal(depth, ref.depth) and len(depth.unique()) > 1
    tolerance = 4 * 2 ** -8 * ref.logits.float().abs().max().item()
    torch.testing.assert_close(logits.float(), ref.logits.float(), atol=tolerance, rtol=0)


def test_train_py_on_cuda_with_compile(tmp_path):
    cmd = [sys.executable, 'train.py', '--device=cuda', '--compile=True', f'--data_dir={tmp_path / "data"}',
           f'--out_dir={tmp_path / "out"}', '--max_iters=40', '--eval_interval=20', '--eval_iters=2',
           '--log_interval=10', '--n_layer=2', '--n_embd=64', '--n_head=2']
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'dtype bfloat16' in result.stdout or 'dtype float16' in result.stdout
    evals = [line for line in result.stdout.splitlines() if line.startswith('eval step=40 ')]
    assert len(evals) == 1 and 'val_loss=nan' not in evals[0]
    assert os.path.isfile(tmp_path / 'out' / 'ckpt.pt')


def test_eager_training_on_running_rows_equals_every_row_on_cuda():
    """The skip path (eager training computes only the running tokens) on CUDA kernels: the same depths as
    the static path, logits within the CPU test's bf16 tolerance, and a gradient in every gate."""
    model = varied_depth_model().train()
    idx = torch.randint(0, V, (4, T), device='cuda', generator=torch.Generator('cuda').manual_seed(2))
    outs = []
    for static in (False, True):
        model.static_shapes = static
        model.zero_grad()
        with torch.autocast('cuda', dtype=torch.bfloat16):
            out = model(idx, idx.roll(-1, dims=1))
        out.loss.backward()
        outs.append((out, [p.grad.clone() for gate in model.gates for p in gate.parameters()]))
    (skip, skip_grads), (every, every_grads) = outs
    assert torch.equal(skip.depth, every.depth) and 1 < skip.depth.float().mean() < 4
    tolerance = 4 * 2 ** -8 * every.logits.float().abs().max().item()
    torch.testing.assert_close(skip.logits.float(), every.logits.float(), atol=tolerance, rtol=0)
    assert all(torch.isfinite(g).all() for g in skip_grads)
