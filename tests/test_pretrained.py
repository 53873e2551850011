"""Importing a GPT-NeoX checkpoint: with n_ponder=0 a Pythia, and with halting='none' an official PonderLM, must be
the reference model, logit for logit. The reference is transformers' GPTNeoXForCausalLM (a test-only dependency,
installed by .ci/run); no network is used: hub ids are read from a Hugging Face cache made in tmp_path."""
import http.server
import importlib.util
import json
import sys
import threading

import pytest
import torch

from pretrained import from_pretrained

transformers = pytest.importorskip('transformers')  # test extras (tests/requirements.txt): skip cleanly without
safetensors = pytest.importorskip('safetensors.torch')
load_file, save_file = safetensors.load_file, safetensors.save_file

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
    model = from_pretrained(tmp_path, n_ponder=0).eval()  # a Path or a str
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
    model = from_pretrained(str(tmp_path), n_ponder=0, block_size=32).eval()
    assert (model.config.rotary_pct, model.config.rotary_base, model.config.block_size) == (0.5, 500.0, 32)
    assert max_logit_diff(hf, model, T=32) < 1e-4


def test_pondering_on_an_imported_backbone(tmp_path):
    hf = reference(tmp_path)
    model = from_pretrained(str(tmp_path), n_ponder=3, halting='learned').eval()
    assert len(model.gates) == 3
    for gate in model.gates:  # new, at their init: training starts as plain PonderLM
        assert gate[-1].bias.item() == model.config.gate_bias_init
    torch.testing.assert_close(model.lm_head.weight, hf.get_output_embeddings().weight)
    idx = torch.randint(0, V, (2, 16))
    out = model(idx, targets=idx)
    assert out.logits.shape == (2, 16, V) and out.depth.max().item() == 4 and torch.isfinite(out.loss)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match='neither a directory nor a model-hub id'):
        from_pretrained('no-such-dir')
    with pytest.raises(FileNotFoundError, match='needs config.json and model.safetensors or pytorch_model.bin'):
        from_pretrained(str(tmp_path))
    reference(tmp_path / 'ref')
    for bad in [dict(n_embd=32), dict(block_size=128), dict(no_such_field=1)]:
        with pytest.raises(ValueError, match='conflicts with the checkpoint|unknown config field'):
            from_pretrained(str(tmp_path / 'ref'), **bad)
    config = json.loads((tmp_path / 'ref' / 'config.json').read_text())
    (tmp_path / 'ref' / 'config.json').write_text(json.dumps({**config, 'hidden_act': 'relu'}))
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        from_pretrained(str(tmp_path / 'ref'))


def test_hub_id_through_the_hugging_face_cache(tmp_path, hf_cache):
    """A Pythia name is EleutherAI's repository, read by huggingface_hub from its cache, where transformers or an
    earlier run left it (hf_cache is offline: a file not there would be an error, not a download)."""
    hf = reference(tmp_path / 'ref')
    hf_cache('EleutherAI/pythia-70m', {f: tmp_path / 'ref' / f for f in ['config.json', 'model.safetensors']})
    model = from_pretrained('pythia-70m', n_ponder=0).eval()
    torch.testing.assert_close(model.wte.weight, hf.gpt_neox.embed_in.weight, rtol=0, atol=0)
    assert max_logit_diff(hf, model) < 1e-4


def test_any_hub_id_and_sharded_weights(tmp_path, hf_cache):
    """Any owner/name; weights in shards (how large checkpoints are saved), .bin files here: every shard is read."""
    hf = reference(tmp_path / 'ref')
    weights = load_file(tmp_path / 'ref' / 'model.safetensors')
    names = sorted(weights)
    halves = {'pytorch_model-00001-of-00002.bin': names[:len(names) // 2],
              'pytorch_model-00002-of-00002.bin': names[len(names) // 2:]}
    for file, keys in halves.items():
        torch.save({k: weights[k] for k in keys}, tmp_path / file)
    files = {'config.json': tmp_path / 'ref' / 'config.json', **{f: tmp_path / f for f in halves}}
    hf_cache('someone/tiny-neox', files)
    assert max_logit_diff(hf, from_pretrained('someone/tiny-neox', n_ponder=0).eval()) < 1e-4


class GatedHub(http.server.BaseHTTPRequestHandler):
    """A model hub that answers every request as the real one answers for a gated repository without a token."""
    def do_GET(self):
        self.send_response(401)
        self.send_header('X-Error-Code', 'GatedRepo')
        self.send_header('Content-Length', '0')
        self.end_headers()
    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_hub_errors_are_one_line_with_the_fix(hf_cache, monkeypatch):
    constants = pytest.importorskip('huggingface_hub.constants')

    def error(match):
        with pytest.raises(ValueError, match=match) as e:
            from_pretrained('pythia-70m')
        assert '\n' not in str(e.value)
    error(r'could not download EleutherAI/pythia-70m .*HF_HUB_OFFLINE.*HF_ENDPOINT.*local directory')  # nothing cached
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(constants, 'ENDPOINT', 'http://127.0.0.1:1')  # nothing listens there: unreachable
    error(r'could not download EleutherAI/pythia-70m .*Connect.*HF_ENDPOINT.*local directory')
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), GatedHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, 'ENDPOINT', f'http://127.0.0.1:{server.server_port}')
    error('EleutherAI/pythia-70m is not on the model hub, or it is gated.*HF_TOKEN')
    server.shutdown()
    monkeypatch.setitem(sys.modules, 'huggingface_hub', None)  # as if not installed
    error('pip install huggingface_hub')


# ---- the official PonderLM checkpoints (LUMIA-Group/PonderingLM, e.g. zeng123/PonderingPythia-1.4B) ----

def ponderlm_checkpoint(folder, scale_embeds, multiply, K=3):
    """A tiny random checkpoint in the official PonderLM format: a GPT-NeoX config.json with the pondering keys,
    Pythia's weight names, and the `adapter` weight the official class declares and never uses."""
    hf = reference(folder)
    config = json.loads((folder / 'config.json').read_text())
    config.update(ponderinglm=True, pondering_steps=K, scale_embeds=scale_embeds, mutiply_pondering_steps=multiply)
    (folder / 'config.json').write_text(json.dumps(config))
    weights = load_file(folder / 'model.safetensors')
    weights['adapter.weight'] = torch.randn(64, 128)
    save_file(weights, folder / 'model.safetensors')
    return hf


def official_ponderlm_logits(hf, idx, K, scale_embeds, multiply):
    """The official PonderLM forward (its GPTNeoXForCausalLM.forward with ponderinglm on), re-written on
    transformers' GPTNeoXModel: K pondering passes, each adding softmax(logits) @ W_in to the input, then a final
    pass. sqrt(d) is computed in the weights' dtype, as there."""
    E0 = hf.gpt_neox.embed_in(idx)
    W = hf.gpt_neox.embed_in.weight
    if scale_embeds:
        scale = torch.sqrt(torch.tensor(E0.shape[-1], dtype=E0.dtype))
        E0, W = E0 * scale, W * scale
    embed_out = hf.get_output_embeddings()  # 'embed_out' on disk and in the official class
    x = E0 * K if multiply else E0
    for _ in range(K):
        h = hf.gpt_neox(inputs_embeds=x).last_hidden_state
        x = x + torch.softmax(embed_out(h), dim=-1) @ W
    return embed_out(hf.gpt_neox(inputs_embeds=x).last_hidden_state)


@pytest.mark.parametrize('scale_embeds', [False, True])
@pytest.mark.parametrize('multiply', [False, True])
def test_ponderlm_import_reproduces_the_official_forward(tmp_path, scale_embeds, multiply):
    hf = ponderlm_checkpoint(tmp_path, scale_embeds, multiply)
    model = from_pretrained(tmp_path, halting='none').eval()
    cfg = model.config
    assert cfg.n_ponder == 3 and cfg.first_embed_mult == (3 if multiply else 1)
    assert cfg.embed_scale == pytest.approx(8.0 if scale_embeds else 1.0)  # sqrt(64)
    idx = torch.randint(0, V, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        official = official_ponderlm_logits(hf, idx, 3, scale_embeds, multiply)
        ours = model(idx)
    assert (ours.depth == 4).all()
    assert (official - ours.logits).abs().max().item() < 1e-4
    # as an AdaPonderLM (new gates) it decodes what its forward computes, with these embedding scales too
    adaptive = from_pretrained(tmp_path).eval()
    cache = adaptive.new_cache(2, 32)
    steps = [adaptive.step(idx[:, :20], cache), adaptive.step(idx[:, 20:], cache)]
    full = adaptive(idx)
    assert torch.equal(torch.cat([s.depth for s in steps], 1), full.depth)
    torch.testing.assert_close(torch.cat([s.logits for s in steps], 1), full.logits, atol=1e-4, rtol=0)


def test_ponderlm_pondering_comes_from_the_checkpoint(tmp_path):
    ponderlm_checkpoint(tmp_path, True, True)
    with pytest.raises(ValueError, match='n_ponder=2 conflicts with the checkpoint'):
        from_pretrained(tmp_path, n_ponder=2)
    with pytest.raises(ValueError, match='embed_scale=1.0 conflicts'):
        from_pretrained(tmp_path, embed_scale=1.0)
    model = from_pretrained(tmp_path, halt_threshold=0.01)  # the gates' knobs are ours to set
    assert len(model.gates) == 3 and model.config.halt_threshold == 0.01


def test_safetensors_package_missing(tmp_path, monkeypatch):
    hf = reference(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr('importlib.util.find_spec', lambda name, *a: None if name == 'safetensors' else
                        real_find_spec(name, *a))
    with pytest.raises(ValueError, match='pip install safetensors'):
        from_pretrained(str(tmp_path))
    torch.save(load_file(tmp_path / 'model.safetensors'), tmp_path / 'pytorch_model.bin')  # then the .bin is read
    assert max_logit_diff(hf, from_pretrained(str(tmp_path), n_ponder=0).eval()) < 1e-4
