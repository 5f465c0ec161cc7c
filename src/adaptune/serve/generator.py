"""Answer generation behind one protocol: in-process transformers + PEFT, or an OpenAI server.

:class:`LocalGenerator` loads the base model once and keeps several LoRA adapters loaded side
by side (PEFT named adapters); each request names the adapter version it wants, so a promotion
swaps the serving adapter on the next request, without a restart, and a request already running
finishes with the adapter it started with (requests take turns on one lock: a CPU runs one
generation at a time anyway). :class:`OpenAIGenerator` asks an OpenAI-compatible server (vLLM
with ``--enable-lora``, where each adapter version is a LoRA module of that name).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from adaptune.errors import AdaptuneError

log = logging.getLogger(__name__)


class GenerationError(AdaptuneError):
    """The generator could not answer (model missing, adapter corrupt, server down)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One answer to generate."""

    question: str
    context: tuple[tuple[str, str], ...] = ()
    """Similar resolved issues as ``(title, fix)`` pairs, as in training."""
    signature: str | None = None
    adapter_version: str | None = None
    """``None`` answers with the base model."""
    adapter_path: Path | None = None
    max_new_tokens: int = 128


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer and what it cost."""

    text: str
    tokens: int
    seconds: float


class Generator(Protocol):
    """Anything that answers a :class:`Request`."""

    name: str

    def generate(self, request: Request) -> Answer:
        """Generate one answer."""
        ...

    def ready(self) -> bool:
        """Whether the model is loaded (or the server reachable)."""
        ...


class LocalGenerator:
    """transformers + PEFT in this process; adapters loaded on first use, kept up to ``keep``."""

    name = "transformers"

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        model_path: str | None = None,
        home: Path | None = None,
        keep: int = 4,
        max_len: int = 1024,
    ) -> None:
        self._base, self._tokenizer = model, tokenizer
        self._model_path, self._home = model_path, home
        self._peft: Any = None
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
        from adaptune.train.model import load_base

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

    def _activate(self, version: str | None, path: Path | None) -> Any:
        """The model to generate with: the base, or the PEFT model with ``version`` active."""
        if version is None:
            return None
        if version not in self._loaded:
            if path is None or not (path / "adapter_config.json").exists():
                raise GenerationError(f"Adapter {version} has no PEFT files at {path}.")
            try:
                if self._peft is None:
                    from peft import PeftModel

                    from adaptune.train.lora import quiet_peft

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
        import torch

        from adaptune.evaluate.generation import stop_ids
        from adaptune.evaluate.scoring import prompt_ids

        with self._lock:
            self._load_base()
            peft = self._activate(request.adapter_version, request.adapter_path)
            tok = self._tokenizer
            ids = prompt_ids(
                tok,
                request.question,
                request.context,
                request.signature,
                self.max_len - request.max_new_tokens,
            )
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

    def _run(self, model: Any, inputs: Any, max_new_tokens: int, stops: list[int]) -> Any:
        import torch

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


class OpenAIGenerator:
    """An OpenAI-compatible chat-completions server; the adapter version is the model name."""

    name = "openai"

    def __init__(
        self, base_url: str, base_model: str, api_key: str | None = None, timeout: float = 120
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.base_model = base_model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)
        self._loaded: set[str] = set()

    def ready(self) -> bool:
        """Whether the server answers ``GET /models``."""
        try:
            return self._client.get(f"{self.base_url}/models").status_code == 200
        except httpx.HTTPError:
            return False

    def preload(self, version: str, path: Path) -> None:
        """Ask the server to load an adapter at run time (vLLM with
        ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=true``: ``POST /v1/load_lora_adapter``); the path must
        be readable by the server. An adapter it already has is fine."""
        body = {"lora_name": version, "lora_path": str(path)}
        try:
            resp = self._client.post(f"{self.base_url}/load_lora_adapter", json=body)
        except httpx.HTTPError as exc:
            raise GenerationError(
                f"The generation server {self.base_url} is unreachable: {exc}"
            ) from None
        if resp.status_code != 200 and "already" not in resp.text.lower():
            raise GenerationError(
                f"The generation server refused to load adapter {version} "
                f"({resp.status_code}): {resp.text[:200]}"
            )
        self._loaded.add(version)

    def generate(self, request: Request) -> Answer:
        """One chat completion, greedy, with the prompt the adapters were trained on; an adapter
        the server does not have yet is loaded first."""
        version = request.adapter_version
        if version and version not in self._loaded and request.adapter_path is not None:
            self.preload(version, request.adapter_path)
        from adaptune.train.format import build_messages

        body = {
            "model": request.adapter_version or self.base_model,
            "messages": build_messages(request.question, request.context),
            "max_tokens": request.max_new_tokens,
            "temperature": 0,
        }
        started = time.perf_counter()
        try:
            resp = self._client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise GenerationError(
                f"The generation server {self.base_url} is unreachable: {exc}"
            ) from None
        if resp.status_code != 200:
            raise GenerationError(
                f"The generation server answered {resp.status_code}: {resp.text[:200]}"
            )
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"] or ""
            tokens = int(data.get("usage", {}).get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GenerationError(
                f"The generation server's answer is not a chat completion: {exc}"
            ) from None
        return Answer(text.strip(), tokens, time.perf_counter() - started)
