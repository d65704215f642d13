"""The overhead benchmark behind `p402 bench` (see docs/benchmarks.md).

Everything runs on loopback: a fast fake OpenAI-compatible upstream, the
systems under test (p402, a bare pass-through proxy, the LiteLLM proxy) each in
its own pinned process, and a load generator that measures from the outside.
"""
