# Tiny Shakespeare at the character level on one GPU: nanoGPT's "baby GPT" (6 layers, 384 wide, 10.6M
# parameters, plus 1.8M in the three gates) pondering up to 4 passes.
# First: python data/shakespeare_char/prepare.py
# On a laptop CPU, a smaller model:
# python train.py config/shakespeare_char.py --device=cpu --compile=False --eval_iters=20 --log_interval=1
#   --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --dropout=0.0

out_dir = 'out-shakespeare-char'
eval_interval = 250  # the model overfits this small dataset: keep an eye on val_loss
eval_iters = 200
log_interval = 10
always_save_checkpoint = False  # keep the checkpoint with the best val_loss

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256  # characters of context

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

# pondering: train.py's defaults (K=3, learned halting, tau 1e-4, k 0.1: the paper's), but a 10x gate loss:
# on a 4x128 CPU run it halts in training (1.94 passes), beats least-spread random depths at and below that
# and never loses to a cap at equal passes, where 0.1 does (docs/results.md section 8). Unmeasured at this
# size: watch passes= in the eval lines (1.00 means the gates collapsed, as this weight does on the toy data)
ponder_lambda = 1.0

learning_rate = 1e-3  # a small model can take a high learning rate
max_iters = 2000
warmup_iters = 100
min_lr = 1e-4
beta2 = 0.99  # few tokens per iteration

compile = True
