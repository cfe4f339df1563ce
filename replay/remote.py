"""The HTTP calls the command line makes to a running server: start and follow a run,
wait for its end, cancel it, and control it (pause, resume, step, speed)."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from replay.errors import ServerRefused, ServerUnavailable

#: Seconds a control call may take: a step answers once its action has happened.
CONTROL_TIMEOUT = 30.0


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def wait_for_end(url: str, run_id: str, token: str | None = None) -> dict[str, Any]:
    """Poll the run until it has ended; {} if the server stops answering."""
    request = urllib.request.Request(f"{url.rstrip('/')}/runs/{run_id}", headers=headers(token))
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                run: dict[str, Any] = json.loads(answer.read())
        except (OSError, ValueError):
            return {}
        if run.get("state") != "running":
            return run
        time.sleep(0.5)


def cancel(url: str, run_id: str, token: str | None = None) -> None:
    """Cancel the run (DELETE /runs/{id}); a server that is gone is not an error."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/runs/{run_id}", method="DELETE", headers=headers(token)
    )
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=10).close()


def control(
    url: str, run_id: str, action: str, token: str | None = None, speed: float | None = None
) -> dict[str, Any]:
    """``POST /runs/{id}/{action}`` (pause, resume, step, speed) and the run summary it
    answers. Raises ServerRefused (with the server's reason) or ServerUnavailable."""
    target = f"{url.rstrip('/')}/runs/{urllib.parse.quote(run_id, safe='')}/{action}"
    if speed is not None:
        target += "?" + urllib.parse.urlencode({"speed": f"{speed:g}"})
    request = urllib.request.Request(target, data=b"", method="POST", headers=headers(token))
    try:
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT) as answer:
            summary: dict[str, Any] = json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise ServerRefused(error.code, refusal(error)) from None
    except urllib.error.URLError as error:
        reason = getattr(error.reason, "strerror", None) or str(error.reason)
        raise ServerUnavailable(url, reason.lower()) from None
    except (TimeoutError, ConnectionError, ValueError) as error:
        raise ServerUnavailable(url, str(error) or type(error).__name__) from None
    return summary


def post_lines(
    target: str, base: str, body: dict[str, Any], token: str | None = None
) -> Iterator[dict[str, Any]]:
    """POST ``body`` to ``target`` and yield each JSON line of the answer as it comes."""
    request = urllib.request.Request(
        target,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers(token)},
        method="POST",
    )
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as error:
        raise ServerRefused(error.code, refusal(error)) from None
    except urllib.error.URLError as error:
        reason = getattr(error.reason, "strerror", None) or str(error.reason)
        raise ServerUnavailable(base, reason.lower()) from None
    except (TimeoutError, ConnectionError) as error:
        raise ServerUnavailable(base, str(error) or type(error).__name__) from None
    with response:
        for line in response:
            if line.strip():
                yield json.loads(line)


def refusal(error: urllib.error.HTTPError) -> str:
    """The reason a server gave for refusing: its ``detail``, else the status."""
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # FastAPI's own validation errors
        return "; ".join(str(item.get("msg", item)) for item in detail)
    return f"the server answered {error.code} {error.reason}"
