"""LM families (one module each), registered in ``flamingo_eval.registry.DECODERS`` on import."""

from flamingo_eval.models.decoders.base import AttnInputs, Decoder, build_attn_inputs
from flamingo_eval.models.decoders.gpt_neox import GPTNeoXConfig, GPTNeoXDecoder
from flamingo_eval.models.decoders.llama import LlamaConfig, LlamaDecoder
from flamingo_eval.models.decoders.mpt import MptConfig, MptDecoder
from flamingo_eval.models.decoders.opt import OPTConfig, OPTDecoder

__all__ = [
    "AttnInputs",
    "Decoder",
    "GPTNeoXConfig",
    "GPTNeoXDecoder",
    "LlamaConfig",
    "LlamaDecoder",
    "MptConfig",
    "MptDecoder",
    "OPTConfig",
    "OPTDecoder",
    "build_attn_inputs",
]
