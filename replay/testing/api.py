"""A replay server's HTTP API, as a test calls it: triggers, runs and clients.

Plain ``urllib`` (replay has no HTTP client among its runtime dependencies), never
through a proxy: a test's server is on this machine, whatever ``HTTP_PROXY`` says.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from replay.errors import ReplayError

#: Seconds an ordinary request may take (a trigger that waits for its run has its own).
REQUEST_TIMEOUT = 10.0
#: The states of a run that has ended.
ENDED = frozenset({"finished", "failed", "cancelled"})

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ReplayTestError(ReplayError):
    """The server refused a request, a run failed, or the server did not answer.

    ``status`` is the HTTP status (0 when there was no answer) and ``answer`` the decoded
    JSON answer (None without one), so a test can look at what the server said.
    """

    def __init__(self, message: str, status: int = 0, answer: Any = None) -> None:
        self.status = status
        self.answer = answer
        super().__init__(message)


class ReplayApi:
    """The HTTP API of the replay server at ``url`` (``http://127.0.0.1:8123``).

    Every method raises :class:`ReplayTestError` with the server's own words when the
    answer is not a success. ``token`` is sent with every request, for a server started
    with one.
    """

    def __init__(
        self, url: str, *, token: str | None = None, timeout: float = REQUEST_TIMEOUT
    ) -> None:
        self._url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @property
    def url(self) -> str:
        """The server's HTTP address, with no ``/`` at the end."""
        return self._url

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """Send one request; the HTTP status and the decoded answer, whatever the status.
        Raises :class:`ReplayTestError` only when no answer came."""
        target = self.url + path
        params = {key: value for key, value in (query or {}).items() if value is not None}
        if params:
            target += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(target, data=data, headers=headers, method=method)
        wait = self.timeout if timeout is None else timeout
        try:
            try:
                with _OPENER.open(request, timeout=wait) as response:
                    return response.status, _decode(response.read())
            except urllib.error.HTTPError as error:
                with error:
                    return error.code, _decode(error.read())
        except OSError as error:  # URLError, a refused or reset connection, a timeout
            reason = getattr(error, "reason", None) or error
            if isinstance(reason, TimeoutError):
                raise _TimedOut(f"{method} {path}: no answer within {wait:g}s") from None
            raise ReplayTestError(
                f"{method} {path}: no answer from {self.url} ({reason})"
            ) from None

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """:meth:`request`, raising :class:`ReplayTestError` unless the answer is 2xx."""
        status, answer = self.request(method, path, query=query, body=body, timeout=timeout)
        if not 200 <= status < 300:
            raise ReplayTestError(
                f"{method} {path} refused ({status}): {refusal(status, answer)}", status, answer
            )
        return answer

    def trigger(
        self,
        name: str,
        *,
        vars: Mapping[str, Any] | None = None,
        seed: int | None = None,
        speed: float | None = None,
        client: str | None = None,
        wait: bool = True,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Play scenario ``name`` (``POST /trigger/{name}``); the server's answer.

        With ``wait`` (the default) the answer comes when the run has ended, with its
        counts (``status`` is ``success`` or ``cancelled``); a run that failed raises.
        ``wait=False`` answers at once with ``run_id``: use it for a scenario that waits
        for a client. ``vars`` are the scenario's variables, ``seed`` makes its random
        parts repeatable, ``speed`` scales its pauses (0: none), ``client`` sends to that
        client id only. ``timeout`` bounds the wait for the answer, in seconds.
        """
        query = {
            "wait": "true" if wait else "false",
            "speed": None if speed is None else repr(float(speed)),
            "seed": seed,
            "client": client,
        }
        body = None if vars is None else {"vars": dict(vars)}
        path = "/trigger/" + urllib.parse.quote(name, safe="")
        try:
            status, answer = self.request("POST", path, query=query, body=body, timeout=timeout)
        except _TimedOut as error:
            if not wait:
                raise
            raise ReplayTestError(
                f"{error}: the run of {name!r} had not ended (a scenario that waits for a "
                "client never ends by itself: trigger it with wait=False)"
            ) from None
        if isinstance(answer, dict) and answer.get("status") == "failed":
            raise ReplayTestError(
                f"the run {answer.get('run_id')} of {name!r} failed: {answer.get('error')}",
                status,
                answer,
            )
        if not 200 <= status < 300 or not isinstance(answer, dict):
            raise ReplayTestError(
                f"trigger {name!r} refused ({status}): {refusal(status, answer)}", status, answer
            )
        return answer

    def runs(self, state: str | None = None) -> list[dict[str, Any]]:
        """The server's runs, newest first (``GET /runs``): the running ones and the
        latest ended ones; with ``state`` (``running``, ``finished``, ``failed``,
        ``cancelled``), those in that state only."""
        runs: list[dict[str, Any]] = self.call("GET", "/runs")["runs"]
        return [run for run in runs if state is None or run["state"] == state]

    def run(self, run_id: str) -> dict[str, Any]:
        """One run (``GET /runs/{id}``): its state, counts and error."""
        answer: dict[str, Any] = self.call("GET", "/runs/" + urllib.parse.quote(run_id, safe=""))
        return answer

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a run (``DELETE /runs/{id}``) and return it once it has stopped; a run
        that had already ended is returned as it ended."""
        status, answer = self.request("DELETE", "/runs/" + urllib.parse.quote(run_id, safe=""))
        if status == 409 and isinstance(answer, dict) and "state" in answer:
            answer.pop("detail", None)
            return answer
        if status != 200 or not isinstance(answer, dict):
            raise ReplayTestError(
                f"cancel {run_id} refused ({status}): {refusal(status, answer)}", status, answer
            )
        return answer

    def wait_run(self, run_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until a run has ended (finished, failed or cancelled); the run."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            run = self.run(run_id)
            if run["state"] in ENDED:
                return run
            if time.monotonic() >= deadline:
                waiting = f" (waiting for {run['waiting']})" if run.get("waiting") else ""
                raise ReplayTestError(
                    f"the run {run_id} of {run['scenario']!r} is still running after "
                    f"{timeout:g}s{waiting}",
                    200,
                    run,
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def clients(self) -> list[dict[str, Any]]:
        """The connected clients (``GET /clients``): ``client_id``, ``endpoint``, counts."""
        clients: list[dict[str, Any]] = self.call("GET", "/clients")["clients"]
        return clients

    def cancel_all(self) -> list[dict[str, Any]]:
        """Cancel every run still playing on the server (triggered, or started by
        clients); the runs cancelled. Looks again until none plays (a client's frame may
        have started a reaction meanwhile), for at most the request timeout."""
        cancelled: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.timeout
        while running := self.runs("running"):
            for run in running:
                status, answer = self.request("DELETE", f"/runs/{run['run_id']}")
                if status == 200 and isinstance(answer, dict):
                    cancelled.append(answer)
                # 404 or 409: it ended or was forgotten meanwhile, which is as good.
            if time.monotonic() >= deadline:
                still = ", ".join(f"{run['run_id']} ({run['scenario']})" for run in running)
                raise ReplayTestError(f"runs still playing after cancelling them: {still}")
        return cancelled


class _TimedOut(ReplayTestError):
    """No answer came within the time a request was given."""


def refusal(status: int, answer: Any) -> str:
    """What a refusal says: the server's ``detail`` (FastAPI's validation errors joined,
    a scenario's problems one a line), else the answer itself."""
    if not isinstance(answer, dict):
        return answer if isinstance(answer, str) and answer else f"HTTP {status}"
    detail = answer.get("detail") or answer.get("error")
    if isinstance(detail, list):  # FastAPI's own validation errors
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(part) for part in item.get("loc", ()))
                parts.append(f"{where}: {item.get('msg', item)}" if where else str(item.get("msg")))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    text = str(detail) if detail else json.dumps(answer)[:500]
    problems = answer.get("problems")
    if isinstance(problems, list) and problems and "\n" not in text:
        text += "".join(
            f"\n  {problem.get('text', problem) if isinstance(problem, dict) else problem}"
            for problem in problems
        )
    return text


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text
