"""Hugging Face interop: one small mapping module per `model_type`, each registering a Family whose
weight map and config translation drive both import (`from_hf`) and export (`to_hf`)."""
from . import (bart, bert, falcon, gemma, gemma2, gemma3, gpt2, gpt_neox, jamba, llama, longformer, mamba,  # noqa: F401
               marian, mistral, mixtral, qwen2, qwen3_moe, roberta, switch_transformers, t5)  # registers each family
from . import gpt_oss  # noqa: F401
from . import bloom, olmo2, phi3, qwen3, smollm3  # noqa: F401
from . import qwen3_next  # noqa: F401
from . import reformer  # noqa: F401
from . import deepseek_v2, deepseek_v3, deepseek_v32, deepseek_v4, glm_moe_dsa, hy_v4  # noqa: F401
from . import dots3_note  # noqa: F401
from . import phi, qwen2_moe, starcoder2  # noqa: F401
from . import stablelm  # noqa: F401
from . import bamba, granite, granite_hybrid, granite_moe  # noqa: F401
from . import zamba, zamba2  # noqa: F401
from . import cohere, distilbert, ernie, exaone4, glm, glm4_moe, gpt_bigcode, olmo, olmo3, olmoe, opt  # noqa: F401
from . import arcee, helium, hunyuan, lfm2, nemotron, qwen3_5, seed_oss  # noqa: F401
from . import blt  # noqa: F401
from . import perceiver  # noqa: F401
from . import qwen4_exp  # noqa: F401
from . import llama4, llama4_vision, modernbert  # noqa: F401
from . import dots1, exaone_moe, glm4_moe_lite, lfm2_moe, minimax_m2  # noqa: F401
from . import gpt_neo, gptj, ministral, ministral3, mistral4, mistral_large4, vaultgemma  # noqa: F401
from .hf import FAMILIES, from_hf, is_hf_dir, to_hf
from .mapping import export_state

__all__ = ["FAMILIES", "from_hf", "to_hf", "is_hf_dir", "export_state"]
from . import apertus, cohere2_moe, falcon_h1, falcon_mamba, gemma4, phimoe  # noqa: F401
from . import gemma3n, recurrent_gemma  # noqa: F401
from . import kimi_linear  # noqa: F401
from . import camembert, data2vec_text, electra, m2m_100, mbart, pegasus  # noqa: F401
from . import nanochat  # noqa: F401
from . import dbrx  # noqa: F401
from . import mpt  # noqa: F401
from . import codegen  # noqa: F401
from . import minicpm3  # noqa: F401
from . import nemotron_h  # noqa: F401
from . import deberta_v2  # noqa: F401
from . import deberta  # noqa: F401
from . import roformer  # noqa: F401
from . import megatron_bert, roberta_prelayernorm, xlm_roberta_xl  # noqa: F401
from . import bitnet, jetmoe, longcat_flash, persimmon  # noqa: F401
from . import longt5, t5gemma, umt5  # noqa: F401
from . import cwm, exaone, flex_olmo, internlm3, solar_open  # noqa: F401
from . import bert_generation, convbert, ernie_bert, esm, ibert, rembert, squeezebert, xmod  # noqa: F401
from . import layoutlm, luke, tapas  # noqa: F401
from . import afmoe, granite_swa, hy_v3, olmo_hybrid  # noqa: F401
from . import diffllama  # noqa: F401
from . import minimax  # noqa: F401
from . import xlstm  # noqa: F401
from . import rwkv  # noqa: F401
from . import rwkv7  # noqa: F401
from . import arwkv7  # noqa: F401
from . import rwkv6  # noqa: F401
from . import rwkv6qwen2  # noqa: F401
from . import lfm3  # noqa: F401
from . import bailing_hybrid  # noqa: F401
from . import zaya  # noqa: F401
from . import mimo_v2_flash  # noqa: F401
from . import mobilebert  # noqa: F401
from . import esmc  # noqa: F401
from . import funnel  # noqa: F401
from . import laguna  # noqa: F401
from . import mellum  # noqa: F401
from . import kolibri1  # noqa: F401
from . import inkling_text  # noqa: F401
from . import inkling2_text  # noqa: F401
from . import inkling2_loop_text  # noqa: F401
from . import hrm_text  # noqa: F401
from . import exaone4_5  # noqa: F401
from . import step3p5  # noqa: F401
from . import albert, eurobert, gte, jina_embeddings_v3, mpnet, nomic_bert, ultrabert  # noqa: F401
from . import jina_bert_v2, neobert, nomic_bert_moe  # noqa: F401
from . import modernbert_decoder  # noqa: F401
from . import youtu  # noqa: F401
from . import jais2  # noqa: F401
from . import minicpm5_moe  # noqa: F401
from . import hyperclovax  # noqa: F401
from . import iquestcoder  # noqa: F401
from . import param2moe, sarvam_moe  # noqa: F401
from . import sarvam_mla  # noqa: F401
from . import apertus1p5_text  # noqa: F401
from . import flint  # noqa: F401
from . import axk1  # noqa: F401
from . import biogpt, ctrl, gpt_neox_japanese, openai_gpt, xglm  # noqa: F401
from . import blenderbot, blenderbot_small, fsmt, led, mvp, nllb_moe, pegasus_x, plbart  # noqa: F401
from . import bigbird_pegasus, encoder_decoder, prophetnet  # noqa: F401
from . import beam  # noqa: F401
from . import ergo  # noqa: F401
from . import doge  # noqa: F401
from . import dory  # noqa: F401
from . import axk2  # noqa: F401
from . import big_bird, fnet, nystromformer, yoso  # noqa: F401
from . import mra  # noqa: F401
from . import aria_text  # noqa: F401
from . import cohere_compass_text  # noqa: F401
from . import lara_mini  # noqa: F401
from . import gemma4_assistant, gemma4_unified_text, t5gemma2  # noqa: F401
from . import minimax_m3_vl_text  # noqa: F401
from . import kolibri1_1  # noqa: F401
from . import flaubert, gpt_sw3, roc_bert, xlm  # noqa: F401
from . import llava, llava_next, llava_onevision, paligemma  # noqa: F401
from . import internvl  # noqa: F401
from . import gemma3_vision  # noqa: F401
from . import gemma4_vision  # noqa: F401
from . import xlnet  # noqa: F401
from . import cpmant  # noqa: F401
from . import trocr  # noqa: F401
from . import git  # noqa: F401
from . import musicgen  # noqa: F401
from . import chameleon  # noqa: F401
from . import emu3  # noqa: F401
from . import qwen_vl  # noqa: F401
from . import qwen2_5_omni  # noqa: F401  (after qwen_vl, whose text kinds it extends)
from . import glm4v  # noqa: F401
from . import mllama  # noqa: F401
from . import whisper  # noqa: F401
from . import nemotron_nas  # noqa: F401
from . import openelm  # noqa: F401
from . import pangu_embedded  # noqa: F401
from . import moonshine  # noqa: F401
from . import smolvlm  # noqa: F401
from . import aya_vision, idefics2, lfm2_vl, vipllava  # noqa: F401
from . import aria, deepseek_vl, janus  # noqa: F401
from . import smallthinker  # noqa: F401
from . import plm  # noqa: F401
from . import grok  # noqa: F401
from . import grovemoe  # noqa: F401
from . import gemma4_audio, gemma4_whole, qwen2_audio, voxtral  # noqa: F401
