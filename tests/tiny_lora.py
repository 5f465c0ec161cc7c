"""A tiny randomly initialised Llama and a real PEFT LoRA adapter on it, for registry tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` in PeftModel.__init__;
# the warning is theirs, not ours, and every other deprecation still fails the tests.
PEFT_WARNING = "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
ignore_peft_warning = pytest.mark.filterwarnings(PEFT_WARNING)

VOCAB = 128


def make_base(folder: Path) -> Path:
    """Save a 2-layer, 32-wide Llama with random weights to ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def load_base(base_model: str) -> tuple[object, None]:
    """The loader callback for merged exports: the saved tiny base, no tokenizer."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(base_model), None


def make_adapter(base: Path, folder: Path, seed: int = 1) -> Path:
    """Save a LoRA (r=4 on q_proj/v_proj, random non-zero B) on the tiny base to ``folder``.

    The trainer's output also has a ``checkpoints/`` folder, which the registry must not copy.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load_base(str(base))
    torch.manual_seed(seed)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(folder)
    (folder / "checkpoints" / "step-10").mkdir(parents=True)
    (folder / "checkpoints" / "step-10" / "optimizer.pt").write_bytes(b"x" * 100)
    return folder


def logits(model: object, seed: int = 2) -> object:
    """The model's logits on a fixed random batch."""
    import torch

    torch.manual_seed(seed)
    ids = torch.randint(0, VOCAB, (2, 8))
    with torch.no_grad():
        return model(ids).logits  # type: ignore[operator]
