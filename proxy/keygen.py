"""A workload key and its certificate signing request, made in a short-lived child process.

The proxy needs ``cryptography`` only for this — once at start and at each rotation — and
importing it costs a resident ~8 MB for the life of the process (it carries its own OpenSSL).
So the proxy runs ``openssl req`` (or, without it, ``python -m proxy.keygen SPIFFE-ID``) and
reads the key and CSR from its stdout: a pipe, never a file (the key touches no persistent storage), and the child is gone
a few milliseconds later.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys

KEYGEN_TIMEOUT = 30.0


class KeygenError(OSError):
    """The child could not make them (its stderr says why)."""


# what an ``-addext`` value may hold without quoting: our SPIFFE IDs are lowercase names and slashes
_SAFE_URI = re.compile(r"spiffe://[A-Za-z0-9._/-]+")


def openssl_argv(spiffe_uri: str, openssl: str) -> list[str]:
    """``openssl req`` making a P-256 key and a CSR whose only name is ``spiffe_uri`` (a critical URI SAN,
    empty subject — what the CA signs), both PEM on stdout: key (PKCS#8) first, then the CSR."""
    if not _SAFE_URI.fullmatch(spiffe_uri):
        raise ValueError(f"not a SPIFFE ID openssl can be given: {spiffe_uri!r}")
    return [openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "-", "-out", "-", "-subj", "/", "-addext", f"subjectAltName=critical,URI:{spiffe_uri}"]


def split_openssl_output(out: str) -> tuple[str, str]:
    """(key PEM, CSR PEM) from ``openssl req``'s stdout; ValueError when either is missing."""
    key = re.search(r"-----BEGIN PRIVATE KEY-----.+?-----END PRIVATE KEY-----\n", out, re.S)
    csr = re.search(r"-----BEGIN CERTIFICATE REQUEST-----.+?-----END CERTIFICATE REQUEST-----\n", out, re.S)
    if key is None or csr is None:
        raise ValueError("openssl req printed no key or no certificate request")
    return key.group(0), csr.group(0)


async def _run(argv: list[str], timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise KeygenError(f"{argv[0]} failed (exit {proc.returncode}): {err.decode(errors='replace').strip()[-300:]}")
    return out.decode()


async def key_and_csr(spiffe_uri: str, timeout: float = KEYGEN_TIMEOUT, openssl: str | None = None) -> tuple[str, str]:
    """(private key PEM, CSR PEM) for ``spiffe_uri``, made by a child process.

    ``openssl`` when it is on PATH (about 10 ms of CPU), else ``python -m proxy.keygen`` (about
    250 ms: the interpreter and ``cryptography`` load each time). Pass ``openssl=""`` to force the
    Python child (the tests check both)."""
    openssl = shutil.which("openssl") if openssl is None else openssl
    if openssl:
        return split_openssl_output(await _run(openssl_argv(spiffe_uri, openssl), timeout))
    reply = json.loads(await _run([sys.executable, "-m", "proxy.keygen", spiffe_uri], timeout))
    return reply["key"], reply["csr"]


def main() -> int:
    from controlplane import ca
    from controlplane.spiffe import SpiffeId

    identity = SpiffeId.parse(sys.argv[1])
    key = ca.new_key()
    json.dump({"key": ca.key_pem(key), "csr": ca.csr_pem(ca.make_csr(identity, key))}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
