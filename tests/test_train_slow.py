"""The real default model: GGUF → cached safetensors once, chat template, two training steps."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from adaptune.train import TrainConfig, load_base, train
from adaptune.train.format import IGNORE, encode_example
from adaptune.train.model import DEFAULT_ID, INFO_FILE
from adaptune.types import Example

pytestmark = pytest.mark.slow

ISSUES = [
    (
        "Title: load_dataset('json') fails with ArrowInvalid on a column of mixed types\n\n"
        "Loading my JSON Lines file crashes:\n\nTraceback (most recent call last):\n"
        '  File "datasets/packaged_modules/json/json.py", line 134, in _generate_tables\n'
        "pyarrow.lib.ArrowInvalid: JSON parse error: Column(/label) changed from number to "
        "string in row 12",
        "ArrowInvalid: JSON parse error @ datasets.packaged_modules.json.json:_generate_tables",
        "Pass explicit features so Arrow does not infer the type from the first rows: "
        "load_dataset('json', data_files=..., features=Features({'label': Value('string')})).",
    ),
    (
        "Title: map() with num_proc hangs on macOS\n\nCalling ds.map(fn, num_proc=4) never "
        "returns on macOS 13 with Python 3.11; with num_proc=1 it works.",
        None,
        "Fixed in #5634: multiprocessing now uses the spawn start method on macOS. Upgrade to "
        "datasets 2.11, or guard the script with if __name__ == '__main__':.",
    ),
]


def real_examples() -> list[Example]:
    return [
        Example(
            id=f"qa:github:huggingface/datasets#{n}",
            task="qa",
            domain="datasets",
            issue=f"github:huggingface/datasets#{n}",
            question=question,
            answer=answer,
            known_at=datetime(2023, 3, n + 1, tzinfo=UTC),
            window="2023Q1",
            split="train",
            solution_source="pr",
            signature=signature,
            meta={"title": question.split("\n")[0][7:], "labels": ["bug"]},
        )
        for n, (question, signature, answer) in enumerate(ISSUES)
    ]


def _no_conversion(folder: Path) -> None:
    raise AssertionError("the GGUF was converted again instead of reading the cached copy")


def test_default_model_caches_formats_and_trains(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer, info = load_base(None, workspace)
    cache = workspace / "models" / DEFAULT_ID
    assert info.id == DEFAULT_ID and info.path == str(cache) and len(info.sha256) == 64
    assert (cache / "model.safetensors").exists() and (cache / INFO_FILE).exists()
    assert type(model).__name__ == "LlamaForCausalLM" and info.dtype == "torch.float32"
    assert "<|im_start|>" in tokenizer.chat_template and tokenizer.pad_token is not None

    stamps = [(cache / name).stat().st_mtime_ns for name in (INFO_FILE, "model.safetensors")]
    # from here on (the second load, and train's own load) only the cached copy may be read
    monkeypatch.setattr("adaptune.train.model._write_default", _no_conversion)
    _, _, again = load_base(None, workspace)
    assert again.sha256 == info.sha256
    assert [(cache / n).stat().st_mtime_ns for n in (INFO_FILE, "model.safetensors")] == stamps

    enc = encode_example(tokenizer, real_examples()[0], 512)
    answer = tokenizer.decode([i for i in enc.labels if i != IGNORE])
    assert answer == real_examples()[0].answer + "<|im_end|>"

    config = TrainConfig(strategy="from-base", max_steps=2, batch_size=1, max_len=512)
    result = train(real_examples(), config, tmp_path / "run")  # loads the cached default
    assert result.cost["steps"] == 2 and result.cost["tokens"] > 200
    assert all(math.isfinite(loss) for loss in result.losses)
    loaded = PeftModel.from_pretrained(model, str(result.adapter_dir))
    ids = torch.tensor([enc.input_ids[:32]])
    with torch.no_grad():
        assert loaded(input_ids=ids).logits.shape == (1, 32, model.config.vocab_size)
    assert result.manifest["base"]["sha256"] == info.sha256
