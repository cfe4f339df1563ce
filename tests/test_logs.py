"""The logging filters replay serve installs (replay/logs.py): secrets out of uvicorn's request
lines, and asyncio's repeated errors held back."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from replay.logs import Redact, Throttle, redact
from tests.hostile import PATIENCE
from tests.served import Served


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("/events?token=s3cret", "/events?token=***"),
        ("/events?kinds=run.&token=s3cret", "/events?kinds=run.&token=***"),
        ("/?token=s3cret&x=1", "/?token=***&x=1"),
        ("/runs?to%6Ben=s3cret", "/runs?to%6Ben=***"),  # the server decodes the name too
        (
            "/x?access_token=a&api_key=b&password=c&sig=d&auth=e",
            "/x?access_token=***&api_key=***&password=***&sig=***&auth=***",
        ),
        (
            '127.0.0.1:5 - "GET /ws?token=s3cret HTTP/1.1" 403',
            '127.0.0.1:5 - "GET /ws?token=*** HTTP/1.1" 403',
        ),
        ("/runs?kinds=run.&author=Ada&speed=2", "/runs?kinds=run.&author=Ada&speed=2"),
        ("/runs", "/runs"),
        ("/runs?token", "/runs?token"),
    ],
)
def test_redact_takes_out_secret_looking_query_values(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def test_redact_changes_the_arguments_of_a_record() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/events?token=s3cret", "1.1", 200),
        None,
    )
    assert Redact().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /events?token=*** HTTP/1.1" 200'


def test_throttle_lets_one_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    throttle = Throttle(every=10, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    accept = "socket.accept() out of system resource\nsocket: <fd=6>"
    assert throttle.filter(record(accept))
    assert not any(throttle.filter(record(accept)) for _ in range(2047))
    assert throttle.filter(record("another error"))  # another message is not held back
    now[0] = 9.9
    assert not throttle.filter(record(accept))
    now[0] = 10.0
    again = record(accept)
    assert throttle.filter(again)
    assert again.getMessage().endswith(
        "(2048 more like this in the last 10 s, not shown: at most one every 10 s)"
    )
    now[0] = 30.0
    third = record(accept)
    assert throttle.filter(third)
    assert third.getMessage() == accept  # nothing was held back since


def test_the_token_never_reaches_the_log_of_replay_serve(
    scenarios_dir: Path, tmp_path: Path
) -> None:
    secret = "s3cret-in-the-url"
    served = Served(scenarios_dir, tmp_path / "serve.log", "--token", secret)
    try:
        for path in (f"/runs?token={secret}", f"/healthz?kinds=x&token={secret}"):
            urllib.request.urlopen(served.url + path, timeout=PATIENCE).close()
        with pytest.raises(urllib.error.HTTPError) as refused:  # no token: 401
            urllib.request.urlopen(served.url + "/runs", timeout=PATIENCE)
        assert refused.value.code == 401
        served.wait_for(r'"GET /runs HTTP/1\.1" 401')  # the last request's line
    finally:
        served.stop()
    log = served.text()
    assert secret not in log
    assert '"GET /runs?token=*** HTTP/1.1" 200' in log
    assert '"GET /healthz?kinds=x&token=*** HTTP/1.1" 200' in log
