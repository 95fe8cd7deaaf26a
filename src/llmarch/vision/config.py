"""The vision part of a ModelConfig (`ModelConfig.vision`, a dict of these fields, so configs stay plain JSON): a ViT
(Dosovitskiy et al. 2021) as CLIP (Radford et al. 2021) and SigLIP (Zhai et al. 2023) build it, the projector into the
text model's width and the token whose positions the image features take. Validated here, before anything is built;
this module imports nothing of llmarch's config (which reads it)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from .fields import check_numbers, check_positive, check_switches, check_token_id, read_fields
from ..layers.ffn import ACTIVATIONS
from . import anyres_grid
from .gemma4_config import gemma4_vision_config, is_gemma4
from .mllama_config import is_mllama, mllama_vision_config
from .pixtral_config import is_pixtral, pixtral_vision_config
from .qwen_config import is_qwen, qwen_vision_config
from .resampler_config import resampler_config

# projector.py's registry, named here so that a config is checked before anything is built (tests/parity/
# test_vision_language.py keeps the two the same)
PROJECTOR_KINDS = ("mlp", "linear", "linear_norm", "rms_linear", "pixel_shuffle", "pool_norm_linear", "norm_mlp",
                   "pixel_shuffle_mlp", "pixel_shuffle_swiglu", "pixel_shuffle_norm_swiglu", "pixel_shuffle_mlp2",
                   "perceiver", "cross_attention")
# the projectors that space-to-depth the patch grid by shuffle_factor first
SHUFFLING = ("pixel_shuffle", "pixel_shuffle_mlp", "pixel_shuffle_swiglu", "pixel_shuffle_norm_swiglu",
             "pixel_shuffle_mlp2")


@dataclass(frozen=True)
class VisionConfig:
    # the text token each of whose positions takes one image feature (LLaVA's <image>); None only when held
    image_token_id: int | None = None
    width: int = 768  # the tower's residual width
    n_layers: int = 12
    n_heads: int = 12
    ffn_hidden: int = 3072
    act: str = "quick_gelu"  # the tower's MLP activation: CLIP's quick_gelu, SigLIP's gelu_tanh
    image_size: int = 224  # the square input the learned positions were trained for (no interpolation)
    patch_size: int = 16  # a patch_size x patch_size convolution of that stride embeds each patch
    channels: int = 3
    norm_eps: float = 1e-5
    # InternViT's (InternVL; Chen et al. 2024, "InternVL", §3.2): the blocks' norms (layernorm, or rmsnorm, its 6B
    # tower's), biases on q, k and v (the output projection always has one), an RMSNorm over the whole query and key
    # projections before they split into heads (qk_norm; eps 1e-6), each sublayer's output times a learned gain per
    # channel before its residual add (layer_scale: CaiT's LayerScale, lambda_1 and lambda_2)
    norm: str = "layernorm"
    qkv_bias: bool = True
    qk_norm: bool = False
    layer_scale: bool = False
    patch_bias: bool = False  # the patch convolution's bias (SigLIP's; CLIP has none)
    class_token: bool = True  # a learned class embedding before the patches (CLIP; SigLIP has none)
    # Llama 4's tower (Meta 2025, "The Llama 4 herd"; transformers' Llama4VisionModel): the class embedding after
    # the patches instead, and left out of the output (after post_norm); needs class_token and no feature_layers
    class_last: bool = False
    # Llama 4's 2-D RoPE in the tower's attention (transformers' Llama4VisionRotaryEmbedding; axial, as Heo et al.
    # 2024, "Rotary Position Embedding for Vision Transformer"): this base, None none (tower.py's axial_rope)
    rope_theta: float | None = None
    pre_norm: bool = True  # a LayerNorm on the embeddings before the first block (CLIP's pre_layrnorm)
    post_norm: bool = False  # a LayerNorm on the last block's output (SigLIP's post_layernorm)
    # the tower's hidden states the features are, concatenated along channels (LLaVA's vision_feature_layer): index 0
    # the embeddings (after pre_norm), k the output of block k, negative from the end; none post-normed. None: the
    # tower's output (after post_norm, if any; PaliGemma's last_hidden_state)
    feature_layers: list | None = None
    # drop the first position's feature (LLaVA's vision_feature_select_strategy 'default': CLIP's class token; with a
    # tower without one, as transformers does, the first patch's)
    drop_first: bool = False
    # Idefics2/3's and SmolVLM's images of any size up to image_size (NaViT, Dehghani et al. 2023): each patch's
    # fractional coordinates bucketed into the learned positions' grid, padded patches (pixel_attention_mask) masked
    # out of attention (vision/buckets.py); needs post_norm and no class token
    position_buckets: bool = False
    # with position_buckets: a patch is real only when all its pixels are (Idefics2's), not when any is (Idefics3's)
    whole_patches: bool = False
    # SigLIP 2's NaFlex tower (naflex.py, LFM2-VL's): patchified pixel_values of any aspect ratio with image_sizes,
    # a linear patch embedding, the positions' grid resized to each image's; each image's grid pixel-shuffled by
    # shuffle_factor on its own before an mlp or norm_mlp projector; needs post_norm and no class token
    naflex: bool = False
    # mlp: LLaVA's linear, act, linear; linear: PaliGemma's one projection; linear_norm: GIT's linear, LayerNorm;
    # pixel_shuffle: Idefics3's space-to-depth by shuffle_factor, then one linear map; pixel_shuffle_mlp: InternVL's
    # space-to-depth, LayerNorm, then mlp; norm_mlp: VipLLaVA's LayerNorm, then mlp; pixel_shuffle_swiglu: Cohere2
    # Vision's space-to-depth, then a SwiGLU of width projector_hidden / 2; pixel_shuffle_norm_swiglu: Aya Vision's,
    # a LayerNorm before the SwiGLU; pixel_shuffle_mlp2: Llama 4's space-to-depth, act(W2 act(W1 f)), then W f, no
    # biases, projector_hidden wide; perceiver: Idefics2's gated MLP and perceiver resampler (perceiver.py),
    # `resampler` its fields (resampler_config.py); cross_attention: Aria's learned queries cross-attending to the
    # patches, then norm_mlp (query_attention.py), `patch_queries` their counts
    projector: str = "mlp"
    shuffle_factor: int = 1  # pixel_shuffle's: each shuffle_factor x shuffle_factor block of patches one feature
    projector_act: str = "gelu"  # the mlp projector's activation
    projector_bias: bool = True
    projector_eps: float = 1e-5  # the LayerNorm of norm_mlp, pixel_shuffle_mlp, pixel_shuffle_norm_swiglu
    # the *_swiglu projectors' first linear map's width, both halves of the SwiGLU (alignment_intermediate_size);
    # the mlp, norm_mlp and pixel_shuffle_mlp2 projectors' hidden width (LFM2-VL's projector_hidden_size, Llama 4's
    # projector_output_dim; None: the text width)
    projector_hidden: int | None = None
    resampler: dict | None = None  # the perceiver projector's fields, ResamplerConfig's
    # the cross_attention projector's [patches, queries] pairs: an image of that many patches (padding included)
    # becomes that many features (Aria's projector_patch_to_query_dict)
    patch_queries: list | None = None
    # the patch grid average-pooled to this many features (a square, whose side divides the grid's) before the
    # projector (Gemma 3's mm_tokens_per_image); None: a feature per position
    pool_tokens: int | None = None
    # the tower and projector held for the round trip and never run, pixel_values refused: GIT's image encoder,
    # whose features go before the text tokens (Wang et al. 2022, §2.1), not at image-token positions
    held: bool = False
    # LLaVA-NeXT's AnyRes (vision/anyres.py): the resolutions (height, width), multiples of image_size, an image is
    # resized to the best of and cut into tiles; a learned newline vector ends each row of its unpadded tile
    # features. None: one image_size x image_size image, tokens_per_image features
    grid_pinpoints: list | None = None
    # LLaVA-OneVision's anyres_max_N (Li et al. 2024, "LLaVA-OneVision", §3.2 Higher AnyRes): the unpadded tile
    # features bilinearly downscaled, aspect kept, when their area exceeds N tiles' by a factor over 1.1^2.
    # None: never (LLaVA-NeXT)
    max_tiles: int | None = None

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def n_positions(self) -> int:
        return self.n_patches + self.class_token

    @property
    def tokens_per_image(self) -> int:
        """Image-token positions one image fills: a feature per position of the tower, less a dropped first one,
        or per shuffle_factor x shuffle_factor block of them (pixel_shuffle), or pool_tokens, or the resampler's
        latents."""
        if self.resampler is not None:
            return self.resampler["latents"]
        if self.patch_queries is not None:
            return self.queries_for(self.n_patches)
        return self.pool_tokens or (self.n_positions - self.drop_first - self.class_last) // self.shuffle_factor ** 2

    @property
    def feature_width(self) -> int:
        """The width of what the projector reads: the tower's features, side by side, shuffle_factor^2 of them."""
        return self.width * (1 if self.feature_layers is None else len(self.feature_layers)) * self.shuffle_factor ** 2

    def image_tokens(self, images: dict) -> list[int]:
        """The image-token positions each image fills, of an image processor's output (preprocess.py: the model's
        image arguments), checked against the tower: image_size squares."""
        pixels = images["pixel_values"]
        if self.grid_pinpoints is not None and "image_sizes" in images:  # AnyRes: each image's own count
            sizes = anyres_grid.image_sizes_list(images["image_sizes"], pixels.shape[0])
            if pixels.dim() == 5 and pixels.shape[1] == 1:  # one tile an image: its features and a newline
                return [self.tokens_per_image + 1] * len(sizes)
            return [anyres_grid.image_tokens(self, h, w) for h, w in sizes]
        if self.patch_queries is not None and pixels.dim() == 4:  # each crop's queries, by its (padded) size
            return [self.queries_for((pixels.shape[2] // self.patch_size) * (pixels.shape[3] // self.patch_size))
                    ] * pixels.shape[0]
        if pixels.dim() != 4 or tuple(pixels.shape[-2:]) != (self.image_size, self.image_size):
            raise LlmarchError(f"the image processor makes pixel_values {tuple(pixels.shape)}; the tower reads "
                               f"{self.image_size}x{self.image_size} images")
        return [self.tokens_per_image] * pixels.shape[0]

    def queries_for(self, patches: int) -> int:
        """The cross_attention projector's feature count for an image of `patches` patches."""
        found = [q for n, q in self.patch_queries if n == patches]
        if not found:
            raise LlmarchError(f"an image of {patches} patches: the projector has queries for images of "
                               f"{', '.join(str(n) for n, _ in self.patch_queries)} patches (vision patch_queries)")
        return found[0]

    def hidden_index(self, layer: int) -> int:
        """A feature layer as a non-negative hidden-state index (0: the embeddings, k: after block k)."""
        return layer % (self.n_layers + 1)


def vision_config(data: dict) -> VisionConfig:
    """ModelConfig.vision's dict as a VisionConfig, every field checked; an unknown field is an error."""
    v = read_fields(VisionConfig, data, "vision", lists=("feature_layers", "patch_queries"))
    check_positive(v, ("width", "n_layers", "n_heads", "ffn_hidden", "image_size", "patch_size", "channels",
                       "shuffle_factor"))
    if v.width % v.n_heads or v.image_size % v.patch_size:
        raise LlmarchError(f"vision width {v.width} must divide by n_heads {v.n_heads} and image_size {v.image_size} "
                           f"by patch_size {v.patch_size}")
    if v.act not in ACTIVATIONS or v.projector_act not in ACTIVATIONS or v.projector not in PROJECTOR_KINDS:
        raise LlmarchError(f"vision act {v.act!r}, projector_act {v.projector_act!r}, projector {v.projector!r}: "
                           f"activations are {', '.join(ACTIVATIONS)}; projectors {', '.join(PROJECTOR_KINDS)}")
    layers = v.feature_layers
    if layers is not None and (not layers or any(not isinstance(i, int) or not -v.n_layers - 1 <= i <= v.n_layers
                                                 for i in layers)):
        raise LlmarchError(f"vision feature_layers {layers} must be hidden-state indices in "
                           f"[{-v.n_layers - 1}, {v.n_layers}] (or None: the tower's output)")
    if v.drop_first and layers is None:
        raise LlmarchError("vision drop_first selects among feature_layers' hidden states; give feature_layers")
    if v.norm not in ("layernorm", "rmsnorm"):
        raise LlmarchError(f"vision norm {v.norm!r} must be layernorm or rmsnorm")
    check_switches(v, ("held", "position_buckets", "whole_patches", "naflex", "qkv_bias", "qk_norm", "layer_scale"))
    side = v.image_size // v.patch_size
    if v.naflex and (v.projector not in ("mlp", "norm_mlp") or v.class_token or not v.post_norm or layers is not None
                     or v.position_buckets):
        raise LlmarchError("vision naflex (SigLIP 2's tower) has no class token, a post_norm, no feature_layers or "
                           "position_buckets, and an mlp or norm_mlp projector")
    if not v.naflex and ((v.projector in SHUFFLING) != (v.shuffle_factor > 1) or side % v.shuffle_factor):
        raise LlmarchError(f"vision shuffle_factor {v.shuffle_factor} must be > 1 exactly with a "
                           f"shuffling projector ({', '.join(SHUFFLING)}; got {v.projector!r}) and divide the {side} "
                           "patches of a side")
    hidden, swiglu = v.projector_hidden, v.projector.endswith("_swiglu")
    if swiglu and hidden is None or hidden is not None and (
            v.projector not in ("mlp", "norm_mlp", "pixel_shuffle_mlp2") and not swiglu or not isinstance(hidden, int)
            or isinstance(hidden, bool) or hidden <= 0 or swiglu and hidden % 2):
        raise LlmarchError(f"vision projector_hidden {hidden!r} must be a positive integer (even for a *_swiglu "
                           "projector, which needs it), for a *_swiglu, mlp, norm_mlp or pixel_shuffle_mlp2 "
                           f"projector (got {v.projector!r})")
    if v.position_buckets and (v.class_token or layers is not None):
        raise LlmarchError("vision position_buckets (Idefics3's tower) has no class token and no feature_layers")
    check_numbers(v, ("projector_eps",))
    _check_llama4_fields(v)
    if v.whole_patches and not v.position_buckets:
        raise LlmarchError("vision whole_patches says which patches of a padded image are real: it needs "
                           "position_buckets")
    if (v.projector == "perceiver") != (v.resampler is not None):
        raise LlmarchError("vision resampler goes with the perceiver projector, which needs it")
    if v.resampler is not None:
        resampler_config(v.resampler, ACTIVATIONS)
    _check_queries(v)
    grid, pool = v.image_size // v.patch_size, v.pool_tokens
    pool_side = round(pool ** 0.5) if isinstance(pool, int) and pool > 0 else 0
    if pool is not None and (not pool_side or pool_side * pool_side != pool or grid % pool_side or v.class_token
                             or layers is not None):
        raise LlmarchError(f"vision pool_tokens {v.pool_tokens!r} must be a square whose side divides the patch grid's "
                           f"{grid}, over a tower's output without a class token")
    if (v.projector == "pool_norm_linear") != (v.pool_tokens is not None):
        raise LlmarchError("vision pool_tokens goes with the pool_norm_linear projector, which pools")
    if v.grid_pinpoints is not None:
        _check_pinpoints(v)
    if v.max_tiles is not None and (v.grid_pinpoints is None or not isinstance(v.max_tiles, int)
                                    or isinstance(v.max_tiles, bool) or v.max_tiles <= 0):
        raise LlmarchError(f"vision max_tiles {v.max_tiles!r} must be a positive integer, with grid_pinpoints (AnyRes)")
    if v.image_token_id is None and not v.held:
        raise LlmarchError("vision needs image_token_id, the token whose positions take the image features")
    if v.image_token_id is not None:
        check_token_id(v.image_token_id)
    return v


def _check_queries(v: VisionConfig) -> None:
    """The cross_attention projector's [patches, queries] pairs: positive integers, patches each once."""
    pairs = v.patch_queries
    if (v.projector == "cross_attention") != (pairs is not None):
        raise LlmarchError("vision patch_queries goes with the cross_attention projector, which needs it")
    if pairs is not None and (not isinstance(pairs, list) or not pairs or any(
            not isinstance(p, (list, tuple)) or len(p) != 2 or any(
                not isinstance(x, int) or isinstance(x, bool) or x <= 0 for x in p) for p in pairs)
            or len({p[0] for p in pairs}) != len(pairs)):
        raise LlmarchError(f"vision patch_queries must be [patches, queries] pairs of positive integers, each patch "
                           f"count once; got {pairs!r}")


def _check_llama4_fields(v: VisionConfig) -> None:
    """class_last and rope_theta, Llama 4's tower's: a class token to put last, and heads of whole quarters (a
    quarter of each head's dims turns by the column, a quarter by the row, each as the halves of its pairs)."""
    check_switches(v, ("class_last",))
    if v.class_last and (not v.class_token or v.feature_layers is not None):
        raise LlmarchError("vision class_last puts the class token after the patches and leaves it out of the "
                           "output: it needs class_token and no feature_layers")
    if v.rope_theta is not None:
        check_numbers(v, ("rope_theta",))
        if (v.width // v.n_heads) % 4 or not v.class_last or v.position_buckets or v.naflex:
            raise LlmarchError(f"vision rope_theta (Llama 4's 2-D RoPE over the image_size grid) needs heads of a "
                               f"multiple of 4 dims (not {v.width // v.n_heads}), class_last, and no "
                               "position_buckets or naflex")


def _check_pinpoints(v: VisionConfig) -> None:
    """AnyRes's resolutions are whole tiles, and a tile's features a square grid of its patches."""
    points = v.grid_pinpoints
    if not isinstance(points, list) or not points or any(
            not isinstance(p, list) or len(p) != 2 or any(
                not isinstance(x, int) or isinstance(x, bool) or x <= 0 or x % v.image_size for x in p)
            for p in points):
        raise LlmarchError(f"vision grid_pinpoints must be [height, width] pairs, positive multiples of image_size "
                           f"{v.image_size}; got {points!r}")
    if v.feature_layers is None or v.tokens_per_image != v.n_patches or v.held:
        raise LlmarchError("vision grid_pinpoints (AnyRes) packs one feature per patch of each tile: feature_layers "
                           "given, the class token dropped (drop_first) where the tower has one")


def check_vision(cfg) -> None:
    """ModelConfig's check of its vision dict (None: a text-only model) and of the text side it joins."""
    if cfg.vision is None:
        return
    if is_qwen(cfg.vision):
        if qwen_vision_config(cfg.vision).out_width != cfg.d_model:
            raise LlmarchError(f"the vision merger's out_width {cfg.vision['out_width']} must be the text width "
                               f"{cfg.d_model}")
        if cfg.mrope_section is None:  # images' tokens are placed by M-RoPE's three axes
            raise LlmarchError("a qwen_vl vision tower needs M-RoPE (mrope_section)")
    elif is_mllama(cfg.vision):
        if mllama_vision_config(cfg.vision).out_width != cfg.d_model:
            raise LlmarchError(f"the vision projector's out_width {cfg.vision['out_width']} must be the text width "
                               f"{cfg.d_model}")
        mixers = {cfg.mixer, *(o.get("mixer") for o in (cfg.layer_overrides or {}).values())}
        if "vision_cross" not in mixers:
            raise LlmarchError("a Llama 3.2 Vision tower (vision tower 'mllama') needs cross-attention layers "
                               "(mixer 'vision_cross') to read its images")
    elif is_pixtral(cfg.vision) or is_gemma4(cfg.vision):
        read = pixtral_vision_config if is_pixtral(cfg.vision) else gemma4_vision_config
        if read(cfg.vision).out_width != cfg.d_model:
            raise LlmarchError(f"the vision projector's out_width {cfg.vision['out_width']} must be the text width "
                               f"{cfg.d_model}")
    else:
        vision_config(cfg.vision)
    # per-layer inputs look the image token up as padding only where it is among placeholder_ids (Gemma 4's)
    ple = cfg.ple_dim and cfg.vision.get("image_token_id") not in (cfg.placeholder_ids or [])
    if cfg.is_encoder_decoder or not cfg.causal or cfg.head != "lm" or ple:
        raise LlmarchError("vision (image inputs) is for decoder-only language models without per-layer inputs (or "
                           "whose per-layer inputs read the image token as padding: placeholder_ids)")
