import json, os, signal, subprocess, time
from helpers.services import service_input

def test_explore(daemon, images):
    daemon.start()
    daemon.import_service(service_input("k9", images["good"], env={"V": "1"}))
    daemon.cli("instance", "add", "k9", "--id", "x1")
    daemon.wait_for(lambda: daemon.inspect("x1")["good_version"] == 1, "committed")
    pid = daemon.inspect("x1")["pid"]
    print("INSPECT", daemon.inspect("x1"))
    print(open("/proc/%d/cgroup" % pid).read())
    print(open("/proc/%d/status" % pid).read())
    print(open("/proc/%d/cmdline" % pid).read().split("\0"))
    print(os.listdir(daemon.run_dir), os.listdir(daemon.run_dir + "/oci"), os.listdir(daemon.run_dir + "/oci/x1"))
    print(open(daemon.run_dir + "/oci/x1/state.json").read())
    for l in open("/proc/self/mountinfo"):
        if daemon.run_dir in l or daemon.root in l: print("MNT", l)
    daemon.kill()
    daemon.start()
    print("AFTER", daemon.inspect("x1"))
    print(daemon.cli("exec", "x1", "sh", "-c", "echo $V").stdout)
