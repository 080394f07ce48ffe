"""Small pieces of a scoring run that protect secrets."""

from rubric_judge.run import redact_url


def test_api_base_credentials_are_never_kept():
    assert redact_url("https://user:sk-secret@llm.example.org:8443/v1?api-key=sk-2") == "https://llm.example.org:8443/v1"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert redact_url("builtin:offline") == "builtin:offline"
    assert redact_url(None) is None
