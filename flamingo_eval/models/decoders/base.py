"""The contract every LM family implements (one file per family, see docs/adding_a_model.md).

A decoder exposes three stages so the Flamingo wrapper can interleave gated cross-attention blocks
between its layers without touching the family code:

    x = decoder.embed(input_ids, attn.positions)       # (B, T) -> (B, T, D)
    for i, block in enumerate(decoder.blocks):
        x = block(x, attn, cache, i)                    # (B, T, D) -> (B, T, D)
    logits = decoder.head(x)                           # (B, T, D) -> (B, T, V)

Module/parameter names mirror the Hugging Face implementation of the family, so HF checkpoints load by
name (plus the explicit renames in ``hf_key_map``) and OpenFlamingo checkpoint keys map one to one.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flamingo_eval.models.cache import KVCache


@dataclass
class AttnInputs:
    """Everything a self-attention layer needs besides the hidden states.

    Shapes: B batch, T new tokens, S = cached + new tokens.
    """

    positions: Tensor
    """(B, T) int64 position ids of the new tokens (left padding aware: first real token is 0)."""
    key_positions: Tensor
    """(B, S) int64 position ids of all keys (for ALiBi-style biases)."""
    mask: Tensor
    """(B, 1, T, S) bool, True where a query may attend to a key (causal + padding)."""
    memo: dict[Any, Any] = field(default_factory=dict)
    """Per-forward memo shared by all layers (e.g. rotary cos/sin tables), dropped with the inputs."""
    causal_only: bool = False
    """True when ``mask`` is exactly the causal mask (no padding, no token tree): attention kernels may then
    drop it (``is_causal`` when T == S, no mask at all when T == 1), which lets CUDA pick flash attention."""

    def to(self, device: torch.device) -> AttnInputs:
        """A copy on ``device`` (a later pipeline stage) with its own memo (memoised tables are per device)."""
        return AttnInputs(positions=self.positions.to(device), key_positions=self.key_positions.to(device),
                          mask=self.mask.to(device), causal_only=self.causal_only)


def build_attn_inputs(key_valid: Tensor, num_new: int) -> AttnInputs:
    """Causal + padding mask and positions for the last ``num_new`` of ``key_valid``'s S positions.

    Args:
        key_valid: (B, S) bool, False at (left) padding, for cached and new positions together.
        num_new: T, the number of new query tokens (the last T columns).
    """
    key_positions = (key_valid.long().cumsum(-1) - 1).clamp(min=0)  # (B, S)
    s = key_valid.shape[1]
    q_abs = torch.arange(s - num_new, s, device=key_valid.device)  # (T,)
    k_abs = torch.arange(s, device=key_valid.device)  # (S,)
    causal = k_abs[None, :] <= q_abs[:, None]  # (T, S)
    mask = causal[None] & key_valid[:, None, :]  # (B, T, S)
    # A padded query row would otherwise see no key at all (NaN in softmax); let it see itself.
    mask = mask | (k_abs[None, :] == q_abs[:, None])[None]
    # One host sync per forward (not per layer) to learn whether the mask may be dropped.
    causal_only = (num_new == 1 or num_new == s) and bool(key_valid.all())
    return AttnInputs(positions=key_positions[:, -num_new:], key_positions=key_positions, mask=mask[:, None],
                      causal_only=causal_only)


def lm_logits(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The LM head's projection ``x @ weight.T (+ bias)`` with fp32 output, whatever the weights' dtype.

    Beam scores and rank scores sum log-probs of these logits; bf16 logits (8 mantissa bits, a step of
    0.06 at 10) would round them visibly. fp32 models take the plain path (bit-identical to
    ``F.linear``); bf16/fp16 on CUDA use the fp32-output matmul when this torch has it, else the
    (bf16-rounded) weights are upcast for this one product.
    """
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.linear(x, weight, bias)
    out: Tensor | None = _mm_fp32_out(x, weight) if x.is_cuda else None
    if out is None:
        return F.linear(x.float(), weight.float(), None if bias is None else bias.float())
    return out if bias is None else out + bias.float()


_MM_OUT_DTYPE = [True]  # cleared once torch says the fp32-output matmul is not available


def _mm_fp32_out(x: Tensor, weight: Tensor) -> Tensor | None:
    if not _MM_OUT_DTYPE[0] or x.dtype != weight.dtype:
        return None
    try:
        out = torch.mm(x.reshape(-1, x.shape[-1]), weight.t(), out_dtype=torch.float32)  # type: ignore[call-arg]
    except (TypeError, RuntimeError, NotImplementedError):
        _MM_OUT_DTYPE[0] = False
        return None
    return out.view(*x.shape[:-1], weight.shape[0])


class Decoder(nn.Module, metaclass=ABCMeta):
    """Base class of LM families. Subclasses set ``family`` and ``model_types``, and implement the abstract hooks."""

    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    """HF ``config.json`` ``model_type`` values this family loads (``hf_lm.family_table`` is built from them)."""
    hidden_size: int
    vocab_size: int
    blocks: nn.ModuleList

    @abstractmethod
    def embed(self, input_ids: Tensor, positions: Tensor | None = None) -> Tensor:
        """(B, T) ids -> (B, T, D) input embeddings.

        ``positions`` is ``AttnInputs.positions`` (B, T); families with learned absolute position
        embeddings (OPT) need it and raise without it, the others ignore it.
        """

    @abstractmethod
    def head(self, x: Tensor) -> Tensor:
        """(B, T, D) last hidden states -> (B, T, V) logits (final norm included)."""

    @abstractmethod
    def input_embeddings(self) -> nn.Embedding:
        """The token embedding table."""

    @abstractmethod
    def output_embeddings(self) -> nn.Linear | None:
        """The LM head, or None when it is tied to the input embeddings."""

    @classmethod
    @abstractmethod
    def from_hf_config(cls, config: dict[str, Any]) -> Decoder:
        """Build an (uninitialised-weights) decoder from an HF ``config.json`` dict."""

    @classmethod
    def hf_key_map(cls, key: str) -> str:
        """Map an HF state-dict key to ours (identity for most families)."""
        return key

    def forward(self, input_ids: Tensor, key_valid: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """Plain LM forward (no media): (B, T) -> (B, T, V) logits."""
        if key_valid is None:
            past = cache.length if cache is not None else 0
            key_valid = torch.ones(input_ids.shape[0], past + input_ids.shape[1], dtype=torch.bool,
                                   device=input_ids.device)
        attn = build_attn_inputs(key_valid, input_ids.shape[1])
        x = self.embed(input_ids, attn.positions)
        for i, block in enumerate(self.blocks):
            x = block(x, attn, cache, i)
        return self.head(x)

    def resize_vocab(self, new_size: int) -> None:
        """Grow or shrink the vocabulary (input embeddings and an untied head).

        New rows are the mean of the existing rows: deterministic, and neutral for a zero-gated bridge.
        """
        emb = self.input_embeddings()
        old = emb.weight.data
        new = _resized(old, new_size)
        self._set_input_embeddings(nn.Embedding(new_size, old.shape[1], _weight=new))
        head = self.output_embeddings()
        if head is not None:
            new_head = nn.Linear(head.in_features, new_size, bias=head.bias is not None)
            new_head.weight.data = _resized(head.weight.data, new_size)
            if head.bias is not None:
                new_head.bias.data = _resized(head.bias.data[:, None], new_size)[:, 0]
            self._set_output_embeddings(new_head)
        self.vocab_size = new_size

    @abstractmethod
    def _set_input_embeddings(self, emb: nn.Embedding) -> None:
        """Replace the token embedding table (``resize_vocab``)."""

    @abstractmethod
    def _set_output_embeddings(self, head: nn.Linear) -> None:
        """Replace the untied LM head (``resize_vocab``; not called when the head is tied)."""


def _resized(w: Tensor, n: int) -> Tensor:
    if n <= w.shape[0]:
        return w[:n].clone()
    extra = w.mean(0, keepdim=True).expand(n - w.shape[0], *w.shape[1:])
    return torch.cat([w, extra], 0).clone()
