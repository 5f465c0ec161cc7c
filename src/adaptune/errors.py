"""The one exception hierarchy of adaptune.

Every error a user can cause or fix derives from :class:`AdaptuneError`; its message says what
went wrong *and what to do next*. The CLI prints it as one red line and exits non-zero.
"""

from __future__ import annotations


class AdaptuneError(Exception):
    """Base class of every error adaptune raises on purpose."""

    exit_code: int = 1


class ConfigError(AdaptuneError):
    """A setting, an environment variable or a command-line option is wrong or missing."""

    exit_code = 2


class StoreError(AdaptuneError):
    """The database cannot be opened, migrated or written."""


class IngestError(AdaptuneError):
    """A source could not be read (bad file, bad response, unreachable server)."""


class InputRejected(IngestError):
    """Some rows of an input were rejected; the good ones were stored (unless ``--strict``)."""

    def __init__(self, message: str, rejected: int) -> None:
        super().__init__(message)
        self.rejected = rejected


class RemoteError(IngestError):
    """A remote API (GitHub, Jira) kept failing after retries, or refused the credentials."""


class DomainError(AdaptuneError):
    """A domain is unknown, ambiguous or already exists."""


class RegistryError(AdaptuneError):
    """An adapter version is unknown, its files are missing or corrupt, or an action is refused.

    The message names the version or the path involved and says what to do next. It lives here,
    not in :mod:`adaptune.registry`, because :mod:`adaptune.generate.gguf_lora` (below the
    registry) raises it for adapters llama.cpp cannot apply.
    """
