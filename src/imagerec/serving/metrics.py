"""Counters and histograms, rendered in the Prometheus text exposition format.

A few dozen lines do what the service needs (labelled counters, gauges and
cumulative histograms, thread-safe), so no extra dependency is pulled in.

>>> metrics = Metrics()
>>> metrics.requests.inc(route="/v1/predict", method="POST", status="200")
>>> metrics.latency.observe(0.02, route="/v1/predict")
>>> text = metrics.render()
>>> 'imagerec_requests_total{method="POST",route="/v1/predict",status="200"} 1' in text
True
>>> 'imagerec_request_duration_seconds_bucket{route="/v1/predict",le="0.025"} 1' in text
True
"""

from __future__ import annotations

import bisect
import math
import threading
from typing import Iterable

__all__ = ["Counter", "Gauge", "Histogram", "Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelKey = tuple[tuple[str, str], ...]


def _key(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted((name, str(value)) for name, value in labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(key: LabelKey, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = [*key, *extra]
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A value that only goes up, one per label combination."""

    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(_key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_format_labels(key)} {_format_value(v)}" for key, v in items]


class Gauge(Counter):
    """A value that goes up and down (queue depth, models loaded)."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[_key(labels)] = float(value)


class Histogram(_Metric):
    """Cumulative buckets, a sum and a count per label combination."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Iterable[float]) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self._series: dict[LabelKey, list[float]] = {}  # per-bucket counts, then +Inf, sum

    def observe(self, value: float, **labels: str) -> None:
        key = _key(labels)
        slot = bisect.bisect_left(self.buckets, value)  # first bucket with le >= value
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
            series[slot] += 1
            series[-1] += value

    def count(self, **labels: str) -> int:
        with self._lock:
            series = self._series.get(_key(labels))
            return int(sum(series[:-1])) if series else 0

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((key, list(series)) for key, series in self._series.items())
        for key, series in items:
            running = 0.0
            for bound, count in zip((*self.buckets, math.inf), series[:-1]):
                running += count
                le = "+Inf" if math.isinf(bound) else _format_value(bound)
                lines.append(f"{self.name}_bucket{_format_labels(key, [('le', le)])} {_format_value(running)}")
            lines.append(f"{self.name}_sum{_format_labels(key)} {_format_value(series[-1])}")
            lines.append(f"{self.name}_count{_format_labels(key)} {_format_value(running)}")
        return lines


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """Everything the service counts; one instance per app."""

    def __init__(self) -> None:
        self.requests = Counter("imagerec_requests_total", "HTTP requests by route, method and status code.")
        self.latency = Histogram(
            "imagerec_request_duration_seconds", "Time from request start to response, by route.", _LATENCY_BUCKETS
        )
        self.errors = Counter("imagerec_errors_total", "Error responses and per-image errors, by route and kind.")
        self.images = Counter("imagerec_images_total", "Images received for recognition, by model and outcome.")
        self.batch_size = Histogram("imagerec_batch_size", "Images per backend batch, by model.", _BATCH_BUCKETS)
        self.inference = Histogram(
            "imagerec_batch_duration_seconds", "Backend time per batch, by model.", _LATENCY_BUCKETS
        )
        self.queue_depth = Gauge("imagerec_queue_depth", "Images admitted and not yet answered, by model.")
        self.rejected = Counter("imagerec_rejected_total", "Requests refused because the queue was full, by model.")

    def all(self) -> list[_Metric]:
        return [
            self.requests,
            self.latency,
            self.errors,
            self.images,
            self.batch_size,
            self.inference,
            self.queue_depth,
            self.rejected,
        ]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
