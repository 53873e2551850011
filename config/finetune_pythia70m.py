# A plain Pythia-70M continued as an AdaPonderLM, to try the code on a real model (not the paper's
# recipe: config/ponderlm_1.4b.py starts from a PonderLM, which ponders). Pythia's tokens first:
# python data/pile/prepare.py --encoding=neox --out_dir=data/pile_neox --max_tokens=100_000_000
out_dir = 'out-finetune-pythia70m'
init_from = 'pythia-70m'  # a Pythia name, or a local directory holding such a checkpoint
eval_interval = 200
eval_iters = 50
log_interval = 10
dataset = 'pile_neox'
batch_size = 8
block_size = 1024
gradient_accumulation_steps = 8  # 65k tokens per step; 1, 2, 4 or 8 GPUs share it
bottom_k_start = 0.1  # the backbone already predicts well: the gate loss starts early
bottom_k_end = 0.3
gate_warmup_iters = 200  # gates only, backbone frozen
learning_rate = 1e-4  # low: keep what the backbone already knows
max_iters = 1000
min_lr = 1e-5
beta2 = 0.95
compile = True
