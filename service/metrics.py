"""Prometheus metrics of one app, on the app's own registry.

A registry per app (not prometheus-client's global one) lets several apps live in one process,
as they do in the tests, without "Duplicated timeseries" errors. Names follow Prometheus practice:
seconds with the unit in the name, as TGI and BentoML do.
"""

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

# From 1 ms to 30 s: a cached tiny model answers in milliseconds, a big beam on a CPU in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)


class Metrics:
    """The service's metrics; `render()` is the body of `GET /metrics`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory, CPU time, open files
        self.request_duration = Histogram(
            "glimpse_request_duration_seconds",
            "HTTP request latency, by route template and status code.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_failures = Counter(
            "glimpse_request_failures",
            "Requests answered with an error, by the error's stable code.",
            ["code"],
            registry=self.registry,
        )
        self.queue_duration = Histogram(
            "glimpse_queue_duration_seconds",
            "Time a request waited for the model worker.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            "glimpse_inference_duration_seconds",
            "Model time of one batch, by task (encode, caption, vqa).",
            ["task"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "glimpse_batch_size",
            "Images per forward pass, by task (encode, caption, vqa).",
            ["task"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_size = Gauge(
            "glimpse_queue_size",
            "Requests waiting for the model worker.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
