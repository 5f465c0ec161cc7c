"""Generation on an OpenAI-compatible chat-completions server (vLLM with ``--enable-lora``, where
each adapter version is a LoRA module of that name).

The server applies the chat template itself; it gets the same messages training rendered
(:func:`~adaptune.generate.prompt.request_messages`).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from adaptune.generate.base import Answer, GenerationError, Request


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
        # The prompt module imports adaptune.train, which loads torch: a service that only
        # forwards to a server pays for that on its first answer, not at start-up.
        from adaptune.generate.prompt import request_messages

        body = {
            "model": request.adapter_version or self.base_model,
            "messages": request_messages(request),
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
