"""How long a template can hold the event loop: templates built to spend as much time as
possible per step of replay's work budget, each rendered until the budget refuses it
(or it finishes), with the time it took and the steps it was charged.

    uv run python -m bench.template_budget            # the table
    uv run python -m bench.template_budget --worst    # only the slowest render, in ms

Times are CPU time, the fastest of seven renders. The budget (replay.limits.MAX_STEPS)
is chosen so that the slowest of these stays well under 20 ms; the weights of the steps
(a call is three, a KiB of text searched four, ...) so that no kind of work costs much
more than a microsecond a step.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from replay.errors import TemplateFailed
from replay.limits import MAX_STEPS, rendering
from replay.templates import Now, Variables, render_text, render_value

BIG = "x" * (1 << 20)
WORDS = "a " * (1 << 19)
LOOP = "{% for i in range(100000) %}BODY{% endfor %}"

#: name -> template (a template starting with "=" renders as a value, as in data).
CASES: dict[str, str] = {
    "empty loop": LOOP.replace("BODY", ""),
    "nested loops": "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
    "loop, output": LOOP.replace("BODY", "{{ i }}"),
    "loop, loop.index": LOOP.replace("BODY", "{{ loop.index }}{{ loop.last }}"),
    "loop, loop.length": LOOP.replace("BODY", "{{ loop.length }}"),
    "loop, attribute": LOOP.replace("BODY", "{{ vars.user }}{{ run.id }}"),
    "loop, method call": LOOP.replace("BODY", "{{ 'ab'.upper() }}"),
    "loop, uuid()": LOOP.replace("BODY", "{{ uuid() }}"),
    "loop, filter": LOOP.replace("BODY", "{{ i | string }}"),
    "loop, compare": LOOP.replace("BODY", "{% if i == 3 and i < 5 %}x{% endif %}"),
    "loop, ~ and +": LOOP.replace("BODY", "{{ 'a' ~ i ~ 'b' }}{{ i + 1 }}"),
    "loop, big body": LOOP.replace("BODY", "{% if i %}{% endif %}" * 300),
    "loop, literals": LOOP.replace("BODY", "{% set a = [1, 2, 3, [4, 5, {'a': 6}]] %}" * 20),
    "loop over a text": "{% for c in vars.big %}{% endfor %}",
    "loop, slice": LOOP.replace("BODY", "{{ vars.big[1:] | length }}"),
    "loop, big numbers": LOOP.replace("BODY", "{{ (2 ** 4000 - 1) // (2 ** 2000 + 7) % 10 }}"),
    "loop, text search": LOOP.replace("BODY", "{{ 'y' in vars.big }}"),
    "loop, count": LOOP.replace("BODY", "{{ vars.big.count('y') }}"),
    "loop, search": LOOP.replace("BODY", "{{ vars.big.find('xy') }}{{ 'xy' in vars.big }}"),
    "loop, strip chars": LOOP.replace("BODY", "{{ vars.big.strip('yz' * 500 + 'x') }}"),
    "loop, str.title": LOOP.replace("BODY", "{{ vars.big.title() | length }}"),
    "loop, upper wide": LOOP.replace("BODY", "{{ vars.wide.upper() | length }}"),
    "loop, compare big": LOOP.replace("BODY", "{{ vars.big == vars.copy }}"),
    "loop, compare lists": LOOP.replace("BODY", "{{ vars.list == vars.list2 }}"),
    "loop, list in": LOOP.replace("BODY", "{{ -1 in vars.list }}"),
    "macro calls": "{% macro f(n) %}{{ n }}{% endmacro %}" + LOOP.replace("BODY", "{{ f(i) }}"),
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "recursive loop": (
        "{% for x in [[[1] * 50] * 50] * 50 recursive %}{{ loop(x) if x is iterable }}{% endfor %}"
    ),
    "output of a list": "{{ vars.list }}",
    "output in a loop": LOOP.replace("BODY", "{{ vars.short_list }}"),
    "value of a list": "={{ vars.list }}",
    "map join": "{{ range(100000) | map('string') | join(',') }}",
    "select": "{{ range(100000) | select('odd') | list | length }}",
    "sort": "{{ vars.strings | sort | length }}",
    "unique": "{{ vars.strings | unique | list | length }}",
    "sum": "{{ range(100000) | sum }}",
    "dictsort": "{{ vars.mapping | dictsort | length }}",
    "groupby": "{{ vars.records | groupby('a') | length }}",
    "tojson": "{{ vars.records | tojson | length }}",
    "tojson, indented": "{{ vars.records | tojson(1) | length }}",
    "refused recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "pprint": "{{ vars.records | pprint | length }}",
    "join": "{{ vars.strings | join(',') | length }}",
    "escape": "{{ vars.html | e | length }}",
    "upper": "{{ vars.big | upper | length }}",
    "title": "{{ vars.words | title | length }}",
    "title, one word": "{{ vars.big | title | length }}",
    "sum of lists": "{{ ([[1] * 100] * 100) | sum(start=[]) | length }}",
    "loop, big number out": LOOP.replace("BODY", "{{ 2 ** 4000 }}"),
    "wordcount, one word": "{{ vars.big | wordcount }}",
    "striptags, one word": "{{ vars.big | striptags | length }}",
    "urlize, one word": "{{ vars.big[:100000] | urlize | length }}",
    "wordcount": "{{ vars.words | wordcount }}",
    "striptags": "{{ vars.html | striptags | length }}",
    "urlize": "{{ vars.links | urlize | length }}",
    "urlencode": "{{ vars.big | urlencode | length }}",
    "wordwrap": "{{ vars.words | wordwrap(10) | length }}",
    "wordwrap 1": "{{ vars.big[:20000] | wordwrap(1) | length }}",
    "indent": "{{ vars.lines | indent(4) | length }}",
    "replace": "{{ vars.words | replace(' ', '--') | length }}",
    "split": "{{ vars.words.split() | length }}",
    "split at": "{{ vars.words.split(' ') | length }}",
    "splitlines": "{{ vars.lines.splitlines() | length }}",
    "format": "{{ ('%s' * 1000) | format(*vars.strings[:1000]) | length }}",
    "printf": "{{ ('%d,' * 10000) % vars.list[:10000] | length }}",
    "str.format": "{{ ('{},' * 10000).format(*vars.list[:10000]) | length }}",
    "center": LOOP.replace("BODY", "{{ 'a'.center(100000) | length }}"),
    "int filter": LOOP.replace("BODY", "{{ vars.digits | int }}"),
    "list filter": "{{ vars.big | list | length }}",
}


def context() -> dict[str, Any]:
    """What templates see: big values to work on."""
    numbers = list(range(100000))
    values = {
        "user": "Ada",
        "big": BIG,
        "wide": "é" * 300000,
        "copy": "".join(["x"] * (1 << 20)),
        "words": WORDS,
        "lines": "a\n" * (1 << 19),
        "html": "<b>a</b> &amp; " * 60000,
        "links": "see a.com and b@c.org " * 40000,
        "list": numbers,
        "list2": list(numbers),
        "short_list": numbers[:50],
        "strings": [str(n) for n in range(100000, 0, -1)],
        "mapping": {str(n): n for n in range(100000)},
        "records": [{"a": n % 7, "b": str(n)} for n in range(30000)],
        "digits": "9" * 1200,
    }
    return {
        "run": {"id": "run-1", "scenario": "bench", "seed": 1},
        "scenario": "bench",
        "step": 0,
        "iteration": 0,
        "now": Now(1_700_000_000.0),
        "uuid": lambda: "00000000-0000-4000-8000-000000000000",
        "random": lambda: 0.5,
        "randint": lambda low, high: low,
        "choice": lambda items: items[0],
        "vars": Variables(values),
        "received": None,
        "sender": "client",
    }


def measure(template: str, names: dict[str, Any], runs: int = 7) -> tuple[float, int, str]:
    """The CPU time a render takes (s; the fastest of ``runs``: the machine may be busy
    with other work), the steps it was charged, and how it ended."""
    times = []
    steps = 0
    ended = "done"
    for _ in range(runs):
        with rendering() as budget:
            started = time.process_time()
            try:
                if template.startswith("="):
                    render_value(template[1:], names)
                else:
                    render_text(template, names)
                ended = "done"
            except TemplateFailed as error:
                ended = error.reason[:40]
            times.append(time.process_time() - started)
            steps = budget.steps
    return min(times), steps, ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worst", action="store_true", help="print only the slowest, in ms")
    options = parser.parse_args()
    names = context()
    rows = [(name, *measure(template, names)) for name, template in CASES.items()]
    worst = max(rows, key=lambda row: row[1])
    if options.worst:
        print(f"{worst[1] * 1000:.1f} ms ({worst[0]})")
        return
    print(f"budget: {MAX_STEPS} steps")
    print(f"{'template':22} {'ms':>7} {'steps':>7} {'us/step':>8}  ended")
    for name, seconds, steps, ended in sorted(rows, key=lambda row: -row[1]):
        per_step = seconds * 1e6 / max(steps, 1)
        print(f"{name:22} {seconds * 1000:7.2f} {steps:7} {per_step:8.2f}  {ended}")
    print(f"slowest: {worst[0]}, {worst[1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
