"""Cut the demo sample shipped in the package from the full huggingface/datasets dump.

The demo must run on a fresh machine with no network and no ``../shared``; this script makes
``src/adaptune/samples/huggingface-datasets-2021-2022.jsonl.gz`` (≤ 2 MB): the issues created in
2021–2022 and the pull requests that say they fix one of them, in the REST shape, with the
fields adaptune reads (URLs and avatars dropped) and very long bodies cut to head + tail.

    python scripts/cut_sample.py [--src ../shared/data/github/huggingface-datasets.issues.jsonl.gz]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = ROOT.parent / "shared/data/github/huggingface-datasets.issues.jsonl.gz"
OUT = ROOT / "src/adaptune/samples/huggingface-datasets-2021-2022.jsonl.gz"
KEEP = [
    "number",
    "title",
    "body",
    "state",
    "state_reason",
    "author_association",
    "comments",
    "created_at",
    "updated_at",
    "closed_at",
    "html_url",
    "repository_url",
]
FIX = re.compile(
    r"\b(?:fix|fixes|fixed|close|closes|closed|resolve|resolves|resolved)\s*:?\s+"
    r"(?:https://github\.com/huggingface/datasets/issues/|#)(\d+)",
    re.IGNORECASE,
)
MAX_BODY = 6000


def slim(obj: dict) -> dict:
    """The fields adaptune reads, with a long body cut to head and tail."""
    out = {k: obj.get(k) for k in KEEP}
    body = out["body"] or None
    if body and len(body) > MAX_BODY:
        out["body"] = body[: MAX_BODY * 2 // 3] + "\n[...]\n" + body[-MAX_BODY // 3 :]
    out["labels"] = [{"name": lab["name"]} for lab in obj.get("labels") or []]
    for who in ("user", "closed_by"):
        out[who] = {"login": obj[who]["login"]} if obj.get(who) else None
    if obj.get("pull_request"):
        pr = obj["pull_request"]
        out["pull_request"] = {"merged_at": pr.get("merged_at"), "html_url": pr.get("html_url")}
    return out


def main() -> None:
    """Write the sample and print its size."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with gzip.open(args.src, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    issues = {
        r["number"]
        for r in rows
        if not r.get("pull_request") and "2021-01-01" <= r["created_at"] < "2023-01-01"
    }
    keep = []
    for r in rows:
        if r["number"] in issues:
            keep.append(slim(r))
        elif r.get("pull_request") and (r["pull_request"] or {}).get("merged_at"):
            text = f"{r.get('title') or ''}\n{r.get('body') or ''}"
            if any(int(n) in issues for n in FIX.findall(text)):
                keep.append(slim(r))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(args.out, "wb", compresslevel=9, mtime=0) as fh:
        for r in keep:
            fh.write((json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode())
    n_pr = sum(1 for r in keep if r.get("pull_request"))
    size = args.out.stat().st_size
    print(f"{args.out}: {len(keep)} rows ({len(keep) - n_pr} issues, {n_pr} PRs), {size} bytes")


if __name__ == "__main__":
    main()
