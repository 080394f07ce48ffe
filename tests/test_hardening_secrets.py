"""Keys and URL credentials stay out of everything rubric-judge prints or writes, and credentials
in `--api-base` work on both transports.

The end-to-end tests run `rubric-judge score`, `export` and `report` as subprocesses against a
loopback judge that answers 401 and repeats the Authorization header it got, as some proxies
do, then look for the secrets in stdout, stderr, every text cell of the database, the raw bytes
of the database and cache files, the CSV export and the HTML report.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import duckdb
import httpx
import pytest
from rich.console import Console

from rubric_judge.cli.output import RedactingConsole
from rubric_judge.judge import transport
from rubric_judge.redaction import (
    REDACTED,
    redact,
    redact_column,
    redact_data,
    redact_logging,
    register_secret,
    register_url,
    reset_secrets,
    secret_values,
)
from rubric_judge.testing.loopback import Fault
from tests.conftest import RecordingJudge, id_policy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "illugenbench"
CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]
JUDGE = "openai/test-judge"
N_CALLS = 18  # the IlluGenBench example, one call per task and dimension

JUDGE_KEY = "rk-SECRET-5678"  # RUBRIC_JUDGE_API_KEY: the key sent when it is set
OPENAI_KEY = "sk-OPENAI-SECRET-9999"  # OPENAI_API_KEY: the key sent otherwise
USER, PASSWORD = "judge-user", "pw-HUNTER2-pw"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def cli_env(**keys: str) -> dict[str, str]:
    """The environment of a CLI run: this one without any credentials of its own, plus `keys`."""
    env = {name: value for name, value in os.environ.items() if not name.endswith(("_API_KEY", "_TOKEN"))}
    return {**env, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "RUBRIC_JUDGE_BACKOFF_BASE_S": "0.01", **keys}


def score(server_url: str, transport_name: str, model: str, db: Path, cache: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return cli("score", str(EXAMPLE / "tasks"), "--data", str(EXAMPLE / "manifest.jsonl"), "--outputs", str(EXAMPLE / "outputs" / "good-model"),
               "--model", model, "--judge", JUDGE, "--api-base", server_url, "--transport", transport_name,
               "--db", str(db), "--cache-dir", str(cache), env=env)


def database_text(db: Path) -> str:
    """Every row of every table, as text: each VARCHAR, JSON and list cell included."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [row[0] for row in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()]
        return "\n".join(repr(row) for table in tables for row in con.execute(f'SELECT * FROM "{table}"').fetchall())
    finally:
        con.close()


def raw_bytes(*paths: Path) -> bytes:
    """The bytes of these files, and of every file under these folders."""
    files = [p for path in paths if path.exists() for p in ([path] if path.is_file() else sorted(path.rglob("*"))) if p.is_file()]
    return b"".join(p.read_bytes() for p in files)


def assert_absent(secrets: list[str], **places: str | bytes) -> None:
    for secret in secrets:
        for place, content in places.items():
            needle: str | bytes = secret.encode() if isinstance(content, bytes) else secret
            assert needle not in content, f"{secret!r} found in {place}"


# ---------------------------------------------------------------------------------------------
# A judge that echoes the key: nothing of it anywhere


@pytest.fixture(scope="module")
def echoed_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Two score runs into one database against a judge that answers every request 401 with the
    Authorization header in its message, then export and report: `direct` with both keys set
    (RUBRIC_JUDGE_API_KEY is sent), `litellm` with OPENAI_API_KEY alone (that key is sent)."""
    work = tmp_path_factory.mktemp("echo")
    db, cache = work / "results.duckdb", work / "cache"
    with RecordingJudge(policy=id_policy) as server:
        server.fault_rule = lambda body, index: Fault.http_401_echo()
        runs = {
            "direct": score(server.base_url, "direct", "m-direct", db, cache, cli_env(RUBRIC_JUDGE_API_KEY=JUDGE_KEY, OPENAI_API_KEY=OPENAI_KEY)),
            "litellm": score(server.base_url, "litellm", "m-litellm", db, cache, cli_env(OPENAI_API_KEY=OPENAI_KEY)),
        }
        sent = list(server.authorization)
    env = cli_env(RUBRIC_JUDGE_API_KEY=JUDGE_KEY, OPENAI_API_KEY=OPENAI_KEY)
    export = cli("export", "--table", "verdicts", "--out", str(work / "verdicts.csv"), "--db", str(db), env=env)
    report = cli("report", "--db", str(db), "--out", str(work / "report.html"), "--cache-dir", str(cache), env=env)
    yield {"runs": runs, "sent": sent, "db": db, "cache": cache, "work": work, "others": [export, report]}


def test_the_echoing_judge_really_received_and_echoed_both_keys(echoed_runs: dict) -> None:
    # Without this the other tests could pass because no key was ever sent.
    assert echoed_runs["sent"] == [f"Bearer {JUDGE_KEY}"] * N_CALLS + [f"Bearer {OPENAI_KEY}"] * N_CALLS
    con = duckdb.connect(str(echoed_runs["db"]), read_only=True)
    errors = con.execute("SELECT error FROM judge_calls").fetchall()
    con.close()
    assert len(errors) == 2 * N_CALLS
    assert all(f"Authorization: Bearer {REDACTED}" in error for (error,) in errors)


@pytest.mark.parametrize("run", ["direct", "litellm"])
def test_no_key_on_the_terminal(echoed_runs: dict, run: str) -> None:
    result = echoed_runs["runs"][run]
    assert result.returncode == 1, result.stderr[-2000:]  # every call failed: a failed run, not a crash
    assert "Unauthorized" in result.stderr and REDACTED in result.stderr  # the errors are still shown
    assert_absent([JUDGE_KEY, OPENAI_KEY], stdout=result.stdout, stderr=result.stderr)


def test_no_key_in_the_database_exports_or_report(echoed_runs: dict) -> None:
    work = echoed_runs["work"]
    for other in echoed_runs["others"]:
        assert other.returncode == 0, other.stderr[-2000:]
        assert_absent([JUDGE_KEY, OPENAI_KEY], stdout=other.stdout, stderr=other.stderr)
    cells = database_text(echoed_runs["db"])
    assert cells.count(REDACTED) >= 2 * N_CALLS  # judge_calls.error and verdicts.reasoning hold the redacted echo
    assert_absent([JUDGE_KEY, OPENAI_KEY],
                  database_cells=cells,
                  database_file=raw_bytes(work / "results.duckdb", work / "results.duckdb.wal"),
                  cache_files=raw_bytes(echoed_runs["cache"]),
                  verdicts_csv=(work / "verdicts.csv").read_text(),
                  report_html=(work / "report.html").read_text())
    assert REDACTED in (work / "verdicts.csv").read_text()


# ---------------------------------------------------------------------------------------------
# Credentials in --api-base


@pytest.mark.parametrize("transport_name", ["direct", "litellm"])
def test_credentials_in_the_api_base_are_sent_as_basic_auth_on_both_transports(tmp_path: Path, transport_name: str) -> None:
    with RecordingJudge(policy=id_policy) as server:
        # The first request is answered 401 with its Authorization header repeated: the echo of a
        # Basic header is base64 of user:password, which must not reach any output either.
        server.faults.append(Fault.http_401_echo())
        port = server.port
        url = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/v1"
        result = score(url, transport_name, "m", tmp_path / "r.duckdb", tmp_path / "cache", cli_env(RUBRIC_JUDGE_API_KEY=JUDGE_KEY))
        sent = list(server.authorization)
    assert "Cannot combine AUTHORIZATION" not in result.stderr
    # Every request carried the URL's credentials, as httpx sends them; the Bearer key gives way.
    assert sent == [BASIC] * N_CALLS, result.stderr[-2000:]
    con = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    statuses = dict(con.execute("SELECT status, count(*) FROM judge_calls GROUP BY ALL").fetchall())
    api_base = con.execute("SELECT config->>'judge_api_base' FROM runs").fetchone()[0]
    con.close()
    assert statuses == {"ok": N_CALLS - 1, "error": 1}
    assert api_base == f"http://127.0.0.1:{port}/v1"
    secrets = [PASSWORD, BASIC.removeprefix("Basic "), f"{USER}:{PASSWORD}", JUDGE_KEY]
    assert_absent(secrets, stdout=result.stdout, stderr=result.stderr, database_cells=database_text(tmp_path / "r.duckdb"),
                  database_file=raw_bytes(tmp_path / "r.duckdb"), cache_files=raw_bytes(tmp_path / "cache"))


def test_credentials_are_split_off_as_httpx_would_send_them() -> None:
    url = "https://us%40er:p%40ss%3Aw%C3%B6rd@judge.example.org:8443/v1?api-version=2024-06-01"
    clean, authorization = transport.split_credentials(url)
    assert clean == "https://judge.example.org:8443/v1?api-version=2024-06-01"
    request = httpx.Request("POST", url)
    httpx_header = next(httpx.BasicAuth(request.url.username, request.url.password).auth_flow(request)).headers["Authorization"]
    assert authorization == httpx_header == "Basic " + base64.b64encode("us@er:p@ss:wörd".encode()).decode()
    assert transport.split_credentials("http://127.0.0.1:8000/v1") == ("http://127.0.0.1:8000/v1", None)
    assert transport.split_credentials(None) == (None, None)


# ---------------------------------------------------------------------------------------------
# The redaction step itself


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A registry that reads this test's environment, forgotten again afterwards."""
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_TOKEN")):
            monkeypatch.delenv(name)
    reset_secrets()
    yield
    reset_secrets()


def test_environment_credentials_are_secrets_but_short_or_plain_values_are_not(secrets: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-0123456789")
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijkl")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    monkeypatch.setenv("SHORT_API_KEY", "abc123")  # too short to be matched as free text
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("UNRELATED_SETTING", "sk-not-a-credential-name")
    reset_secrets()
    text = "keys sk-ant-0123456789 hf_abcdefghijkl wJalrXUtnFEMI/K7MDENG; abc123 false sk-not-a-credential-name"
    assert redact(text) == f"keys {REDACTED} {REDACTED} {REDACTED}; abc123 false sk-not-a-credential-name"


def test_a_key_is_found_in_the_forms_an_echo_carries_it(secrets: None) -> None:
    key = 'sk-live"/+key=42'
    register_secret(key)
    echoes = [
        f"Authorization: Bearer {key}",
        json.dumps({"error": {"message": f"bad header {key}"}}),  # JSON-escaped
        "https://proxy/?k=" + quote(key, safe=""),  # percent-encoded
        "echo " + base64.b64encode(key.encode()).decode(),
    ]
    for echo in echoes:
        assert "sk-live" not in redact(echo) and REDACTED in redact(echo), echo


def test_url_credentials_are_secrets_and_userinfo_of_any_url_is_hidden(secrets: None) -> None:
    register_url("http://judge-user:pw-HUNTER2-pw@10.0.0.1:8000/v1?api-key=query-secret-1&api-version=2024-06-01")
    assert redact("got Authorization: " + BASIC) == f"got Authorization: Basic {REDACTED}"
    assert redact("password pw-HUNTER2-pw, query-secret-1, 2024-06-01") == f"password {REDACTED}, {REDACTED}, 2024-06-01"
    # Not registered, but a URL's userinfo is a credential wherever it turns up.
    assert redact("proxy http://bob:hunter@proxy.example.org:3128 refused") == f"proxy http://{REDACTED}@proxy.example.org:3128 refused"


def test_a_column_is_redacted_as_its_cells_are_one_by_one(secrets: None) -> None:
    import random

    register_secret(JUDGE_KEY)
    register_url("http://judge-user:pw-HUNTER2-pw@10.0.0.1:8000/v1")
    pieces = ["a prompt", "", "mail bob@example.org", f"echo {JUDGE_KEY}", "pw-HUNTER2-pw", "see http://u:p@host/x", "http://", "user@",
              "https://host/a@b", "x" * 300, "\u00e9\u00e8 text", JUDGE_KEY[:10], JUDGE_KEY[10:]]
    cells = [None, 0, 1.5, True, ["a", JUDGE_KEY], {"reasoning": f"saw {JUDGE_KEY}"}, ("t", "u")]
    generator = random.Random(7)
    checked = 0
    for _ in range(400):
        column = [generator.choice(pieces) + generator.choice(["", " ", "http://a"]) + generator.choice(pieces) if generator.random() < 0.7
                  else generator.choice(cells) for _ in range(generator.randint(0, 8))]
        assert redact_column(column) == [redact_data(cell) for cell in column], column
        checked += any(isinstance(cell, str) and redact(cell) != cell for cell in column)
    assert checked > 50  # many columns did hold something to redact
    clean = ["a prompt", None, 3, "mail bob@example.org"]
    assert redact_column(clean) == clean
    # Split across two cells, a key is in neither: nothing is replaced.
    assert redact_column([JUDGE_KEY[:10], JUDGE_KEY[10:]]) == [JUDGE_KEY[:10], JUDGE_KEY[10:]]


def test_an_error_message_is_redacted_before_it_is_cut(secrets: None) -> None:
    # The key straddles the 500-character cut: cut first, its first half would no longer match.
    register_secret(JUDGE_KEY)
    body = json.dumps({"error": {"message": "x" * 480 + f" Bearer {JUDGE_KEY}"}}).encode()
    message = transport._error_message(body)
    assert len(message) == 500 and "SECRET" not in message and message.endswith("Bearer ***redacted*")


def test_the_console_redacts_a_key_that_rich_would_fold_across_lines(secrets: None) -> None:
    register_secret(JUDGE_KEY)
    out = io.StringIO()
    console = RedactingConsole(file=out, width=12, highlight=False)
    console.print(f"error: {JUDGE_KEY}{JUDGE_KEY}")
    plain = io.StringIO()
    Console(file=plain, width=12, highlight=False).print(f"error: {JUDGE_KEY}{JUDGE_KEY}")
    assert JUDGE_KEY[:7] in plain.getvalue()  # an ordinary console shows (parts of) it
    assert "SECRET" not in out.getvalue() and "redacted" in out.getvalue()


def test_log_records_are_redacted_whatever_logs_them(secrets: None) -> None:
    register_secret(JUDGE_KEY)
    factory = logging.getLogRecordFactory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("some.library")
    logger.addHandler(handler)
    try:
        redact_logging()
        logger.error("API call failed: %s", f"Bearer {JUDGE_KEY}")
        try:
            raise ValueError(f"echoed {JUDGE_KEY}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(factory)
    assert JUDGE_KEY not in stream.getvalue() and stream.getvalue().count(REDACTED) == 2
    assert JUDGE_KEY in secret_values()
