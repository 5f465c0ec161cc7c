"""The triage classifier: training, prediction, saving, the build hook and the store fallback."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from adaptune.memory import default_embedder
from adaptune.pipeline import build_dataset
from adaptune.store.domains import add_domain
from adaptune.store.issues import upsert_issues
from adaptune.triage import TriageModel, ensure_triage, train_triage
from adaptune.triage.features import TfidfFeatures
from adaptune.types import Example, Issue

T0 = datetime(2022, 1, 3, tzinfo=UTC)
CORPUS = {
    "bug": [
        "load_dataset crashes with KeyError 'train' after upgrading to 2.14",
        "Traceback: ArrowInvalid when calling map with batched=True on a nested column",
        "Segmentation fault while streaming a parquet dataset from the hub",
        "to_pandas raises TypeError on a dataset with an image column",
        "Crash: OSError cannot write to cache directory when running in docker",
        "filter() returns wrong rows and raises IndexError on the last shard",
        "ValueError exception when concatenating two datasets with different features",
        "push_to_hub fails with HTTPError 500 and leaves a broken repository",
        "Regression: shuffle crashes with RecursionError on very large datasets",
    ],
    "feature": [
        "Feature request: support for reading Avro files in load_dataset",
        "It would be great to add a progress bar option to the map function",
        "Add support for zstd compression when saving datasets to disk",
        "Please add an option to select columns while streaming",
        "Proposal: allow custom split names in the dataset builder config",
        "Support exporting a dataset directly to SQL tables, a new feature",
        "Add a method to sample a random subset without loading everything",
        "Would be nice to support async iteration over streaming datasets",
        "New feature: add an argument to cast all string columns at once",
    ],
    "usage": [
        "How do I load only the first 100 rows of a dataset?",
        "Question: what is the recommended way to tokenize a dataset for training?",
        "How can I set the cache directory when I use load_dataset?",
        "What is the difference between map with batched and without it, how to choose?",
        "How do I use a local CSV file with my own column names?",
        "Question about how to share a private dataset with my organisation",
        "How should I combine two splits into one for evaluation?",
        "Is there a way to know how much disk space a dataset will need? How to check",
        "How to convert my dataset to a torch DataLoader, what is the right way?",
    ],
}
NEW = {
    "bug": "KeyError exception and traceback when calling load_dataset with streaming",
    "feature": "Feature request: add support for writing datasets to the Lance format",
    "usage": "How do I select the train split only, what is the right way?",
}


def examples(corpus: dict[str, list[str]] = CORPUS) -> list[Example]:
    out = []
    for label, texts in corpus.items():
        for i, text in enumerate(texts):
            out.append(
                Example(
                    id=f"triage:{label}{i}",
                    task="triage",
                    domain="d",
                    issue=f"github:o/r#{label}{i}",
                    question=f"Title: {text}",
                    answer=label,
                    known_at=T0 + timedelta(days=i),
                )
            )
    return out


@pytest.fixture(scope="module")
def model() -> TriageModel:
    m = train_triage(examples(), default_embedder())
    assert m is not None
    return m


def test_classifier_labels_new_texts_with_probabilities(model: TriageModel) -> None:
    assert set(model.labels) == {"bug", "feature", "usage"}
    preds = model.predict([f"Title: {t}" for t in NEW.values()])
    assert [p["label"] for p in preds] == list(NEW)
    for p in preds:
        assert set(p["scores"]) == set(model.labels)
        assert sum(p["scores"].values()) == pytest.approx(1.0)
        assert p["scores"][p["label"]] == max(p["scores"].values())
    assert model.manifest["counts"] == {"bug": 9, "feature": 9, "usage": 9}
    metrics = model.manifest["heldout_metrics"]
    assert metrics["heldout"] > 0 and 0.0 <= metrics["macro_f1"] <= 1.0


def test_save_and_load_give_identical_predictions(model: TriageModel, tmp_path) -> None:
    folder = tmp_path / "triage"
    model.save(folder)
    model.save(folder)  # overwriting an existing classifier works too
    assert {p.name for p in folder.iterdir()} == {"model.npz", "manifest.json"}
    loaded = TriageModel.load(folder, default_embedder())
    texts = [f"Title: {t}" for t in NEW.values()] + ["something else entirely"]
    assert loaded.labels == model.labels
    assert loaded.predict(texts) == model.predict(texts)


def test_two_labels_work_and_one_label_is_not_enough() -> None:
    two = {k: CORPUS[k] for k in ("bug", "usage")}
    m = train_triage(examples(two), default_embedder(), holdout=0)
    assert m is not None and m.predict(["Title: " + NEW["usage"]])[0]["label"] == "usage"
    assert train_triage(examples({"bug": CORPUS["bug"]}), default_embedder()) is None
    lonely = {"bug": CORPUS["bug"], "usage": CORPUS["usage"][:1]}  # one usage example: dropped
    assert train_triage(examples(lonely), default_embedder()) is None


def test_tfidf_features_match_scikit_learn() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [t for ts in CORPUS.values() for t in ts]
    ours = TfidfFeatures.fit(texts, min_df=2)
    ref = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit(texts)
    assert ours.vocabulary == list(ref.get_feature_names_out())
    probe = [*texts, "unknown words only"]
    dense = ours.to_csr(ours.transform(probe)).toarray()
    assert np.allclose(dense, ref.transform(probe).toarray())


def stored_issues() -> list[Issue]:
    labels = {"bug": "bug", "feature": "enhancement", "usage": "question"}
    out = []
    for label, texts in CORPUS.items():
        for i, text in enumerate(texts):
            when = T0 + timedelta(days=10 * i + len(out))
            out.append(
                Issue(
                    "github",
                    "o/r",
                    len(out) + 1,
                    text,
                    f"{text}. It happens on linux with python 3.11 every time I try it.",
                    "open",
                    when,
                    when,
                    labels=(labels[label],),
                )
            )
    return out


def fill(store) -> None:
    with store.begin() as conn:
        add_domain(conn, "d", ["github:o/r"])
        upsert_issues(conn, stored_issues())


def test_ensure_triage_trains_from_stored_issues_without_a_build(store, caplog) -> None:
    fill(store)
    with caplog.at_level(logging.INFO, logger="adaptune.triage"):
        m = ensure_triage(store, "d", default_embedder())
    assert m is not None and set(m.labels) == {"bug", "feature", "usage"}
    assert "no triage classifier for domain d: trained one from 27 stored issues" in caplog.text
    assert m.predict(["Title: " + NEW["feature"]])[0]["label"] == "feature"


def test_every_build_saves_its_classifier_which_ensure_triage_loads(store, caplog) -> None:
    fill(store)
    result = build_dataset(store, "d")
    folder = result.path / "triage"
    saved = TriageModel.load(folder, default_embedder())
    assert saved.manifest["build"] == result.build_id
    assert saved.manifest["examples"] == len(result.examples["triage"])
    assert set(saved.labels) == {"bug", "feature", "usage"}
    with caplog.at_level(logging.INFO, logger="adaptune.triage"):
        served = ensure_triage(store, "d", default_embedder())
    assert "trained one" not in caplog.text
    assert served is not None and served.manifest["build"] == result.build_id
