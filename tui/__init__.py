"""meshdojo terminal UI (Textual). Talks to the rest only through the control-plane API and
the sandbox's public functions."""
