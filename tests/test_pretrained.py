"""Importing a GPT-NeoX (Pythia) checkpoint: with n_ponder=0 AdaPonderLM must be the reference model, logit for logit.
The reference is transformers' GPTNeoXForCausalLM (a test-only dependency, installed by .ci/run); no network is used."""
import importlib.util
import json
import urllib.error
import urllib.request

import pytest
import torch
import transformers
from safetensors.torch import load_file

from adaponder import AdaPonderLM

V = 100


def reference(tmp_path, **overrides):
    """A tiny random GPTNeoXForCausalLM, saved as transformers saves it (config.json + model.safetensors)."""
    torch.manual_seed(0)
    settings = dict(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                    max_position_embeddings=64, rotary_pct=0.25, use_parallel_residual=True, hidden_act='gelu')
    hf = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**{**settings, **overrides})).float().eval()
    with torch.no_grad():  # the default init leaves biases and LayerNorms at 0 / 1: make every weight matter
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    return hf


def max_logit_diff(hf, model, T=48):
    idx = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return (hf(idx).logits - model(idx).logits).abs().max().item()


@pytest.mark.parametrize('parallel_residual', [True, False])
def test_import_reproduces_reference_logits(tmp_path, parallel_residual):
    hf = reference(tmp_path, use_parallel_residual=parallel_residual)
    model = AdaPonderLM.from_pretrained(tmp_path, n_ponder=0).eval()  # a Path or a str
    cfg = model.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.block_size) == (2, 4, 64, V, 64)
    assert cfg.parallel_residual == parallel_residual and cfg.rotary_pct == 0.25
    assert max_logit_diff(hf, model) < 1e-4


def test_pythia_style_checkpoint(tmp_path):
    """Pythia's own files: pytorch_model.bin with the old buffers, and config.json with the old rotary names
    (rotary_pct, rotary_emb_base at top level). A non-default rotary base and fraction must be honoured."""
    hf = reference(tmp_path / 'ref', rotary_pct=0.5, rotary_emb_base=500)
    config = json.loads((tmp_path / 'ref' / 'config.json').read_text())
    rope = config.pop('rope_parameters')
    config.update(rotary_pct=rope['partial_rotary_factor'], rotary_emb_base=rope['rope_theta'])
    (tmp_path / 'config.json').write_text(json.dumps(config))
    weights = load_file(tmp_path / 'ref' / 'model.safetensors')  # the names on disk: gpt_neox.*, embed_out
    for i in range(2):  # buffers old GPT-NeoX checkpoints carry: ignored on import
        weights[f'gpt_neox.layers.{i}.attention.bias'] = torch.ones(1, 1, 64, 64, dtype=torch.bool).tril()
        weights[f'gpt_neox.layers.{i}.attention.rotary_emb.inv_freq'] = torch.ones(8)
    torch.save(weights, tmp_path / 'pytorch_model.bin')
    model = AdaPonderLM.from_pretrained(str(tmp_path), n_ponder=0, block_size=32).eval()
    assert (model.config.rotary_pct, model.config.rotary_base, model.config.block_size) == (0.5, 500.0, 32)
    assert max_logit_diff(hf, model, T=32) < 1e-4


def test_pondering_on_an_imported_backbone(tmp_path):
    hf = reference(tmp_path)
    model = AdaPonderLM.from_pretrained(str(tmp_path), n_ponder=3, halting='learned').eval()
    assert len(model.gates) == 3
    for gate in model.gates:  # new, at their init: training starts as plain PonderLM
        assert gate[-1].bias.item() == model.config.gate_bias_init
    torch.testing.assert_close(model.lm_head.weight, hf.get_output_embeddings().weight)
    idx = torch.randint(0, V, (2, 16))
    out = model(idx, targets=idx)
    assert out.logits.shape == (2, 16, V) and out.depth.max().item() == 4 and torch.isfinite(out.loss)


def test_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv('ADAPONDER_CACHE', str(tmp_path / 'cache'))  # never touch the real cache
    with pytest.raises(ValueError, match='neither a directory nor a Pythia model.*pythia-70m'):
        AdaPonderLM.from_pretrained('pythia-7m')
    with pytest.raises(FileNotFoundError, match='needs config.json and model.safetensors or pytorch_model.bin'):
        AdaPonderLM.from_pretrained(str(tmp_path))
    reference(tmp_path / 'ref')
    for bad in [dict(n_embd=32), dict(block_size=128), dict(no_such_field=1)]:
        with pytest.raises(ValueError, match='conflicts with the checkpoint|unknown config field'):
            AdaPonderLM.from_pretrained(str(tmp_path / 'ref'), **bad)
    config = json.loads((tmp_path / 'ref' / 'config.json').read_text())
    (tmp_path / 'ref' / 'config.json').write_text(json.dumps({**config, 'hidden_act': 'relu'}))
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        AdaPonderLM.from_pretrained(str(tmp_path / 'ref'))


def test_download_from_the_hub_once(tmp_path, monkeypatch):
    """A hub name downloads config.json and weights into the cache once; the hub is faked by local files."""
    hf = reference(tmp_path / 'hub')
    monkeypatch.setenv('ADAPONDER_CACHE', str(tmp_path / 'cache'))
    real_urlopen, fetched = urllib.request.urlopen, []

    def fake_hub(url, timeout=None):
        assert url.startswith('https://huggingface.co/EleutherAI/pythia-70m/resolve/main/')
        fetched.append(url.rsplit('/', 1)[1])
        return real_urlopen((tmp_path / 'hub' / fetched[-1]).as_uri())
    monkeypatch.setattr('urllib.request.urlopen', fake_hub)
    model = AdaPonderLM.from_pretrained('pythia-70m', n_ponder=0).eval()
    assert fetched == ['config.json', 'model.safetensors'] and max_logit_diff(hf, model) < 1e-4
    assert sorted(f.name for f in (tmp_path / 'cache' / 'pythia-70m').iterdir()) == sorted(fetched)  # no .tmp
    AdaPonderLM.from_pretrained('EleutherAI/pythia-70m')  # cached: no second download
    assert len(fetched) == 2


def test_unreachable_hub_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('ADAPONDER_CACHE', str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError('network is unreachable')
    monkeypatch.setattr('urllib.request.urlopen', offline)
    with pytest.raises(ValueError, match=r'could not download pythia-70m .*network is unreachable.*local directory'):
        AdaPonderLM.from_pretrained('EleutherAI/pythia-70m')


def test_safetensors_package_missing(tmp_path, monkeypatch):
    hf = reference(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr('importlib.util.find_spec', lambda name, *a: None if name == 'safetensors' else
                        real_find_spec(name, *a))
    with pytest.raises(ValueError, match='pip install safetensors'):
        AdaPonderLM.from_pretrained(str(tmp_path))
    torch.save(load_file(tmp_path / 'model.safetensors'), tmp_path / 'pytorch_model.bin')  # then the .bin is read
    assert max_logit_diff(hf, AdaPonderLM.from_pretrained(str(tmp_path), n_ponder=0).eval()) < 1e-4
