"""meshdojo launcher: backends, process supervision and the ``meshdojo`` CLI."""
