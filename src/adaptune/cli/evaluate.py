"""``adaptune evaluate``: one adapter version against the base model, with 95 % CIs."""

from __future__ import annotations

import typer
from rich.table import Table

from adaptune.cli.output import err, out, print_json
from adaptune.cli.summary import fmt_ci
from adaptune.store import open_store

LABELS = {
    "nll": "answer NLL (lower is better)",
    "fix_acc1": "fix ranked first",
    "fix_mrr": "fix MRR",
    "embed_sim": "generated answer: embedding similarity",
    "rouge_l": "generated answer: ROUGE-L",
}


def result_table(result: dict) -> Table:
    """Base vs adapter per metric, the paired difference, and the retrieval baseline."""
    table = Table(
        "metric",
        "base",
        result["version"],
        "difference (95% CI)",
        "retrieval only",
        title=f"{result['domain']} held-out, windows {result['windows'][0]}–"
        f"{result['windows'][-1]}, context {result['context']}, generation "
        f"{result['backend'] or 'off'}",
    )
    retrieval = result.get("retrieval_baseline") or {}
    for key, label in LABELS.items():
        table.add_row(
            label,
            fmt_ci(result["base"][key]),
            fmt_ci(result["adapter"][key]),
            fmt_ci(result["diff"][key]),
            fmt_ci(retrieval.get(key)),
        )
    return table


def evaluate(
    version: str = typer.Argument(
        "production", help="Version, alias (production, candidate) or DOMAIN:REF."
    ),
    domain: str | None = typer.Option(
        None, "--domain", help="Held-out set of this domain (default: the adapter's own)."
    ),
    windows: str | None = typer.Option(
        None, "--windows", help="N, FIRST-LAST or a window name (default: every window)."
    ),
    heldout: int = typer.Option(24, "--heldout", help="Held-out examples per window for NLL."),
    generate: int = typer.Option(16, "--generate", help="Questions answered by generation."),
    ranking: int = typer.Option(16, "--ranking", help="Questions whose fix is ranked."),
    context: str = typer.Option("retrieved", "--context", help="retrieved or none."),
    backend: str = typer.Option(
        "auto", "--backend", help="auto (llama.cpp if installed), llamacpp or transformers."
    ),
    max_len: int = typer.Option(1024, "--max-len", help="Tokens per evaluated example."),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling and bootstrap."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not store the metrics."),
    task: str = typer.Option(
        "qa", "--task", help="qa (answers) or issues (NLL of issue texts; no answers needed)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON contract."),
) -> None:
    """Evaluate an adapter against the base model: NLL, fix ranking, generated answers."""
    from transformers.utils import logging as hf_logging

    from adaptune.evaluate.evaluation import EvalConfig, evaluate_version

    hf_logging.disable_progress_bar()
    cfg = EvalConfig(
        version=version,
        domain=domain,
        windows=windows,
        heldout=heldout,
        generate=generate,
        ranking=ranking,
        context=context,
        backend=backend,
        max_len=max_len,
        seed=seed,
        save=not no_save,
        task=task,
    )
    with err.status("evaluate…") as status:
        result = evaluate_version(open_store(), cfg, progress=status.update)
    if as_json:
        print_json(result)
        return
    if task == "issues":
        out.print(
            f"{result['examples']} held-out {result['domain']} issue texts, NLL per token "
            f"(lower is better): base {fmt_ci(result['base']['text_nll'])}, "
            f"{result['version']} {fmt_ci(result['adapter']['text_nll'])}, difference "
            f"{fmt_ci(result['diff']['text_nll'])}"
        )
        return
    out.print(result_table(result))
    n = result["examples"]
    out.print(
        f"{n['nll']} held-out issues for NLL, {n['ranking']} ranked, {n['generated']} "
        f"answered; {result['seconds']:.0f} s"
    )
