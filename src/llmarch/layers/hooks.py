"""Identity modules at named activation sites (TransformerLens names), for analysis without edits."""
from torch import nn


class HookPoint(nn.Identity):
    """Costs nothing until a forward hook is attached: `model.blocks[0].hook_resid_pre.register_forward_hook`."""
