"""Build edgert._native, the cffi (API mode, out-of-line) syscall shim.

The C source is native/shim.c, embedded whole so that the emitted
_native.c is self-contained for cross builds. Constants are declared as
``#define X ...``: the target's compiler resolves their values.

  python3 native/build.py --inplace      compile into edgert/ in the tree
  python3 native/build.py --emit-c DIR   write DIR/_native.c for a cross compiler

setup.py uses ``ffibuilder`` through ``cffi_modules``.
"""

import os
import sys

import cffi

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CDEF = """
#define PR_SET_PDEATHSIG ...
#define PR_GET_DUMPABLE ...
#define PR_SET_DUMPABLE ...
#define PR_SET_KEEPCAPS ...
#define PR_CAPBSET_READ ...
#define PR_CAPBSET_DROP ...
#define PR_SET_CHILD_SUBREAPER ...
#define PR_SET_NO_NEW_PRIVS ...
#define PR_GET_NO_NEW_PRIVS ...
#define PR_CAP_AMBIENT ...
#define PR_CAP_AMBIENT_IS_SET ...
#define PR_CAP_AMBIENT_RAISE ...
#define PR_CAP_AMBIENT_CLEAR_ALL ...
#define TIME_ERROR ...
#define STA_UNSYNC ...

long ert_unshare(int flags);
long ert_setns(int fd, int nstype);
long ert_pivot_root(const char *new_root, const char *put_old);
long ert_mount(const char *source, const char *target, const char *fstype,
               unsigned long flags, const char *data);
long ert_umount2(const char *target, int flags);
long ert_sethostname(const char *name, size_t len);
long ert_setdomainname(const char *name, size_t len);
long ert_capget(int pid, uint64_t caps[3]);
long ert_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable);
long ert_prctl(int option, unsigned long arg2, unsigned long arg3,
               unsigned long arg4, unsigned long arg5);
long ert_seccomp_install(const char *prog, unsigned int count, unsigned int flags);
long ert_pidfd_open(int pid, unsigned int flags);
long ert_pidfd_send_signal(int pidfd, int sig);
long ert_close_range(unsigned int first, unsigned int last, unsigned int flags);
long ert_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                 uint64_t resolve);
long ert_bpf_prog_load(uint32_t prog_type, const char *insns, uint32_t insn_cnt,
                       const char *license, uint32_t expected_attach_type,
                       char *log_buf, uint32_t log_size);
long ert_bpf_prog_attach(int target_fd, int prog_fd, uint32_t attach_type,
                         uint32_t flags);
long ert_bpf_prog_detach2(int target_fd, int prog_fd, uint32_t attach_type);
long ert_bpf_prog_query(int target_fd, uint32_t attach_type, uint32_t *ids,
                        uint32_t *count);
long ert_bpf_prog_get_fd_by_id(uint32_t prog_id);
long ert_personality(unsigned long persona);
long ert_ioprio_set(int which, int who, int ioprio);
long ert_syncfs(int fd);
long ert_sched_setattr(int pid, uint32_t policy, uint64_t flags, int32_t nice,
                       uint32_t priority, uint64_t runtime, uint64_t deadline,
                       uint64_t period);
long ert_set_mempolicy(int mode, const unsigned long *nodemask,
                       unsigned long maxnode);
long ert_open_tree(int dirfd, const char *path, unsigned int flags);
long ert_move_mount(int from_dirfd, const char *from_path, int to_dirfd,
                    const char *to_path, unsigned int flags);
long ert_mount_setattr(int dirfd, const char *path, unsigned int flags,
                       uint64_t attr_set, uint64_t attr_clr,
                       uint64_t propagation, uint64_t userns_fd);
long ert_adjtimex_read(int *status);
long ert_nft_load(void);
void *ert_nft_new(void);
long ert_nft_run(void *ctx, const char *script, char *err, size_t errlen);
void ert_nft_free(void *ctx);
"""


def make_builder():
    with open(os.path.join(HERE, "shim.c")) as f:
        source = f.read()
    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source("edgert._native", source, extra_compile_args=["-Wall", "-Wextra"])
    return builder


ffibuilder = make_builder()


def main(argv):
    if argv[:1] == ["--inplace"] and len(argv) == 1:
        ffibuilder.compile(tmpdir=ROOT)
    elif argv[:1] == ["--emit-c"] and len(argv) == 2:
        os.makedirs(argv[1], exist_ok=True)
        ffibuilder.emit_c_code(os.path.join(argv[1], "_native.c"))
    else:
        sys.exit("usage: build.py --inplace | --emit-c DIR")


if __name__ == "__main__":
    main(sys.argv[1:])
