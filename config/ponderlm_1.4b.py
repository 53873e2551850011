# A real 1.4B AdaPonderLM on one 80 GB GPU, as the paper builds its large models: start from a PonderLM that
# already ponders - the released zeng123/PonderingPythia-1.4B (Pythia-1.4B shape, K=3, 300B Pile tokens) - so
# that only the gates are new. First the gates learn alone (backbone frozen), then everything trains together.
#   pip install tokenizers safetensors
#   python data/pile/prepare.py --encoding=neox --out_dir=data/pile_neox --max_tokens=150_000_000
#   python train.py config/ponderlm_1.4b.py
#   python sample.py --out_dir=out-ponderlm-1.4b --start="The capital of France is" --max_new_tokens=100
# The checkpoint's config.json sets K=3, embed_scale=sqrt(2048) and first_embed_mult=3 (its scale_embeds and
# mutiply_pondering_steps); overriding them is an error. Not run here: this project's machines cannot download
# the checkpoint; tests/test_pretrained.py checks the import against the official forward on a tiny random one.
#
# Memory, estimated (docs/results.md): fp32 weights, gradients and AdamW's two moments take 16 bytes for each of
# the 1.47B parameters (23.4 GB), autocast's bf16 copies of the weights 2.9 GB more; the activations of the K+1
# passes, measured as what autograd saves per token at this width (bf16 autocast), are about 7.4 MB a token.
# Batch 2 x 2048 tokens: 26.4 GB + 30.5 GB = about 57 GB, leaving room for the transient buffers of the backward
# pass. Batch 3 x 2048 (72 GB) is too close to 80 GB.

out_dir = 'out-ponderlm-1.4b'
init_from = 'zeng123/PonderingPythia-1.4B'  # any model-hub id or a local directory with the same files
eval_interval = 100
eval_iters = 20
log_interval = 10
always_save_checkpoint = True

dataset = 'pile_neox'  # the Pile in Pythia's GPT-NeoX tokens, prepared as above
batch_size = 2
block_size = 2048  # the checkpoint's context
gradient_accumulation_steps = 32  # 2 x 2048 x 32 = 131k tokens per step, 131M tokens in all

# the gates: a last bias of 5 gives s = 0.993, which scales each update by 0.7% less than the PonderLM it starts
# from (measured on a small PonderLM: +0.27% val loss at step 0 with the default 3, no measurable change at 5)
gate_bias_init = 5.0
gate_warmup_iters = 200  # gates only, backbone frozen
gate_lr_mult = 10.0  # the new gates learn at 10x the backbone's rate: at 1x they barely moved in 1000 steps of a
# small stand-in of this recipe and no token halted; at 10x it ended at 2.06 passes (docs/results.md, section 4)
bottom_k_start = 0.0  # the backbone already ponders well: the gate loss may push from the start...
bottom_k_end = 0.3  # ...reaching bottom_k_frac (0.1) at step 300

learning_rate = 1e-4  # low: PonderLM ended its own schedule at 2e-5, and the backbone should keep what it knows
max_iters = 1000
warmup_iters = 50
min_lr = 1e-5
weight_decay = 0.01  # as PonderLM was trained
beta2 = 0.95

dtype = 'bfloat16'
compile = True
