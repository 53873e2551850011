# A Pythia-70M-shaped AdaPonderLM trained from scratch on the Pile on one GPU, the setting of the
# paper's smallest model with far fewer tokens: python data/pile/prepare.py --max_tokens=300_000_000
# Several GPUs: torchrun --standalone --nproc_per_node=8 train.py config/pile_pythia70m.py
out_dir = 'out-pile-pythia70m'
eval_interval = 500
eval_iters = 50
log_interval = 10
dataset = 'pile'
batch_size = 16
block_size = 1024  # Pythia's is 2048; half keeps each step cheap at this token budget
gradient_accumulation_steps = 8  # 131k tokens per step; 1, 2, 4 or 8 GPUs share it
model_preset = 'pythia-70m'  # 6 layers, 8 heads, 512 wide
learning_rate = 6e-4
max_iters = 2000
warmup_iters = 100
min_lr = 6e-5
beta2 = 0.95
compile = True
