"""The answer-token loss, with the output layer applied only where the loss needs it.

A causal LM's head maps every position to the whole vocabulary (49,152 logits per token for
SmolLM2): on a small model it is a large share of the compute and most of the activation
memory. Only the positions whose *next* token is an answer token carry loss, so the decoder runs
on every token and the head only on those. :func:`head_only_matches` compares that with the
model's own full-logits loss once per run; a model whose forward does something else to the
logits (soft-capping, scaling) falls back to full logits.

Even at the answer positions alone the logits are large (600 answer tokens × 49,152 × 4 bytes
= 118 MB, kept three times over: logits, log-softmax and their gradient). :func:`head_nll`
goes through the answer positions in chunks and, since the head is frozen, works out the
gradient with respect to the hidden states in the same pass (softmax − one-hot, times the head's
weight): the backward pass only scales it, and no chunk's logits outlive the chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from adaptune.train.format import IGNORE

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def causal_lm(model: nn.Module) -> PreTrainedModel:
    """The transformers causal LM inside a PEFT or DDP wrapper (LoRA layers stay injected)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


class AnswerLoss(nn.Module):
    """Wraps a (PEFT) causal LM: ``forward`` returns the summed answer-token NLL and the count.

    Summing lets gradient accumulation and data parallelism divide once by the step's token
    count, so every answer token weighs the same whatever row or process it landed in. It is a
    module so that DistributedDataParallel can wrap it and see the whole forward.
    """

    def __init__(self, model: nn.Module, head_only: bool = True) -> None:
        super().__init__()
        self.model = model
        self.head_only = head_only

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        targets = labels[:, 1:]
        keep = targets != IGNORE
        lm = causal_lm(self.model)
        if self.head_only:
            body = lm.get_decoder()
            hidden = body(input_ids=input_ids, position_ids=position_ids, use_cache=False)
            picked = hidden.last_hidden_state[:, :-1][keep]
            return head_nll(lm.get_output_embeddings(), picked, targets[keep]), keep.sum()
        out = lm(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        logits = out.logits[:, :-1][keep]
        nll = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return nll, keep.sum()


CHUNK = 128
"""Answer positions per chunk in :func:`head_nll` (chunk × vocabulary floats at a time)."""


def head_nll(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed NLL of ``targets`` under ``head(hidden)``, chunked, never holding all logits.

    A frozen ``nn.Linear`` head with a hidden state that needs a gradient takes the fused path
    (the gradient is computed in the forward pass); anything else (a trainable or wrapped head)
    computes plain logits, through the module, in one piece.
    """
    kind = hidden.device.type
    if torch.is_autocast_enabled(kind):  # bf16 training: the head and its logits stay fp32
        with torch.autocast(kind, enabled=False):
            weight = getattr(head, "weight", None)
            dtype = weight.dtype if isinstance(weight, torch.Tensor) else hidden.dtype
            return head_nll(head, hidden.to(dtype), targets)
    weight = getattr(head, "weight", None)
    fused = type(head) is nn.Linear and weight is not None and not weight.requires_grad
    bias = head.bias if fused else None
    if fused and bias is not None and bias.requires_grad:
        fused = False
    if not fused:
        return F.cross_entropy(head(hidden).float(), targets, reduction="sum")
    if torch.is_grad_enabled() and hidden.requires_grad:
        return _FusedHeadNLL.apply(hidden, weight, bias, targets)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, len(hidden), CHUNK):
        logits = F.linear(hidden[start : start + CHUNK], weight, bias).float()
        total += F.cross_entropy(logits, targets[start : start + CHUNK], reduction="sum")
    return total


class _FusedHeadNLL(torch.autograd.Function):
    """Summed NLL through a frozen linear head; the input gradient is made in the forward."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden)
        for start in range(0, len(hidden), CHUNK):
            h, t = hidden[start : start + CHUNK], targets[start : start + CHUNK]
            logits = F.linear(h, weight, bias).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            probs[torch.arange(len(t), device=t.device), t] -= 1.0  # − one-hot
            grad[start : start + CHUNK] = probs.to(weight.dtype) @ weight
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad * upstream.to(grad.dtype), None, None, None


@torch.no_grad()
def head_only_matches(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> bool:
    """Whether the head-only loss equals the model's own loss on one example (fp32: 1e-4)."""
    lm = causal_lm(model)
    was_training = lm.training
    lm.eval()
    try:
        want = lm(input_ids=input_ids, labels=labels, use_cache=False).loss
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        nll, count = AnswerLoss(model)(input_ids, positions, labels)
    except (AttributeError, NotImplementedError, TypeError):  # no separable decoder and head
        return False
    finally:
        lm.train(was_training)
    got = nll / count.clamp(min=1)
    tol = 1e-4 if want.dtype == torch.float32 else 2e-2
    return bool(torch.isclose(got, want.float(), atol=tol, rtol=tol))
