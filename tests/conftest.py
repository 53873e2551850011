import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project is plain top-level files, not a package

# tiktoken's cache files for offline machines (CI keeps shared/ beside the clone)
_cache = ROOT.parent / 'shared' / 'tiktoken_cache'
if _cache.is_dir():
    os.environ.setdefault('TIKTOKEN_CACHE_DIR', str(_cache))

# tiny models run fastest on one thread, and a loaded 2-core machine makes two threads up to 100x slower;
# the environment variable reaches the scripts the tests start as subprocesses
os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch  # noqa: E402

torch.set_num_threads(1)
