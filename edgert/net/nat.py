"""NAT from a container's LAN interfaces to its WAN interface, inside the container's own
network namespace: forwarding on, and a MASQUERADE rule (the router case of the product
documentation: devices on the container's LAN reach the internet through its WAN).

nftables when the firmware has it (through libnftables when present, else the `nft`
tool), else iptables. The rules live in the container's namespace, so they vanish with it:
nothing to tear down on the host, also after a crash. The ruleset text is built by a pure
function; applying it forks a child that enters the namespace, so the caller's own namespace
never changes and nothing from the container's namespace reaches the host's rules. With
libnftables the child answers before it closes its netlink socket (the close waits for an
RCU grace period, ~15 ms) and is reaped later.
"""

import os

from ..errors import EdgertError
from ..fsutil import read_until_eof

CLONE_NEWNET = 0x40000000
TOOL_PATHS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
TABLE = "edgert"
TOOL_TIMEOUT_S = 30  # a hung nft or iptables must not hold the network worker forever


def check_ifname(name):
    if not name or len(name) > 15 or not all(c.isalnum() or c in "_.-" for c in name):
        raise EdgertError("interface name %r cannot be used in a NAT rule" % (name,),
                          code="bad-params")
    return name


def nft_ruleset(lan_ifnames, wan_ifname):
    """The nftables script: masquerade what leaves by the WAN, forward LAN -> WAN and the
    answers back, nothing else (the WAN side cannot reach into the LAN)."""
    wan = check_ifname(wan_ifname)
    lans = ", ".join('"%s"' % check_ifname(n) for n in lan_ifnames)
    return (
        "table ip %(t)s\n"
        "delete table ip %(t)s\n"
        "table ip %(t)s {\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        "    oifname \"%(wan)s\" masquerade\n"
        "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy drop;\n"
        "    ct state established,related accept\n"
        "    iifname { %(lans)s } oifname \"%(wan)s\" accept\n"
        "  }\n"
        "}\n" % {"t": TABLE, "wan": wan, "lans": lans})


def iptables_commands(lan_ifnames, wan_ifname):
    """The same rules for iptables (argv lists), for firmwares without nft. The chains are
    flushed first, so applying them again replaces them (they are all ours: the namespace
    is the container's)."""
    wan = check_ifname(wan_ifname)
    commands = [["-t", "nat", "-F", "POSTROUTING"], ["-F", "FORWARD"],
                ["-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE"],
                ["-P", "FORWARD", "DROP"],
                ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                 "-j", "ACCEPT"]]
    for lan in lan_ifnames:
        commands.append(["-A", "FORWARD", "-i", check_ifname(lan), "-o", wan, "-j", "ACCEPT"])
    return commands


def find_tool(name):
    for directory in TOOL_PATHS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def have_nft():
    from .. import native
    return native.nft_load() or find_tool("nft") is not None


def masquerade(container_netns, lan_ifnames, wan_ifname):
    """Turns on forwarding and NAT in the container's namespace; returns the tool used."""
    script = nft_ruleset(lan_ifnames, wan_ifname)
    if have_nft():
        apply_nft(script, container_netns, forward=True, what="NAT in %s" % container_netns)
        return "nft"
    iptables = find_tool("iptables")
    if iptables:
        _run_in_child(container_netns, True, None,
                      [[iptables, "-w"] + c for c in iptables_commands(lan_ifnames, wan_ifname)],
                      "NAT in %s" % container_netns)
        return "iptables"
    raise EdgertError("NAT needs nft or iptables on the device: neither is installed",
                      code="no-nat-tool")


def apply_nft(script, netns_path=None, forward=False, what="nft"):
    """Applies an nft script as one transaction in ``netns_path`` (None: this process's
    namespace), forwarding switched on there first if ``forward``; raises EdgertError
    (code nat-failed, or no-nat-tool when the device has no nftables) with nft's message."""
    from .. import native
    if native.nft_load():
        _run_in_child(netns_path, forward, script, None, what)
        return
    nft = find_tool("nft")
    if nft is None:
        raise EdgertError("%s needs nftables on the device: neither libnftables nor nft is "
                          "installed" % what, code="no-nat-tool")
    _run_in_child(netns_path, forward, script, [[nft, "-f", "-"]], what)


_unreaped = []


def reap(block=False):
    """Collects the children that answered before they ended (see the module's doc)."""
    for pid in list(_unreaped):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _unreaped.remove(pid)


def _run_in_child(netns_path, forward, script, commands, what):
    """In a child (inside ``netns_path`` when given): ``script`` through libnftables, or
    ``commands`` one after the other, ``script`` on each one's stdin. The child answers on
    a pipe: "ok", or the failure and the tool's own message."""
    reap()
    answer_read, answer_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(answer_read)
        _child(answer_write, netns_path, forward, script, commands)
    os.close(answer_write)
    try:
        answer = read_until_eof(answer_read, 4096)
    finally:
        os.close(answer_read)
    done, status = os.waitpid(pid, os.WNOHANG)
    if not done:
        _unreaped.append(pid)
    if answer == b"ok":
        return
    if not answer:
        if not done:
            _, status = os.waitpid(pid, 0)
            _unreaped.remove(pid)
        answer = b"the child ended with wait status %d" % status
    raise EdgertError("%s failed: %s" % (what, answer.decode(errors="replace").strip()),
                      code="nat-failed")


def _child(answer_fd, netns_path, forward, script, commands):
    answer = b"ok"
    ctx = None
    try:
        from .. import native
        if netns_path is not None:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            native.setns(fd, CLONE_NEWNET)
            os.close(fd)
        if forward:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:  # this namespace's own
                f.write("1")
        if commands is None:
            ctx = native.nft_open()
            native.nft_run(ctx, script)
        else:
            for argv in commands:
                failure = _exec(argv, script)
                if failure:
                    answer = failure
                    break
    except BaseException as e:
        text = str(e) or type(e).__name__
        if isinstance(e, OSError) and e.strerror:  # without the "[Errno n]"
            text = e.strerror if e.filename is None else "%s: %s" % (e.filename, e.strerror)
        answer = text.encode()
    try:
        os.write(answer_fd, answer[:4096])
        os.close(answer_fd)  # the caller goes on now
        if ctx is not None:
            native.nft_close(ctx)
    finally:
        os._exit(0)


def _exec(argv, stdin_text):
    """Runs a tool, ``stdin_text`` on its stdin; its output when it fails, else None."""
    from ..runtime.hooks import run_one
    status, output = run_one({"path": argv[0], "args": argv, "timeout": TOOL_TIMEOUT_S},
                             (stdin_text or "").encode())
    if status == 0:
        return None
    name = os.path.basename(argv[0]).encode()
    if status is None:
        return b"%s: no answer after %d s" % (name, TOOL_TIMEOUT_S)
    return b"%s: %s" % (name, output.strip()[-4096:] or b"wait status %d" % status)
