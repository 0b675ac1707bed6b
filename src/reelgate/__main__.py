"""``python -m reelgate``: the same as the ``reelgate`` command."""

from reelgate.cli import main

main()
