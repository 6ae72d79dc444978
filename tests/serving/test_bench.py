"""The bench's wrk parsing (the servers themselves are measured by `learnloop bench serve`, not in tests)."""

from __future__ import annotations

import pytest

from learnloop.errors import Unavailable
from serving._bench import parse_wrk

WRK_OUTPUT = """Running 8s test @ http://127.0.0.1:3011/predict_risk
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.01ms    3.20ms  61.07ms   90.12%
    Req/Sec     1.34k   102.11     1.50k    80.00%
  Latency Distribution
     50%  850.00us
     75%   12.50ms
     90%   14.10ms
     99%    1.20s
  10712 requests in 8.00s, 2.31MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   1338.95
Transfer/sec:    295.63KB
"""


def test_parse_wrk_reads_percentiles_in_every_unit_and_counts_errors():
    row = parse_wrk(WRK_OUTPUT)
    assert row == {"p50_ms": 0.85, "p99_ms": 1200.0, "rps": 1339.0, "requests": 10712, "non_2xx": 4,
                   "socket_errors": 3}


def test_parse_wrk_refuses_output_without_percentiles():
    with pytest.raises(Unavailable):
        parse_wrk("Requests/sec: 10\n 5 requests in 1s")
