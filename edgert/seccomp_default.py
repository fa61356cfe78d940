"""edgert's default seccomp profile for the bundles it generates.

An allowlist: syscalls ordinary programs need run, everything else fails with
EPERM (and syscalls newer than the list with ENOSYS, see edgert.seccomp).
Kept out of reach without the matching capability: namespaces and mounts,
tracing other processes, loading kernel code (modules, BPF), the clock, swap,
quotas. Never allowed: kexec, the kernel keyring (not namespaced), io_uring
(its own syscall-free path around this filter), and relics such as uselib,
_sysctl and vm86.

Argument rules, written so that runc and crun read them the same way:
clone may not create namespaces without CAP_SYS_ADMIN; clone3, whose flags
sit in memory a filter cannot read, answers ENOSYS so libc falls back to
clone; personality only takes the values programs use; socket only opens the
address families a router's containers use. Names that only exist on some
architectures (socketcall, _llseek, cacheflush, ...) are listed once; the
compiler skips them where they do not exist.
"""

_EPERM = 1
_ENOSYS = 38

ARCHITECTURES = [
    "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC",
]

_ALWAYS = """
    read readv pread64 preadv preadv2 write writev pwrite64 pwritev pwritev2
    open openat openat2 creat close close_range lseek _llseek dup dup2 dup3
    pipe pipe2 fcntl fcntl64 flock fsync fdatasync sync syncfs
    sync_file_range sync_file_range2 arm_sync_file_range
    truncate truncate64 ftruncate ftruncate64 fallocate
    fadvise64 fadvise64_64 arm_fadvise64_64 readahead
    sendfile sendfile64 splice tee vmsplice copy_file_range ioctl cachestat

    stat stat64 lstat lstat64 fstat fstat64 newfstatat fstatat64 statx
    statfs statfs64 fstatfs fstatfs64 access faccessat faccessat2
    readlink readlinkat getdents getdents64 getcwd chdir fchdir
    mkdir mkdirat rmdir rename renameat renameat2 link linkat symlink symlinkat
    unlink unlinkat mknod mknodat umask
    chmod fchmod fchmodat fchmodat2 chown chown32 fchown fchown32 lchown lchown32 fchownat
    utime utimes futimesat utimensat utimensat_time64
    getxattr lgetxattr fgetxattr getxattrat setxattr lsetxattr fsetxattr setxattrat
    listxattr llistxattr flistxattr listxattrat
    removexattr lremovexattr fremovexattr removexattrat file_getattr file_setattr
    name_to_handle_at inotify_init inotify_init1 inotify_add_watch inotify_rm_watch
    statmount listmount

    select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64
    epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
    eventfd eventfd2 signalfd signalfd4
    timerfd_create timerfd_settime timerfd_settime64 timerfd_gettime timerfd_gettime64
    io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64

    brk mmap mmap2 munmap mremap mprotect pkey_mprotect pkey_alloc pkey_free madvise
    process_madvise mlock mlock2 munlock mlockall munlockall mincore msync
    remap_file_pages memfd_create memfd_secret membarrier mseal map_shadow_stack

    fork vfork execve execveat exit exit_group wait4 waitid waitpid
    kill tkill tgkill pidfd_open pidfd_send_signal pidfd_getfd process_mrelease
    getpid getppid gettid getpgid setpgid getpgrp getsid setsid
    getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
    setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32
    setresuid setresuid32 getresuid getresuid32 setresgid setresgid32 getresgid getresgid32
    setfsuid setfsuid32 setfsgid setfsgid32 getgroups getgroups32 setgroups setgroups32
    capget capset prctl arch_prctl set_tid_address set_thread_area get_thread_area
    set_robust_list get_robust_list rseq seccomp
    landlock_create_ruleset landlock_add_rule landlock_restrict_self
    lsm_get_self_attr lsm_set_self_attr lsm_list_modules
    futex futex_time64 futex_waitv futex_wake futex_wait futex_requeue
    sched_yield sched_getaffinity sched_setaffinity sched_getparam sched_setparam
    sched_getscheduler sched_setscheduler sched_get_priority_max sched_get_priority_min
    sched_rr_get_interval sched_rr_get_interval_time64 sched_getattr sched_setattr
    getpriority setpriority nice ioprio_get ioprio_set getcpu
    getrlimit setrlimit ugetrlimit prlimit64 getrusage times uname sysinfo getrandom

    rt_sigaction rt_sigprocmask rt_sigreturn rt_sigsuspend rt_sigpending
    rt_sigtimedwait rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo
    sigaction sigprocmask sigreturn sigsuspend sigpending signal sigaltstack
    restart_syscall pause alarm

    nanosleep clock_nanosleep clock_nanosleep_time64 clock_gettime clock_gettime64
    clock_getres clock_getres_time64 gettimeofday time adjtimex clock_adjtime clock_adjtime64
    timer_create timer_settime timer_settime64 timer_gettime timer_gettime64
    timer_getoverrun timer_delete getitimer setitimer

    socketpair bind connect listen accept accept4 getsockname getpeername
    sendto recvfrom send recv sendmsg recvmsg sendmmsg recvmmsg recvmmsg_time64
    shutdown setsockopt getsockopt socketcall
    msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl
    shmget shmat shmdt shmctl ipc
    mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive
    mq_timedreceive_time64 mq_notify mq_getsetattr

    cacheflush breakpoint set_tls get_tls swapcontext
"""

# Syscalls allowed when the container holds any of the named capabilities;
# the kernel checks the capability again, the filter only narrows the surface.
_WITH_CAPABILITY = [
    (("CAP_SYS_ADMIN",), """
        mount umount umount2 pivot_root open_tree open_tree_attr move_mount fsopen fsconfig
        fsmount fspick mount_setattr unshare setns sethostname setdomainname quotactl
        quotactl_fd swapon swapoff fanotify_init fanotify_mark lookup_dcookie clone clone3
    """),
    (("CAP_SYS_ADMIN", "CAP_BPF"), "bpf"),
    (("CAP_SYS_ADMIN", "CAP_PERFMON"), "perf_event_open"),
    (("CAP_SYS_PTRACE",), "ptrace process_vm_readv process_vm_writev kcmp userfaultfd"),
    (("CAP_SYS_BOOT",), "reboot"),
    (("CAP_SYS_MODULE",), "init_module finit_module delete_module"),
    (("CAP_SYS_TIME",), "settimeofday stime clock_settime clock_settime64"),
    (("CAP_SYS_NICE",), "mbind set_mempolicy get_mempolicy set_mempolicy_home_node "
                        "migrate_pages move_pages"),
    (("CAP_SYS_RAWIO",), "iopl ioperm"),
    (("CAP_SYS_CHROOT",), "chroot"),
    (("CAP_SYS_PACCT",), "acct"),
    (("CAP_SYS_TTY_CONFIG",), "vhangup"),
    (("CAP_SYSLOG",), "syslog"),
    (("CAP_DAC_READ_SEARCH",), "open_by_handle_at"),
]

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
# (CLONE_NEWTIME shares its bit with clone's exit signal: only unshare/clone3 take it).
_CLONE_NAMESPACES = 0x7E020000

# PER_LINUX, PER_LINUX32 (8), UNAME26 (0x20000), ADDR_NO_RANDOMIZE (0x40000),
# their combinations, and 0xffffffff, which only queries the persona.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0x40000, 0x40008, 0xFFFFFFFF)

# AF_UNIX, AF_INET, AF_INET6, AF_KEY (IPsec), AF_NETLINK, AF_PACKET, AF_PPPOX,
# AF_CAN, AF_BLUETOOTH, AF_IEEE802154, AF_ALG (kernel crypto), AF_QIPCRTR
# (Qualcomm modems).
_SOCKET_FAMILIES = (1, 2, 10, 15, 16, 17, 24, 29, 31, 36, 38, 42)


def _int_arg_is(index, value):
    """The argument's low 32 bits equal ``value``: int arguments may carry junk above."""
    return {"index": index, "value": 0xFFFFFFFF, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}


def profile(capabilities):
    """The OCI ``linux.seccomp`` object for a container holding ``capabilities``.

    ``capabilities`` names capabilities as the runtime-spec does
    ("CAP_SYS_ADMIN"); names without the CAP_ prefix are accepted too.
    """
    held = {c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()
            for c in capabilities}
    allowed = set(_ALWAYS.split())
    for caps, names in _WITH_CAPABILITY:
        if held.intersection(caps):
            allowed.update(names.split())

    rules = [{"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"}]
    if "clone" not in allowed:
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": _CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})
    if "clone3" not in allowed:
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    for persona in _PERSONALITIES:
        rules.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [_int_arg_is(0, persona)]})
    for family in _SOCKET_FAMILIES:
        rules.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                      "args": [_int_arg_is(0, family)]})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": _EPERM,
        "architectures": list(ARCHITECTURES),
        "syscalls": rules,
    }
