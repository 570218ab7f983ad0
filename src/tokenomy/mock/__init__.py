"""The mock upstream: an OpenAI- and Anthropic-compatible provider for demos, tests and
benchmarks, with deterministic completions, realistic usage and injectable faults.

Routes: ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/responses``,
``/v1/embeddings``, ``/v1/messages`` (Anthropic), ``GET /v1/models[/{id}]``, ``/health``.

Usage (see :mod:`tokenomy.mock.text`): prompt tokens are counted with o200k_base
(``tokens.count_chat``); the completion has ``x-mock-completion-tokens``, else the request's
max tokens, else ``MockOptions.default_completion_tokens`` tokens, one stream chunk each.
Prompts of >= 1024 tokens report ``(prompt_tokens // 2) // 128 * 128`` cached tokens;
models whose name contains ``reason`` spend half their completion tokens on reasoning.

Headers a caller can send to steer one request:

- ``x-mock-fault: error|error-429|timeout|truncate|malformed|slow`` (overrides the rates)
- ``x-mock-fault-sequence: error,ok`` (faults in turn for successive requests that send the
  same sequence; ``ok`` is none): a provider that fails, then recovers
- ``x-mock-completion-tokens: N`` (completion length, over ``max_tokens`` and the default)
- ``x-mock-latency-ms: MS`` (overrides ``MockOptions.latency_ms``)

Faults (header or seeded rates, see :mod:`tokenomy.mock.options`): ``error`` 500,
``error-429`` 429 with ``retry-after: 1``, ``timeout`` no answer for ``timeout_seconds``
(3600 s; ends when the client leaves), ``truncate`` a stream of half the token chunks with
no finish/usage chunk and no ``[DONE]`` (Anthropic: no ``message_delta``/``message_stop``)
or a plain body whose connection drops half-way, ``malformed`` a 200 whose body is not
JSON or one extra SSE event that is not JSON, ``slow`` 10 tokens/s.
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
