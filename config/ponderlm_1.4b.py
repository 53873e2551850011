# A real 1.4B AdaPonderLM on one 80 GB GPU (2 x 2048 tokens, ~57 GB: docs/results.md, 5), as the
# paper builds its large models: from a PonderLM (K=3, embedding scales: its config.json), so
# only the gates are new; they learn alone first. Data and commands: README, "I have a GPU".
out_dir = 'out-ponderlm-1.4b'
init_from = 'zeng123/PonderingPythia-1.4B'  # or a local directory with the same files
eval_interval = 100
eval_iters = 20
log_interval = 10
dataset = 'pile_neox'
batch_size = 2
block_size = 2048  # the checkpoint's context
gradient_accumulation_steps = 32  # 131k tokens per step
gate_bias_init = 5.0  # s = 0.993: starts as the PonderLM does (docs/results.md, 4)
gate_warmup_iters = 200  # gates only, backbone frozen
gate_lr_mult = 10.0  # at 1x the gates of a small stand-in barely moved (docs/results.md, 4)
bottom_k_start = 0.0  # the backbone already ponders well: the gate loss may push from the start
bottom_k_end = 0.3
learning_rate = 1e-4  # low: PonderLM ended its own schedule at 2e-5
max_iters = 1000
min_lr = 1e-5
weight_decay = 0.01  # as PonderLM was trained
beta2 = 0.95
dtype = 'bfloat16'
compile = True
