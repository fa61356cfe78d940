"""Container metrics (edgert/host/metrics.py): format validation, capped reads, the scraper."""

import os
import shutil
import subprocess

import pytest

from edgert.host import metrics
from edgert.host.metrics import MetricsError, MetricsTooLarge, Scraper, read_capped, validate

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

GOOD = b"""# A plain comment
# HELP http_requests_total The total number of HTTP requests.\\nSecond line \\\\ here.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000
http_requests_total{ method = "get" , code="200", } 7

# Escaping in label values:
msdos_file_access_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Gone:\\n\\"FILE.TXT\\""} 1.458255915e9
metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
nan_value NaN
neg:inf -Inf
\t  indented_sample 1
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
# TYPE up gauge
up .5
"""


def test_the_documentation_example_is_valid():
    families, samples = validate(GOOD)
    assert families["http_requests_total"] == {
        "type": "counter",
        "help": "The total number of HTTP requests.\nSecond line \\ here."}
    assert families["http_request_duration_seconds"]["type"] == "histogram"
    assert samples[2] == ("http_requests_total", "http_requests_total",
                          (("method", "get"), ("code", "200")), "7", None)
    assert samples[3][2] == (("path", "C:\\DIR\\FILE.TXT"),
                             ("error", 'Gone:\n"FILE.TXT"'))
    assert samples[5][3:] == ("+Inf", "-3982045")
    buckets = [s for s in samples if s[0] == "http_request_duration_seconds"]
    assert [s[1] for s in buckets] == ["http_request_duration_seconds_bucket"] * 2 + [
        "http_request_duration_seconds_sum", "http_request_duration_seconds_count"]
    assert len(samples) == 17


def test_empty_file_and_comments_only_are_valid():
    assert validate(b"") == ({}, [])
    assert validate(b"# nothing yet\n\n") == ({}, [])


@pytest.mark.parametrize("text,line,reason", [
    (b"a 1", 1, "does not end with a newline"),
    (b"ok 1\n\xff 2\n", 2, "not UTF-8"),
    (b"1abc 1\n", 1, "metric name '1abc' is invalid"),
    (b"a-b 1\n", 1, "metric name 'a-b' is invalid"),
    (b"a{1x=\"v\"} 1\n", 1, "label name '1x' is invalid"),
    (b"a{x:y=\"v\"} 1\n", 1, "label name 'x:y' is invalid"),
    (b"a{x=v} 1\n", 1, "must be in double quotes"),
    (b"a{x=\"v} 1\n", 1, "no closing quote"),
    (b"a{x=\"\\t\"} 1\n", 1, "invalid escape"),
    (b"a{x=\"1\" y=\"2\"} 1\n", 1, "expected ',' or '}'"),
    (b"a{x=\"1\",x=\"2\"} 1\n", 1, "label x appears twice"),
    (b"a\n", 1, "expected a value"),
    (b"a{} \n", 1, "expected a value"),
    (b"a 1 2 3\n", 1, "expected a value"),
    (b"a one\n", 1, "'one' is not a number"),
    (b"a 1_000\n", 1, "is not a number"),
    (b"a infinity\n", 1, "is not a number"),
    (b"a 1 1.5\n", 1, "timestamp '1.5'"),
    (b"a 1\na 2\n", 2, "a appears twice"),
    (b"a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n", 2, "appears twice"),
    (b"# TYPE a counter\n# TYPE a gauge\n", 2, "second TYPE"),
    (b"# HELP a x\n# HELP a y\n", 2, "second HELP"),
    (b"a 1\n# TYPE a counter\n", 2, "TYPE must come before"),
    (b"# TYPE a countr\n", 1, "'countr' is not one of counter"),
    (b"# TYPE 9a counter\n", 1, "metric name '9a' is invalid"),
    (b"a 1\nb 1\na{x=\"1\"} 1\n", 3, "must form one group"),
    (b"# TYPE h histogram\nh 1\n", 2, "its samples are h_bucket"),
    (b"# TYPE h histogram\nh_bucket 1\n", 2, "needs an le label"),
    (b"# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", 2, "le 'x' is not a number"),
    (b"# TYPE s summary\ns 1\n", 2, "need a quantile label"),
    (b"a 1\r\n", 1, "carriage return"),
    (b"# HELP a bad \\q escape\n", 1, "invalid escape"),
])
def test_malformed_files_are_refused_with_line_and_reason(text, line, reason):
    with pytest.raises(MetricsError) as err:
        validate(text)
    assert err.value.line == line and reason in err.value.reason, str(err.value)
    assert str(err.value).startswith("line %d: " % line)


# --- reading -------------------------------------------------------------------------------------

def test_read_capped_reads_up_to_the_cap_and_refuses_more(tmp_path):
    path = tmp_path / "prometheus.prom"
    path.write_bytes(b"x" * 100)
    assert read_capped(str(path), cap=100) == b"x" * 100
    with pytest.raises(MetricsTooLarge, match="101 bytes, more than the 100-byte cap"):
        path.write_bytes(b"x" * 101)
        read_capped(str(path), cap=100)


def test_the_default_cap_is_the_documented_1_mb(tmp_path):
    path = tmp_path / "prometheus.prom"
    line = b"# padding to the cap\n"
    path.write_bytes(line * (1000000 // len(line)) + b"#" * (1000000 % len(line) - 1) + b"\n")
    scraper = Scraper()
    assert scraper.scrape("i", str(path), 0) == "ok"
    with open(str(path), "ab") as f:
        f.write(b"\n")
    assert scraper.scrape("i", str(path), 0) == "too_large"
    assert "1000001 bytes, more than the 1000000-byte cap" in scraper.status("i")["last_error"]


def test_read_capped_never_follows_a_link_or_opens_a_fifo(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"a 1\n")
    link = tmp_path / "prometheus.prom"
    link.symlink_to(secret)
    with pytest.raises(MetricsError, match="symbolic link"):
        read_capped(str(link))
    link.unlink()
    os.mkfifo(str(link))  # opening a FIFO for reading would block without a writer
    with pytest.raises(MetricsError, match="not a regular file"):
        read_capped(str(link))
    with pytest.raises(FileNotFoundError):
        read_capped(str(tmp_path / "absent"))


def test_read_capped_refuses_a_file_that_grows_while_read(tmp_path, monkeypatch):
    path = tmp_path / "prometheus.prom"
    path.write_bytes(b"a 1\n")
    real_fstat = os.fstat

    def stale_fstat(fd):  # the size seen before a writer appended
        info = real_fstat(fd)
        with open(str(path), "ab") as f:
            f.write(b"b 2\n")
        return info
    monkeypatch.setattr(metrics.os, "fstat", stale_fstat)
    with pytest.raises(MetricsError, match="grew while being read"):
        read_capped(str(path))


def test_read_capped_refuses_a_file_that_shrinks_while_read(tmp_path, monkeypatch):
    path = tmp_path / "prometheus.prom"
    path.write_bytes(b"a 1\nb 2\n")
    real_fstat = os.fstat

    def stale_fstat(fd):
        info = real_fstat(fd)
        os.truncate(str(path), 2)
        return info
    monkeypatch.setattr(metrics.os, "fstat", stale_fstat)
    with pytest.raises(MetricsError, match="shrank while being read"):
        read_capped(str(path))


# --- the scraper ---------------------------------------------------------------------------------

def test_scraper_labels_merges_and_parses_back(tmp_path):
    a, b = tmp_path / "a.prom", tmp_path / "b.prom"
    a.write_bytes(GOOD)
    b.write_bytes(b'# TYPE up gauge\nup{instance="mine"} 1\n# TYPE other counter\nother 5\n')
    scraper = Scraper()
    assert scraper.scrape("inst-a", str(a), 10, labels=[("service", "cams"), ("version", "3")]) \
        == "ok"
    assert scraper.scrape("inst-b", str(b), 10) == "ok"
    out = scraper.exposition()
    families, samples = validate(out)
    assert families["up"]["type"] == "gauge"
    ups = [s[2] for s in samples if s[1] == "up"]
    assert ups == [(("instance", "inst-a"), ("service", "cams"), ("version", "3")),
                   (("instance", "inst-b"), ("exported_instance", "mine"))]
    assert b'msdos_file_access_seconds{instance="inst-a",service="cams",version="3",' \
           b'path="C:\\\\DIR\\\\FILE.TXT",error="Gone:\\n\\"FILE.TXT\\""} ' \
           b'1.458255915e9\n' in out
    assert b"edgert_metrics_scrapes_total{instance=\"inst-b\"} 1\n" in out
    assert len([s for s in samples if not s[1].startswith("edgert_")]) == 17 + 2


def test_scraper_keeps_last_good_on_rejection_and_drops_on_missing(tmp_path):
    path = tmp_path / "prometheus.prom"
    path.write_bytes(b"a 1\n")
    scraper = Scraper(cap=100)
    assert scraper.scrape("i", str(path), 1) == "ok"
    path.write_bytes(b"a 1\nbroken\n")
    assert scraper.scrape("i", str(path), 2) == "invalid"
    path.write_bytes(b"a 2\n" * 30)
    assert scraper.scrape("i", str(path), 3) == "too_large"
    status = scraper.status("i")
    assert status["samples"] == 1 and "more than the 100-byte cap" in status["last_error"]
    assert b'\na{instance="i"} 1\n' in scraper.exposition()
    path.unlink()
    assert scraper.scrape("i", str(path), 4) == "missing"
    out = scraper.exposition()
    families, samples = validate(out)
    assert "a" not in families
    counts = {(s[1], dict(s[2]).get("reason")): s[3] for s in samples}
    assert counts == {("edgert_metrics_scrapes_total", None): "4",
                      ("edgert_metrics_rejected_total", "too_large"): "1",
                      ("edgert_metrics_rejected_total", "invalid"): "1",
                      ("edgert_metrics_missing_total", None): "1",
                      ("edgert_metrics_samples", None): "0"}
    assert scraper.status("i")["last_good"] == 1
    scraper.forget("i")
    assert scraper.status("i") is None


def test_scraper_refuses_reserved_names_and_type_conflicts(tmp_path):
    bad, one, two = tmp_path / "bad", tmp_path / "one", tmp_path / "two"
    bad.write_bytes(b"edgert_metrics_samples 5\n")
    one.write_bytes(b"# TYPE shared counter\nshared 1\n")
    two.write_bytes(b"# TYPE shared gauge\nshared 2\n")
    scraper = Scraper()
    assert scraper.scrape("x", str(bad), 0) == "invalid"
    assert "reserved for the runtime" in scraper.status("x")["last_error"]
    scraper.scrape("a", str(one), 0)
    scraper.scrape("b", str(two), 0)
    families, samples = validate(scraper.exposition())
    assert families["shared"]["type"] == "counter"
    assert [s[2] for s in samples if s[1] == "shared"] == [(("instance", "a"),)]


def test_exposition_passes_promtool_when_installed(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    path = tmp_path / "m.prom"
    path.write_bytes(GOOD)
    scraper = Scraper()
    scraper.scrape("inst-a", str(path), 0)
    proc = subprocess.run([promtool, "check", "metrics"], input=scraper.exposition(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    # promtool's lint findings (naming advice) exit 3; a parse error exits 1
    assert proc.returncode in (0, 3), proc.stdout
    assert b"error while linting" not in proc.stdout


# --- generated series survive the scraper's relabelling ------------------------------------------

LABEL_VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\r"),
                       max_size=20)
LABEL_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
METRIC_NAMES = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True).filter(
    lambda n: not n.startswith("edgert_"))
VALUES = st.one_of(st.sampled_from(["NaN", "+Inf", "-Inf", "0", "-1.5e-3"]),
                   st.floats(allow_nan=False, allow_infinity=False).map(repr))


SERIES = st.dictionaries(METRIC_NAMES, st.lists(
    st.tuples(st.dictionaries(LABEL_NAMES, LABEL_VALUES, max_size=3), VALUES),
    min_size=1, max_size=3), min_size=1, max_size=4)


def exposition_of(series):
    """A metrics file with each generated series once."""
    lines = []
    for name, rows in series.items():
        seen = set()
        for labels, value in rows:
            key = tuple(sorted(labels.items()))
            if key not in seen:
                seen.add(key)
                lines.append("%s%s %s\n" % (name, metrics._render_labels(list(labels.items())),
                                            value))
    return "".join(lines).encode(), len(lines)


@hypothesis.settings(max_examples=100, deadline=None, database=None)
@hypothesis.given(series=SERIES)
def test_generated_files_round_trip(series, tmp_path_factory):
    text, count = exposition_of(series)
    families, samples = validate(text)
    assert len(samples) == count
    path = tmp_path_factory.mktemp("m") / "prometheus.prom"
    path.write_bytes(text)
    scraper = Scraper()
    assert scraper.scrape("inst", str(path), 0) == "ok"
    again_families, again = validate(scraper.exposition())
    mine = [s for s in again if not s[1].startswith("edgert_")]
    assert sorted((s[1], s[3]) for s in mine) == sorted((s[1], s[3]) for s in samples)
    for sample in mine:
        assert sample[2][0] == ("instance", "inst")


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package prometheus)")
@hypothesis.settings(max_examples=30, deadline=None, database=None)
@hypothesis.given(series=SERIES)
def test_promtool_parses_what_the_scraper_exposes(series, tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "prometheus.prom"
    path.write_bytes(exposition_of(series)[0])
    scraper = Scraper()
    assert scraper.scrape("inst", str(path), 0) == "ok"
    proc = subprocess.run(["promtool", "check", "metrics"], input=scraper.exposition(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert proc.returncode in (0, 3), proc.stdout  # 3: lint advice only, 1: parse error
    assert b"error while linting" not in proc.stdout


# --- the runtime's network counters ------------------------------------------------------------

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0
  lan0:    5000      40    1    2    0     0          0         3     7000      50    0    4    0     0       0          0
wan"0\\x:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
  short: 1 2 3
  bad0: 1 2 3 x 5 6 7 8 9 10 11 12 13 14 15 16
"""


def test_net_dev_counters_skip_loopback_and_lines_that_do_not_parse():
    from edgert.daemon.telemetry import parse_net_dev
    assert parse_net_dev(NET_DEV) == {
        "lan0": {"rx_bytes": 5000, "rx_packets": 40, "rx_dropped": 2,
                 "tx_bytes": 7000, "tx_packets": 50, "tx_dropped": 4},
        'wan"0\\x': {"rx_bytes": 1, "rx_packets": 2, "rx_dropped": 4,
                     "tx_bytes": 9, "tx_packets": 10, "tx_dropped": 12}}


def test_a_container_with_many_links_gets_a_bounded_number_of_series():
    from edgert.daemon import telemetry
    lines = NET_DEV.splitlines()[:2] + [
        "d%03d: %s" % (i, " ".join(["1"] * 16)) for i in range(200)]
    counters = telemetry.parse_net_dev("\n".join(lines))
    assert sorted(counters) == ["d%03d" % i for i in range(telemetry.MAX_INTERFACES)]


def test_network_series_are_labelled_per_interface_and_pass_promtool():
    from edgert.daemon import telemetry
    row = telemetry.instance_row({"id": "n1", "node_service": "gw", "state": "running"},
                                 None, 0, telemetry.parse_net_dev(NET_DEV))
    body = telemetry.runtime_metrics([row, telemetry.instance_row(
        {"id": "n2", "node_service": "gw"}, None, 0)])
    text = body.decode()
    assert ('edgert_container_network_receive_bytes_total{instance="n1",service="gw",'
            'interface="lan0"} 5000\n') in text
    assert ('edgert_container_network_transmit_packets_dropped_total{instance="n1",'
            'service="gw",interface="wan\\"0\\\\x"} 12\n') in text
    assert text.count("# TYPE edgert_container_network_receive_bytes_total counter\n") == 1
    assert 'instance="n2",service="gw",interface' not in text
    promtool = shutil.which("promtool")
    if promtool:
        proc = subprocess.run([promtool, "check", "metrics"], input=body,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert proc.returncode in (0, 3) and b"error while linting" not in proc.stdout, \
            proc.stdout
