"""A small client of the control plane's operator API, for the launcher, the CLI and the UI."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message if status in (0, 400) else f"{status}: {message}")
        self.status = status
        self.body = body if isinstance(body, dict) else {}


class OperatorApi:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token

    @classmethod
    def from_state(cls, state_dir: Path) -> OperatorApi:
        info = json.loads((state_dir / "controlplane.json").read_text())
        return cls(info["api"], (state_dir / "admin-token").read_text().strip())

    def call(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                body = json.loads(err.read())
                message = body.get("error", err.reason)
            except (ValueError, AttributeError):
                body, message = None, err.reason
            raise ApiError(err.code, message, body) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, f"control plane not reachable at {self.base_url} ({exc})") from None

    def stream(self, path: str, idle_timeout: float = 30.0) -> Any:
        """An open NDJSON stream (iterate it for lines; close it when done). The server must
        write something at least every ``idle_timeout`` seconds (``/v1/tap`` ticks every second)."""
        request = urllib.request.Request(self.base_url + path)
        request.add_header("Authorization", f"Bearer {self._token}")
        try:
            return urllib.request.urlopen(request, timeout=idle_timeout)
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read()).get("error", err.reason)
            except (ValueError, AttributeError):
                message = err.reason
            raise ApiError(err.code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, f"control plane not reachable at {self.base_url} ({exc})") from None

    def token(self, namespace: str, service_account: str) -> str:
        return self.call("POST", "/v1/tokens", {"namespace": namespace, "serviceAccount": service_account})["token"]

    def put_service(self, namespace: str, name: str, ports: list[int], selector: dict[str, str] | None = None,
                    annotations: dict[str, str] | None = None) -> None:
        """``annotations`` (Linkerd's) only when the manifest has some: those set by ``meshdojo annotate`` stay."""
        self.call("PUT", f"/v1/services/{namespace}/{name}", {"ports": ports, **({"selector": selector} if selector else {}),
                                                             **({"annotations": annotations} if annotations else {})})

    def put_endpoint(self, namespace: str, service: str, endpoint_id: str, endpoint: dict[str, Any]) -> None:
        self.call("PUT", f"/v1/services/{namespace}/{service}/endpoints/{endpoint_id}", endpoint)

    def delete_endpoint(self, namespace: str, service: str, endpoint_id: str) -> None:
        try:
            self.call("DELETE", f"/v1/services/{namespace}/{service}/endpoints/{endpoint_id}")
        except ApiError as exc:
            if exc.status != 404:
                raise
