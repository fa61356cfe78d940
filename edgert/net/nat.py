"""NAT from a container's LAN interfaces to its WAN interface, inside the container's own
network namespace: forwarding on, and a MASQUERADE rule (the router case of the product
documentation: devices on the container's LAN reach the internet through its WAN).

nftables when the firmware has `nft`, else iptables. The rules live in the container's
namespace, so they vanish with it: nothing to tear down on the host, also after a crash.
The ruleset text is built by a pure function; applying it forks a child that enters the
namespace and execs the tool (the daemon never waits on a shell, and nothing from the
container's namespace reaches the host's rules).
"""

import os

from ..errors import EdgertError

CLONE_NEWNET = 0x40000000
TOOL_PATHS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
TABLE = "edgert"


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
    """The same rules for iptables (argv lists), for firmwares without nft."""
    wan = check_ifname(wan_ifname)
    commands = [["-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE"],
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


def masquerade(container_netns, lan_ifnames, wan_ifname):
    """Turns on forwarding and NAT in the container's namespace; returns the tool used."""
    nft = find_tool("nft")
    if nft:
        _in_netns(container_netns, [[nft, "-f", "-"]], nft_ruleset(lan_ifnames, wan_ifname))
        return "nft"
    iptables = find_tool("iptables")
    if iptables:
        _in_netns(container_netns, [[iptables, "-w"] + c for c in
                                    iptables_commands(lan_ifnames, wan_ifname)])
        return "iptables"
    raise EdgertError("NAT needs nft or iptables on the device: neither is installed",
                      code="no-nat-tool")


def _in_netns(netns_path, commands, stdin_text=None):
    """Runs ``commands`` one after the other in a child inside ``netns_path`` (forwarding
    is switched on there first); raises with the tool's own message on failure."""
    read_end, write_end = os.pipe()
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(write_end)
            os.close(err_read)
            from .. import native
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            native.setns(fd, CLONE_NEWNET)
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:  # this namespace's own
                f.write("1")
            os.dup2(err_write, 2)
            os.dup2(err_write, 1)
            for argv in commands:
                child = os.fork()
                if child == 0:
                    os.dup2(read_end, 0)
                    os.execv(argv[0], argv)
                _, status = os.waitpid(child, 0)
                if status != 0:
                    os._exit(2)
            code = 0
        except BaseException as e:
            try:
                os.write(err_write, ("%s\n" % e).encode())
            except OSError:
                pass
        os._exit(code)
    os.close(read_end)
    os.close(err_write)
    try:
        if stdin_text:
            data = stdin_text.encode()
            while data:
                data = data[os.write(write_end, data):]
    finally:
        os.close(write_end)
    message = b""
    while True:
        chunk = os.read(err_read, 4096)
        if not chunk:
            break
        message += chunk[:4096 - len(message)]
    os.close(err_read)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise EdgertError("NAT in %s: %s failed: %s" % (
            netns_path, os.path.basename(commands[0][0]),
            message.decode(errors="replace").strip() or "exit status %d" % status),
            code="nat-failed")
