"""The full-system tier from pytest: boots each VM once with cross/vm and reports every check.

cross/vm ARCH boots Debian's kernel for ARCH under qemu-system (TCG) and runs
tests/vm/guest_checks.py inside; this file parses its serial console (EDGERT-RESULT lines and
the closing "N passed, N failed" line) into one pytest result per check. A VM costs about
10 s warm plus its checks (about 40 s each for arm64 and amd64 here); a first run also
downloads the kernel and the sysroot packages.
"""

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# EDGERT_VM_ARCHES="arm64" (space- or comma-separated) limits the VMs booted, e.g. in CI.
ARCHES = tuple(os.environ.get("EDGERT_VM_ARCHES", "arm64 amd64").replace(",", " ").split())
CANNOT_HAVE = 77  # cross/vm: qemu-system or the kernel package cannot be had
RESULT = re.compile(r"^EDGERT-RESULT (\S+) (PASS|FAIL|SKIP) ?(.*)$")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed")

sys.path.insert(0, HERE)
import guest_checks  # noqa: E402  (stdlib only at import: safe on the host)

CHECK_NAMES = [guest_checks.name_of(f) for f in guest_checks.CHECKS]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root: cross/ shares a root-owned work dir and apt root"),
]

_boots = {}


class Boot:
    def __init__(self, arch, proc):
        self.arch, self.returncode = arch, proc.returncode
        self.stderr = proc.stderr.decode(errors="replace")
        self.console = proc.stdout.decode(errors="replace")
        self.results, self.summary = {}, None
        for line in self.console.splitlines():
            match = RESULT.match(line)
            if match:
                self.results[match.group(1)] = (match.group(2), match.group(3))
            match = SUMMARY.match(line)
            if match:
                self.summary = (int(match.group(1)), int(match.group(2)))

    def tail(self):
        return "\n".join((self.console + self.stderr).splitlines()[-25:])


def boot(arch):
    """cross/vm ARCH, run once per session; skips when the VM cannot be had."""
    if arch not in _boots:
        proc = subprocess.run([os.path.join(REPO, "cross", "vm"), arch],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=1200)
        _boots[arch] = Boot(arch, proc)
    result = _boots[arch]
    if result.returncode == CANNOT_HAVE:
        pytest.skip("cross/vm %s: %s" % (arch, result.stderr.strip().splitlines()[-1]))
    return result


@pytest.mark.parametrize("arch", ARCHES)
def test_vm_reports_every_check(arch):
    result = boot(arch)
    assert result.summary is not None, "no summary line from the VM:\n" + result.tail()
    missing = [name for name in CHECK_NAMES if name not in result.results]
    assert not missing, "the VM did not report %s:\n%s" % (missing, result.tail())
    assert result.summary[1] == 0 and result.returncode == 0, result.tail()


@pytest.mark.parametrize("arch,check", [(a, c) for a in ARCHES for c in CHECK_NAMES])
def test_check_in_vm(arch, check):
    result = boot(arch)
    if check not in result.results:
        pytest.fail("the VM did not report %s:\n%s" % (check, result.tail()))
    status, detail = result.results[check]
    if status == "SKIP":
        pytest.skip("in the %s VM: %s" % (arch, detail))
    assert status == "PASS", "%s in the %s VM: %s" % (check, arch, detail)
