"""What a recording leaves out: secret headers, query parameters, and payload paths."""

from __future__ import annotations

import json

import pytest

from replay.record.redact import (
    PayloadPath,
    RedactPathInvalid,
    redact_headers,
    redact_payload,
    redact_query,
    secret_header,
    shown_target,
)


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "X-Auth-Token",
        "X-Session-Id",
        "X-Client-Secret",
        "X-Password",
    ],
)
def test_secret_headers(name: str) -> None:
    assert secret_header(name)


@pytest.mark.parametrize("name", ["User-Agent", "Origin", "Accept", "X-Trace", "Content-Type"])
def test_ordinary_headers(name: str) -> None:
    assert not secret_header(name)


def test_headers_are_kept_in_lower_case_with_secrets_redacted() -> None:
    kept = redact_headers(
        [("User-Agent", "ui"), ("Cookie", "a=1"), ("Accept", "a"), ("accept", "b"), ("cookie", "c")]
    )
    assert kept == {"user-agent": "ui", "cookie": "***", "accept": "a, b"}


@pytest.mark.parametrize(
    ("query", "redacted"),
    [
        ("", ""),
        ("client_id=ui", "client_id=ui"),
        ("token=abc&client_id=ui", "token=***&client_id=ui"),
        (
            "access_token=a&api_key=b&key=c&password=d",
            "access_token=***&api_key=***&key=***&password=***",
        ),
        (
            "secret=a&auth=b&session=c&sig=d&signature=e",
            "secret=***&auth=***&session=***&sig=***&signature=***",
        ),
        ("keyboard=qwerty&author=ada&flag", "keyboard=qwerty&author=ada&flag"),
        ("x=%20y&Token=z", "x=%20y&Token=***"),
    ],
)
def test_queries(query: str, redacted: str) -> None:
    assert redact_query(query) == redacted


def test_targets_as_shown() -> None:
    assert shown_target("/ws?token=a&b=1") == "/ws?token=***&b=1"
    assert shown_target("/ws") == "/ws"


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("message.token", ("message", "token")),
        ("$.data.user.email", ("data", "user", "email")),
        ("$data", ("data",)),
        ("items[0].secret", ("items", 0, "secret")),
        ("items[*].token", ("items", "*", "token")),
        ("*.token", ("*", "token")),
        ("a[1][2]", ("a", 1, 2)),
    ],
)
def test_paths_parse(text: str, segments: tuple[object, ...]) -> None:
    assert PayloadPath.parse(text).segments == segments


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("$", "it names no key"),
        ("", "it names no key"),
        ("a..b", "an empty key"),
        ("a.", "an empty key"),
        ("a[x]", "unexpected '\\['"),
        ("a]", "unexpected '\\]'"),
    ],
)
def test_paths_that_do_not_parse_say_why(text: str, reason: str) -> None:
    with pytest.raises(RedactPathInvalid, match=reason):
        PayloadPath.parse(text)


def paths(*texts: str) -> list[PayloadPath]:
    return [PayloadPath.parse(text) for text in texts]


def test_a_payload_path_is_redacted_keeping_the_style() -> None:
    compact = '{"token":"t","user":{"email":"a@b","name":"ada"}}'
    assert redact_payload(compact, paths("token", "user.email")) == (
        '{"token":"***","user":{"email":"***","name":"ada"}}'
    )
    spaced = '{"token": 12, "n": 1}'
    assert redact_payload(spaced, paths("$.token")) == '{"token": "***", "n": 1}'


def test_only_the_redacted_values_change() -> None:
    python = json.dumps({"message_type": "EVENT", "message": "café", "token": "t"})
    assert redact_payload(python, paths("token")) == python.replace('"t"}', '"***"}')
    compact = '{"a":"café","inner":"{\\"x\\": 1, \\"token\\": 2}"}'
    assert redact_payload(compact, paths("inner.token")) == (
        '{"a":"café","inner":"{\\"x\\": 1, \\"token\\": \\"***\\"}"}'
    )
    odd = '{ "token" : 1 }'  # no common style: compact
    assert redact_payload(odd, paths("token")) == '{"token":"***"}'


def test_a_string_holding_json_is_looked_into() -> None:
    inner = json.dumps({"token": "t0k", "span": 1})
    frame = json.dumps({"message_type": "EVENT", "message": inner})
    redacted = json.loads(redact_payload(frame, paths("message.token")))
    assert json.loads(redacted["message"]) == {"token": "***", "span": 1}


def test_lists_and_wildcards() -> None:
    frame = '{"users": [{"token": "a"}, {"token": "b"}, {"name": "c"}]}'
    assert json.loads(redact_payload(frame, paths("users[*].token")))["users"] == [
        {"token": "***"},
        {"token": "***"},
        {"name": "c"},
    ]
    assert json.loads(redact_payload(frame, paths("users[1]")))["users"][1] == "***"
    assert json.loads(redact_payload('{"a": {"x": 1, "y": 2}}', paths("a.*"))) == {
        "a": {"x": "***", "y": "***"}
    }


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("not json", "token"),
        ('{"token": "t"}', "other"),
        ('{"users": [1]}', "users[5]"),
        ('{"message": "plain text"}', "message.token"),
        ('{"message": "{broken"}', "message.token"),
        ('["a"]', "token"),
    ],
)
def test_text_without_the_path_is_unchanged(text: str, path: str) -> None:
    assert redact_payload(text, paths(path)) is text


def test_no_paths_no_parsing() -> None:
    assert redact_payload("{not even json", []) == "{not even json"
