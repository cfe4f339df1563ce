"""Record and proxy: real traffic through replay, written down, and turned into scenarios.

- :mod:`replay.record.format`: the recording format (JSON Lines, versioned), pure;
- the proxy that records (``replay record --upstream URL``) is an I/O edge:
  :mod:`~replay.record.proxy` (the server), :mod:`~replay.record.opening` (handshakes
  through it), :mod:`~replay.record.bridge` (WebSocket frames both ways),
  :mod:`~replay.record.exchange` (plain HTTP requests), :mod:`~replay.record.sessions`
  (the files, the counts), :mod:`~replay.record.status` and :mod:`~replay.record.command`
  (what the command shows and does); below them, pure: :mod:`~replay.record.upstream`
  (addresses, targets, headers passed on) and :mod:`~replay.record.redact` (secrets left
  out); :mod:`~replay.record.http1` parses and writes HTTP/1.1 messages (pure) and
  reads them from streams;
- the live override (``replay serve --upstream URL``) is another I/O edge;
- :mod:`replay.record.convert` (``replay convert``): recordings to a scenario that
  replays the server's frames, pure; :mod:`replay.record.emit` writes its YAML;
- :mod:`replay.record.infer` (``replay convert --protocol``): the protocol the
  recordings speak, as a ``_protocol.yaml``, pure.
"""
