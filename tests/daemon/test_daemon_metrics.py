"""Metrics end to end: a container publishes /host/prometheus.prom atomically, the daemon
scrapes it (labels added, 1 MB cap, format checked), adds its own per-container metrics, and
serves them on HTTP /metrics and the control socket; promtool and a real Prometheus accept
them."""

import json
import os
import shutil
import socket
import subprocess
import urllib.request

import pytest

from helpers.services import service_input

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")

PUBLISH = ("printf '# HELP app_requests_total Requests.\\n# TYPE app_requests_total counter\\n"
           "app_requests_total{path=\"/\"} 42\\n' > /host/.m.tmp && "
           "mv /host/.m.tmp /host/prometheus.prom")


def metrics_daemon(daemon):
    with open(daemon.config, "w") as f:
        json.dump({"metrics_address": "127.0.0.1:0", "metrics_interval_s": 1}, f)
    daemon.start()
    return daemon.call("status")["device"]["metrics_address"]


def fetch(address):
    with urllib.request.urlopen("http://%s/metrics" % address, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return answer.read().decode()


def test_container_metrics_are_scraped_labelled_and_served(daemon, images, tmp_path):
    address = metrics_daemon(daemon)
    daemon.import_service(service_input("met", images["good"]))
    daemon.cli("instance", "add", "met", "--id", "m1")
    daemon.wait_for(lambda: daemon.inspect("m1")["good_version"] == 1, "committed")
    daemon.cli("exec", "m1", "sh", "-c", PUBLISH)
    body = daemon.wait_for(lambda: (lambda b: "app_requests_total{" in b and b)(
        fetch(address)), "the container's metric")
    line = [l for l in body.splitlines() if l.startswith("app_requests_total{")][0]
    for label in ('instance="m1"', 'service="met"', 'version="1"', 'path="/"'):
        assert label in line
    assert line.endswith(" 42")
    assert 'edgert_container_up{instance="m1",service="met"} 1' in body
    assert "edgert_container_memory_bytes{" in body
    assert daemon.cli("metrics").stdout.decode().count("app_requests_total{") == 1
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=body.encode(),
                               capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr
    # a file over the 1 MB cap is refused and counted; the last good samples stay
    daemon.cli("exec", "m1", "sh", "-c", "head -c 1100000 /dev/zero | tr '\\0' '#' "
               "> /host/.big && mv /host/.big /host/prometheus.prom")
    body = daemon.wait_for(lambda: (lambda b: 'reason="too_large"} 0' not in b and
                                    'reason="too_large"}' in b and b)(fetch(address)),
                           "the too-large file counted")
    assert "app_requests_total{" in body
    # a malformed file likewise
    daemon.cli("exec", "m1", "sh", "-c", "echo 'bad metric line{' > /host/.b && "
               "mv /host/.b /host/prometheus.prom")
    daemon.wait_for(lambda: 'reason="invalid"} 0' not in fetch(address), "invalid counted")
    # only GET /metrics is served
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen("http://%s/other" % address, timeout=5)
    assert err.value.code == 404


def test_a_real_prometheus_scrapes_the_endpoint(daemon, images, tmp_path):
    if not shutil.which("prometheus"):
        pytest.skip("needs prometheus (Debian package prometheus)")
    address = metrics_daemon(daemon)
    daemon.import_service(service_input("prom", images["good"]))
    daemon.cli("instance", "add", "prom", "--id", "p1")
    daemon.wait_for(lambda: daemon.inspect("p1")["state"] == "running", "running")
    daemon.cli("exec", "p1", "sh", "-c", PUBLISH)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        web_port = s.getsockname()[1]
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                      "  - job_name: edgert\n    honor_labels: true\n    static_configs:\n"
                      "      - targets: ['%s']\n" % address)
    proc = subprocess.Popen(["prometheus", "--config.file", str(config),
                             "--storage.tsdb.path", str(tmp_path / "tsdb"),
                             "--web.listen-address", "127.0.0.1:%d" % web_port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def query(expr):
            url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (
                web_port, urllib.request.quote(expr))
            try:
                with urllib.request.urlopen(url, timeout=3) as answer:
                    return json.loads(answer.read())["data"]["result"]
            except OSError:
                return []
        up = daemon.wait_for(lambda: [r for r in query("up") if r["value"][1] == "1"],
                             "prometheus scraping edgertd", timeout=60)
        assert up
        result = daemon.wait_for(lambda: query('app_requests_total{instance="p1"}'),
                                 "the container's metric in prometheus", timeout=30)
        assert result[0]["metric"]["service"] == "prom" and result[0]["value"][1] == "42"
    finally:
        proc.terminate()
        proc.wait(20)
