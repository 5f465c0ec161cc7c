"""adaptune: a language model that learns from a project's issue tracker, and keeps learning."""

__version__ = "0.1.0"
