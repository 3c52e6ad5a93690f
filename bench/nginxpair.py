"""Reference point for the benchmark: a compiled HTTP/1 proxy pair — nginx — with mutual TLS
1.3 between its two processes, keep-alive pools on both hops: what a data path outside the
interpreter does on the same machine, with the same certificates.

Each nginx is one process (no master, one worker), as each of our proxies is: ``front`` takes
the load generator's requests (absolute-form, as through ``HTTP_PROXY``) and forwards them over
mutual TLS to ``back``, which forwards them to the app. ``back`` verifies the client's chain
against the trust anchor, as our inbound proxy does; ``front`` presents its certificate but does
not check ``back``'s name — nginx checks DNS names and IP addresses, and our identities are URI
SANs — which costs nothing per request either way (one handshake per kept-alive connection).
It has none of our proxy's features (metrics, fates, tap, policies): it is the floor of a
native data path, not a proxy to compare features with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.measure import BenchError
from sandbox.ports import accepting, free_port
from sandbox.processes import spawn, wait_until

ROLES = ("back", "front")


def config(role: str, root: Path, listen: int, upstream: int) -> str:
    """nginx.conf for one of the pair: ``back`` (mutual TLS in, plaintext to ``upstream``, the
    app) or ``front`` (plaintext in, mutual TLS to ``upstream``, the back)."""
    head = (f"worker_processes 1;\nmaster_process off;\ndaemon off;\npid {root}/nginx-{role}.pid;\n"
            f"error_log {root}/nginx-{role}.err warn;\nevents {{ worker_connections 4096; }}\n")
    forward = 'proxy_http_version 1.1; proxy_set_header Connection "";'
    if role == "back":
        server = (f"listen 127.0.0.1:{listen} ssl; ssl_protocols TLSv1.3;\n"
                  f"ssl_certificate {root}/nginx-chain.pem; ssl_certificate_key {root}/nginx-key.pem;\n"
                  f"ssl_client_certificate {root}/nginx-anchor.pem; ssl_verify_client on; ssl_verify_depth 3;\n"
                  f"location / {{ proxy_pass http://upstream; {forward} }}")
    else:
        server = (f"listen 127.0.0.1:{listen};\n"
                  f"location / {{ proxy_pass https://upstream; {forward} proxy_ssl_protocols TLSv1.3;\n"
                  f"proxy_ssl_certificate {root}/nginx-chain.pem; proxy_ssl_certificate_key {root}/nginx-key.pem;\n"
                  f"proxy_ssl_session_reuse on; }}")
    return (head + "http {\naccess_log off;\n"
            f"upstream upstream {{ server 127.0.0.1:{upstream}; keepalive 64; }}\n"
            f"server {{ keepalive_requests 1000000;\n{server}\n}}\n}}\n")


def start_pair(root: Path, app_port: int, material: tuple[str, str, str], helpers: list) -> tuple[int, tuple[int, ...]]:
    """Both nginx processes (appended to ``helpers``, to be stopped by the caller): the front's
    port, and both pids."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")  # sbin: not on every user's PATH
    if nginx is None:
        raise BenchError("nginx is not installed: the compiled reference pair needs it (Debian: apt install nginx)")
    for name, pem in zip(("anchor", "chain", "key"), material, strict=True):
        path = root / f"nginx-{name}.pem"
        path.write_text(pem)
        path.chmod(0o600)
    upstream, pids = app_port, []
    for role in ROLES:
        listen = free_port()
        conf = root / f"nginx-{role}.conf"
        conf.write_text(config(role, root, listen, upstream))
        proc = spawn([nginx, "-p", str(root), "-e", str(root / f"nginx-{role}.err"), "-c", str(conf)], root / f"nginx-{role}.log")
        helpers.append(proc)
        pids.append(proc.pid)
        wait_until(lambda p=listen, proc=proc: proc.poll() is not None or accepting(p), 10, f"nginx {role} to listen")
        if proc.poll() is not None:
            raise BenchError(f"nginx {role} exited with {proc.returncode}: "
                             f"{(root / f'nginx-{role}.err').read_text(errors='replace')[-500:]}")
        upstream = listen
    return upstream, tuple(pids)
