"""
Sample from a trained AdaPonderLM, each new token shown with the number of passes that chose it:
$ python sample.py --start="A:57+486=" --halt_threshold=1e-2 --html=samples.html
On a terminal each token is drawn on its depth's colour, elsewhere (or with --plain) as
text[passes]; data/show.py draws the colours, the HTML page and the PNG picture.
"""
from configurator import check, configure, die, interrupted, or_die  # first: Ctrl-C in imports
import sys
import time
from signal import SIGINT, signal

import torch

from adaponder import depth_histogram
from data.show import check_files, depth_colours, show, write_html, write_image
from data.tokenizer import load_tokenizer, read_prompt
from pretrained import load_checkpoint, pick_device

# -----------------------------------------------------------------------------
out_dir = 'out-toy'  # the folder holding ckpt.pt
data_dir = 'data'  # the vocabulary is data_dir/<the checkpoint's dataset>/meta.json
start = '\n'  # the prompt, or FILE:path to read it from a UTF-8 file
num_samples = 10  # samples to draw
max_new_tokens = 500  # tokens generated per sample
temperature = 0.8  # 1.0: the model's distribution, < 1 sharper, 0 greedy
top_k = 200  # sample among the top_k most likely tokens only (None: all)
seed = 1337
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto', 'float32', 'bfloat16' or 'float16'
halt_threshold = None  # tau at inference (None: the checkpoint's); higher = fewer passes
n_ponder = None  # a cap on the extra passes, at most the trained K (None: K)
plain = False  # text[passes] even on a terminal
html = ''  # also write the samples, coloured by passes, to this HTML file
image = ''  # and draw them into this PNG picture (needs matplotlib)
configure(globals())
check(globals(), dict(num_samples='integer [1, inf)', max_new_tokens='integer [1, inf)',
                      temperature='[0, inf)', top_k='integer [1, inf) or None',
                      seed='integer [0, 1e19)',  # torch takes seeds below 2**64
                      halt_threshold='[0, 1] or None', n_ponder='integer [0, inf) or None'))
# -----------------------------------------------------------------------------
or_die(check_files, html=html, image=image)  # now, not after minutes of sampling
device, dtype, autocast = or_die(pick_device, device, dtype)
inference = {k: v for k, v in dict(halt_threshold=halt_threshold, n_ponder=n_ponder).items()
             if v is not None}  # where set, they replace the checkpoint's
model, ckpt = or_die(load_checkpoint, f'{out_dir}/ckpt.pt', device)
full = model.flops_per_token([0] * model.trained_K + [1])  # flops_vs_full: against K+1 passes
or_die(model.set_inference, **inference)
model.eval()
prompt = or_die(read_prompt, start)
encode, decode = or_die(load_tokenizer, data_dir, ckpt, model.config.vocab_size)
idx = torch.tensor([or_die(encode, prompt)], dtype=torch.long, device=device)  # (1, T)

n_pass = model.config.n_ponder + 1
colours = depth_colours(n_pass)
terminal = None if plain or not sys.stdout.isatty() else colours  # text[depth] unless on a terminal
print(f"passes per token: {''.join(show(f' {d} ', d, colours) for d in range(1, n_pass + 1))} "
      "(cool = few, hot = many; ↵ is a newline)" if terminal else
      f"each new token as text[passes], passes 1..{n_pass}")
samples = []  # (pieces, stats) of each sample; Ctrl-C from here: one line, not a traceback
signal(SIGINT, lambda *_: interrupted("the samples above were printed, no file written"))
with autocast:
    torch.manual_seed(seed)
    for i in range(num_samples):
        print(prompt, end='', flush=True)
        pieces, held, busy = [], [], 0.0  # (text, depth) of each new token; seconds computing
        t0 = time.perf_counter()
        for token, depth in model.stream(idx, max_new_tokens, temperature, top_k):
            held.append(token.item())  # a BPE token may end inside a UTF-8 character (4 bytes at
            text = decode(held)  # most): then it shows nothing, and the token completing it all
            text, held = ('', held) if text[-1:] == '\ufffd' and len(held) < 4 else (text, [])
            pieces.append((text, depth.item()))
            busy += time.perf_counter() - t0
            print(show(*pieces[-1], terminal), end='', flush=True)
            t0 = time.perf_counter()  # the terminal's time is not the model's: the clock stops
        hist = depth_histogram(torch.tensor([d for _, d in pieces]), n_pass)
        flops = model.flops_per_token(hist)  # with the mean passes
        stats = (f"sample i={i} tokens={max_new_tokens} tok/s={max_new_tokens / busy:.1f} passes="
                 f"{flops['mean_depth']:.2f} flops_vs_full={flops['total'] / full['total']:.2f} "
                 f"depth_hist=[{','.join(map(str, hist))}]")
        print(f"\n{stats}\n---------------")
        samples.append((pieces, stats))
for path, write in ((html, write_html), (image, write_image)):
    try:
        if path:
            write(path, prompt, samples, colours)
            print(f"wrote {path}")
    except OSError as e:  # a full disk: the samples above are printed, the file is not
        die(f"could not write {path} ({e.strerror}); free some space or pass another path")
