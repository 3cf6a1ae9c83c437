"""Parsing the command line's runner specs, sizes and flow parameters for `distributary bench`.

Runner specs, text form (one string, comma-separated; options in parentheses):

    threads,processes(max_workers=2),dask(address=tcp://127.0.0.1:8786),ray(num_cpus=2)

An option value is read as JSON when it parses as JSON (`2`, `true`, `null`, `"a,b"`, `[1, 2]`,
`{"k": 1}`) and is otherwise kept as a plain string (`tcp://127.0.0.1:8786`, `2GiB`). Quote a string that
contains a comma or a parenthesis. JSON form: a list whose items are names or objects,

    [{"name": "dask", "address": "tcp://127.0.0.1:8786"}, "threads", {"name": "ray", "num_cpus": 2}]

(`{"name": ..., "options": {...}}` is accepted too). Options per runner:

- threads: max_workers.  processes: max_workers, mp_context.
- dask: `address` of a running scheduler; otherwise the options go to `distributed.LocalCluster` (n_workers,
  threads_per_worker, processes, memory_limit, ...), started once per sweep.
- ray: `address` of a running cluster; otherwise the options go to `ray.init` (num_cpus, object_store_memory,
  ...), started once per sweep in this process.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError

KINDS = ("threads", "processes", "dask", "ray")
_STRICT_OPTIONS = {"threads": {"max_workers"}, "processes": {"max_workers", "mp_context"}}
SYNTAX_HELP = ('Syntax: NAME or NAME(key=value, ...) separated by commas, e.g. '
               '"threads,processes,dask(address=tcp://127.0.0.1:8786),ray(num_cpus=2)", or a JSON list such as '
               '\'[{"name": "dask", "n_workers": 2}, "threads"]\'. Names: ' + ", ".join(KINDS) + ".")


@dataclass(frozen=True)
class RunnerSpec:
    """One runner of a sweep: its kind (a runner registry name) and the options given for it."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The spec as text (how it appears in tables, plots and JSON), e.g. `dask(n_workers=2)`."""
        if not self.options:
            return self.kind
        parts = ", ".join(f"{k}={_format_value(v)}" for k, v in self.options.items())
        return f"{self.kind}({parts})"

    @property
    def address(self) -> str | None:
        value = self.options.get("address")
        return None if value is None else str(value)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "options": dict(self.options), "label": self.label}

    def __hash__(self) -> int:
        return hash(self.label)


def _format_value(value: Any) -> str:
    if isinstance(value, str) and not any(c in value for c in ',()"'):
        return value
    return json.dumps(value)


def parse_runners(text: str | list[Any]) -> list[RunnerSpec]:
    """Runner specs from the text form, the JSON form, or an already-decoded JSON list.

    >>> [s.label for s in parse_runners("threads,dask(address=tcp://127.0.0.1:8786)")]
    ['threads', 'dask(address=tcp://127.0.0.1:8786)']
    """
    if isinstance(text, list):
        return _check_unique([_from_json_item(item) for item in text])
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"No runners given. {SYNTAX_HELP}")
    stripped = text.strip()
    if stripped[0] in "[{":
        try:
            decoded = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"Runner spec {text!r} looks like JSON but does not parse ({exc}). "
                                     f"{SYNTAX_HELP}") from None
        return parse_runners(decoded if isinstance(decoded, list) else [decoded])
    return _check_unique([_parse_one(part, text) for part in _split_top_level(stripped, ",", text)])


def _check_unique(specs: list[RunnerSpec]) -> list[RunnerSpec]:
    seen: set[str] = set()
    for spec in specs:
        if spec.label in seen:
            raise ConfigurationError(f"Runner {spec.label!r} is given twice; give each runner once.")
        seen.add(spec.label)
    return specs


def _from_json_item(item: Any) -> RunnerSpec:
    if isinstance(item, str):
        return _make(item.strip(), {}, item)
    if isinstance(item, dict):
        item = dict(item)
        name = item.pop("name", None) or item.pop("runner", None)
        if not isinstance(name, str):
            raise ConfigurationError(f"Runner entry {item!r} has no \"name\". {SYNTAX_HELP}")
        options = item.pop("options", None) or {}
        if not isinstance(options, dict):
            raise ConfigurationError(f"Runner {name!r}: \"options\" must be an object, got {options!r}.")
        return _make(name, {**options, **item}, json.dumps(item))
    raise ConfigurationError(f"Runner entry {item!r} must be a name or an object. {SYNTAX_HELP}")


def _parse_one(part: str, whole: str) -> RunnerSpec:
    part = part.strip()
    if not part:
        raise ConfigurationError(f"Runner spec {whole!r} has an empty entry (two commas in a row?). {SYNTAX_HELP}")
    if "(" not in part:
        if ")" in part:
            raise ConfigurationError(f"Runner spec {part!r} has ')' without '('. {SYNTAX_HELP}")
        return _make(part, {}, whole)
    name, _, rest = part.partition("(")
    if not rest.endswith(")"):
        raise ConfigurationError(f"Runner spec {part!r} is missing its closing ')' (or has text after it). "
                                 f"{SYNTAX_HELP}")
    body = rest[:-1].strip()
    options: dict[str, Any] = {}
    for item in _split_top_level(body, ",", whole) if body else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ConfigurationError(f"Runner spec {part!r}: option {item.strip()!r} is not key=value. "
                                     f"{SYNTAX_HELP}")
        if key in options:
            raise ConfigurationError(f"Runner spec {part!r}: option {key!r} is given twice.")
        options[key] = parse_value(value.strip())
    return _make(name.strip(), options, whole)


def _make(name: str, options: dict[str, Any], whole: str) -> RunnerSpec:
    if name not in KINDS:
        raise ConfigurationError(f"Unknown runner {name!r} in {whole!r}. {SYNTAX_HELP}")
    allowed = _STRICT_OPTIONS.get(name)
    if allowed is not None:
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigurationError(f"Runner {name!r} has no option(s) {', '.join(unknown)}; valid: "
                                     f"{', '.join(sorted(allowed))}.")
    for key in ("max_workers", "n_workers", "num_cpus"):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigurationError(f"Runner {name!r}: {key} must be a whole number >= 1, got {value!r}.")
    return RunnerSpec(name, options)


def _split_top_level(text: str, sep: str, whole: str) -> list[str]:
    """Split on `sep` outside quotes and brackets."""
    parts, quote, start = [], "", 0
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in closing:
            if not stack or stack.pop() != closing[ch]:
                raise ConfigurationError(f"Runner spec {whole!r} has an unbalanced {ch!r}. {SYNTAX_HELP}")
        elif ch == sep and not stack:
            parts.append(text[start:i])
            start = i + 1
    if quote:
        raise ConfigurationError(f"Runner spec {whole!r} has an unclosed quote. {SYNTAX_HELP}")
    if stack:
        wanted = {"(": ")", "[": "]", "{": "}"}[stack[-1]]
        raise ConfigurationError(f"Runner spec {whole!r} is missing its closing {wanted!r}. {SYNTAX_HELP}")
    parts.append(text[start:])
    return parts


def parse_value(text: str) -> Any:
    """A value from the command line: JSON when it parses (numbers, booleans, null, quoted strings, lists,
    objects), a float for `1e5`-style numbers, else the text itself. Single quotes delimit a plain string."""
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sizes(text: str) -> list[int]:
    """`"1e2,1e3,10000"` -> [100, 1000, 10000] (sorted, unique). Each size must be a whole number >= 1."""
    sizes: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise ConfigurationError(f"--sizes: {part!r} is not a number (give e.g. 1e2,1e3,1e4).") from None
        if value < 1 or value != int(value):
            raise ConfigurationError(f"--sizes: {part!r} is not a whole number >= 1.")
        sizes.add(int(value))
    return sorted(sizes)


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """`["x=1", "name=abc", "opts={\\"a\\": 1}"]` -> {"x": 1, "name": "abc", "opts": {"a": 1}}."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ConfigurationError(f"--param {item!r} must be NAME=VALUE (VALUE is JSON or plain text).")
        params[key] = parse_value(value.strip())
    return params


__all__ = ["RunnerSpec", "parse_runners", "parse_sizes", "parse_params", "parse_value", "KINDS", "SYNTAX_HELP"]
