"""The ``replay`` command: serve, play a scenario on a running server, list, validate,
and print the scenario files' JSON Schema or the protocol's AsyncAPI document.

Exit codes: 0 when everything went well, 1 when something was wrong (no server, an
unknown or invalid scenario, a run that did not finish), 2 for a command line that does
not parse.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from replay import __version__, remote
from replay.asyncapi import asyncapi_document, document_text, server_objects
from replay.catalog import Catalog
from replay.counts import counted
from replay.durations import format_seconds, parse_duration
from replay.engine import Context, check_vars
from replay.errors import Problem, ReplayError, StepFailed
from replay.keys import KeyReader, RunKeys
from replay.library import PROTOCOL_FILE, ScenarioLibrary, read_source
from replay.loader import ScenarioFile, parse_scenario, scenario_name
from replay.profiles import PROFILES, profile_folder
from replay.protocol import message_frame
from replay.protocol.declaration import MESSAGE_TYPE_PATTERN, Protocol
from replay.protocol.file import ProtocolFile, parse_protocol
from replay.record import convert as converting
from replay.record.format import Recording, read_recording
from replay.record.infer import Inferred, infer_protocol
from replay.record.scenarios import write_converted
from replay.routes import is_route_key
from replay.schema import scenario_schema
from replay.terminal import (
    Printer,
    RunView,
    checked_text,
    is_terminal,
    problem_text,
    scenario_table,
    summary_text,
    terminal_console,
    timeline_table,
    validated_text,
)
from replay.timeline import MAX_SPEED, MIN_SPEED, Timeline, build_timeline, check_speed

if TYPE_CHECKING:  # the server's modules load only for 'replay serve'
    from replay.server import Settings

DEFAULT_URL = "http://127.0.0.1:8123"
DEFAULT_PORT = 8123
DEFAULT_SERVER_URL = "ws://localhost:8123"
#: The largest frame a client may send, in bytes, unless --max-frame-size says otherwise.
MAX_FRAME_SIZE = 1024 * 1024


def default_scenarios() -> Path:
    """``$REPLAY_SCENARIOS``, else ``./scenarios``."""
    return Path(os.environ.get("REPLAY_SCENARIOS", "scenarios"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replay",
        description="A scripted scenario replay engine for WebSocket frontends.",
        epilog="Examples: 'replay serve', 'replay --scenario all', "
        "'replay --scenario all --dry-run', 'replay validate', 'replay schema', "
        "'replay asyncapi'.",
    )
    parser.add_argument("--version", action="version", version=f"replay {__version__}")
    parser.add_argument(
        "--scenario", metavar="NAME", help="play NAME on the running server, showing each frame"
    )
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"the server to play on (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="playback speed: 2 = twice as fast, 0 = no pauses (default 1)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the scenario's timeline from the local files; no server needed",
    )
    parser.add_argument(
        "--var",
        action="append",
        dest="vars",
        type=_variable,
        default=[],
        metavar="NAME=VALUE",
        help="set a variable the scenario declares (repeat for more; VALUE is read as JSON "
        "if it parses, else as text)",
    )
    parser.add_argument(
        "--answer",
        action="append",
        dest="answers",
        type=_answer,
        default=[],
        metavar="TEXT",
        help="with --dry-run: a client frame for the run's waits, in order (repeat for more): "
        'a whole frame as JSON, or TYPE:message for {"message_type": TYPE, "message": '
        "message}; without it waits get an empty message",
    )
    parser.add_argument(
        "--state",
        action="append",
        dest="state",
        type=_variable,
        default=[],
        metavar="KEY=VALUE",
        help="with --dry-run: a key of the shared state the run starts with (repeat for "
        "more; VALUE is read as JSON if it parses, else as text)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for jitter and random values, to play a run exactly again",
    )
    parser.add_argument(
        "--client", metavar="ID", help="send to this client only (unless a step says otherwise)"
    )
    parser.add_argument(
        "--token",
        dest="client_token",
        default=None,
        help="the server's token, if it has one (default $REPLAY_TOKEN)",
    )
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument(
        "--json",
        dest="output",
        action="store_const",
        const="json",
        default="text",
        help="print each event of the run as one JSON object per line (for scripts)",
    )
    shown.add_argument(
        "--quiet",
        "-q",
        dest="output",
        action="store_const",
        const="quiet",
        help="print only the summary at the end",
    )
    _scenarios_option(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server (the main job)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default 8123; 0: a free one)"
    )
    serve.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="once the server is ready, write PATH: JSON with its url, ws, port and pid (for "
        "scripts and test runners that start it with --port 0); removed when it stops",
    )
    _scenarios_option(serve)
    serve.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        default=[],
        metavar="ORIGIN",
        help="a page origin allowed to call the HTTP API from a browser, e.g. "
        "https://app.example (repeat for more; default: the server's own pages and pages on "
        "localhost, any port; '*': any page)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        dest="allowed_hosts",
        default=[],
        metavar="NAME",
        help="a Host name the server answers to besides loopback names, e.g. devbox.lan or "
        "*.example.test (repeat for more; '*': any name, which lets DNS rebinding in). "
        "Bound to another address than loopback, IP addresses and this machine's names are "
        "answered to as well, and any name with --token",
    )
    serve.add_argument(
        "--queue-size",
        type=int,
        default=None,
        help="frames a client may fall behind by before it is dropped (default 1024)",
    )
    serve.add_argument(
        "--on-connect",
        action="append",
        default=[],
        metavar="NAME",
        help="play scenario NAME to each client as it connects to /ws (repeat for more)",
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("REPLAY_TOKEN") or None,
        help="require this token on every control route (default $REPLAY_TOKEN); clients "
        "send 'Authorization: Bearer TOKEN' or ?token=TOKEN",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow serving on a non-loopback address without a token",
    )
    serve.add_argument(
        "--ws-origin",
        action="append",
        dest="ws_origins",
        default=[],
        metavar="ORIGIN",
        help="a page origin allowed to open WebSockets (repeat for more; default: any)",
    )
    serve.add_argument(
        "--max-clients",
        type=_positive_int,
        default=None,
        help="clients connected at once, both endpoints together (default 10000)",
    )
    serve.add_argument(
        "--client-rate",
        type=float,
        default=None,
        help="frames per second a client may send before the excess is ignored (default 100)",
    )
    serve.add_argument(
        "--client-bytes",
        type=float,
        default=None,
        help="bytes per second a client may send (bursts of twice that); beyond it the "
        "server reads its socket more slowly (default 1048576)",
    )
    serve.add_argument(
        "--max-frame-size",
        type=_positive_int,
        default=MAX_FRAME_SIZE,
        help="largest frame a client may send, in bytes; larger ones close the "
        f"connection with 1009 (default {MAX_FRAME_SIZE})",
    )
    serve.add_argument(
        "--ws-deflate",
        action="store_true",
        help="accept per-message compression (permessage-deflate) when a client offers it",
    )
    serve.add_argument(
        "--upstream",
        default=None,
        metavar="URL",
        help="the real backend (ws://HOST:PORT or wss://...): every WebSocket client is also "
        "proxied to it at the same path and query, and scenarios' frames are injected into "
        "those live sessions",
    )
    serve.add_argument(
        "--backplane",
        default=None,
        metavar="URL",
        help="join a cluster: redis://HOST:PORT/DB (add ?cluster=NAME to share one Redis "
        "among clusters); every trigger taken by any node plays on every node's clients",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="serve from N processes on one port, each a node of the --backplane cluster "
        "(needs --backplane redis://...); limits such as --max-clients are per worker "
        "(default 1: one process)",
    )
    serve.add_argument(
        "--recordings",
        type=Path,
        default=Path("recordings"),
        metavar="DIR",
        help="the recordings folder GET /recordings and the dashboard show (default "
        "./recordings, where replay record writes)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    listing = commands.add_parser("list", help="list the scenarios in the scenarios folder")
    _scenarios_option(listing)

    validate = commands.add_parser(
        "validate", help="check scenario files and list every problem (exit 1 if any)"
    )
    validate.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="files to check (default: the folder)"
    )
    _scenarios_option(validate)

    schema = commands.add_parser(
        "schema", help="print the JSON Schema of scenario files (for editors)"
    )
    _scenarios_option(schema)

    asyncapi = commands.add_parser(
        "asyncapi",
        help="print the AsyncAPI 3.0.0 document of the folder's protocol (for AsyncAPI "
        "Studio, Microcks, code generators); exit 1 if the protocol file has problems",
    )
    _scenarios_option(asyncapi)
    asyncapi.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the document to FILE instead of printing it",
    )
    asyncapi.add_argument(
        "--format",
        choices=["yaml", "json"],
        default=None,
        help="yaml or json (default: json for an --output ending in .json, else yaml)",
    )
    asyncapi.add_argument(
        "--server-url",
        type=_server_url,
        default=DEFAULT_SERVER_URL,
        metavar="URL",
        help=f"where replay serves WebSockets, for the document's servers (default "
        f"{DEFAULT_SERVER_URL}; its routes are on the same host over http)",
    )
    _record_parser(commands)
    _convert_parser(commands)
    return parser


def _record_parser(commands: Any) -> None:
    """``replay record``: a recording proxy in front of the real backend."""
    record = commands.add_parser(
        "record",
        help="record real traffic: a proxy in front of the real backend that writes every "
        "session to a file",
        description="A transparent proxy: point the frontend at it instead of the backend; "
        "every WebSocket session (and plain HTTP request) is passed on unchanged and written "
        "to OUT/<session>.jsonl, secrets redacted.",
    )
    record.add_argument(
        "--upstream",
        required=True,
        type=_upstream,
        metavar="URL",
        help="the real backend: ws://HOST:PORT or wss://HOST:PORT (a path prefix is put "
        "before every path); plain HTTP requests go to its http(s):// origin",
    )
    record.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    record.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default 8123; 0: a free one)"
    )
    record.add_argument(
        "--out",
        type=Path,
        default=Path("recordings"),
        metavar="DIR",
        help="where recordings go, one file per session (default ./recordings, created)",
    )
    record.add_argument(
        "--redact",
        action="append",
        default=[],
        type=_redact_path,
        metavar="JSONPATH",
        help='a JSON path in text frames and HTTP bodies whose value is written as "***", '
        "e.g. message.token or $.data.user.email (repeat for more; a string holding JSON is "
        "looked into). Secret headers and query parameters are always redacted",
    )
    record.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="once listening, write PATH: JSON with its url, ws, port and pid (removed when "
        "it stops)",
    )


def _upstream(text: str) -> Any:
    from replay.record.upstream import Upstream

    try:
        return Upstream.parse(text)
    except ReplayError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _redact_path(text: str) -> Any:
    from replay.record.redact import PayloadPath

    try:
        return PayloadPath.parse(text)
    except ReplayError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _scenarios_option(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scenarios",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="the scenarios folder (default $REPLAY_SCENARIOS or ./scenarios)",
    )
    where.add_argument(
        "--profile",
        default=argparse.SUPPRESS,
        choices=list(PROFILES),
        help="a shipped scenarios folder instead: "
        + "; ".join(f"{p.name}: {p.summary}" for p in PROFILES.values()),
    )


def _speed(text: str) -> float:
    try:
        return check_speed(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a speed: use 0 (no pauses) or a number from {MIN_SPEED:g} to "
            f"{MAX_SPEED:g}"
        ) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _server_url(text: str) -> str:
    try:
        server_objects(text, http=False)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _variable(text: str) -> tuple[str, Any]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _folder(args: argparse.Namespace) -> Path:
    return getattr(args, "scenarios", None) or default_scenarios()


def _answer(text: str) -> str:
    """A client frame for --dry-run's waits: JSON as given, TYPE:message built into a
    ``/ws`` frame, or a request to a declared route (``POST /chat?user_input=Hi``)."""
    if is_route_key(text.strip()):
        return text.strip()
    if text.lstrip().startswith("{"):
        try:
            frame = json.loads(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r} is not a JSON frame ({error})") from None
        if isinstance(frame, dict):
            return text
    kind, colon, message = text.partition(":")
    if colon and MESSAGE_TYPE_PATTERN.match(kind):
        return message_frame(kind, message)
    raise argparse.ArgumentTypeError(
        f"{text!r} is not an answer: give a whole frame as a JSON object, e.g. "
        '\'{"message_type": "CHAT_INPUT", "message": "yes"}\', TYPE:message, e.g. '
        "CHAT_INPUT:yes, or a request to a declared route, e.g. 'POST /chat?user_input=yes'"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.answers or args.state) and not args.dry_run:
        parser.error("--answer and --state only apply to --dry-run")
    profile = getattr(args, "profile", None)
    scenarios: Path = profile_folder(profile) if profile else _folder(args)
    try:
        if args.command == "serve":
            return serve(args, scenarios)
        if args.command == "record":
            return record(args)
        if args.command == "list":
            return list_scenarios(scenarios, sys.stdout)
        if args.command == "validate":
            return validate(args.files, scenarios, sys.stdout)
        if args.command == "schema":
            return print_schema(scenarios, sys.stdout)
        if args.command == "asyncapi":
            return print_asyncapi(
                scenarios, args.output, args.format, args.server_url, sys.stdout, sys.stderr
            )
        if args.command == "convert":
            return convert_recordings(args, sys.stdout, sys.stderr)
        options = _options(args)
        if args.scenario and args.dry_run:
            return dry_run(args.scenario, scenarios, options, sys.stdout)
        if args.scenario:
            return play(args.scenario, args.url, options, sys.stdout, args.output, *_terminals())
    except ReplayError as error:
        print(f"replay: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (replay ... | head): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    parser.print_help(sys.stderr)
    return 2


def _terminals() -> tuple[TextIO | None, TextIO | None]:
    """Where a followed run's live progress goes (standard output if it is a terminal,
    else standard error if that is one, else nowhere) and where its keys come from
    (standard input, if it is a terminal and the progress is shown)."""
    progress = next((s for s in (sys.stdout, sys.stderr) if is_terminal(s)), None)
    keys = sys.stdin if progress is not None and is_terminal(sys.stdin) else None
    return progress, keys


def _options(args: argparse.Namespace) -> Options:
    token = args.client_token or os.environ.get("REPLAY_TOKEN") or None
    return Options(
        args.speed,
        args.seed,
        dict(args.vars),
        args.client,
        token,
        tuple(args.answers),
        dict(args.state),
    )


def serve(args: argparse.Namespace, scenarios: Path) -> int:

    from replay.errors import ScenarioFolderMissing
    from replay.ready import ReadyServer
    from replay.server import Settings, create_app, uvicorn_config

    if not scenarios.is_dir():
        raise ScenarioFolderMissing(str(scenarios))
    ready_file: Path | None = args.ready_file
    if ready_file is not None:
        problem = _ready_file_problem(ready_file)
        if problem:
            print(f"replay: --ready-file: {problem}", file=sys.stderr)
            return 2
    if args.workers > 1:
        from replay.workers import WorkersRefused, check_backplane

        try:
            check_backplane(args.workers, args.backplane)
        except WorkersRefused as error:
            print(f"replay: {error}", file=sys.stderr)
            return 2
    if not args.token and not args.insecure and not _loopback(args.host):
        print(
            f"replay: refusing to serve on {args.host} without a token: anyone who can reach "
            "it could play scenarios and read what clients send. Pass --token TOKEN (or set "
            "REPLAY_TOKEN), or --insecure if that is what you want.",
            file=sys.stderr,
        )
        return 2
    settings = Settings(
        scenarios=scenarios,
        bind=args.host,
        allowed_hosts=args.allowed_hosts,
        cors_origins=args.cors_origins,
        on_connect=args.on_connect,
        token=args.token,
        ws_origins=args.ws_origins,
        upstream=args.upstream,
        recordings=args.recordings,
        backplane=args.backplane,
    )
    if args.max_clients is not None:
        settings.max_clients = args.max_clients
    if args.client_rate is not None:
        if not args.client_rate > 0:
            print("replay: --client-rate must be more than 0", file=sys.stderr)
            return 2
        settings.client_rate = args.client_rate
    if args.client_bytes is not None:
        if not args.client_bytes > 0:
            print("replay: --client-bytes must be more than 0", file=sys.stderr)
            return 2
        settings.client_bytes = args.client_bytes
    if args.queue_size is not None:
        if args.queue_size < 1:
            print("replay: --queue-size must be at least 1", file=sys.stderr)
            return 2
        settings.queue_size = args.queue_size
    _configure_logging(args.log_level)
    uvicorn_options = {
        "ws_per_message_deflate": args.ws_deflate,
        "ws_max_size": args.max_frame_size,
    }
    if args.workers > 1:
        return _serve_workers(args, settings, scenarios, uvicorn_options)
    _budget_files(settings)
    config = uvicorn_config(
        create_app(settings), args.host, args.port, log_level=args.log_level, **uvicorn_options
    )
    server = ReadyServer(
        config, announce=lambda host, port: _announce(scenarios, host, port), ready_file=ready_file
    )
    try:
        server.run()
    finally:
        server.remove_ready_file()
    return 1 if server.failed else 0


def _serve_workers(
    args: argparse.Namespace, settings: Settings, scenarios: Path, uvicorn_options: dict[str, Any]
) -> int:
    """``replay serve --workers N``: see :mod:`replay.workers`."""
    from replay.workers import Plan, Supervisor, reuse_port_available

    plan = Plan(
        settings,
        args.host,
        args.port,
        args.log_level,
        uvicorn_options,
        reuse_port=reuse_port_available(),
    )
    supervisor = Supervisor(
        plan,
        args.workers,
        announce=lambda host, port: _announce(scenarios, host, port),
        ready_file=args.ready_file,
    )
    return supervisor.run()


def record(args: argparse.Namespace) -> int:
    """``replay record``: see :mod:`replay.record.command`."""
    from replay.record.command import record as run_record

    if args.ready_file is not None:
        problem = _ready_file_problem(args.ready_file)
        if problem:
            print(f"replay: --ready-file: {problem}", file=sys.stderr)
            return 2
    if not _loopback(args.host):
        print(
            f"replay: warning: recording on {args.host}: anyone who can reach it can use "
            f"{args.upstream.url} through it, and is recorded",
            file=sys.stderr,
        )
    return run_record(args.upstream, args.host, args.port, args.out, args.redact, args.ready_file)


def _ready_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be the ready file, if it cannot; an old one (left by a server
    that was killed) is removed, so that nobody reads it for this server's."""
    if not path.parent.is_dir():
        return f"no folder {path.parent}"
    if path.is_dir():
        return f"{path} is a folder"
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        return f"cannot remove the old {path}: {error.strerror or error}"
    return None


def _announce(scenarios: Path, host: str, port: int) -> None:
    """Print where the server listens, once it does, to stdout at once: a parent process
    can wait for this line (and read the port from it when it asked for port 0)."""
    from replay.ready import url_host

    where = f"{url_host(host)}:{port}"
    try:
        print(
            f"replay {__version__}: playing scenarios from {scenarios}/ on http://{where}"
            f" (dashboard: http://{where}/, WebSockets: ws://{where}/ws and /ws/stream)",
            flush=True,
        )
    except BrokenPipeError:  # nobody reads stdout: serve all the same
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is closed


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _configure_logging(level: str, prefix: str = "") -> None:
    """Log to stderr at ``level``, each line after ``prefix`` (a worker's, say)."""
    import logging

    from replay.logs import Redact, Throttle

    logging.basicConfig(
        level=level.upper(),
        format=f"%(levelname)s:     {prefix}%(name)s: %(message)s",
        stream=sys.stderr,
    )
    # replay logs each WebSocket connection itself, with its client id: uvicorn's own lines
    # for the same connection would only repeat it.
    quiet, secrets = _Repeats(), Redact()
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(quiet)
        logging.getLogger(name).addFilter(secrets)  # the dashboard's feed has ?token=
    logging.getLogger("asyncio").addFilter(Throttle())


def _budget_files(settings: Settings) -> None:
    """Raise the open-file limit, and lower the client limit to what it allows."""
    import logging

    from replay.fds import file_budget

    budget = file_budget(settings.max_clients)
    settings.max_clients = budget.clients
    message = budget.message()
    if message is not None:
        lowered = budget.clients < budget.asked
        logging.getLogger("replay.limits").log(
            logging.WARNING if lowered else logging.INFO, "%s", message
        )


class _Repeats:
    """A logging filter that drops uvicorn's per-WebSocket lines."""

    def filter(self, record: Any) -> bool:
        message = record.getMessage()
        return not (
            message in ("connection open", "connection closed") or '"WebSocket /' in message
        )


@dataclass(frozen=True)
class Options:
    """How to play a scenario, from the command line."""

    speed: float = 1.0
    seed: int | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    client: str | None = None
    #: The server's token, sent as 'Authorization: Bearer ...'.
    token: str | None = None
    #: For --dry-run: the client frames waits take, and the shared state to start with.
    answers: tuple[str, ...] = ()
    state: dict[str, Any] = field(default_factory=dict)


def dry_run(name: str, scenarios: Path, options: Options, out: TextIO) -> int:
    """Print the timeline of a local scenario: offset, endpoint, frame."""
    catalog = ScenarioLibrary(scenarios).catalog()
    check_vars(name, catalog, options.vars)
    context = Context(
        "dry-run",
        options.seed if options.seed is not None else 0,
        options.speed,
        time.time(),
        options.vars,
        options.client,
    )
    scenario = catalog.scenario(name)
    if scenario.reacts_to is not None:
        print(f"plays whenever a client sends {scenario.reacts_to.message} (reacts_to)", file=out)
    if scenario.on_connect:
        print("plays to each client as it connects to /ws (on_connect)", file=out)
    try:
        timeline = build_timeline(
            name, catalog, context, state=options.state, answers=options.answers
        )
    except StepFailed as error:
        raise StepFailed(
            error.scenario,
            error.step,
            f"{error.reason} (--dry-run answers each wait with an empty message of the "
            "awaited type unless an --answer fits, and starts from the --state given; a "
            "real run may still play)",
        ) from None
    _print_timeline(timeline, out)
    for answer in timeline.unused:
        print(f"no wait took --answer {answer}", file=out)
    return 0


def _print_timeline(timeline: Timeline, out: TextIO) -> None:
    """The dry run's timeline: offset, endpoint, frame (a table on a terminal), then a
    summary line."""
    printer = Printer.to(out)
    cues = [
        (
            cue.offset,
            str(cue.endpoint) if cue.endpoint else "-",
            str(cue.frame) if cue.kind == "frame" else f"[{cue.frame}]",
            cue.kind == "frame",
            str(cue.to or ""),
        )
        for cue in timeline
    ]
    plain = [f"{'offset':>9}  {'endpoint':<11} frame"] + [
        f"{offset:>8.3f}s  {endpoint:<11} {text}{f'  (to {to})' if to else ''}"
        for offset, endpoint, text, _, to in cues
    ]
    printer.table(timeline_table(cues), plain)
    summary = f"{timeline.scenario}: {counted(timeline.frames, 'frame')}"
    if timeline.duration is None:
        summary += f"; repeats until cancelled (the first {len(timeline)} cues are shown)"
    else:
        summary += f", {timeline.duration:.3f}s in all"
    if timeline.waits:
        summary += f"; {counted(timeline.waits, 'wait')} for a client, shown as answered at once"
    printer.line(summary)


def play(
    name: str,
    url: str,
    options: Options,
    out: TextIO,
    output: str = "text",
    progress: TextIO | None = None,
    keys: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Play a scenario on a running server and show it as it goes out.

    ``output`` is ``text`` (each frame, then a summary; in colour when ``out`` is a
    terminal), ``json`` (each event as one JSON object per line, for scripts) or
    ``quiet`` (only the summary). ``progress``, a terminal, gets the live progress under
    the frames (with ``text`` output); ``keys``, a terminal, gives the run-control keys
    (see :mod:`replay.keys`; with the progress only). ``err`` (default stderr) gets the
    problems, and the hint to connect a client when a frame reached none.
    """
    err = err if err is not None else sys.stderr
    query = urllib.parse.urlencode({"follow": "true", "speed": f"{options.speed:g}"})
    target = f"{url.rstrip('/')}/trigger/{urllib.parse.quote(name, safe='')}?{query}"
    body = {"vars": options.vars, "seed": options.seed, "client": options.client}
    printer = Printer.to(out) if output == "text" else Printer(out)
    status = None
    if progress is not None and output == "text":
        shared = progress is out and printer.console is not None
        status = printer.console if shared else terminal_console(progress)
    view = RunView(
        printer,
        status,
        err,
        url,
        keys is not None and status is not None,
        options.speed,
        show_lines=output == "text",
    )
    control = _run_keys(view, url, options.token) if view.status.keys else None
    end: dict[str, Any] = {}
    run_id = None
    try:
        with view, _reading(keys, control):
            for event in remote.post_lines(target, url, body, options.token):
                run_id = event.get("run_id", run_id)
                if control is not None and run_id is not None:
                    control.begin(run_id)
                if output == "json":
                    print(json.dumps(event), file=out, flush=True)
                view.event(event)
                if event.get("event") == "end":
                    end = event
    except KeyboardInterrupt:
        if run_id is None:
            raise
        remote.cancel(url, run_id, options.token)
        if output != "json":
            print(f"\nrun {run_id}: cancelled", file=out)
        return 130
    if not end and run_id is not None:
        end = remote.wait_for_end(url, run_id, options.token)  # the server stopped following
        if end and output == "json":
            print(json.dumps({"event": "end", **end}), file=out)
    if not end:
        print("replay: the server closed the connection before the run ended", file=err)
        return 1
    if output != "json":
        printer.line(summary_text(end))
    if control is not None and control.quit:
        return 130  # q, as Ctrl-C
    if end["state"] != "finished":
        if end.get("error"):
            print(f"replay: the run failed: {end['error']}", file=err)
        return 1
    return 0


def _run_keys(view: RunView, url: str, token: str | None) -> RunKeys:
    """The keys' actions on the followed run, through the server's control routes."""
    return RunKeys(
        view.status,
        lambda run_id, action, speed: remote.control(url, run_id, action, token, speed),
        lambda run_id: remote.cancel(url, run_id, token),
    )


def _reading(
    keys: TextIO | None, control: RunKeys | None
) -> contextlib.AbstractContextManager[Any]:
    """Read the run-control keys from ``keys`` while the run plays (if both are given and
    the terminal can be read key by key)."""
    if keys is None or control is None:
        return contextlib.nullcontext()
    try:
        return KeyReader(keys, control.press)
    except (OSError, ValueError):
        return contextlib.nullcontext()


def list_scenarios(scenarios: Path, out: TextIO) -> int:
    """Print each scenario: name, frames, duration, description (or its first problem);
    a table on a terminal."""
    catalog = ScenarioLibrary(scenarios).catalog()
    printer = Printer.to(out)
    if not len(catalog):
        printer.line(f"no scenarios in {scenarios}/ (add NAME.yaml files)")
        return 0
    rows = [_listed(loaded, catalog) for loaded in catalog]
    width = max(len(name) for name in catalog.names)
    plain = [
        f"{name:<{width}}  {frames}  {duration}  {about}"
        if problem is None
        else f"{name:<{width}}  INVALID: {problem}"
        for name, frames, duration, about, problem in rows
    ]
    shown = [(n, f.split()[0] if f else "", d.strip(), a, p) for n, f, d, a, p in rows]
    printer.table(scenario_table(shown), plain)
    return 0


def _listed(loaded: ScenarioFile, catalog: Catalog) -> tuple[str, str, str, str, str | None]:
    """One scenario as ``replay list`` shows it: name, frames, duration, description,
    and its first problem (None if it is valid)."""
    if not loaded.valid:
        return loaded.name, "", "", "", str(loaded.problems[0])
    about = loaded.scenario.description if loaded.scenario else ""
    try:
        timeline = build_timeline(loaded.name, catalog)
    except ReplayError:
        return loaded.name, f"{'?':>4} frames", f"{'?':>8}", about, None  # needs an answer
    if timeline.duration is None:
        return loaded.name, f"{'-':>4} frames", f"{'forever':>8}", about, None
    words = f"{timeline.frames:>4} {'frame ' if timeline.frames == 1 else 'frames'}"
    return loaded.name, words, f"{timeline.duration:>7.2f}s", about, None


def validate(files: Sequence[Path], scenarios: Path, out: TextIO) -> int:
    """Check files (default: the whole folder); print every problem; 1 if any file is invalid."""
    printer = Printer.to(out)
    bad = 0
    if files:
        results = [_check(path) for path in files]
        checked = [r for r in results if isinstance(r, ScenarioFile)]
        for protocol in (r for r in results if isinstance(r, ProtocolFile)):
            bad += _report_protocol(protocol, printer)
    else:
        catalog = ScenarioLibrary(scenarios).catalog()
        checked = list(catalog)
        if catalog.protocol_file is not None:
            bad += _report_protocol(catalog.protocol_file, printer)
    if not checked and not bad:
        printer.line(f"no scenarios in {scenarios}/")
    for loaded in checked:
        printer.line(checked_text(loaded.valid, str(loaded.file)))
        for problem in loaded.problems if not loaded.valid else ():
            printer.line(problem_text(problem))
    invalid = sum(not loaded.valid for loaded in checked)
    printer.line(validated_text(len(checked) - invalid, invalid))
    return 1 if bad or invalid else 0


def _report_protocol(protocol: ProtocolFile, printer: Printer) -> int:
    """Print the protocol file's state; 1 if it has problems."""
    if not protocol.problems:
        printer.line(checked_text(True, str(protocol.file), f" ({_declares(protocol)})"))
        return 0
    printer.line(checked_text(False, str(protocol.file)))
    for problem in protocol.problems:
        printer.line(problem_text(problem))
    return 1


def _declares(protocol: ProtocolFile) -> str:
    """What a protocol file declares, counted: "2 endpoints, 3 message types, 4 routes"."""
    declared = protocol.protocol
    counts = [
        (len(declared.endpoints), "endpoint"),
        (protocol.declared, "message type"),
        (len(declared.routes), "route"),
    ]
    return ", ".join(counted(n, word) for n, word in counts)


def print_schema(scenarios: Path, out: TextIO) -> int:
    """Print the JSON Schema of scenario files, with the project's message types if any."""
    library = ScenarioLibrary(scenarios)
    with contextlib.suppress(ReplayError):
        library.catalog()  # reads the protocol file, if the folder has one
    print(json.dumps(scenario_schema(library.protocol), indent=2), file=out)
    return 0


def print_asyncapi(
    scenarios: Path,
    output: Path | None,
    form: str | None,
    server_url: str,
    out: TextIO,
    err: TextIO,
) -> int:
    """Print the AsyncAPI document of the folder's protocol (Schwarm's without a protocol
    file), or write it to ``output``; 1, with the problems on ``err``, if the protocol
    file has any."""
    catalog = ScenarioLibrary(scenarios).catalog()
    if catalog.protocol_file is not None and catalog.protocol_file.problems:
        _report_protocol(catalog.protocol_file, Printer(err))
        print("replay: fix the protocol file first (replay validate)", file=err)
        return 1
    document = asyncapi_document(
        catalog.protocol, title=_title(scenarios), version=__version__, server_url=server_url
    )
    if form is None:
        form = "json" if output is not None and output.suffix.lower() == ".json" else "yaml"
    text = document_text(document, "json" if form == "json" else "yaml")
    if output is None:
        out.write(text)
        return 0
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"replay: cannot write {output}: {error.strerror or error}", file=err)
        return 1
    print(
        f"wrote {output}: AsyncAPI {document['asyncapi']}, "
        f"{counted(len(document['channels']), 'channel')}, "
        f"{counted(len(document['operations']), 'operation')}",
        file=out,
    )
    return 0


def _title(scenarios: Path) -> str:
    """The document's title: the scenarios folder's name, or its project's (the folder
    above) when it is called ``scenarios``; "replay" when neither has one."""
    folder = scenarios.resolve()
    name = folder.parent.name if folder.name == "scenarios" else folder.name
    return name or "replay"


def _check(path: Path) -> ScenarioFile | ProtocolFile:
    """One file, checked together with its folder's other scenarios (for play targets)."""
    source = read_source(path)
    if isinstance(source, ScenarioFile):
        return source
    if path.name == PROTOCOL_FILE:
        return parse_protocol(source, str(path))
    if path.name.startswith("_"):
        return ScenarioFile(
            scenario_name(str(path)),
            str(path),
            None,
            (
                Problem(
                    str(path),
                    0,
                    0,
                    "",
                    "not a scenario: files whose name starts with '_' "
                    f"are not scenarios (only {PROTOCOL_FILE} has a meaning)",
                ),
            ),
        )
    library = ScenarioLibrary(path.parent)
    try:
        siblings = [s for s in library.catalog() if s.name != scenario_name(str(path))]
    except ReplayError:
        siblings = []
    loaded = parse_scenario(source, str(path), library.protocol)
    return Catalog.resolve([*siblings, loaded], library.protocol_file).file(loaded.name)


# --- replay convert -------------------------------------------------------------------------


def _convert_parser(commands: Any) -> None:
    """``replay convert``: recorded sessions to a scenario, and their inferred protocol."""
    convert = commands.add_parser(
        "convert",
        help="turn recorded sessions (replay record) into a scenario; --protocol infers "
        "the protocol they speak",
        description="Turn recorded sessions into a scenario that replays what the server "
        "said, with the same frames and timing. Prints the scenario unless -o or "
        "--scenarios says where to write it.",
    )
    convert.add_argument(
        "recordings", nargs="+", type=Path, metavar="RECORDING", help="recordings (.jsonl)"
    )
    where = convert.add_mutually_exclusive_group()
    where.add_argument(
        "-o",
        "--output",
        dest="to_file",
        type=Path,
        metavar="FILE.yaml",
        help="write the scenario to FILE.yaml (its parts, if any, beside it)",
    )
    where.add_argument(
        "--scenarios",
        dest="folder",
        type=Path,
        metavar="DIR",
        help="write the scenario into the scenarios folder DIR, as --name",
    )
    convert.add_argument("--name", help="the scenario's name, with --scenarios")
    _convert_choices(convert)


def _convert_choices(convert: argparse.ArgumentParser) -> None:
    """What ``replay convert`` takes besides where to write: timing, matching,
    templates, the protocol."""
    convert.add_argument(
        "--timing",
        choices=["exact", "compact"],
        default=None,
        help="exact: every gap as recorded (default); compact: gaps of at most --max-gap",
    )
    convert.add_argument(
        "--max-gap",
        type=_gap,
        default=None,
        metavar="DURATION",
        help="with compact timing, the longest gap kept (default 2s); implies compact",
    )
    convert.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="FIELD",
        help="a client frame's field (a dotted path, e.g. message.action) that waits match "
        "exactly (repeat for more); other fields may differ",
    )
    convert.add_argument(
        "--template",
        action="append",
        default=[],
        type=_template,
        metavar="PATH=EXPR",
        help="replace a field of the server's data by a template, e.g. "
        "'message.span_id={{ hex(16) }}' (repeat for more)",
    )
    convert.add_argument(
        "--echo",
        action="store_true",
        help="values the server repeated from the client frame just waited for (ids, "
        "nonces) become templates reading it ({{ received.data.X }})",
    )
    convert.add_argument(
        "--protocol",
        action="store_true",
        help="infer the recordings' protocol: write _protocol.yaml beside the scenario "
        "(without -o or --scenarios: print it) and convert with it",
    )
    convert.add_argument("--force", action="store_true", help="replace files that exist")


def _gap(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _template(text: str) -> tuple[str, str]:
    path, equals, expression = text.partition("=")
    if not equals or not path.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not PATH=EXPR (e.g. 'message.id={{{{ uuid() }}}}')"
        )
    return path.strip(), expression


def convert_recordings(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``replay convert``: read the recordings, convert them, write or print the result."""
    folder = args.folder or (args.to_file.parent if args.to_file else None)
    name = _convert_name(args)
    options = _convert_options(args)
    recordings = [_read_recording(path) for path in args.recordings]
    inferred = infer_protocol(recordings) if args.protocol else None
    if inferred is not None and folder is None:
        out.write(inferred.text)
        return 0
    protocol = _convert_protocol(recordings, folder, inferred, err)
    converted = converting.convert(recordings, protocol, options, name)
    if folder is None:
        if converted.parts:
            raise converting.ConvertError(
                f"the scenario takes {len(converted.parts)} files (a file holds at most "
                "1 MiB): write it with -o FILE.yaml or --scenarios DIR --name NAME"
            )
        out.write(converted.files[converted.name])
        return 0
    _write_converted(folder, converted, inferred, args.force, out)
    return 0


def _convert_name(args: argparse.Namespace) -> str:
    if args.name is not None and args.folder is None:
        raise converting.ConvertError("--name goes with --scenarios DIR (-o FILE.yaml names it)")
    if args.folder is not None and args.name is None:
        raise converting.ConvertError("--scenarios DIR needs --name NAME: the scenario's name")
    if args.to_file is not None:
        if args.to_file.suffix != ".yaml":
            raise converting.ConvertError(
                f"{args.to_file} is not a scenario file: name it NAME.yaml"
            )
        return str(args.to_file.stem)
    return str(args.name or "recorded")


def _convert_options(args: argparse.Namespace) -> converting.Options:
    if args.max_gap is not None and args.timing == "exact":
        raise converting.ConvertError("--max-gap goes with --timing compact, not exact")
    compact = args.timing == "compact" or args.max_gap is not None
    return converting.Options(
        timing="compact" if compact else "exact",
        max_gap=2.0 if args.max_gap is None else args.max_gap,
        match=tuple(args.match),
        templates=tuple(args.template),
        echo=args.echo,
        part_bytes=converting.PART_BYTES,
        part_values=converting.PART_VALUES,
    )


def _read_recording(path: Path) -> Recording:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise converting.ConvertError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise converting.ConvertError(f"{path} is not a replay recording: not UTF-8 text") from None
    return read_recording(text.splitlines(keepends=True), str(path))


def _convert_protocol(
    recordings: Sequence[Recording], folder: Path | None, inferred: Inferred | None, err: TextIO
) -> Protocol:
    """The protocol to convert with: the inferred one (--protocol), else the folder's,
    else Schwarm's, unless the recordings need more than Schwarm's endpoints: then the
    one inferred from them (said on ``err``)."""
    if inferred is not None:
        return inferred.protocol
    declared = folder / PROTOCOL_FILE if folder is not None else None
    if declared is not None and declared.is_file():
        loaded = parse_protocol(declared.read_bytes(), str(declared))
        if loaded.problems:
            raise converting.ConvertError(f"{loaded.problems[0]} (fix {declared} first)")
        return loaded.protocol
    library = ScenarioLibrary(folder or Path("."))
    served = library.base.paths()
    if all(r.header.kind != "websocket" or r.header.endpoint in served for r in recordings):
        return library.base
    print(
        "replay: these recordings are not Schwarm's protocol: converted with the one "
        "inferred from them, which the scenario needs (--protocol writes it)",
        file=err,
    )
    return infer_protocol(recordings).protocol


def _write_converted(
    folder: Path,
    converted: converting.Converted,
    inferred: Inferred | None,
    force: bool,
    out: TextIO,
) -> None:
    write_converted(folder, converted, inferred.text if inferred else None, force)
    main = folder / f"{converted.name}.yaml"
    counts = f"{counted(converted.frames, 'frame')}, {counted(converted.waits, 'wait')}"
    if converted.skipped:
        counts += f", {counted(converted.skipped, 'client frame')} left out (see the comments)"
    parts = f", in {len(converted.parts)} parts played in order" if converted.parts else ""
    print(
        f"wrote {main}: {counts}, {format_seconds(converted.duration)} of server time{parts}",
        file=out,
    )
    if inferred is not None:
        types = len(inferred.declaration.get("message_types", {}))
        routes = len(inferred.declaration.get("routes", []))
        counts = f"{counted(types, 'message type')}, {counted(routes, 'route')}"
        print(f"wrote {folder / PROTOCOL_FILE}: {counts}", file=out)
