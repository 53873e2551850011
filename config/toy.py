# The default demo written out: plain python train.py runs the same; then python sample.py.
out_dir = 'out-toy'
dataset = 'toy'  # made on the spot by data/toy/prepare.py
batch_size = 32
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
bottom_k_start = 0.2  # the paper's pondering, with cross-entropy alone for the first 20%...
bottom_k_end = 0.5  # ...then k ramps up to bottom_k_frac (0.1) by 50%
max_iters = 500
