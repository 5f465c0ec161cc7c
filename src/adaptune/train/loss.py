"""The answer-token loss, with the output layer applied only where the loss needs it.

A causal LM's head maps every position to the whole vocabulary (49,152 logits per token for
SmolLM2): on a small model it is a large share of the compute and most of the activation
memory. Only the positions whose *next* token is an answer token carry loss, so the decoder runs
on every token and the head only on those. :func:`head_only_matches` compares that with the
model's own full-logits loss once per run; a model whose forward does something else to the
logits (soft-capping, scaling) falls back to full logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from adaptune.train.format import IGNORE


def causal_lm(model: Any) -> Any:
    """The transformers causal LM inside a PEFT or DDP wrapper (LoRA layers stay injected)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


class AnswerLoss(nn.Module):
    """Wraps a (PEFT) causal LM: ``forward`` returns the summed answer-token NLL and the count.

    Summing lets gradient accumulation and data parallelism divide once by the step's token
    count, so every answer token weighs the same whatever row or process it landed in. It is a
    module so that DistributedDataParallel can wrap it and see the whole forward.
    """

    def __init__(self, model: Any, head_only: bool = True) -> None:
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
            logits = lm.get_output_embeddings()(picked)
        else:
            out = lm(input_ids=input_ids, position_ids=position_ids, use_cache=False)
            logits = out.logits[:, :-1][keep]
        nll = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return nll, keep.sum()


@torch.no_grad()
def head_only_matches(model: Any, input_ids: torch.Tensor, labels: torch.Tensor) -> bool:
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
