"""tutorial.ipynb runs top to bottom. nbclient executes it in a copy of the scripts in tmp_path, so its dataset and
checkpoint go there, with the notebook's fast setting: 10 training steps of a tiny model."""
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')
pytest.importorskip('ipykernel')
pytest.importorskip('matplotlib')

ROOT = Path(__file__).resolve().parents[1]
FAST = {'TUTORIAL_ITERS': '10',
        'TUTORIAL_TRAIN_ARGS': '--n_layer=1 --n_head=2 --n_embd=32 --block_size=32 --batch_size=8 --eval_iters=2'}


def test_tutorial_runs(tmp_path, monkeypatch):
    for script in [*ROOT.glob('*.py'), *ROOT.glob('data/*.py'), *ROOT.glob('data/*/prepare.py')]:  # it runs train.py
        copy = tmp_path / script.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(script, copy)
    for key, value in FAST.items():  # the kernel, and train.py under it, inherit the environment
        monkeypatch.setenv(key, value)
    nb = nbformat.read(ROOT / 'tutorial.ipynb', as_version=4)
    # the kernel's cwd is tmp_path; at the end it is killed, not asked to exit (torch's exit: most of a second)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name='python3', shutdown_kernel='immediate',
                                     resources={'metadata': {'path': str(tmp_path)}})
    client.execute()  # a cell that fails raises CellExecutionError, with its traceback
    outputs = [out for cell in nb.cells if cell.cell_type == 'code' for out in cell.outputs]
    text = ''.join(out.get('text', '') for out in outputs)
    assert 'OK: cached decoding == training forward' in text
    assert (tmp_path / 'out-notebook' / 'ckpt.pt').is_file()
    assert sum('image/png' in out.get('data', {}) for out in outputs) == 4  # depths, classes, sample, dial
