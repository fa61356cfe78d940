/* edgert native shim: thin wrappers for the Linux syscalls that Python's
 * standard library lacks, and for libnftables where the device has it.
 *
 * Every function returns a non-negative result or -errno, so the Python side
 * never depends on errno surviving between two calls.
 *
 * Kernel ABI structs that libcs declare inconsistently (glibc's <sys/mount.h>
 * and <sched.h> clash with the <linux/...> versions on some releases) are
 * declared here with fixed-width fields under ert_ names: their layout is
 * fixed by the kernel ABI, the same on 32- and 64-bit targets.
 *
 * Integer syscall arguments are all 32-bit or pointer sized, so passing them
 * through the variadic syscall() is correct on 32-bit ARM as well.
 */

#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

/* Syscalls added since Linux 5.1 have one number on every architecture
 * (the unified table), so headers older than the running kernel can be
 * completed with these. */
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#if !defined(SYS_seccomp) || !defined(SYS_bpf) || !defined(SYS_sched_setattr)
#error "libc headers predate Linux 3.18: syscall numbers for seccomp, bpf or sched_setattr missing"
#endif

#ifndef SECCOMP_SET_MODE_FILTER
#define SECCOMP_SET_MODE_FILTER 1
#endif
#ifndef PR_SET_NO_NEW_PRIVS
#define PR_SET_NO_NEW_PRIVS 38
#define PR_GET_NO_NEW_PRIVS 39
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_IS_SET 1
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_LOWER 3
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define ERT_CAP_VERSION_3 0x20080522

struct ert_cap_header {
    uint32_t version;
    int32_t pid;
};

struct ert_cap_data {
    uint32_t effective;
    uint32_t permitted;
    uint32_t inheritable;
};

struct ert_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

struct ert_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

struct ert_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

static long ert_result(long r)
{
    return r < 0 ? -errno : r;
}

static uint64_t ert_ptr(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

long ert_unshare(int flags)
{
    return ert_result(unshare(flags));
}

long ert_setns(int fd, int nstype)
{
    return ert_result(setns(fd, nstype));
}

long ert_pivot_root(const char *new_root, const char *put_old)
{
    return ert_result(syscall(SYS_pivot_root, new_root, put_old));
}

long ert_mount(const char *source, const char *target, const char *fstype,
               unsigned long flags, const char *data)
{
    return ert_result(mount(source, target, fstype, flags, data));
}

long ert_umount2(const char *target, int flags)
{
    return ert_result(umount2(target, flags));
}

long ert_sethostname(const char *name, size_t len)
{
    return ert_result(sethostname(name, len));
}

long ert_setdomainname(const char *name, size_t len)
{
    return ert_result(setdomainname(name, len));
}

/* caps[] = {effective, permitted, inheritable}, each as 64 bits. */
long ert_capget(int pid, uint64_t caps[3])
{
    struct ert_cap_header hdr = { ERT_CAP_VERSION_3, pid };
    struct ert_cap_data data[2];

    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) < 0)
        return -errno;
    caps[0] = (uint64_t)data[1].effective << 32 | data[0].effective;
    caps[1] = (uint64_t)data[1].permitted << 32 | data[0].permitted;
    caps[2] = (uint64_t)data[1].inheritable << 32 | data[0].inheritable;
    return 0;
}

long ert_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable)
{
    struct ert_cap_header hdr = { ERT_CAP_VERSION_3, 0 };
    struct ert_cap_data data[2] = {
        { (uint32_t)effective, (uint32_t)permitted, (uint32_t)inheritable },
        { (uint32_t)(effective >> 32), (uint32_t)(permitted >> 32),
          (uint32_t)(inheritable >> 32) },
    };

    return ert_result(syscall(SYS_capset, &hdr, data));
}

long ert_prctl(int option, unsigned long arg2, unsigned long arg3,
               unsigned long arg4, unsigned long arg5)
{
    return ert_result(prctl(option, arg2, arg3, arg4, arg5));
}

/* prog holds count packed struct sock_filter entries. */
long ert_seccomp_install(const char *prog, unsigned int count, unsigned int flags)
{
    struct sock_fprog fprog;
    long r;

    fprog.len = (unsigned short)count;
    fprog.filter = (struct sock_filter *)(uintptr_t)prog;
    r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
    /* Kernels before 3.17 only know the prctl form, which takes no flags. */
    if (r < 0 && errno == ENOSYS && flags == 0)
        r = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0);
    return ert_result(r);
}

long ert_pidfd_open(int pid, unsigned int flags)
{
    return ert_result(syscall(SYS_pidfd_open, pid, flags));
}

long ert_pidfd_send_signal(int pidfd, int sig)
{
    return ert_result(syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0));
}

long ert_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
    return ert_result(syscall(SYS_close_range, first, last, flags));
}

long ert_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                 uint64_t resolve)
{
    struct ert_open_how how = { flags, mode, resolve };

    return ert_result(syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}

static long ert_bpf(int cmd, union bpf_attr *attr)
{
    return ert_result(syscall(SYS_bpf, cmd, attr, sizeof *attr));
}

long ert_bpf_prog_load(uint32_t prog_type, const char *insns, uint32_t insn_cnt,
                       const char *license, uint32_t expected_attach_type,
                       char *log_buf, uint32_t log_size)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof attr);
    attr.prog_type = prog_type;
    attr.insns = ert_ptr(insns);
    attr.insn_cnt = insn_cnt;
    attr.license = ert_ptr(license);
    attr.expected_attach_type = expected_attach_type;
    if (log_size > 0) {
        attr.log_level = 1;
        attr.log_buf = ert_ptr(log_buf);
        attr.log_size = log_size;
    }
    return ert_bpf(BPF_PROG_LOAD, &attr);
}

long ert_bpf_prog_attach(int target_fd, int prog_fd, uint32_t attach_type,
                         uint32_t flags)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)target_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = attach_type;
    attr.attach_flags = flags;
    return ert_bpf(BPF_PROG_ATTACH, &attr);
}

long ert_bpf_prog_detach2(int target_fd, int prog_fd, uint32_t attach_type)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)target_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = attach_type;
    return ert_bpf(BPF_PROG_DETACH, &attr);
}

/* *count is the capacity of ids on entry and the number of attached
 * programs on return (also on ENOSPC, so the caller can retry). */
long ert_bpf_prog_query(int target_fd, uint32_t attach_type, uint32_t *ids,
                        uint32_t *count)
{
    union bpf_attr attr;
    long r;

    memset(&attr, 0, sizeof attr);
    attr.query.target_fd = (uint32_t)target_fd;
    attr.query.attach_type = attach_type;
    attr.query.prog_ids = ert_ptr(ids);
    attr.query.prog_cnt = *count;
    r = ert_bpf(BPF_PROG_QUERY, &attr);
    *count = attr.query.prog_cnt;
    return r;
}

long ert_bpf_prog_get_fd_by_id(uint32_t prog_id)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof attr);
    attr.prog_id = prog_id;
    return ert_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
}

long ert_personality(unsigned long persona)
{
    return ert_result(syscall(SYS_personality, persona));
}

long ert_syncfs(int fd)
{
    return ert_result(syscall(SYS_syncfs, fd));
}

long ert_ioprio_set(int which, int who, int ioprio)
{
    return ert_result(syscall(SYS_ioprio_set, which, who, ioprio));
}

long ert_sched_setattr(int pid, uint32_t policy, uint64_t flags, int32_t nice,
                       uint32_t priority, uint64_t runtime, uint64_t deadline,
                       uint64_t period)
{
    struct ert_sched_attr attr = {
        sizeof attr, policy, flags, nice, priority, runtime, deadline, period,
    };

    return ert_result(syscall(SYS_sched_setattr, pid, &attr, 0));
}

long ert_set_mempolicy(int mode, const unsigned long *nodemask,
                       unsigned long maxnode)
{
    return ert_result(syscall(SYS_set_mempolicy, mode, nodemask, maxnode));
}

long ert_open_tree(int dirfd, const char *path, unsigned int flags)
{
    return ert_result(syscall(SYS_open_tree, dirfd, path, flags));
}

long ert_move_mount(int from_dirfd, const char *from_path, int to_dirfd,
                    const char *to_path, unsigned int flags)
{
    return ert_result(syscall(SYS_move_mount, from_dirfd, from_path, to_dirfd,
                              to_path, flags));
}

long ert_mount_setattr(int dirfd, const char *path, unsigned int flags,
                       uint64_t attr_set, uint64_t attr_clr,
                       uint64_t propagation, uint64_t userns_fd)
{
    struct ert_mount_attr attr = { attr_set, attr_clr, propagation, userns_fd };

    return ert_result(syscall(SYS_mount_setattr, dirfd, path, flags, &attr,
                              sizeof attr));
}

/* Read-only adjtimex (modes 0): the clock state (TIME_OK...TIME_ERROR) and
 * the status flags, for "is the clock NTP-synced". */
long ert_adjtimex_read(int *status)
{
    struct timex tx;
    int state;

    memset(&tx, 0, sizeof tx);
    state = adjtimex(&tx);
    if (state < 0)
        return -errno;
    *status = tx.status;
    return state;
}

/* libnftables, opened on first use rather than linked: the shim loads on
 * firmwares without nftables, and a ruleset costs no exec of nft (whose start
 * and dynamic linking take longer than the ruleset itself). Only releases from
 * 0.9.1 on, where nft_run_cmd_from_buffer lost its length argument; that
 * release added nft_ctx_output_get_flags, which marks them. */
static struct {
    int state;                          /* 0 untried, 1 loaded, -ENOENT */
    void *(*ctx_new)(uint32_t flags);
    void (*ctx_free)(void *ctx);
    int (*buffer_output)(void *ctx);
    int (*buffer_error)(void *ctx);
    const char *(*error_buffer)(void *ctx);
    int (*run)(void *ctx, const char *script);
} ert_nft;

long ert_nft_load(void)
{
    void *handle;

    if (ert_nft.state)
        return ert_nft.state < 0 ? ert_nft.state : 0;
    ert_nft.state = -ENOENT;
    handle = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        return ert_nft.state;
    ert_nft.ctx_new = (void *(*)(uint32_t))dlsym(handle, "nft_ctx_new");
    ert_nft.ctx_free = (void (*)(void *))dlsym(handle, "nft_ctx_free");
    ert_nft.buffer_output = (int (*)(void *))dlsym(handle, "nft_ctx_buffer_output");
    ert_nft.buffer_error = (int (*)(void *))dlsym(handle, "nft_ctx_buffer_error");
    ert_nft.error_buffer = (const char *(*)(void *))dlsym(handle,
                                                         "nft_ctx_get_error_buffer");
    ert_nft.run = (int (*)(void *, const char *))dlsym(handle, "nft_run_cmd_from_buffer");
    if (!dlsym(handle, "nft_ctx_output_get_flags") || !ert_nft.ctx_new ||
        !ert_nft.ctx_free || !ert_nft.buffer_output || !ert_nft.buffer_error ||
        !ert_nft.error_buffer || !ert_nft.run) {
        dlclose(handle);
        return ert_nft.state;
    }
    ert_nft.state = 1;
    return 0;
}

/* A context that keeps its output and errors to itself (the error text goes
 * to ert_nft_run's caller, never to stdout); its netlink socket belongs to the
 * calling thread's network namespace. */
void *ert_nft_new(void)
{
    void *ctx;

    if (ert_nft_load() < 0)
        return NULL;
    ctx = ert_nft.ctx_new(0);
    if (ctx && (ert_nft.buffer_output(ctx) != 0 || ert_nft.buffer_error(ctx) != 0)) {
        ert_nft.ctx_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* Runs a script as one transaction; on failure -EINVAL and nft's message in
 * err (truncated to errlen - 1 bytes). */
long ert_nft_run(void *ctx, const char *script, char *err, size_t errlen)
{
    const char *message;
    int rc = ert_nft.run(ctx, script);

    message = ert_nft.error_buffer(ctx);
    if (errlen) {
        strncpy(err, message ? message : "", errlen - 1);
        err[errlen - 1] = '\0';
    }
    return rc ? -EINVAL : 0;
}

/* Closing the context closes its netlink socket, which waits for an RCU grace
 * period: a caller in a hurry answers first and closes after. */
void ert_nft_free(void *ctx)
{
    if (ctx)
        ert_nft.ctx_free(ctx);
}
