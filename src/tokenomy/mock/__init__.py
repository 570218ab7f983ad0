"""The mock upstream: an OpenAI- and Anthropic-compatible provider for demos, tests and
benchmarks, with deterministic completions, realistic usage and injectable faults.

Headers a caller can send to steer one request:

- ``x-mock-fault: error|error-429|timeout|truncate|malformed|slow`` (overrides the rates)
- ``x-mock-completion-tokens: N`` (completion length, over ``max_tokens`` and the default)
- ``x-mock-latency-ms: MS`` (overrides ``MockOptions.latency_ms``)
"""

from tokenomy.mock.app import MODELS, create_mock_app
from tokenomy.mock.options import Fault, MockOptions
from tokenomy.mock.requests import COMPLETION_TOKENS_HEADER, FAULT_HEADER, LATENCY_HEADER

__all__ = [
    "COMPLETION_TOKENS_HEADER",
    "FAULT_HEADER",
    "LATENCY_HEADER",
    "MODELS",
    "Fault",
    "MockOptions",
    "create_mock_app",
]
