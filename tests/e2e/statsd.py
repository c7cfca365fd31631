"""A StatsD listener for the stack's metrics (a UDP socket): what the shared stack sends to."""

from __future__ import annotations

import re
import socket
import threading
from collections import defaultdict

# StatsD's line, with the tags in influxdb's form: airflow.jobqueue.queue.queued,identifier=metered:4|g
LINE = re.compile(r"^airflow\.(jobqueue\.[a-z_.]+),identifier=([a-z_]+):(-?[0-9.]+)\|(g|c|ms)$")


class StatsdListener(threading.Thread):
    """Keeps every job-queue metric received: the gauges' last values, the counters' sums, the timings."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.gauges: dict[tuple[str, str], float] = {}
        self.counters: dict[tuple[str, str], float] = defaultdict(float)
        self.timings: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                packet = self.socket.recv(65536).decode()
            except TimeoutError:
                continue
            for line in packet.splitlines():
                if match := LINE.match(line):
                    self._keep(*match.groups())

    def _keep(self, name: str, identifier: str, value: str, kind: str) -> None:
        key = (name, identifier)
        with self.lock:
            if kind == "g":
                self.gauges[key] = float(value)
            elif kind == "c":
                self.counters[key] += float(value)
            else:
                self.timings[key].append(float(value))

    def gauge(self, name: str, identifier: str) -> float | None:
        with self.lock:
            return self.gauges.get((name, identifier))

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)
        self.socket.close()
