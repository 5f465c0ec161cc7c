"""Generation with transformers in this process: the service's :class:`LocalGenerator` and the
evaluation's batched greedy answers (:func:`generate_batch`).

:class:`LocalGenerator` loads the base model once and keeps several LoRA adapters loaded side
by side (PEFT named adapters); each request names the adapter version it wants, so a promotion
swaps the serving adapter on the next request, without a restart, and a request already running
finishes with the adapter it started with (requests take turns on one lock: a CPU runs one
generation at a time anyway).

:func:`generate_batch` answers many requests on a model the caller holds (the evaluation puts
each adapter on and takes it off itself), greedily, batched with left padding. Both decode from
the training prompt (:func:`~adaptune.generate.prompt.request_ids`) and stop at the training
stop tokens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adaptune.errors import AdaptuneError
from adaptune.generate.base import Answer, GenerationError, Request
from adaptune.generate.prompt import example_request, request_ids, stop_ids
from adaptune.train.lora import CONFIG, quiet_peft
from adaptune.train.loss import causal_lm
from adaptune.train.model import load_base
from adaptune.types import Example

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[PreTrainedModel]:
    """The causal LM inside ``model`` (LoRA layers active), in eval and inference mode."""
    lm = causal_lm(model)
    was_training = lm.training
    lm.eval()
    try:
        with torch.inference_mode():
            yield lm
    finally:
        lm.train(was_training)


def generate_batch(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[Request],
    batch_size: int = 8,
    max_len: int = 1024,
) -> list[Answer]:
    """Greedy answers to ``requests`` in order (special tokens removed), ``batch_size`` at a time.

    ``model`` answers as it is: its adapter is the caller's, the requests' adapter fields are not
    read. Prompts are cut to ``max_len − max_new_tokens`` tokens the way training cuts them; a
    batch's time is shared equally by its answers.
    """
    from transformers import GenerationConfig

    stops = stop_ids(tokenizer)
    out: list[Answer] = []
    with evaluating(model) as lm:
        for max_new, same in groupby(requests, key=lambda r: r.max_new_tokens):
            run = list(same)
            config = GenerationConfig(
                max_new_tokens=max_new,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stops,
            )
            for start in range(0, len(run), batch_size):
                chunk = run[start : start + batch_size]
                started = time.perf_counter()
                prompts = [request_ids(tokenizer, r, max_len) for r in chunk]
                ids, mask = _left_pad(prompts, tokenizer.pad_token_id)
                ids, mask = ids.to(lm.device), mask.to(lm.device)
                new = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
                new = new[:, ids.shape[1] :]
                texts = tokenizer.batch_decode(new, skip_special_tokens=True)
                seconds = (time.perf_counter() - started) / len(chunk)
                out.extend(
                    Answer(text.strip(), _generated(row, stops), seconds)
                    for text, row in zip(texts, new, strict=True)
                )
    return out


def generate_answers(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    max_new_tokens: int = 96,
    context: bool = True,
    batch_size: int = 8,
    max_len: int = 1024,
) -> list[str]:
    """Greedy answers to the examples' questions, in order (see :func:`generate_batch`).

    ``context=True`` puts each example's ``meta["context"]`` in the prompt.
    """
    requests = [example_request(ex, context, max_new_tokens) for ex in examples]
    return [a.text for a in generate_batch(model, tokenizer, requests, batch_size, max_len)]


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, width - len(row) :] = torch.tensor(list(row))
        mask[b, width - len(row) :] = 1
    return ids, mask


def _generated(row: torch.Tensor, stops: Sequence[int]) -> int:
    """Tokens a batch row generated: up to its first stop token (padding follows that)."""
    hits = torch.isin(row, torch.tensor(list(stops), device=row.device)).nonzero()
    return int(hits[0, 0]) + 1 if len(hits) else int(row.numel())


class LocalGenerator:
    """transformers + PEFT in this process; adapters loaded on first use, kept up to ``keep``."""

    name = "transformers"

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        model_path: str | None = None,
        home: Path | None = None,
        keep: int = 4,
        max_len: int = 1024,
    ) -> None:
        self._base, self._tokenizer = model, tokenizer
        self._model_path, self._home = model_path, home
        self._peft: PeftModel | None = None
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.keep, self.max_len = keep, max_len

    def ready(self) -> bool:
        """Whether the base model is loaded."""
        return self._base is not None

    def load(self) -> None:
        """Load the base model now (the service calls this at start-up)."""
        with self._lock:
            self._load_base()

    def _load_base(self) -> None:
        if self._base is not None:
            return
        started = time.perf_counter()
        try:
            self._base, self._tokenizer, info = load_base(self._model_path, self._home or Path("."))
        except (AdaptuneError, OSError) as exc:  # a bad ADAPTUNE_MODEL must not fail tickets
            raise GenerationError(f"The base model could not be loaded: {exc}") from None
        log.info("loaded base model %s in %.1f s", info.id, time.perf_counter() - started)

    def preload(self, version: str, path: Path) -> None:
        """Load an adapter ahead of its first request (after a promotion)."""
        with self._lock:
            self._load_base()
            self._activate(version, path)

    def _activate(self, version: str | None, path: Path | None) -> PeftModel | None:
        """The model to generate with: the base, or the PEFT model with ``version`` active."""
        if version is None:
            return None
        if version not in self._loaded:
            if path is None or not (path / CONFIG).exists():
                raise GenerationError(f"Adapter {version} has no PEFT files at {path}.")
            try:
                if self._peft is None:
                    from peft import PeftModel

                    with quiet_peft():
                        self._peft = PeftModel.from_pretrained(
                            self._base, str(path), adapter_name=version
                        )
                else:
                    self._peft.load_adapter(str(path), adapter_name=version)
            except Exception as exc:  # a corrupt adapter must not take the service down
                raise GenerationError(
                    f"Adapter {version} at {path} could not be loaded: {exc}"
                ) from exc
            self._loaded[version] = None
            log.info("loaded adapter %s", version)
            while len(self._loaded) > self.keep:
                old, _ = self._loaded.popitem(last=False)
                self._peft.delete_adapter(old)
        self._loaded.move_to_end(version)
        self._peft.set_adapter(version)
        return self._peft

    def generate(self, request: Request) -> Answer:
        """Greedy generation with the request's adapter (or the base model)."""
        with self._lock:
            self._load_base()
            peft = self._activate(request.adapter_version, request.adapter_path)
            tok = self._tokenizer
            ids = request_ids(tok, request, self.max_len)
            started = time.perf_counter()
            model = peft if peft is not None else self._base
            inputs = torch.tensor([ids])
            with torch.inference_mode():
                if peft is None and self._peft is not None:
                    with self._peft.disable_adapter():
                        out = self._run(self._peft, inputs, request.max_new_tokens, stop_ids(tok))
                else:
                    out = self._run(model, inputs, request.max_new_tokens, stop_ids(tok))
            new = out[0, inputs.shape[1] :]
            text = tok.decode(new, skip_special_tokens=True).strip()
            return Answer(text, int(new.numel()), time.perf_counter() - started)

    def _run(
        self,
        model: PreTrainedModel | PeftModel,
        inputs: torch.Tensor,
        max_new_tokens: int,
        stops: list[int],
    ) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            return model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self._tokenizer.pad_token_id,
                eos_token_id=stops,
            )
        finally:
            model.train(was_training)
