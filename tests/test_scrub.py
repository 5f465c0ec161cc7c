"""Scrubbing: every secret kind becomes its placeholder, ordinary text stays, twice is once."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptune.dataset.scrub import find_secrets, scrub
from conftest import shared_file

FIXTURES = Path(__file__).parent / "fixtures" / "parse"

# Made-up values with the shape of real ones.
GITHUB = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
HF = "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
KEY_BLOCK = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
    "-----END RSA PRIVATE KEY-----"
)

SECRETS = [
    ("export GITHUB_TOKEN=" + GITHUB, "export GITHUB_TOKEN=<GITHUB_TOKEN>", "github_token"),
    ("token gho_" + "Zz9" * 12, "token <GITHUB_TOKEN>", "github_token"),
    (
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
        "<GITHUB_TOKEN>",
        "github_token",
    ),
    (f'login(token="{HF}")', 'login(token="<HF_TOKEN>")', "hf_token"),
    ("OPENAI_API_KEY=sk-AbCdEf1234567890GhIjKlMnOpQrStUv", "OPENAI_API_KEY=<API_KEY>", "api_key"),
    ("key: sk-proj-AbCdEf1234567890GhIjKlMnOpQrSt_xY", "key: <API_KEY>", "api_key"),
    ("sk-ant-api03-AbCdEf1234567890GhIjKlMnOpQrSt-xYz", "<API_KEY>", "api_key"),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "aws_access_key_id = <AWS_KEY>", "aws_key"),
    ("ASIAQ3GQRTO3IU5JYB5K in the log", "<AWS_KEY> in the log", "aws_key"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = <AWS_KEY>",
        "aws_key",
    ),
    (f"key:\n{KEY_BLOCK}\nafter", "key:\n<PRIVATE_KEY>\nafter", "private_key"),
    (f"Cookie: session={JWT}; path=/", "Cookie: session=<JWT>; path=/", "jwt"),
    ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "<SLACK_TOKEN>", "slack_token"),
    (
        "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "<SLACK_TOKEN>",
        "slack_token",
    ),
    ("password=hunter2024", "password=<SECRET>", "secret"),
    ('{"api_key": "a1b2c3d4e5f6g7h8"}', '{"api_key": "<SECRET>"}', "secret"),
    ("DB_PASSWORD: 'correct-horse'", "DB_PASSWORD: '<SECRET>'", "secret"),
    ("client_secret := 9f8e7d6c5b4a3210", "client_secret := <SECRET>", "secret"),
    ("vllm serve m --api-key token-abc123", "vllm serve m --api-key <SECRET>", "secret"),
    ("Authorization: Bearer abcdef1234567890abcdef", "Authorization: Bearer <SECRET>", "bearer"),
    (
        "postgresql://user:s3cretpw@db:5432/x",
        "postgresql://user:<SECRET>@db:5432/x",
        "url_password",
    ),
    ("mail jane.doe+hf@example.co.uk today", "mail <EMAIL> today", "email"),
    ("From: 123+bot@users.noreply.github.com", "From: <EMAIL>", "email"),
]


@pytest.mark.parametrize(("text", "scrubbed", "kind"), SECRETS)
def test_each_secret_kind(text: str, scrubbed: str, kind: str) -> None:
    assert scrub(text) == scrubbed
    assert kind in [k for k, _ in find_secrets(text)]
    assert scrub(scrubbed) == scrubbed


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("stripe sk_live_" + "a1B2c3D4e5F6g7H8i9J0k1L2", "Stripe Access Key"),
        ("gitlab glpat-" + "AbCdEfGhIjKlMnOpQrSt12", "GitLab Token"),
        ("SG." + "a" * 22 + "." + "b" * 43, "SendGrid API Key"),
        ("twilio SK" + "0123456789abcdef" * 2, "Twilio API Key"),
        ("//registry.npmjs.org/:_authToken=npm_" + "x" * 36, "NPM tokens"),
        ("chimp 0123456789abcdef0123456789abcdef-us12", "Mailchimp Access Key"),
    ],
)
def test_detect_secrets_plugins_catch_what_typed_rules_miss(text: str, kind: str) -> None:
    pytest.importorskip("detect_secrets")
    assert "<SECRET>" in scrub(text)
    assert [k for k, _ in find_secrets(text)] == [f"detect-secrets:{kind}"]


@pytest.mark.parametrize(
    "text",
    [
        "tokenizer.pad_token = tokenizer.eos_token",
        "load_dataset('x', use_auth_token=True, token=None)",
        'eos_token: "</s>"\npad_token: "[PAD]"\ndecoded_token=\'Hello\'',
        "def f(token: Optional[str] = None, password: str = ''): ...",
        "max_tokens=512, max_new_tokens=128, num_tokens: 4096, first token: 0.0407s",
        "token = input_ids[-1]",
        'client = OpenAI(api_key="EMPTY", base_url="http://localhost:8000/v1")',
        "export HF_TOKEN=<YOUR_TOKEN> HUGGING_FACE_HUB_TOKEN=$HF_TOKEN api_key=${KEY}",
        "git checkout 21be9cab94e0b5b53cb6edeeebf8c8c799baad03",
        "torch 2.1.2+cu121, vllm 0.6.3.post1, sha256:e3b0c44298fc1c149afbf4c8996fb924",
        "git clone git@github.com:huggingface/datasets.git",
        "@torch.inference_mode()\ndef f(): return a @ b",
        "hf_hub_download(repo_id, filename) and sk-learn-style estimators",
        "<GITHUB_TOKEN> <HF_TOKEN> <API_KEY> <AWS_KEY> <PRIVATE_KEY> <JWT> <SECRET> <EMAIL>",
        "pip install vllm@https://x/y.whl and model@step1000.pt",
        "PASSWORD: int64, token: float32; systemctl start wg-quick@enp39s0.service",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert scrub(text) == text
    assert find_secrets(text) == []


def test_planted_secrets_in_a_real_issue() -> None:
    text = (FIXTURES / "planted_secrets.md").read_text(encoding="utf-8")
    scrubbed = scrub(text)
    for planted in (GITHUB, HF, "hf_ZyXwVuTsRqPoNmLkJiHgFeDcBa98765432", "hunter2024"):
        assert planted in text and planted not in scrubbed
    assert "boris.example@gmail.com" not in scrubbed and "<EMAIL>" in scrubbed
    assert scrubbed.count("<HF_TOKEN>") == 2 and "<GITHUB_TOKEN>" in scrubbed
    for kept in ('os.environ["HF_TOKEN"]', "80b805053ce61d4eb487b6b8d9095d775c2c466e", "### Owner"):
        assert kept in scrubbed
    assert [kind for kind, _ in find_secrets(text)] == [
        "github_token",
        "hf_token",
        "hf_token",
        "secret",
        "email",
    ]
    assert scrub(scrubbed) == scrubbed


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.md")))
def test_real_fixtures_scrub_stably(name: str) -> None:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    assert scrub(scrub(text)) == scrub(text)
    if name != "planted_secrets.md":
        assert scrub(text) == text


def test_empty_input() -> None:
    assert scrub(None) == "" == scrub("")
    assert find_secrets(None) == []


PLANTED = st.sampled_from(
    [
        GITHUB,
        HF,
        JWT,
        KEY_BLOCK,
        "AKIAIOSFODNN7EXAMPLE",
        "sk-proj-AbCdEf1234567890GhIjKlMnOpQrSt",
        "xoxb-123456789012-1234567890123-AbCdEfGh",
        "password=hunter2024",
        'api_key: "a1b2c3d4e5f6g7h8"',
        "someone@example.com",
        "https://u:pw12345@h.io/",
    ]
)
GLUE = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    [" ", "\n", "=", ":", "@", '"', "<", ">", "-", "_", "--token "]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_scrub_is_idempotent_on_any_text(text: str) -> None:
    once = scrub(text)
    assert scrub(once) == once


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(GLUE, PLANTED, GLUE), min_size=1, max_size=4))
def test_scrub_removes_planted_secrets(parts: list[tuple[str, str, str]]) -> None:
    text = "".join(f"{before} {secret} {after}" for before, secret, after in parts)
    once = scrub(text)
    assert scrub(once) == once
    for _before, secret, _after in parts:
        assert re.sub(r"^(password=|api_key: )", "", secret) not in once


def test_scrub_over_the_datasets_dump() -> None:
    with gzip.open(shared_file("github/huggingface-datasets.issues.jsonl.gz"), "rt") as f:
        bodies = [json.loads(line)["body"] or "" for line in f]
    scrubbed = [scrub(body) for body in bodies]
    text = "\n".join(scrubbed)
    for leak in (r"AKIA[0-9A-Z]{16}", r"\bhf_[A-Za-z0-9]{30,}", r"\bgh[pousr]_[A-Za-z0-9]{36}"):
        assert not re.search(leak, text), leak
    assert text.count("<EMAIL>") >= 10 and text.count("<AWS_KEY>") >= 4
    changed = [(b, s) for b, s in zip(bodies, scrubbed, strict=True) if b != s]
    assert 0 < len(changed) < 60
    assert all(scrub(s) == s for _b, s in changed)
