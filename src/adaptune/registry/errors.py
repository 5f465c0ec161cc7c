"""The registry's error: an adapter version that is unknown, broken or refused an operation."""

from __future__ import annotations

from adaptune.errors import AdaptuneError


class RegistryError(AdaptuneError):
    """An adapter version is unknown, its files are missing or corrupt, or an action is refused.

    The message names the version or the path involved and says what to do next.
    """
