import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(autouse=True)
def _sigint_handler():
    """train.py run in-process installs its Ctrl-C handler: the next test, and pytest, get theirs back."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache in tmp_path, offline (no test reaches the network). huggingface_hub reads
    HF_HUB_CACHE and HF_HUB_OFFLINE when imported, so its constants are set along with the environment.
    Returns put(repo_id, files): lays files {name: source file} out as a download of repo_id would."""
    constants = pytest.importorskip('huggingface_hub.constants')
    cache = tmp_path / 'hf_cache'
    monkeypatch.setenv('HF_HUB_CACHE', str(cache))  # for scripts run as subprocesses
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))  # for this process
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)

    def put(repo_id, files):
        repo, commit = cache / f"models--{repo_id.replace('/', '--')}", 'c0ffee' * 6 + 'c0ff'  # 40 hex digits
        (repo / 'snapshots' / commit).mkdir(parents=True)
        for name, source in files.items():
            shutil.copy(source, repo / 'snapshots' / commit / name)
        (repo / 'refs').mkdir()
        (repo / 'refs' / 'main').write_text(commit)  # the branch a download resolved, read when offline
        return repo / 'snapshots' / commit
    return put
