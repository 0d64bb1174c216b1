"""`mediastack verify` against local servers that meet and that miss the targets (loopback, bounded)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import yaml
from typer.testing import CliRunner

from conftest import ROOT
from fake_apps import loopback
from mediastack_cli.main import app

runner = CliRunner()


@contextmanager
def jellyfin(delays_ms: dict[str, float], failing: frozenset[str] = frozenset()) -> Iterator[tuple[str, list]]:
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            seen.append((path, self.headers.get("Authorization", "")))
            time.sleep(delays_ms.get(path, 0) / 1000)
            status = 500 if path in failing else 200
            body = b"Healthy" if path == "/health" else b"{}"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with loopback(Handler) as url:
        yield url, seen


def project_with_key(tmp_path, slo: dict[str, float] | None = None) -> str:
    import shutil

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project)
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["mediastack:jellyfin_api_key"] = "k3y"
    if slo:
        doc["config"]["mediastack:slo"] = slo
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    return str(project)


ARGS = ["--requests", "30", "--concurrency", "4", "--warmup", "2", "--duration", "30"]


# Targets ten times the stand-in's own delays and more: what is tested is the verdict, not how busy the test
# machine is (a loaded CI runner adds tens of milliseconds to a loopback request).
GENEROUS = {"health_p95_ms": 1500, "api_p95_ms": 1500, "search_p95_ms": 2000, "page_p95_ms": 2000}


def test_a_fast_stack_meets_its_slos(tmp_path) -> None:
    with jellyfin({"/health": 2, "/System/Info/Public": 5, "/Items": 20, "/web/index.html": 10}) as (url, seen):
        project = project_with_key(tmp_path, GENEROUS)
        result = runner.invoke(app, ["verify", "--stack", "dev", "--project", project, "--base-url", url, *ARGS])
    assert result.exit_code == 0, result.output
    for endpoint in ("health", "api", "search", "page"):
        assert endpoint in result.output
    assert result.output.count("ok") >= 4
    assert ("/Items", 'MediaBrowser Token="k3y"') in seen
    assert sum(1 for path, _ in seen if path == "/health") == 30 + 2  # bounded: requests + warm-up


def test_a_slow_search_misses_and_exits_1(tmp_path) -> None:
    with jellyfin({"/Items": 650}) as (url, _):
        args = ["--base-url", url, "--requests", "12", "--concurrency", "4", "--warmup", "1"]
        result = runner.invoke(app, ["verify", "--stack", "dev", "--project", project_with_key(tmp_path), *args])
    assert result.exit_code == 1
    assert "SLO missed: search" in result.output
    assert "missed" in result.output


def test_errors_count_against_the_slo() -> None:
    with jellyfin({}, failing=frozenset({"/web/index.html"})) as (url, _):
        result = runner.invoke(app, ["verify", "--stack", "dev", "--project", str(ROOT), "--base-url", url, *ARGS])
    assert result.exit_code == 1
    assert "HTTP 500" in result.output and "SLO missed: page" in result.output
    assert "search not measured" in result.output


def test_nothing_answering_is_a_miss_not_a_crash() -> None:
    args = ["--base-url", "http://127.0.0.1:9", "--requests", "3", "--warmup", "0", "--duration", "10"]
    result = runner.invoke(app, ["verify", "--stack", "dev", "--project", str(ROOT), *args])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "ConnectError" in result.output
