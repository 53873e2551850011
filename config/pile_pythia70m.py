# A Pythia-70M-shaped AdaPonderLM trained from scratch on a slice of the Pile, on one GPU (e.g. an H100):
# the setting of the paper's smallest model, with far fewer tokens. The data:
# python data/pile/prepare.py --max_tokens=300_000_000  (GPT-2 BPE; max_iters x tokens_per_iter below ~ 262M)
# Several GPUs: torchrun --standalone --nproc_per_node=8 train.py config/pile_pythia70m.py

out_dir = 'out-pile-pythia70m'
eval_interval = 500
eval_iters = 50
log_interval = 10
always_save_checkpoint = True

dataset = 'pile'
batch_size = 32
block_size = 1024  # Pythia's is 2048; half keeps each step cheap at this token budget
gradient_accumulation_steps = 4  # 32 x 1024 x 4 = 131k tokens per step

model_preset = 'pythia-70m'  # 6 layers, 8 heads, 512 wide
dropout = 0.0

# pondering: train.py's defaults (K=3, learned halting, tau 1e-4, lambda 0.1, k 0.1: the paper's)

learning_rate = 6e-4
max_iters = 2000
warmup_iters = 100
min_lr = 6e-5
weight_decay = 0.1
beta2 = 0.95
grad_clip = 1.0

dtype = 'auto'  # bfloat16 on Ampere and later
compile = True
