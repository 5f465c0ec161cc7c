"""``python -m adaptune``: the same as the ``adaptune`` command."""

from adaptune.cli import main

main()
