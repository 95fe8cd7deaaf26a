import torch

from llmarch.transforms import transposed_weight_layout

from conftest import tiny


def test_transposed_layout_keeps_values_and_outputs_and_moves_only_widening_weights():
    model = tiny("gpt-tiny")
    x = torch.randint(0, 97, (2, 9))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model(x).logits
    transposed_weight_layout(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (model(x).logits - logits).abs().max() < 1e-5
    block = model.blocks[0]
    assert block.attn.qkv_proj.weight.t().is_contiguous() and block.mlp.up.weight.t().is_contiguous()
    assert model.lm_head.weight.t().is_contiguous()  # tied: the embedding now reads the same transposed tensor
    assert block.mlp.down.weight.is_contiguous() and block.attn.o_proj.weight.is_contiguous()
