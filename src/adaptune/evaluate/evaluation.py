"""``adaptune evaluate``: one adapter against the base model on a domain's held-out issues.

For a registered version (or an alias such as ``production``), on the held-out qa examples of
chosen windows of a domain (its own, or another domain's to measure transfer): answer NLL, fix
ranking against hard negatives, and greedy answers scored against the real fix (sentence
embedding similarity and ROUGE-L), each for the base model and for the adapter, with 95 %
bootstrap CIs and paired differences (adapter − base). Generation runs on llama.cpp when it is
installed and the base is the default model, on transformers otherwise. The summary is merged
into the version's metrics under ``evaluations``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adaptune.dataset.artifacts import find_build, iter_examples
from adaptune.errors import ConfigError
from adaptune.evaluate.answers import AnswerEngine, answer_engine, generate_and_score, score
from adaptune.evaluate.chains import heldout_sets, ranking_rr
from adaptune.evaluate.generation import retrieval_baseline
from adaptune.evaluate.measure import Evaluator
from adaptune.evaluate.metrics import bootstrap_ci, paired_diff_ci
from adaptune.evaluate.text import text_nll
from adaptune.memory import default_embedder
from adaptune.memory.context import QaSet, load_qa
from adaptune.registry import resolve, set_metrics
from adaptune.registry.records import ALIASES, AdapterVersion, split_ref
from adaptune.store import Store
from adaptune.store.domains import resolve_domain
from adaptune.train.model import DEFAULT_ID, load_base
from adaptune.types import Example

METRICS = ("nll", "fix_acc1", "fix_mrr", "embed_sim", "rouge_l")


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """What ``adaptune evaluate`` measures."""

    version: str = "production"
    """A version, an alias, or ``DOMAIN:REF``."""
    domain: str | None = None
    """Domain whose held-out set is used (default: the adapter's own)."""
    windows: str | None = None
    """``N``, ``FIRST-LAST`` (1-based) or a window name; ``None``: every window."""
    heldout: int = 24
    """Held-out examples per window for NLL (a seeded sample)."""
    generate: int = 16
    """Questions answered by generation (0: none)."""
    ranking: int = 16
    """Questions whose fix is ranked among 50 candidates (0: none)."""
    context: str = "retrieved"
    """``retrieved`` or ``none``: similar past issues in the prompt."""
    backend: str = "auto"
    """Generation engine (see :func:`~adaptune.evaluate.answers.answer_engine`)."""
    max_len: int = 1024
    """Tokens per evaluated example."""
    max_new_tokens: int = 96
    """Longest generated answer."""
    seed: int = 0
    """Seed of sampling and bootstrap."""
    save: bool = True
    """Merge the summary into the version's metrics."""
    task: str = "qa"
    """``qa`` (answers to held-out issues) or ``issues`` (NLL of held-out issue texts: works
    for trackers without resolutions, see :mod:`adaptune.evaluate.text`)."""


def pick_windows(windows: Sequence[str], spec: str | None) -> list[str]:
    """``None`` → all; ``3`` → the third; ``2-4`` → second to fourth; a name → that one."""
    if spec is None or spec == "all":
        return list(windows)
    if spec in windows:
        return [spec]
    first, _, last = spec.partition("-")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError:
        raise ConfigError(f"--windows {spec!r}: write N, FIRST-LAST or a window name.") from None
    if not 1 <= lo <= hi <= len(windows):
        raise ConfigError(f"--windows {spec}: the build has windows 1..{len(windows)}.")
    return list(windows[lo - 1 : hi])


def _ci(values: np.ndarray) -> list[float] | None:
    return list(bootstrap_ci(np.asarray(values, dtype=float))) if len(values) else None


def _adapter(store: Store, ref: str, domain: str | None) -> AdapterVersion:
    ref_domain, name = split_ref(ref)
    return resolve(store, domain if (name in ALIASES and ref_domain is None) else None, ref)


def _base_model(rec: AdapterVersion) -> str | None:
    return None if rec.base_model == DEFAULT_ID else rec.base_model


def evaluate_version(
    store: Store, cfg: EvalConfig, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Measure ``cfg.version`` and the base model; the ``evaluate --json`` dict."""
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    rec = _adapter(store, cfg.version, cfg.domain)
    if cfg.task == "issues":
        return evaluate_issue_texts(store, rec, cfg, say, started)
    if cfg.task != "qa":
        raise ConfigError(f"--task {cfg.task!r}: use qa or issues.")
    data = load_qa(store, cfg.domain or rec.domain, cfg.context)
    windows = pick_windows(data.windows, cfg.windows)
    held = heldout_sets(data.examples, windows, cfg.heldout, cfg.seed)
    pooled = [e for w in windows for e in held[w]]
    if not pooled:
        raise ConfigError(f"Windows {', '.join(windows)} of {data.domain} have no held-out issues.")
    say(f"loading the base model of {rec.version}")
    model, tokenizer, _info = load_base(_base_model(rec), store.settings.home)
    ev = Evaluator(model, tokenizer, cfg.max_len)
    ctx = cfg.context == "retrieved"
    rng = random.Random(cfg.seed)
    queries = rng.sample(pooled, min(cfg.ranking, len(pooled)))
    asked = rng.sample(pooled, min(cfg.generate, len(pooled)))
    engine = (
        answer_engine(cfg.backend, ev, _base_model(rec), store.settings.home, cfg.max_len)
        if asked
        else None
    )
    pool = list(data.examples)
    raw: dict[str, dict[str, np.ndarray]] = {}
    answers: dict[str, list[str]] = {}
    for name, adapter in (("base", None), ("adapter", rec.path)):
        say(f"measuring {name}: NLL on {len(pooled)}, ranking {len(queries)}")
        vals = {"nll": ev.nll(adapter, pooled, ctx)}
        rr = ranking_rr(ev, adapter, queries, pool, ctx, cfg.seed)
        vals["fix_mrr"], vals["fix_acc1"] = rr, (rr == 1.0).astype(float)
        if engine is not None:
            say(f"generating {len(asked)} answers with {name} ({engine.name})")
            got = generate_and_score(
                engine, adapter, asked, ctx, default_embedder(), cfg.max_new_tokens
            )
            vals["embed_sim"], vals["rouge_l"], answers[name] = got.sim, got.rouge, got.answers
        raw[name] = vals
    result = _result(rec, data, windows, cfg, raw, answers, asked, engine)
    result["examples"] = {"nll": len(pooled), "ranking": len(queries), "generated": len(asked)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    if cfg.save:
        key = f"{data.domain}:{windows[0]}-{windows[-1]}:{cfg.context}"
        summary = {m: result["adapter"][m] for m in METRICS} | {"diff": result["diff"]}
        set_metrics(store, rec.version, {"evaluations": {key: summary}})
    return result


def _result(
    rec: AdapterVersion,
    data: QaSet,
    windows: list[str],
    cfg: EvalConfig,
    raw: dict[str, dict[str, np.ndarray]],
    answers: dict[str, list[str]],
    asked: list[Example],
    engine: AnswerEngine | None,
) -> dict[str, Any]:
    """The JSON contract of ``adaptune evaluate --json``."""
    out: dict[str, Any] = {
        "version": rec.version,
        "adapter_domain": rec.domain,
        "domain": data.domain,
        "build": data.build,
        "windows": windows,
        "context": cfg.context,
        "backend": engine.name if engine else None,
    }
    for name in ("base", "adapter"):
        out[name] = {m: _ci(raw[name][m]) if m in raw[name] else None for m in METRICS}
    out["diff"] = {
        m: list(paired_diff_ci(raw["adapter"][m], raw["base"][m]))
        if m in raw["adapter"] and len(raw["adapter"][m])
        else None
        for m in METRICS
    }
    out["retrieval_baseline"], out["samples"] = None, []
    if asked:
        train = [e for e in data.examples if e.split == "train"]
        emb = default_embedder()
        got = score(retrieval_baseline(train, asked, emb), [e.answer for e in asked], emb)
        out["retrieval_baseline"] = {"embed_sim": _ci(got.sim), "rouge_l": _ci(got.rouge)}
        out["samples"] = [
            {
                "issue": ex.issue,
                "question": ex.question,
                "reference": ex.answer,
                "base": answers["base"][i],
                "adapter": answers["adapter"][i],
                "retrieval": got.answers[i],
            }
            for i, ex in enumerate(asked[:5])
        ]
    return out


def evaluate_issue_texts(
    store: Store, rec: AdapterVersion, cfg: EvalConfig, say: Callable[[str], None], started: float
) -> dict[str, Any]:
    """NLL of a domain's held-out issue texts, base vs adapter (``--task issues``)."""
    with store.begin() as conn:
        domain = resolve_domain(conn, cfg.domain or rec.domain).name
    folder = find_build(store.settings.home, domain, None)
    rows = [e for e in iter_examples(folder, "triage") if e.split == "heldout"]
    random.Random(cfg.seed).shuffle(rows)
    texts = [e.question for e in rows[: cfg.heldout]]
    if not texts:
        raise ConfigError(f"Domain {domain} has no held-out issues in build {folder.name}.")
    say(f"loading the base model of {rec.version}")
    model, tokenizer, _info = load_base(_base_model(rec), store.settings.home)
    ev = Evaluator(model, tokenizer, cfg.max_len)
    raw = {}
    for name, adapter in (("base", None), ("adapter", rec.path)):
        say(f"{name}: NLL of {len(texts)} {domain} issue texts")
        with ev.using(adapter) as lm:
            raw[name] = text_nll(lm, tokenizer, texts, max_len=min(cfg.max_len, 256))
    result = {
        "version": rec.version,
        "adapter_domain": rec.domain,
        "domain": domain,
        "build": folder.name,
        "task": "issues",
        "examples": len(texts),
        "base": {"text_nll": _ci(raw["base"])},
        "adapter": {"text_nll": _ci(raw["adapter"])},
        "diff": {"text_nll": list(paired_diff_ci(raw["adapter"], raw["base"]))},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if cfg.save:
        summary = {"text_nll": result["adapter"]["text_nll"], "diff": result["diff"]}
        set_metrics(store, rec.version, {"evaluations": {f"{domain}:issues": summary}})
    return result
