# The depth task (data/hops): pointer chasing, each answer k = 1..4 lookups away. A small AdaPonderLM that
# first trains as a plain model (one pass) so that it learns single lookups, then ponders with four passes.
# python train.py config/hops.py, then python analyze.py --out_dir=out-hops (accuracy and passes per k).
# What it learns in these 1,500 steps (one chained hop, not three) is in docs/results.md section 9.

out_dir = 'out-hops'
eval_interval = 250
log_interval = 50
eval_iters = 10

dataset = 'hops'  # made on the spot by data/hops/prepare.py
batch_size = 32
block_size = 64  # about three lines

n_layer = 4
n_head = 4
n_embd = 128

# pondering: K=3, learned halting, tau 1e-4, lambda 0.1, k 0.1 (train.py's defaults), but
one_pass_iters = 300  # a plain model for the first 300 steps: pondering from scratch did not learn the lookups
gate_bias_init = 0.0  # s = 0.5 when pondering begins: a full-strength feedback (bias 3) shocked the loss to 5.6
bottom_k_start = 0.36  # the gate loss starts a fifth of the way into pondering...
bottom_k_end = 0.6  # ...and reaches k 0.1 halfway through it

learning_rate = 2e-3
max_iters = 1500
warmup_iters = 50
min_lr = 1e-4
beta2 = 0.99
