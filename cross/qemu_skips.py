"""pytest plugin that cross/test loads under qemu-user: skips, with the reason, the tests that
qemu-user itself cannot run. They run natively on amd64; the reasons are about the emulator,
not the target, so the full-system tier is where they run for the other arches.

Property tests run at most 20 examples here (hypothesis's default is 100; some ask for 400):
emulated Python is about 10 times slower, and the native run explores the input space; under
qemu they check that the architecture changes nothing. (A test's own settings are found where
hypothesis keeps them; if a hypothesis release moves them, only the default shrinks.)"""

import pytest

try:
    import hypothesis
except ImportError:
    hypothesis = None
else:
    hypothesis.settings.register_profile("qemu-user", max_examples=20, deadline=None)
    hypothesis.settings.load_profile("qemu-user")

# node id prefix -> why it cannot work under qemu-user (measured with qemu 7.2)
UNDER_QEMU_USER = {
    "tests/unit/test_rootfs.py::test_unrunnable_binary_is_explained":
        "posix_spawn's CLONE_VM|CLONE_VFORK child runs as a plain fork, so an exec error comes "
        "back as exit status 127 instead of an errno",
    "tests/unit/test_seccomp.py::test_tables_agree_with_libseccomp":
        "find_library asks the host's ldconfig, but the target sysroot has no libseccomp "
        "(the tables are data: checked natively on amd64)",
    "tests/unit/test_seccomp.py::test_compile_is_fast_enough_for_every_container_start":
        "a time budget for real CPUs; emulated Python is about 10 times slower",
    "tests/init/test_init.py::test_signal_from_outside_is_forwarded[SIGRTMIN+3]":
        "realtime signal numbers are remapped between emulated and native processes (target "
        "N is host N+2), and the workload here is the host's busybox",
    "tests/init/test_init.py::test_record_of_init_failure":
        "with RLIMIT_NPROC 0 (how the test makes init's fork fail) qemu-user cannot create its "
        "own threads and dies of SIGSEGV before init runs",
}


QEMU_EXAMPLES = 20


def _fewer_examples(function):
    held = getattr(function, "_hypothesis_internal_use_settings", None)
    if hypothesis is not None and held is not None and held.max_examples > QEMU_EXAMPLES:
        function._hypothesis_internal_use_settings = hypothesis.settings(
            held, max_examples=QEMU_EXAMPLES)


def pytest_collection_modifyitems(config, items):
    for item in items:
        _fewer_examples(getattr(item, "obj", None))
        for prefix, reason in UNDER_QEMU_USER.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.skip(reason="qemu-user: " + reason))
