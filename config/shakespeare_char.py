# Tiny Shakespeare at the character level on one GPU: nanoGPT's "baby GPT" (6 x 384) pondering up
# to 4 passes. First: python data/shakespeare_char/prepare.py. On a laptop CPU, a smaller model:
# python train.py config/shakespeare_char.py --device=cpu --compile=False --eval_iters=20
#   --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --dropout=0.0
out_dir = 'out-shakespeare-char'
eval_interval = 250  # the model overfits this small dataset: keep an eye on val_loss
eval_iters = 200
log_interval = 10
always_save_checkpoint = False  # keep the checkpoint with the best val_loss
dataset = 'shakespeare_char'
batch_size = 64
block_size = 256  # characters of context
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
ponder_lambda = 1.0  # 10x the paper's gate loss: measured only at 4 x 128 (docs/results.md, 8)
max_iters = 2000
warmup_iters = 100
compile = True
