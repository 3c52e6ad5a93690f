"""meshdojo sidecar proxy: outbound and inbound HTTP/1.1 listeners with automatic mutual TLS."""
