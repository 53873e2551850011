# The default demo, written out: a small AdaPonderLM on the toy dataset, 5 to 10 minutes at one thread on a
# 2-core CPU (longer if it is busy): OMP_NUM_THREADS=1 python train.py config/toy.py (the same as
# OMP_NUM_THREADS=1 python train.py), then python sample.py; README.md's quick start quotes what it prints.
# The toy dataset labels every character trivial, copy, computed or noise; the run ends by printing the
# mean passes per class on val, to see whether the gates spend passes where they help.

out_dir = 'out-toy'
eval_interval = 100
log_interval = 20
eval_iters = 10
always_save_checkpoint = True

dataset = 'toy'
gradient_accumulation_steps = 1
batch_size = 32
block_size = 64

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

# pondering: train.py's defaults (K=3, learned halting, tau 1e-4, lambda 0.1, k 0.1: the paper's)
bottom_k_start = 0.2  # cross-entropy only for the first 20% of training...
bottom_k_end = 0.5  # ...then k ramps up to bottom_k_frac by 50%

learning_rate = 1e-3
max_iters = 500
warmup_iters = 50
min_lr = 1e-4
beta2 = 0.99  # small batches of tokens

device = 'auto'  # cuda > mps > cpu
compile = False
