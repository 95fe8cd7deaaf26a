"""The GGUF architectures llmarch reads and writes, each onto a Hugging Face family table (interop/<family>.py;
llama onto Mixtral's where the file has experts): what llama.cpp's converter (convert_hf_to_gguf.py) does to the
tensors, and the config.json fields its metadata gives beyond the common ones gguf.hf_config reads. Where a
converter stores nothing, the value is the one llama.cpp itself assumes (src/llama-model.cpp, llm_load_hparams),
so a file means here what it means there.

One module per group of kin families, each with its `ARCHS` entries (GGUF architecture name -> Arch, arch.py);
a new family is a new module and its line below."""
from . import (bert, deepseek, gemma, gpt_oss, layer_norm, llama, mamba, phi2, phi3, qwen2moe, qwen3_next,
               starcoder2, t5)
from . import stablelm
from . import granite
from . import cohere, lfm2
from . import llama4
from . import modernbert
from . import gemma3n, gemma4
from . import kimi_linear
from . import dbrx, minicpm3
from . import falcon_h1
from . import nemotron_h
from . import mistral4
from . import mimo2
from . import encoders
from . import dsa
from . import bitnet
from . import minimax01
from . import afmoe
from . import exaone
from . import hy_v3
from . import cohere2moe
from . import mpt
from . import step35
from . import mellum
from . import granite_swa
from . import laguna
from . import chatglm
from . import bailingmoe2
from . import llama_kin
from . import codeshell
from . import mrope
from . import deepseek_moe
from . import diffusion
from . import rwkv7
from . import rwkv6
from . import chameleon
from . import embedders
from . import deci
from . import openelm
from . import pangu_embedded
from . import grok, grovemoe, plm, smallthinker
from .arch import FULL, SLIDING, Arch, Meta, by_layer, field

ARCHS: dict[str, Arch] = {**llama.ARCHS, **gemma.ARCHS, **layer_norm.ARCHS, **mamba.ARCHS, **phi3.ARCHS,
                          **qwen3_next.ARCHS, **deepseek.ARCHS, **gpt_oss.ARCHS, **bert.ARCHS, **t5.ARCHS,
                          **phi2.ARCHS, **starcoder2.ARCHS, **qwen2moe.ARCHS}
ARCHS.update(stablelm.ARCHS)
ARCHS.update(chameleon.ARCHS)
ARCHS.update(granite.ARCHS)
ARCHS.update(cohere.ARCHS)
ARCHS.update(lfm2.ARCHS)
ARCHS.update(llama4.ARCHS)
ARCHS.update(modernbert.ARCHS)
ARCHS.update(gemma3n.ARCHS)
ARCHS.update(gemma4.ARCHS)
ARCHS.update(kimi_linear.ARCHS)
ARCHS.update(dbrx.ARCHS)
ARCHS.update(minicpm3.ARCHS)
ARCHS.update(falcon_h1.ARCHS)
ARCHS.update(nemotron_h.ARCHS)
ARCHS.update(mistral4.ARCHS)
ARCHS.update(mimo2.ARCHS)
ARCHS.update(encoders.ARCHS)
ARCHS.update(dsa.ARCHS)
ARCHS.update(bitnet.ARCHS)
ARCHS.update(minimax01.ARCHS)
ARCHS.update(afmoe.ARCHS)
ARCHS.update(exaone.ARCHS)
ARCHS.update(hy_v3.ARCHS)
ARCHS.update(cohere2moe.ARCHS)
ARCHS.update(mpt.ARCHS)
ARCHS.update(step35.ARCHS)
ARCHS.update(mellum.ARCHS)
ARCHS.update(granite_swa.ARCHS)
ARCHS.update(laguna.ARCHS)
ARCHS.update(chatglm.ARCHS)
ARCHS.update(bailingmoe2.ARCHS)
ARCHS.update(llama_kin.ARCHS)
ARCHS.update(codeshell.ARCHS)
ARCHS.update(mrope.ARCHS)
ARCHS.update(deepseek_moe.ARCHS)
ARCHS.update(diffusion.ARCHS)
ARCHS.update(rwkv7.ARCHS)
ARCHS.update(embedders.ARCHS)
ARCHS.update(deci.ARCHS)
ARCHS.update(openelm.ARCHS)
ARCHS.update(pangu_embedded.ARCHS)
ARCHS.update(rwkv6.ARCHS)
ARCHS.update(smallthinker.ARCHS)
ARCHS.update(plm.ARCHS)
ARCHS.update(grok.ARCHS)
ARCHS.update(grovemoe.ARCHS)

__all__ = ["ARCHS", "Arch", "FULL", "Meta", "SLIDING", "by_layer", "field"]
