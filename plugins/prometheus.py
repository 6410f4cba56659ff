"""The `prometheus` executor: one PromQL query, its answer as values with labels.

An instant query (`/api/v1/query`) or, with `range:`, a range query
(`/api/v1/query_range`) against Prometheus' HTTP API, so a check can say
`expect: ["value < 0.10"]` of an error ratio (seed 000's "P1: >10% error rate")
or `max < 0.10` of the last half hour ("monitor recovery metrics"). The answer's
shape follows what Prometheus returned, not which endpoint was asked: a vector
gives each series' sample, a matrix each series' first/last/min/max/avg.
`value` is the one number a well-aggregated query answers with, and None when
there are no series or several: an empty answer is its own state (`empty`,
`count == 0`), never a silent 0. NaN and ±Inf (a ratio over no traffic is
0/0) stay floats, so `value < 0.10` fails on NaN rather than passing;
`finite` says whether every sample is a real number. Prometheus' own errors
(bad PromQL is a 400 with `errorType` and `error`) are `error` outcomes carrying
its message. The request is sent like the http executor's (`exchange`): TLS
verified, redirects not followed, `timeout` bounding the whole exchange.
Only GET requests to those two read endpoints can be formed, and PromQL cannot
change anything, so a dry-run runs the query for real. Relative times (`-30m`,
`now`) are resolved against this machine's clock when the query is sent; the
plan shows them as written, the result's `url` the exact request.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from runbook.contract import (
    TEMPLATE,
    ExecContext,
    ExecutorError,
    ExecutorSpec,
    PlanContext,
    PlannedCall,
    StepResult,
    hookimpl,
    prop,
)

from .http import (
    MAX_BODY,
    RequestStopped,
    effective_timeout,
    exchange,
    parse_json,
    unfinished_exchange,
    url_problem,
)

DEFAULT_TIMEOUT = 10.0
INSTANT_PATH = "/api/v1/query"
RANGE_PATH = "/api/v1/query_range"
OUTPUT_SERIES = 50
"""Series written to the text output; every series is in `series` whatever their number."""

# Prometheus' duration grammar (units in decreasing order, integers), e.g. 1h30m, 90s, 500ms.
_DURATION = r"(?=\d)(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m(?!s))?(?:\d+s)?(?:\d+ms)?"
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_UNIT_SECONDS["y"] = 365 * 86400.0
_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_RFC3339 = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})"
_NUMBER = r"\d+(?:\.\d+)?"
TIME_PATTERN = rf"^(?:now|-{_DURATION}|{_RFC3339}|{_NUMBER})$"
STEP_PATTERN = rf"^(?:{_DURATION}|{_NUMBER})$"
_TIME = re.compile(TIME_PATTERN)
_STEP = re.compile(STEP_PATTERN)
# Characters left as they are in the query string, so the PromQL stays readable in a plan;
# everything else (space, quotes, braces, brackets, + & ; =) is percent-encoded.
_QUERY_SAFE = "()!*,:@/'$"


def _time_schema(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": TIME_PATTERN},
            dict(TEMPLATE),
        ],
    }


SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "prometheus",
    "description": "Run one PromQL query (instant, or over a time range) against Prometheus' "
    "HTTP API and expose the answer as values with labels.",
    "type": "object",
    "properties": {
        "url": {
            "description": "Prometheus' base URL, the one its web UI is served under: "
            "`http://prometheus:9090`, or with a route prefix `https://example.com/prometheus`. "
            "`/api/v1/query` (or `/api/v1/query_range`) is appended; no query string or "
            "fragment. A `{{ }}` value inside it is percent-encoded for where it lands.",
            "type": "string",
            "minLength": 1,
        },
        "query": {
            "description": "The PromQL expression. Aggregate it to the one number you judge "
            "(`sum(rate(errors[5m])) / sum(rate(requests[5m]))`) to read it as `value`. A "
            "`{{ }}` value is pasted into the PromQL as it is: give the param a `pattern`.",
            "type": "string",
            "minLength": 1,
        },
        "time": _time_schema(
            "Evaluation time of an instant query: `now` (the default: Prometheus' own "
            "clock), `-5m` (relative to this machine's clock when sent), an RFC 3339 time "
            "(`2026-12-01T10:00:00Z`) or a Unix timestamp. Not together with `range`."
        ),
        "range": {
            "description": "Make it a range query (`/api/v1/query_range`): samples every "
            "`step` from `start` to `end`; each series then has first/last/min/max/avg.",
            "type": "object",
            "properties": {
                "start": _time_schema(
                    "Start of the range: `-30m` (relative to now), an RFC 3339 time or "
                    "a Unix timestamp."
                ),
                "end": _time_schema("End of the range, same forms as `start`. Default: now."),
                "step": {
                    "description": "Resolution: seconds between samples, a number or a "
                    "Prometheus duration (`15s`, `1m`). Prometheus refuses more than 11,000 "
                    "samples per series.",
                    "anyOf": [
                        {"type": "number", "exclusiveMinimum": 0},
                        {"type": "string", "pattern": STEP_PATTERN},
                        dict(TEMPLATE),
                    ],
                },
            },
            "required": ["start", "step"],
            "additionalProperties": False,
        },
        "headers": {
            "description": "Request headers, name -> value: `Authorization: Bearer {{ "
            "params.prom_token }}` with a secret param (masked everywhere), an "
            "`X-Scope-OrgID` tenant.",
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "timeout": prop(
            "number",
            "Seconds allowed for the whole request: connecting, sending, and reading the "
            "answer, in total; also sent to Prometheus as the query's evaluation timeout. The "
            "attempt's own timeout still applies when shorter. Default 10.",
            exclusiveMinimum=0,
            default=DEFAULT_TIMEOUT,
        ),
        "verify": {
            "description": "Verify the server's TLS certificate. Turn off only for a known "
            "self-signed endpoint.",
            "type": "boolean",
            "default": True,
        },
    },
    "required": ["url", "query"],
    "not": {"required": ["time", "range"]},
    "additionalProperties": False,
}

RESULT_FIELDS: Mapping[str, str] = {
    "value": "the answer as one number when there is exactly one series (or a scalar): its "
    "sample, or for a range its last sample; None when the answer is empty or has several "
    "series (read `series`, or aggregate in the PromQL). NaN and ±Inf are floats: "
    "`value < 0.10` fails on NaN",
    "labels": "that one series' labels (`labels.status`); None unless exactly one series",
    "values": "every series' value (its sample, or its last sample for a range), in "
    "Prometheus' order: `max(values) < 0.1`",
    "series": "every series: {labels, value, timestamp} for an instant vector; {labels, value "
    "(= last), first, last, min, max, avg, samples, nan} for a range (min/max/avg over the "
    "samples that are not NaN, `nan` counts those that are)",
    "count": "number of series (1 for a scalar); 0 means the query matched nothing",
    "empty": "True when the answer holds no series",
    "finite": "True when every sample is a real number (no NaN, +Inf or -Inf)",
    "min / max / avg / first / last": "the one series' statistics over a range (also for a "
    "range-vector selector like `up[5m]`); None unless exactly one series",
    "result_type": "what Prometheus answered: vector, matrix, scalar or string",
    "warnings": "Prometheus' warnings about the answer (e.g. partial data), a list of strings",
    "query": "the PromQL sent",
    "url": "the exact URL requested, relative times resolved",
    "elapsed": "seconds from sending the request to the end of the answer, monotonic clock",
}


# -- the request --------------------------------------------------------------------------


def _timeout(config: Mapping[str, Any]) -> float:
    try:
        return float(config.get("timeout", DEFAULT_TIMEOUT))
    except (TypeError, ValueError):  # a template that rendered to text; run() says so
        return DEFAULT_TIMEOUT


def _call(config: Mapping[str, Any]) -> dict[str, Any]:
    """The exact request with times as written, JSON-serialisable; shared by plan() and run()."""
    window = config.get("range")
    params: dict[str, str] = {"query": str(config["query"])}
    if isinstance(window, Mapping):
        params["start"] = _written(window.get("start"))
        params["end"] = _written(window.get("end", "now"))
        params["step"] = _written(window.get("step"))
    elif config.get("time") is not None:
        params["time"] = _written(config["time"])
    params["timeout"] = _number(_timeout(config))
    base = str(config["url"]).rstrip("/")
    return {
        "method": "GET",
        "url": base + (RANGE_PATH if isinstance(window, Mapping) else INSTANT_PATH),
        "params": params,
        "headers": dict(config.get("headers") or {}),
        "timeout": _timeout(config),
        "verify": config.get("verify", True) is not False,
    }


def _written(value: Any) -> str:
    """A time or step as the author wrote it (a YAML number as a person writes it)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number(value)
    return str(value)


def _number(value: float) -> str:
    """`60` rather than `60.0`, the way a person writes seconds in a URL."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def query_url(endpoint: str, params: Mapping[str, str]) -> str:
    """`endpoint?query=...` as sent: PromQL's parentheses, commas and colons stay readable."""
    return f"{endpoint}?{urlencode(params, quote_via=quote, safe=_QUERY_SAFE)}"


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    """`GET http://prometheus:9090/api/v1/query?query=...`; relative times as written."""
    call = _call(config)
    return PlannedCall(summary=f"GET {query_url(call['url'], call['params'])}", detail=call)


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration (`1h30m`) or a plain number of seconds."""
    if re.fullmatch(_NUMBER, text):
        return float(text)
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))


def resolve(params: Mapping[str, str], now: float) -> dict[str, str]:
    """The query parameters as Prometheus takes them: relative times become Unix
    timestamps of `now`, a step in seconds. ValueError names a value it cannot read."""
    sent = dict(params)
    for key in ("time", "start", "end"):
        if key not in sent:
            continue
        text = sent[key].strip()
        where = "range." + key if key != "time" else key
        if not _TIME.match(text):
            raise ValueError(
                f"`{where}` is {text!r}: use now, -30m (before now), an RFC 3339 time "
                "(2026-12-01T10:00:00Z) or a Unix timestamp"
            )
        if text == "now":
            sent[key] = f"{now:.3f}"
        elif text.startswith("-"):
            sent[key] = f"{now - duration_seconds(text[1:]):.3f}"
    if "step" in sent:
        text = sent["step"].strip()
        step = duration_seconds(text) if _STEP.match(text) else 0.0
        if not step > 0:
            raise ValueError(
                f"`range.step` is {text!r}: use seconds (15, 0.5) or a duration (15s, 1m)"
            )
        sent["step"] = _number(step)
    return sent


def base_url_problem(url: str) -> str | None:
    """Why `url` is not a Prometheus base URL this executor will query, or None."""
    problem = url_problem(url)
    if problem is not None:
        return problem
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "`url` is Prometheus' base URL (http://prometheus:9090): no query or fragment"
    if parts.path.rstrip("/").endswith((INSTANT_PATH, RANGE_PATH)):
        return f"`url` is Prometheus' base URL: leave out {parts.path.rstrip('/')!r}"
    return None


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Send the query once and shape Prometheus' answer (or say why there is none)."""
    call = _call(config)
    problem = base_url_problem(str(config["url"]))
    timeout = config.get("timeout", DEFAULT_TIMEOUT)
    if problem is None and not (isinstance(timeout, int | float) and 0 < timeout < math.inf):
        problem = f"`timeout` is {timeout!r}, not a number of seconds"
    if problem is not None:
        return StepResult.failure(problem, call=call)
    try:
        params = resolve(call["params"], time.time())
    except ValueError as exc:
        return StepResult.failure(str(exc), call=call)
    if ctx.cancel.is_set():
        return StepResult.failure("cancelled", call=call)
    url = query_url(call["url"], params)
    return _send(call, url, effective_timeout(call["timeout"], ctx.timeout), ctx.cancel)


def _send(call: dict[str, Any], url: str, timeout: float, cancel: threading.Event) -> StepResult:
    import httpx

    request = {
        "method": "GET",
        "url": url,
        "params": {},
        "headers": call["headers"],
        "verify": call["verify"],
        "follow_redirects": False,
    }
    start = time.monotonic()
    try:
        response, body, truncated = exchange(request, timeout, cancel)
    except (RequestStopped, httpx.HTTPError, httpx.InvalidURL) as exc:
        return unfinished_exchange(exc, f"GET {url}", timeout, start, call)
    elapsed = time.monotonic() - start
    try:
        fields = answer_fields(response.status_code, response.headers, body, truncated)
    except AnswerError as exc:
        return StepResult.failure(str(exc), elapsed=elapsed, call=call)
    fields.update(query=call["params"]["query"], url=url, elapsed=elapsed)
    return StepResult(ok=True, fields=fields, output=describe(fields), elapsed=elapsed, call=call)


# -- the answer ---------------------------------------------------------------------------


class AnswerError(ExecutorError):
    """Prometheus refused the query, or the answer is not one Prometheus gives."""


def answer_fields(
    status: int, headers: Mapping[str, str], body: bytes, truncated: bool
) -> dict[str, Any]:
    """The result fields of one HTTP answer from Prometheus' query API; AnswerError with
    Prometheus' own message (or what was wrong with the answer) otherwise."""
    if truncated:
        raise AnswerError(
            f"the answer is larger than {MAX_BODY // (1024 * 1024)} MiB: aggregate the query "
            "(sum by (...), topk) so it returns fewer series"
        )
    try:
        doc = parse_json(body)
    except ValueError as exc:
        kind = headers.get("content-type", "no content type")
        hint = "; is `url` Prometheus' base URL?" if status in (301, 302, 303, 307, 404) else ""
        raise AnswerError(
            f"not a Prometheus API answer (HTTP {status}, {kind}: {exc}){hint}"
        ) from None
    if isinstance(doc, Mapping) and doc.get("status") == "error":
        kind = doc.get("errorType") or "no errorType"
        message = _one_line(doc.get("error") or "no error message")
        raise AnswerError(f"Prometheus answered HTTP {status} ({kind}): {message}")
    if not isinstance(doc, Mapping) or doc.get("status") != "success" or status != 200:
        text = _short(_one_line(body.decode("utf-8", "replace")))
        raise AnswerError(f"not a Prometheus API answer (HTTP {status}: {text})")
    data = doc.get("data")
    if not isinstance(data, Mapping):
        raise AnswerError("malformed Prometheus answer: `data` is missing")
    fields = shape(data.get("resultType"), data.get("result"))
    fields["warnings"] = [_one_line(w) for w in doc.get("warnings") or () if isinstance(w, str)]
    return fields


def shape(result_type: Any, result: Any) -> dict[str, Any]:
    """`data.resultType` and `data.result` as result fields (see RESULT_FIELDS)."""
    samples: list[Any] = []
    if result_type == "vector":
        series = [_instant(item) for item in _items(result)]
        samples = [one["value"] for one in series]
    elif result_type == "matrix":
        series = []
        for item in _items(result):
            one, points = _range(item)
            series.append(one)
            samples += points
    elif result_type in ("scalar", "string"):
        timestamp, value = _pair(result, as_text=result_type == "string")
        series = [{"labels": {}, "value": value, "timestamp": timestamp}]
        samples = [value]
    else:
        raise AnswerError(f"malformed Prometheus answer: resultType {result_type!r}")
    single = series[0] if len(series) == 1 else None
    fields: dict[str, Any] = {
        "result_type": result_type,
        "value": single["value"] if single else None,
        "labels": single["labels"] if single else None,
        "values": [s["value"] for s in series],
        "series": series,
        "count": len(series),
        "empty": not series,
        "finite": all(not isinstance(v, float) or math.isfinite(v) for v in samples),
    }
    for stat in ("min", "max", "avg", "first", "last"):
        fields[stat] = single.get(stat) if single else None
    return fields


def _items(result: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(result, list):
        raise AnswerError("malformed Prometheus answer: `result` is not a list")
    for item in result:
        if not isinstance(item, Mapping):
            raise AnswerError(f"malformed Prometheus answer: a series is a JSON {_kind(item)}")
        if "histogram" in item or "histograms" in item:
            raise AnswerError(
                "the answer holds native histogram samples: query a number out of them "
                "(histogram_quantile, histogram_count, histogram_sum)"
            )
        yield item


def _labels(item: Mapping[str, Any]) -> dict[str, str]:
    metric = item.get("metric", {})
    if not isinstance(metric, Mapping):
        raise AnswerError("malformed Prometheus answer: `metric` is not an object")
    return {str(k): str(v) for k, v in metric.items()}


def _instant(item: Mapping[str, Any]) -> dict[str, Any]:
    timestamp, value = _pair(item.get("value"))
    return {"labels": _labels(item), "value": value, "timestamp": timestamp}


def _range(item: Mapping[str, Any]) -> tuple[dict[str, Any], list[float]]:
    """A matrix series' fields (statistics over its samples) and the samples themselves."""
    points = item.get("values")
    if not isinstance(points, list) or not points:
        raise AnswerError("malformed Prometheus answer: a range series without `values`")
    samples = [_pair(point)[1] for point in points]
    numbers = [v for v in samples if not math.isnan(v)]
    last = samples[-1]
    fields = {
        "labels": _labels(item),
        "value": last,
        "first": samples[0],
        "last": last,
        "min": min(numbers) if numbers else math.nan,
        "max": max(numbers) if numbers else math.nan,
        "avg": math.fsum(numbers) / len(numbers) if numbers else math.nan,
        "samples": len(samples),
        "nan": len(samples) - len(numbers),
    }
    return fields, samples


def _pair(point: Any, *, as_text: bool = False) -> tuple[float, Any]:
    """A `[timestamp, "value"]` pair; the value is a float ("NaN", "+Inf" included)."""
    if not (isinstance(point, list) and len(point) == 2 and isinstance(point[1], str)):
        raise AnswerError(f"malformed Prometheus answer: sample {_short(point)}")
    try:
        timestamp = float(point[0])
        return timestamp, point[1] if as_text else float(point[1])
    except (TypeError, ValueError):
        raise AnswerError(f"malformed Prometheus answer: sample {_short(point)}") from None


# -- text for the console and `steps.ID.output` -------------------------------------------------


def describe(fields: Mapping[str, Any]) -> str:
    """One line per series, PromQL style: `errors{status="503"} 0.25` (range: its stats)."""
    series: Sequence[Mapping[str, Any]] = fields["series"]
    if not series:
        return "no series: the query matched nothing (empty result)\n"
    if fields["result_type"] in ("scalar", "string"):
        return f"{fields['result_type']} {format_value(fields['value'])}\n"
    lines = []
    for item in series[:OUTPUT_SERIES]:
        name = series_name(item["labels"])
        if "samples" in item:
            stats = " ".join(f"{k}={format_value(item[k])}" for k in ("min", "max", "avg"))
            lines.append(
                f"{name} last={format_value(item['last'])} {stats} ({item['samples']} samples)"
            )
        else:
            lines.append(f"{name} {format_value(item['value'])}")
    if len(series) > OUTPUT_SERIES:
        lines.append(f"... and {len(series) - OUTPUT_SERIES} more series")
    lines += [f"warning: {w}" for w in fields.get("warnings", ())]
    return "\n".join(lines) + "\n"


def series_name(labels: Mapping[str, str]) -> str:
    """`name{label="value", ...}` the way Prometheus prints a series; `{}` when unlabelled."""
    name = labels.get("__name__", "")
    inner = ", ".join(f'{k}="{_escape(v)}"' for k, v in labels.items() if k != "__name__")
    return f"{name}{{{inner}}}" if inner or not name else name


def format_value(value: Any) -> str:
    """Prometheus' spelling of a sample: NaN, +Inf, -Inf, else the shortest exact float."""
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _kind(value: Any) -> str:
    """A JSON value's kind in JSON's words."""
    kinds = ((Mapping, "object"), (list, "array"), (str, "string"), (bool, "boolean"))
    return next((name for cls, name in kinds if isinstance(value, cls)), "number or null")


def _short(value: Any) -> str:
    """`value` for an error message: its repr, or a string itself, at most 80 characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


# -- the spec --------------------------------------------------------------------------------


def side_effect_free(config: Mapping[str, Any]) -> bool:
    """Every query: a GET of Prometheus' read-only query API (`/api/v1/query` or
    `/api/v1/query_range` under the base URL, which may hold no query string), with
    only the query, its times and a timeout as parameters; PromQL has no statement that
    writes."""
    return True


SPEC = ExecutorSpec(
    name="prometheus",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=True,
    side_effect_free_when=side_effect_free,
    default_expect=("count > 0",),
    url_fields=("url",),
    description="Run one PromQL query, instant or over a range, against Prometheus' HTTP API "
    "(httpx, TLS verified, a total timeout) and expose the answer as values with labels; "
    "range series get first/last/min/max/avg, and NaN, Inf and an empty answer stay visible.",
    result_fields=RESULT_FIELDS,
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The prometheus executor."""
    return [SPEC]
