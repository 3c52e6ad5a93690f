"""meshdojo control plane: identity (CA), service registry, discovery and the operator API."""
