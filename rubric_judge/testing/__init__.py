"""Test doubles shipped with the package: a loopback OpenAI-compatible judge server with fault
injection (`loopback.LoopbackJudge`), used by the tests, the benches and the offline demo judge."""
