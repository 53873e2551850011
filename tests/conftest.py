import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project is plain top-level files, not a package

# tiktoken's cache files for offline machines (CI keeps shared/ beside the clone)
_cache = ROOT.parent / 'shared' / 'tiktoken_cache'
if _cache.is_dir():
    os.environ.setdefault('TIKTOKEN_CACHE_DIR', str(_cache))
