"""Generate: a question (with retrieved context) and an adapter → a greedy answer.

The layer below both ``evaluate`` and ``serve``: the service's tickets and the evaluation's
held-out questions are answered through the same :class:`Generator` protocol from the same
prompt, so what is measured is what is served. Reading order: :mod:`~adaptune.generate.base`
(Request, Answer, the protocol, :func:`answer_all`), :mod:`~adaptune.generate.prompt` (the
prompt ids and stop tokens, from the training chat template), :mod:`~adaptune.generate.local`
(transformers + PEFT hot swap; batched greedy answers), :mod:`~adaptune.generate.llamacpp`
(llama.cpp with GGUF LoRAs, converted by :mod:`~adaptune.generate.gguf_lora`) and
:mod:`~adaptune.generate.openai` (an OpenAI-compatible server such as vLLM).

Only :mod:`~adaptune.generate.base` is imported here: the engines load torch, transformers or
httpx, which a caller that only builds requests does not need.
"""

from __future__ import annotations

from adaptune.generate.base import Answer, GenerationError, Generator, Request, answer_all

__all__ = ["Answer", "GenerationError", "Generator", "Request", "answer_all"]
