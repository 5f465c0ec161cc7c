"""LoRA through PEFT: parameter counts, PEFT-format saving, parents loaded as trainable."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from adaptune.errors import ConfigError
from adaptune.train import lora
from tiny_model import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lora_count(model, r: int, names: tuple[str, ...]) -> int:
    """r × (in + out) for every targeted linear layer."""
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in names:
            total += r * (module.in_features + module.out_features)
    return total


def test_attention_lora_has_the_formula_count(tok) -> None:
    model = tiny_model(tok)
    cfg = model.config
    head = cfg.hidden_size // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * head
    h = cfg.hidden_size
    per_layer = 16 * ((h + h) + (h + kv) + (h + kv) + (h + h))  # q, k, v, o
    peft_model = lora.attach(model)
    assert lora.trainable(peft_model) == cfg.num_hidden_layers * per_layer == 14_336
    assert lora.trainable(peft_model) == lora_count(lora.detach(peft_model), 16, lora.ATTENTION)


def test_all_linear_targets_the_mlp_too_but_not_the_head(tok) -> None:
    model = tiny_model(tok)
    names = (*lora.ATTENTION, "gate_proj", "up_proj", "down_proj")
    expected = lora_count(model, 4, names)
    peft_model = lora.attach(model, r=4, target="all-linear")
    assert lora.trainable(peft_model) == expected
    assert not any("lm_head" in n for n, p in peft_model.named_parameters() if p.requires_grad)


def test_saved_adapter_loads_with_peft_and_changes_the_output(tok, tmp_path) -> None:
    model = tiny_model(tok)
    ids = torch.tensor([[1, 5, 9, 20, 33]])
    with torch.no_grad():
        before = model(ids).logits.clone()
    peft_model = lora.attach(model)
    with torch.no_grad():  # LoRA B starts at zero; give it weights as training would
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    folder = lora.save(peft_model, tmp_path / "adapter", {"note": "test"})
    assert {"adapter_model.safetensors", "adapter_config.json", "adaptune-train.json"} <= {
        p.name for p in folder.iterdir()
    }
    lora.detach(peft_model)
    loaded = PeftModel.from_pretrained(tiny_model(tok), str(folder)).eval()
    with torch.no_grad():
        after = loaded(input_ids=ids).logits
    assert not torch.allclose(before, after, atol=1e-4)


def test_parent_is_loaded_trainable_with_its_weights(tok, tmp_path) -> None:
    parent = lora.attach(tiny_model(tok))
    with torch.no_grad():
        for name, param in parent.named_parameters():
            if "lora_" in name:
                param.uniform_(-0.5, 0.5)
    folder = lora.save(parent, tmp_path / "parent")
    saved = load_file(str(folder / "adapter_model.safetensors"))
    child = lora.load_parent(tiny_model(tok), folder)
    live = {n.replace(".default", ""): p for n, p in child.named_parameters() if p.requires_grad}
    assert set(live) == set(saved) and saved
    for name, tensor in saved.items():
        assert torch.equal(live[name].detach(), tensor)


def test_missing_parent_says_what_to_do(tok, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"adapter_config\.json"):
        lora.load_parent(tiny_model(tok), tmp_path)
