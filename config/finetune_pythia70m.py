# Continued pretraining of a plain Pythia-70M as an AdaPonderLM: first only the new gates learn (backbone
# frozen), then everything trains together at a low learning rate. A way to try the code on a small real
# model, not the paper's recipe: the paper continues from PonderLM checkpoints, which already ponder (see
# config/ponderlm_1.4b.py); plain Pythia has never pondered, and learning to takes far more tokens than this.
# Pythia reads GPT-NeoX tokens, not GPT-2's, so prepare the Pile with its tokenizer:
# python data/pile/prepare.py --encoding=neox --out_dir=data/pile_neox --max_tokens=100_000_000

out_dir = 'out-finetune-pythia70m'
init_from = 'pythia-70m'  # a Pythia name, or a local directory holding such a checkpoint
eval_interval = 200
eval_iters = 50
log_interval = 10
always_save_checkpoint = True

dataset = 'pile_neox'  # the Pile in GPT-NeoX tokens, prepared as above
batch_size = 16
block_size = 1024
gradient_accumulation_steps = 4  # 65k tokens per step

# pondering: train.py's defaults (K=3, learned halting, tau 1e-4, lambda 0.1, k 0.1: the paper's)
bottom_k_start = 0.1  # the backbone already predicts well: the gate loss starts early
bottom_k_end = 0.3
gate_warmup_iters = 200  # gates only, backbone frozen

learning_rate = 1e-4  # low: keep what the backbone already knows
max_iters = 1000
warmup_iters = 50
min_lr = 1e-5
weight_decay = 0.1
beta2 = 0.95

dtype = 'auto'
compile = True
