import torch

from conftest import tiny


def test_decode_step_compiles_whole_graph_over_the_static_cache():
    """The static KV cache lets torch.compile capture a decode step as one graph (fullgraph=True fails on
    any graph break), reused at every position without recompiling."""
    model = tiny(n_layers=1)
    x = torch.randint(0, 97, (1, 12))
    full = model(x).logits
    model.setup_cache(1, 12)
    step = torch.compile(lambda tok, pos: model(tok, input_pos=pos).logits, fullgraph=True, dynamic=False)
    with torch.no_grad():
        model(x[:, :8], input_pos=torch.arange(8))
        outs = [step(x[:, t:t + 1], torch.tensor([t])) for t in range(8, 12)]
    model.clear_cache()
    assert (torch.cat(outs, 1) - full[:, 8:]).abs().max() < 1e-5
