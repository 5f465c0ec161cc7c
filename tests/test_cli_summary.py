"""The sentences compare and demo print: memory probes and what was learned beyond style."""

from __future__ import annotations

from adaptune.cli.summary import probe_lines, style_line


def metrics(paired: list[dict]) -> dict:
    return {
        "windows": ["w1", "w2", "w3"],
        "memory_probes": {
            "adaptive": {
                "hit_rate_per_window": [[0.5, None, None], [0.25, 0.75, None], [0.5, 1.0, 0.25]],
                "bwt": 0.125,
            },
            "adaptive-no-replay": {"hit_rate_per_window": [], "bwt": None},
        },
        "paired": paired,
    }


def pair(a: str, b: str, metric: str, diff: list[float]) -> dict:
    return {"a": a, "b": b, "metric": metric, "diff": diff}


def test_probe_lines_give_the_last_adapters_hits_per_window_and_bwt() -> None:
    assert probe_lines(metrics([])) == [
        "memory probes, adaptive: trained issues asked again whose fix ranks first after the "
        "last window: w1 50%, w2 100%, w3 25%; probe BWT +0.12"
    ]


def test_style_line_says_what_is_clear_and_what_is_not() -> None:
    m = metrics(
        [
            pair("adapter+retrieval", "style-control", "nll", [-0.3, -0.4, -0.2]),
            pair("adapter+retrieval", "style-control", "fix_mrr", [0.03, -0.03, 0.12]),
            pair("adapter+retrieval", "style-control", "embed_sim", [-0.1, -0.2, -0.05]),
            pair("adapter", "base", "nll", [-0.5, -0.6, -0.4]),  # not the control: ignored
        ]
    )
    line = style_line(m)
    assert line is not None
    assert "clearly on answer NLL -0.300 [-0.400, -0.200] (better); answer similarity" in line
    assert "answer similarity -0.100 [-0.200, -0.050] (worse)" in line
    assert line.endswith("not clearly on fix ranking (MRR) +0.030 [-0.030, +0.120].")


def test_style_line_when_nothing_is_clear_or_nothing_was_measured() -> None:
    m = metrics([pair("adapter+retrieval", "style-control", "nll", [-0.01, -0.05, 0.03])])
    assert "on no measure clearly; not clearly on answer NLL" in (style_line(m) or "")
    assert style_line(metrics([])) is None


def test_verdict_compares_strategies_only_where_acc_was_measured() -> None:
    from adaptune.evaluate.chains import verdict

    def strat(acc: float) -> dict:
        return {"acc": acc, "bwt": 0.0, "cost": {"tokens": 100}}

    lines = verdict(
        {"strategies": {"adaptive": strat(3.0), "from-base": strat(3.2), "cumulative": strat(3.0)}}
    )
    assert lines[0].startswith("adaptive is ahead of from-base")
    assert lines[1].startswith("adaptive is level with cumulative")
    nan = verdict({"strategies": {"adaptive": strat(float("nan")), "from-base": strat(3.2)}})
    assert nan[0].startswith("adaptive is not comparable with from-base")
