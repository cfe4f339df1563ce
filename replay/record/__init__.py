"""Record and proxy: real traffic through replay, written down, and turned into scenarios.

- :mod:`replay.record.format`: the recording format (JSON Lines, versioned), pure;
- the proxy that records (``replay record --upstream URL``) and the live override
  (``replay serve --upstream URL``) are the I/O edges;
- :mod:`replay.record.convert` (``replay convert``): recordings to a scenario that
  replays the server's frames, pure; :mod:`replay.record.emit` writes its YAML;
- :mod:`replay.record.infer` (``replay convert --protocol``): the protocol the
  recordings speak, as a ``_protocol.yaml``, pure.
"""
