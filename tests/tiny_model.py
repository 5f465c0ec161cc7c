"""A tiny tokenizer, causal LM and qa examples for the training tests (no downloads).

The tokenizer is a byte-level BPE trained in a few milliseconds on issue-like text, with a
ChatML template like SmolLM2's; the model is a 2-layer Llama with random weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from adaptune.types import Example

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "Title: load_dataset fails with ValueError when the split is missing",
    'Traceback (most recent call last):\n  File "x.py", line 3, in <module>',
    "ValueError: Unknown split \"validation\". Should be one of ['train', 'test'].",
    "Upgrade datasets to 2.14 and pass split='train'; the validation split was removed.",
    "You are this project's support assistant. You answer its issues with the fix that "
    "resolved them: specific, short, in the project's own words.",
    "Similar resolved issues:\n- Fix: set HF_DATASETS_CACHE to a writable folder.",
    "Environment: python 3.11, torch 2.1, cuda 12.1, linux",
] * 4

TOPICS = [
    ("ValueError: Unknown split @ datasets.load:load_dataset", "Pass split='train'."),
    ("OSError: cache not writable @ datasets.builder:prepare", "Set HF_DATASETS_CACHE."),
    ("KeyError: 'text' @ datasets.arrow_dataset:map", "Rename the column to text."),
    (None, "Upgrade datasets to 2.14; the bug was fixed there."),
]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: faster for a model this small, and reproducible bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (about 400 tokens) with a ChatML chat template."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML,
    )


def tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer Llama (hidden 64, 4 heads, 2 KV heads) with seeded random weights."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.1,  # at the default 0.02 a 2-layer model barely moves in 20 steps
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def save_tiny(folder: Path, seed: int = 0) -> Path:
    """Write the tiny model and tokenizer as a Hugging Face folder (for load_base, subprocesses)."""
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer, seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def example(
    n: int,
    window: str = "w001",
    split: str = "train",
    topic: int | None = None,
    labels: tuple[str, ...] = ("bug",),
    body: str = "It fails when I call load_dataset.",
) -> Example:
    """A qa example about one of four recurring failures (``topic``, default ``n % 4``)."""
    signature, fix = TOPICS[n % len(TOPICS) if topic is None else topic]
    start = datetime(2022, 1, 1, tzinfo=UTC) + timedelta(days=int(window[1:]) * 30)
    return Example(
        id=f"qa:github:o/r#{n}",
        task="qa",
        domain="d",
        issue=f"github:o/r#{n}",
        question=f"Title: issue {n} fails\n\n{body}",
        answer=f"{fix} (see #{n})",
        known_at=start + timedelta(hours=n),
        window=window,
        split=split,
        solution_source="pr",
        signature=signature,
        meta={"title": f"issue {n} fails", "labels": list(labels)},
    )
