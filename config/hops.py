# The depth task (data/hops): pointer chasing, answers 1 to 4 lookups away; a plain model first,
# then pondering. python analyze.py --out_dir=out-hops: accuracy and passes per hop (results.md, 9).
out_dir = 'out-hops'
eval_interval = 250
log_interval = 50
dataset = 'hops'  # made on the spot by data/hops/prepare.py
block_size = 64  # about three lines
one_pass_iters = 300  # pondering from scratch did not learn the lookups
gate_bias_init = 0.0  # s = 0.5: full-strength feedback (bias 3) shocked the loss to 5.6
bottom_k_start = 0.36  # the gate loss starts a fifth of the way into pondering...
bottom_k_end = 0.6  # ...and reaches k 0.1 halfway through it
learning_rate = 2e-3
max_iters = 1500
