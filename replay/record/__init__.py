"""Record and proxy: real traffic through replay, written down, and turned into scenarios.

- :mod:`replay.record.format`: the recording format (JSON Lines, versioned), pure;
- the proxy that records (``replay record --upstream URL``) and the live override
  (``replay serve --upstream URL``) are the I/O edges;
- the converter (``replay convert``) and the protocol inference are pure.
"""
