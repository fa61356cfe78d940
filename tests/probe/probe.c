/*
 * probe: a static multi-call program the tests run inside containers.
 *
 * Usage: probe CMD [ARGS...]. Each command reports facts from inside the
 * container as `key=value` lines on stdout (line-buffered, so a process that
 * is killed midway still leaves every line it printed).
 *
 * Exit codes: 0 the operation worked (or the fact was read); 1 the operation
 * failed, and the errno name was printed as `CMD=ENAME`; 2 bad usage.
 * `exit N` exits N; `signals` exits 0 on SIGTERM.
 *
 * Only libc and syscall numbers: musl ships no kernel headers, so the few
 * kernel constants needed are defined here.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEYCTL_GET_KEYRING_ID 0
#define KEY_SPEC_SESSION_KEYRING (-3)
#define MIB (1024 * 1024)

extern char **environ;

static const struct {
	int num;
	const char *name;
} errno_names[] = {
	{EPERM, "EPERM"},     {ENOENT, "ENOENT"},   {ESRCH, "ESRCH"},
	{EINTR, "EINTR"},     {EIO, "EIO"},         {ENXIO, "ENXIO"},
	{E2BIG, "E2BIG"},     {ENOEXEC, "ENOEXEC"}, {EBADF, "EBADF"},
	{ECHILD, "ECHILD"},   {EAGAIN, "EAGAIN"},   {ENOMEM, "ENOMEM"},
	{EACCES, "EACCES"},   {EFAULT, "EFAULT"},   {EBUSY, "EBUSY"},
	{EEXIST, "EEXIST"},   {EXDEV, "EXDEV"},     {ENODEV, "ENODEV"},
	{ENOTDIR, "ENOTDIR"}, {EISDIR, "EISDIR"},   {EINVAL, "EINVAL"},
	{ENFILE, "ENFILE"},   {EMFILE, "EMFILE"},   {ENOTTY, "ENOTTY"},
	{ETXTBSY, "ETXTBSY"}, {EFBIG, "EFBIG"},     {ENOSPC, "ENOSPC"},
	{ESPIPE, "ESPIPE"},   {EROFS, "EROFS"},     {EMLINK, "EMLINK"},
	{EPIPE, "EPIPE"},     {ERANGE, "ERANGE"},   {ENOSYS, "ENOSYS"},
	{ELOOP, "ELOOP"},     {ENOTEMPTY, "ENOTEMPTY"},
	{EOPNOTSUPP, "EOPNOTSUPP"}, {ENAMETOOLONG, "ENAMETOOLONG"},
	{EDQUOT, "EDQUOT"},
};

static const char *errno_name(int err)
{
	static char unknown[16];
	size_t i;

	for (i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (errno_names[i].num == err)
			return errno_names[i].name;
	snprintf(unknown, sizeof(unknown), "E%d", err);
	return unknown;
}

/* Prints `key=ok` (exit 0) or `key=ENAME` (exit 1) for a syscall's result. */
static int report(const char *key, int rc)
{
	if (rc < 0) {
		printf("%s=%s\n", key, errno_name(errno));
		return 1;
	}
	printf("%s=ok\n", key);
	return 0;
}

static int usage_error(const char *what)
{
	fprintf(stderr, "probe: %s\n", what);
	return 2;
}

static int parse_long(const char *text, long min, long max, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(text, &end, 0);
	return errno == 0 && end != text && *end == '\0' && *out >= min && *out <= max;
}

static double now(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_seconds(double seconds)
{
	struct timespec ts;

	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int copy_to_stdout(const char *path)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	fflush(stdout);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(1, buf, n) != n)
			break;
	close(fd);
	return n < 0 ? -1 : 0;
}

/* Prints the value of one `Name:\tvalue` line of /proc/self/status. */
static int status_field(const char *field, const char *key)
{
	char line[256];
	size_t len = strlen(field);
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return report(key, -1);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, field, len) == 0 && line[len] == ':') {
			char *value = line + len + 1;
			value += strspn(value, " \t");
			printf("%s=%s", key, value);
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	printf("%s=missing\n", key);
	return 1;
}

static int cmd_true(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static int cmd_exit(int argc, char **argv)
{
	long code;

	if (argc != 1 || !parse_long(argv[0], 0, 255, &code))
		return usage_error("exit N (0..255)");
	fflush(stdout);
	_exit((int)code);
}

static int cmd_cat(int argc, char **argv)
{
	if (argc != 1)
		return usage_error("cat FILE");
	if (copy_to_stdout(argv[0]) < 0)
		return report("cat", -1);
	return 0;
}

static int cmd_write(int argc, char **argv)
{
	int fd, rc;
	size_t len;

	if (argc != 2)
		return usage_error("write FILE TEXT");
	fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return report("write", -1);
	len = strlen(argv[1]);
	rc = write(fd, argv[1], len) == (ssize_t)len ? 0 : -1;
	if (close(fd) < 0)
		rc = -1;
	return report("write", rc);
}

static int cmd_isatty(int argc, char **argv)
{
	long fd;
	int tty;

	if (argc != 1 || !parse_long(argv[0], 0, INT_MAX, &fd))
		return usage_error("isatty FD");
	tty = isatty((int)fd);
	printf("isatty=%d\n", tty);
	return tty ? 0 : 1;
}

static int cmd_ids(int argc, char **argv)
{
	gid_t groups[NGROUPS_MAX];
	int i, n = getgroups(NGROUPS_MAX, groups);

	(void)argc;
	(void)argv;
	printf("uid=%u\ngid=%u\neuid=%u\negid=%u\ngroups=", getuid(), getgid(),
	       geteuid(), getegid());
	for (i = 0; i < n; i++)
		printf("%s%u", i ? "," : "", groups[i]);
	printf("\n");
	return 0;
}

static int cmd_caps(int argc, char **argv)
{
	static const char *const sets[] = {"CapInh", "CapPrm", "CapEff",
					   "CapBnd", "CapAmb"};
	size_t i;
	int rc = 0;

	(void)argc;
	(void)argv;
	for (i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
		rc |= status_field(sets[i], sets[i]);
	return rc;
}

static int cmd_nnp(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return status_field("NoNewPrivs", "nnp");
}

static int cmd_seccomp(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return status_field("Seccomp", "seccomp");
}

/* Allocates and touches MB mebibytes, one line per MiB so an OOM kill shows how far it got. */
static int cmd_memhog(int argc, char **argv)
{
	long mb, i;

	if (argc != 1 || !parse_long(argv[0], 1, 1L << 20, &mb))
		return usage_error("memhog MB");
	for (i = 1; i <= mb; i++) {
		char *chunk = malloc(MIB);
		if (!chunk)
			return report("memhog", -1);
		memset(chunk, 0x5a, MIB);
		printf("allocated_mb=%ld\n", i);
	}
	printf("memhog=ok\n");
	return 0;
}

/* Forks N sleeping children, reports how many forks worked, holds them, then kills them. */
static int cmd_forkbomb(int argc, char **argv)
{
	long n, hold = 0, i, forked = 0;
	int first_errno = 0;
	pid_t *pids;

	if (argc < 1 || argc > 2 || !parse_long(argv[0], 1, 1 << 20, &n) ||
	    (argc == 2 && !parse_long(argv[1], 0, 3600, &hold)))
		return usage_error("forkbomb N [HOLD_SECONDS]");
	pids = calloc(n, sizeof(*pids));
	if (!pids)
		return report("forkbomb", -1);
	fflush(stdout);
	for (i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;)
				pause();
		}
		if (pid < 0) {
			if (!first_errno)
				first_errno = errno;
			continue;
		}
		pids[forked++] = pid;
	}
	printf("forks=%ld\nerrno=%s\n", forked,
	       first_errno ? errno_name(first_errno) : "none");
	sleep_seconds(hold);
	for (i = 0; i < forked; i++)
		kill(pids[i], SIGKILL);
	for (i = 0; i < forked; i++)
		waitpid(pids[i], NULL, 0);
	free(pids);
	return forked == n ? 0 : 1;
}

static void burn_until(double deadline)
{
	volatile unsigned long counter = 0;

	while (now(CLOCK_MONOTONIC) < deadline)
		for (int i = 0; i < 10000; i++)
			counter++;
}

/* Burns CPU in WORKERS processes for SECONDS of wall time; reports CPU seconds used. */
static int cmd_spin(int argc, char **argv)
{
	long seconds, workers = 1, i;
	double start, deadline, wall, cpu;
	struct rusage self, children;

	if (argc < 1 || argc > 2 || !parse_long(argv[0], 1, 3600, &seconds) ||
	    (argc == 2 && !parse_long(argv[1], 1, 256, &workers)))
		return usage_error("spin SECONDS [WORKERS]");
	start = now(CLOCK_MONOTONIC);
	deadline = start + seconds;
	fflush(stdout);
	for (i = 1; i < workers; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			burn_until(deadline);
			_exit(0);
		}
		if (pid < 0)
			return report("spin", -1);
	}
	burn_until(deadline);
	while (wait(NULL) > 0)
		;
	wall = now(CLOCK_MONOTONIC) - start;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &children);
	cpu = self.ru_utime.tv_sec + self.ru_stime.tv_sec + children.ru_utime.tv_sec +
	      children.ru_stime.tv_sec +
	      (self.ru_utime.tv_usec + self.ru_stime.tv_usec + children.ru_utime.tv_usec +
	       children.ru_stime.tv_usec) / 1e6;
	printf("workers=%ld\nwall=%.3f\ncpu=%.3f\n", workers, wall, cpu);
	return 0;
}

static int cmd_mknod(int argc, char **argv)
{
	long major, minor;
	mode_t type;

	if (argc != 4 || !parse_long(argv[2], 0, 4095, &major) ||
	    !parse_long(argv[3], 0, 1048575, &minor) ||
	    (strcmp(argv[1], "c") != 0 && strcmp(argv[1], "b") != 0))
		return usage_error("mknod PATH c|b MAJOR MINOR");
	type = argv[1][0] == 'c' ? S_IFCHR : S_IFBLK;
	return report("mknod", mknod(argv[0], type | 0600, makedev(major, minor)));
}

static int cmd_open(int argc, char **argv)
{
	int flags, fd;

	if (argc != 2)
		return usage_error("open PATH r|w|rw");
	if (strcmp(argv[1], "r") == 0)
		flags = O_RDONLY;
	else if (strcmp(argv[1], "w") == 0)
		flags = O_WRONLY;
	else if (strcmp(argv[1], "rw") == 0)
		flags = O_RDWR;
	else
		return usage_error("open PATH r|w|rw");
	fd = open(argv[0], flags | O_CLOEXEC | O_NOCTTY);
	if (fd >= 0)
		close(fd);
	return report("open", fd);
}

static int try_mount_tmpfs(void)
{
	if (mount("probe", "/tmp", "tmpfs", 0, "size=64k") < 0)
		return -1;
	return umount("/tmp");
}

static int try_setns(void)
{
	int fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = setns(fd, CLONE_NEWUTS);
	close(fd);
	return rc;
}

static int try_sethostname(void)
{
	struct utsname uts;

	if (uname(&uts) < 0)
		return -1;
	return sethostname(uts.nodename, strlen(uts.nodename));
}

/* Only reads the personality; a value the kernel rejects would show as EINVAL. */
static int try_personality(void)
{
	return personality(0xffffffff);
}

/* Calls one syscall a default seccomp profile or a dropped capability should stop.
 * None of them changes anything outside the container's own namespaces. */
static int cmd_syscall(int argc, char **argv)
{
	const char *name;
	int rc;

	if (argc != 1)
		return usage_error("syscall unshare|keyctl|ptrace|mount|personality|"
				   "chroot|setns|sethostname|init_module");
	name = argv[0];
	if (strcmp(name, "unshare") == 0)
		rc = unshare(CLONE_NEWNS);
	else if (strcmp(name, "keyctl") == 0)
		rc = (int)syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID,
				  KEY_SPEC_SESSION_KEYRING, 0);
	else if (strcmp(name, "ptrace") == 0)
		rc = (int)ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	else if (strcmp(name, "mount") == 0)
		rc = try_mount_tmpfs();
	else if (strcmp(name, "personality") == 0)
		rc = try_personality();
	else if (strcmp(name, "chroot") == 0)
		rc = chroot("/");
	else if (strcmp(name, "setns") == 0)
		rc = try_setns();
	else if (strcmp(name, "sethostname") == 0)
		rc = try_sethostname();
	else if (strcmp(name, "init_module") == 0)
		/* An empty image: a permitted caller gets ENOEXEC, nothing loads. */
		rc = (int)syscall(SYS_init_module, NULL, 0UL, "");
	else
		return usage_error("syscall: unknown name");
	return report(name, rc);
}

static int cmd_fds(int argc, char **argv)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *entry;
	char target[PATH_MAX];

	(void)argc;
	(void)argv;
	if (!dir)
		return report("fds", -1);
	while ((entry = readdir(dir))) {
		ssize_t n;
		if (entry->d_name[0] == '.' || atoi(entry->d_name) == dirfd(dir))
			continue;
		n = readlinkat(dirfd(dir), entry->d_name, target, sizeof(target) - 1);
		target[n < 0 ? 0 : n] = '\0';
		printf("fd.%s=%s\n", entry->d_name, target);
	}
	closedir(dir);
	return 0;
}

static int cmd_cwd(int argc, char **argv)
{
	char cwd[PATH_MAX];

	(void)argc;
	(void)argv;
	if (!getcwd(cwd, sizeof(cwd)))
		return report("cwd", -1);
	printf("cwd=%s\n", cwd);
	return 0;
}

static int cmd_hostname(int argc, char **argv)
{
	struct utsname uts;

	(void)argc;
	(void)argv;
	if (uname(&uts) < 0)
		return report("hostname", -1);
	printf("hostname=%s\ndomainname=%s\n", uts.nodename, uts.domainname);
	return 0;
}

static const struct {
	const char *name;
	int resource;
} rlimits[] = {
	{"AS", RLIMIT_AS},           {"CORE", RLIMIT_CORE},
	{"CPU", RLIMIT_CPU},         {"DATA", RLIMIT_DATA},
	{"FSIZE", RLIMIT_FSIZE},     {"LOCKS", RLIMIT_LOCKS},
	{"MEMLOCK", RLIMIT_MEMLOCK}, {"MSGQUEUE", RLIMIT_MSGQUEUE},
	{"NICE", RLIMIT_NICE},       {"NOFILE", RLIMIT_NOFILE},
	{"NPROC", RLIMIT_NPROC},     {"RSS", RLIMIT_RSS},
	{"RTPRIO", RLIMIT_RTPRIO},   {"RTTIME", RLIMIT_RTTIME},
	{"SIGPENDING", RLIMIT_SIGPENDING}, {"STACK", RLIMIT_STACK},
};

static void print_limit(const char *key, rlim_t value)
{
	if (value == RLIM_INFINITY)
		printf("%s=unlimited\n", key);
	else
		printf("%s=%llu\n", key, (unsigned long long)value);
}

/* NAME as in the OCI spec (RLIMIT_NOFILE) or short (nofile). */
static int cmd_rlimit(int argc, char **argv)
{
	const char *name;
	struct rlimit limit;
	size_t i;

	if (argc != 1)
		return usage_error("rlimit NAME");
	name = argv[0];
	if (strncasecmp(name, "RLIMIT_", 7) == 0)
		name += 7;
	for (i = 0; i < sizeof(rlimits) / sizeof(rlimits[0]); i++) {
		if (strcasecmp(name, rlimits[i].name) != 0)
			continue;
		if (getrlimit(rlimits[i].resource, &limit) < 0)
			return report("rlimit", -1);
		print_limit("soft", limit.rlim_cur);
		print_limit("hard", limit.rlim_max);
		return 0;
	}
	return usage_error("rlimit: unknown name");
}

static int cmd_env(int argc, char **argv)
{
	char **var;

	(void)argc;
	(void)argv;
	for (var = environ; *var; var++)
		printf("%s\n", *var);
	return 0;
}

static int cmd_sleep(int argc, char **argv)
{
	char *end;
	double seconds;

	if (argc != 1)
		return usage_error("sleep SECONDS");
	seconds = strtod(argv[0], &end);
	if (end == argv[0] || *end != '\0' || seconds < 0)
		return usage_error("sleep SECONDS");
	sleep_seconds(seconds);
	return 0;
}

static volatile sig_atomic_t terminated;

static void on_signal(int sig)
{
	char line[16];
	int len;

	/* Only async-signal-safe calls here: format the number by hand. */
	memcpy(line, "sig=", 4);
	len = 4;
	if (sig >= 10)
		line[len++] = '0' + sig / 10;
	line[len++] = '0' + sig % 10;
	line[len++] = '\n';
	if (write(1, line, len) < 0)
		_exit(1);
	if (sig == SIGTERM)
		terminated = 1;
}

/*
 * Prints the inherited blocked and ignored sets, `ready=1` once a handler is
 * installed for every catchable signal, then `sig=N` per signal received;
 * exits 0 after SIGTERM. Handlers run one at a time (full sa_mask), so signals
 * pending together are all printed, in number order, before the exit.
 */
static int cmd_signals(int argc, char **argv)
{
	struct sigaction action;
	sigset_t none;
	int sig;

	(void)argc;
	(void)argv;
	status_field("SigBlk", "blocked");
	status_field("SigIgn", "ignored");
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_signal;
	action.sa_flags = SA_RESTART;
	sigfillset(&action.sa_mask);
	for (sig = 1; sig <= 31; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (sigaction(sig, &action, NULL) < 0)
			return report("sigaction", -1);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	printf("ready=1\n");
	while (!terminated)
		pause();
	return 0;
}

/* True while PID is a zombie nobody reaped; false once it is gone. */
static int is_unreaped(pid_t pid)
{
	char path[64], stat_line[512], *close_paren;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, stat_line, sizeof(stat_line) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	stat_line[n] = '\0';
	close_paren = strrchr(stat_line, ')');
	return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

/*
 * Leaves N orphaned zombies: a middle child forks N grandchildren that exit at
 * once, then exits itself, so the zombies are re-parented to the container's
 * init (or nearest subreaper). Then waits up to WAIT seconds for them to be
 * reaped and prints how many are left.
 */
static int cmd_zombies(int argc, char **argv)
{
	long n, wait_seconds = 2, i, unreaped = 0;
	int pipefd[2];
	pid_t middle, *pids;
	double deadline;

	if (argc < 1 || argc > 2 || !parse_long(argv[0], 1, 4096, &n) ||
	    (argc == 2 && !parse_long(argv[1], 0, 3600, &wait_seconds)))
		return usage_error("zombies N [WAIT_SECONDS]");
	pids = calloc(n, sizeof(*pids));
	if (!pids || pipe(pipefd) < 0)
		return report("zombies", -1);
	fflush(stdout);
	middle = fork();
	if (middle < 0)
		return report("zombies", -1);
	if (middle == 0) {
		close(pipefd[0]);
		for (i = 0; i < n; i++) {
			pid_t pid = fork();
			if (pid == 0)
				_exit(0);
			if (pid > 0 && write(pipefd[1], &pid, sizeof(pid)) < 0)
				_exit(1);
		}
		_exit(0);
	}
	close(pipefd[1]);
	for (i = 0; i < n && read(pipefd[0], &pids[i], sizeof(pids[i])) == sizeof(pids[i]); i++)
		;
	close(pipefd[0]);
	n = i;
	waitpid(middle, NULL, 0);
	printf("orphans=%ld\n", n);
	deadline = now(CLOCK_MONOTONIC) + wait_seconds;
	do {
		unreaped = 0;
		for (i = 0; i < n; i++)
			unreaped += is_unreaped(pids[i]);
		if (unreaped)
			sleep_seconds(0.05);
	} while (unreaped && now(CLOCK_MONOTONIC) < deadline);
	printf("unreaped=%ld\n", unreaped);
	free(pids);
	return unreaped ? 1 : 0;
}

static int cmd_pid(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("pid=%d\nppid=%d\n", (int)getpid(), (int)getppid());
	return 0;
}

static int cmd_mounts(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (copy_to_stdout("/proc/self/mountinfo") < 0)
		return report("mounts", -1);
	return 0;
}

static const char *file_type(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "reg";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "lnk";
	case S_IFCHR: return "chr";
	case S_IFBLK: return "blk";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "sock";
	}
	return "unknown";
}

/* lstat: a symlink is reported as itself. */
static int cmd_stat(int argc, char **argv)
{
	struct stat st;

	if (argc != 1)
		return usage_error("stat PATH");
	if (lstat(argv[0], &st) < 0)
		return report("stat", -1);
	printf("type=%s\nmode=%04o\nuid=%u\ngid=%u\nmajor=%u\nminor=%u\n",
	       file_type(st.st_mode), (unsigned)(st.st_mode & 07777), st.st_uid,
	       st.st_gid, major(st.st_rdev), minor(st.st_rdev));
	return 0;
}

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
	{"true", cmd_true},       {"exit", cmd_exit},
	{"cat", cmd_cat},         {"write", cmd_write},
	{"isatty", cmd_isatty},   {"ids", cmd_ids},
	{"caps", cmd_caps},       {"nnp", cmd_nnp},
	{"seccomp", cmd_seccomp}, {"memhog", cmd_memhog},
	{"forkbomb", cmd_forkbomb}, {"spin", cmd_spin},
	{"mknod", cmd_mknod},     {"open", cmd_open},
	{"syscall", cmd_syscall}, {"fds", cmd_fds},
	{"cwd", cmd_cwd},         {"hostname", cmd_hostname},
	{"rlimit", cmd_rlimit},   {"env", cmd_env},
	{"sleep", cmd_sleep},     {"signals", cmd_signals},
	{"zombies", cmd_zombies}, {"pid", cmd_pid},
	{"mounts", cmd_mounts},   {"stat", cmd_stat},
};

int main(int argc, char **argv)
{
	size_t i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return usage_error("usage: probe CMD [ARGS...]");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 2, argv + 2);
	return usage_error("unknown command");
}
