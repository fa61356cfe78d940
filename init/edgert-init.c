/*
 * edgert-init: pid 1 of every edgert container.
 *
 * It starts the workload, forwards signals to it, reaps every zombie, and
 * exits with the workload's status. When the workload asks pid 1 for a
 * reboot, power-off or halt the busybox way (a signal to pid 1), it ends the
 * namespace and calls reboot(2) so the runtime sees the same wait status as
 * for `reboot -f`. See README.md for the contract and the exit convention.
 *
 * The runtime has already set up everything else (namespaces, mounts, user,
 * capabilities, seccomp, stdio) before it executes this program.
 *
 * With `-s FD` init also leaves an exit record in FD (a file) just before it
 * exits, for a supervisor that cannot wait for it (not its parent).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436 /* the same on every architecture but alpha */
#endif

#define EXIT_INIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_CANNOT_EXECUTE 126
#define EXIT_NOT_FOUND 127
#define EXIT_SIGNAL_BASE 128

#define DEFAULT_GRACE_SECONDS 10
#define MAX_GRACE_SECONDS 86400

/* capget(2) ABI, declared here because libc headers do not export it. */
#define CAPABILITY_VERSION_3 0x20080522
#define CAP_SYS_BOOT_BIT 22
struct capability_header {
	uint32_t version;
	int pid;
};
struct capability_data {
	uint32_t effective;
	uint32_t permitted;
	uint32_t inheritable;
};

struct options {
	int wait_for_start;
	int verbose;
	unsigned grace_seconds;
	int record_fd;
	char **argv;
};

static int verbose;
static int record_fd = -1; /* -s: where the exit record goes, or -1 */

/* Appends text to a log line, truncating at the end of the buffer. */
static size_t append(char *line, size_t len, size_t size, const char *text)
{
	while (*text && len < size)
		line[len++] = *text++;
	return len;
}

static size_t append_int(char *line, size_t len, size_t size, int value)
{
	char digits[12];
	char *start = digits + sizeof(digits) - 1;
	unsigned magnitude = value < 0 ? 0u - (unsigned)value : (unsigned)value;

	*start = '\0';
	do
		*--start = '0' + magnitude % 10;
	while ((magnitude /= 10));
	if (value < 0)
		*--start = '-';
	return append(line, len, size, start);
}

/* Knows %s and %d only: printf would triple the size of this program. */
static void vlog_line(const char *fmt, va_list args)
{
	char line[512];
	size_t size = sizeof(line) - 1;
	size_t len = append(line, 0, size, "edgert-init: ");

	for (; *fmt && len < size; fmt++) {
		if (fmt[0] == '%' && fmt[1] == 's') {
			len = append(line, len, size, va_arg(args, const char *));
			fmt++;
		} else if (fmt[0] == '%' && fmt[1] == 'd') {
			len = append_int(line, len, size, va_arg(args, int));
			fmt++;
		} else {
			line[len++] = *fmt;
		}
	}
	line[len++] = '\n';
	/* One write, so lines from init and the workload do not interleave. */
	if (write(STDERR_FILENO, line, len) < 0)
		return; /* nowhere left to report it */
}

static void log_error(const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vlog_line(fmt, args);
	va_end(args);
}

static void log_debug(const char *fmt, ...)
{
	va_list args;

	if (!verbose)
		return;
	va_start(args, fmt);
	vlog_line(fmt, args);
	va_end(args);
}

static int usage(void)
{
	log_error("usage: edgert-init [-w] [-v] [-t SECONDS] [-s FD] [--] PROG [ARGS...]");
	return -1;
}

/* Parses a decimal number up to max; -1 if text is anything else. */
static long parse_number(const char *text, long max)
{
	long value = 0;

	if (!*text)
		return -1;
	for (; *text; text++) {
		if (*text < '0' || *text > '9')
			return -1;
		value = value * 10 + (*text - '0');
		if (value > max)
			return -1;
	}
	return value;
}

static int parse_seconds(const char *text, unsigned *seconds)
{
	long value = parse_number(text, MAX_GRACE_SECONDS);

	if (value < 0) {
		log_error("-t %s: want whole seconds from 0 to 86400", text);
		return -1;
	}
	*seconds = value;
	return 0;
}

/* The record fd must be open and above stdio, which the workload inherits. */
static int parse_record_fd(const char *text, int *fd)
{
	long value = parse_number(text, INT32_MAX);

	if (value <= STDERR_FILENO || fcntl(value, F_SETFD, FD_CLOEXEC) < 0) {
		log_error("-s %s: want an open fd above 2", text);
		return -1;
	}
	*fd = value;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
	int i;

	opt->wait_for_start = 0;
	opt->verbose = 0;
	opt->grace_seconds = DEFAULT_GRACE_SECONDS;
	opt->record_fd = -1;
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else if (!strcmp(argv[i], "-w")) {
			opt->wait_for_start = 1;
		} else if (!strcmp(argv[i], "-v")) {
			opt->verbose = 1;
		} else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
			if (parse_seconds(argv[++i], &opt->grace_seconds) < 0)
				return -1;
		} else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
			if (parse_record_fd(argv[++i], &opt->record_fd) < 0)
				return -1;
		} else {
			return usage();
		}
	}
	if (i >= argc)
		return usage();
	opt->argv = argv + i;
	return 0;
}

/* Keeps the workload (same uid) out of init's memory and fds via /proc. Also names the
 * process: the runtime execs init from a memfd, whose name would show in ps and comm. */
static int make_undumpable(void)
{
	prctl(PR_SET_NAME, (unsigned long)"edgert-init", 0, 0, 0);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		log_error("prctl(PR_SET_DUMPABLE): %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * The exit record: one line ("exited 3", "signaled 9", "reboot"...) at offset 0
 * of the -s file, replacing what was there. Written last on every path init
 * controls, so an empty record means init was killed. See README.md.
 */
static void write_record(const char *what, int number)
{
	char line[32];
	size_t len;

	if (record_fd < 0)
		return;
	len = append(line, 0, sizeof(line), what);
	if (number >= 0) {
		len = append(line, len, sizeof(line), " ");
		len = append_int(line, len, sizeof(line), number);
	}
	len = append(line, len, sizeof(line), "\n");
	if (pwrite(record_fd, line, len, 0) != (ssize_t)len || ftruncate(record_fd, len) < 0)
		log_error("exit record: %s", strerror(errno));
}

/* Before init, only its forked child writes a record: when the exec of PROG failed. */
static int record_written(void)
{
	char byte;

	return record_fd >= 0 && pread(record_fd, &byte, 1, 0) == 1;
}

static int clear_record(void)
{
	if (record_fd >= 0 && ftruncate(record_fd, 0) < 0) {
		log_error("-s %d: %s", record_fd, strerror(errno));
		return -1;
	}
	return 0;
}

/* getdents64(2) record; libc's struct dirent differs between libcs and ABIs. */
struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/*
 * Older kernels (< 5.9) lack close_range: close what /proc lists instead.
 * Raw getdents64 because opendir would bring in malloc.
 */
static int close_fds_listed_in_proc(void)
{
	char buf[1024];
	long len, offset;
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dir < 0)
		return -1;
	while ((len = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
		for (offset = 0; offset < len;) {
			struct linux_dirent64 *entry = (struct linux_dirent64 *)(buf + offset);
			long fd = parse_number(entry->d_name, INT32_MAX);

			if (fd > STDERR_FILENO && fd != dir && fd != record_fd)
				close(fd);
			offset += entry->d_reclen;
		}
	}
	close(dir);
	return len < 0 ? -1 : 0;
}

/* Closes first..last (inclusive); with close_range when the kernel has it. */
static int close_range_of(unsigned first, unsigned last)
{
	return first > last ? 0 : syscall(SYS_close_range, first, last, 0);
}

/* Every fd above stderr but the exit record (which the workload never gets: FD_CLOEXEC). */
static int close_fds_above_stderr(void)
{
	long fd, max;
	unsigned keep = record_fd < 0 ? ~0U : (unsigned)record_fd;

	if (close_range_of(STDERR_FILENO + 1, keep - 1) == 0 &&
	    (keep == ~0U || close_range_of(keep + 1, ~0U) == 0))
		return 0;
	if (close_fds_listed_in_proc() == 0)
		return 0;
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0) {
		log_error("close fds: no close_range, no /proc, no fd limit");
		return -1;
	}
	for (fd = STDERR_FILENO + 1; fd < max; fd++)
		if (fd != record_fd)
			close(fd);
	return 0;
}

/* Faults must stay deliverable; blocking them would only make the kernel kill init. */
static int is_synchronous(int sig)
{
	return sig == SIGFPE || sig == SIGILL || sig == SIGSEGV || sig == SIGBUS ||
	       sig == SIGABRT || sig == SIGTRAP || sig == SIGSYS;
}

/* Terminal job-control notices: they concern whoever touched the tty. */
static int is_tty_notice(int sig)
{
	return sig == SIGTTIN || sig == SIGTTOU;
}

/* The signals init waits for; the same set stays blocked all along. */
static void make_wait_set(sigset_t *set)
{
	int sig;

	sigfillset(set);
	for (sig = 1; sig < NSIG; sig++)
		if (is_synchronous(sig) || is_tty_notice(sig))
			sigdelset(set, sig);
}

/*
 * Whatever started init may have left signals ignored: an ignored SIGCHLD
 * would make the kernel reap the workload before init sees its status, and a
 * shell's background job ignores SIGINT and SIGQUIT. signal() fails for
 * SIGKILL, SIGSTOP and libc's reserved signals: harmless.
 */
static void set_default_dispositions(void)
{
	int sig;

	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
}

/*
 * Blocked signals are queued even for pid 1, whose default dispositions the
 * kernel otherwise drops. SIGTTIN/SIGTTOU are ignored instead, so init can
 * give the terminal to the workload and still write its own errors.
 */
static int block_signals(sigset_t *wait_set)
{
	make_wait_set(wait_set);
	if (sigprocmask(SIG_SETMASK, wait_set, NULL) < 0) {
		log_error("sigprocmask: %s", strerror(errno));
		return -1;
	}
	set_default_dispositions();
	if (signal(SIGTTIN, SIG_IGN) == SIG_ERR || signal(SIGTTOU, SIG_IGN) == SIG_ERR) {
		log_error("ignore SIGTTIN/SIGTTOU: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* The workload starts with no signal blocked or ignored. */
static void unblock_signals(void)
{
	sigset_t none;

	signal(SIGTTIN, SIG_DFL);
	signal(SIGTTOU, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static int next_signal(const sigset_t *wait_set, siginfo_t *info)
{
	while (sigwaitinfo(wait_set, info) < 0) {
		if (errno != EINTR) {
			log_error("sigwaitinfo: %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int is_pid1(void)
{
	return getpid() == 1;
}

/*
 * Signals from an ancestor pid namespace carry si_pid 0: the sender is
 * invisible here. Without a pid namespace of our own, nobody is inside.
 */
static int is_from_outside(const siginfo_t *info)
{
	return !is_pid1() || (info->si_code == SI_USER && info->si_pid == 0);
}

static int is_terminating_by_default(int sig)
{
	return sig != SIGCHLD && sig != SIGCONT && sig != SIGURG && sig != SIGWINCH &&
	       sig != SIGTSTP && sig != SIGTTIN && sig != SIGTTOU;
}

/*
 * `-w`: the container is created but not started. Returns 0 on start, the
 * signal that ended the wait, or -1.
 */
static int wait_for_start(const sigset_t *wait_set)
{
	siginfo_t info;

	for (;;) {
		if (next_signal(wait_set, &info) < 0)
			return -1;
		if (info.si_signo == SIGCONT && is_from_outside(&info))
			return 0;
		if (is_terminating_by_default(info.si_signo)) {
			log_debug("killed by signal %d before start", info.si_signo);
			return info.si_signo;
		}
	}
}

/* Own process group, and the terminal's foreground if there is one, so ^C reaches the workload. */
static int take_terminal(void)
{
	if (setpgid(0, 0) < 0) {
		log_error("setpgid: %s", strerror(errno));
		return -1;
	}
	/* ENOTTY: a terminal that is not our controlling one; nothing to hand over. */
	if (isatty(STDIN_FILENO) && tcsetpgrp(STDIN_FILENO, getpgrp()) < 0 && errno != ENOTTY) {
		log_error("tcsetpgrp: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Runs in the child: never returns. It writes the record itself when exec fails, which tells
 * init that this 126/127 is not the workload's own exit code. */
static void exec_workload(char **argv)
{
	int code;

	if (take_terminal() < 0) {
		write_record("exec-failed", EXIT_CANNOT_EXECUTE);
		_exit(EXIT_CANNOT_EXECUTE);
	}
	unblock_signals();
	execvp(argv[0], argv);
	code = errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE;
	log_error("exec %s: %s", argv[0], strerror(errno));
	write_record("exec-failed", code);
	_exit(code);
}

static int spawn(char **argv, pid_t *child)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0)
		exec_workload(argv);
	*child = pid;
	return 0;
}

static int exit_code(int status)
{
	if (WIFSIGNALED(status))
		return EXIT_SIGNAL_BASE + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static void record_workload_exit(int status)
{
	if (record_written())
		return;
	if (WIFSIGNALED(status))
		write_record("signaled", WTERMSIG(status));
	else
		write_record("exited", WEXITSTATUS(status));
}

/*
 * Reaps every exited child. Returns 1 when the workload was among them (its
 * wait status in *status), 0 when children remain, -1 when none remain.
 */
static int reap_zombies(pid_t workload, int *status)
{
	int found = 0;

	for (;;) {
		int child_status;
		pid_t pid = waitpid(-1, &child_status, WNOHANG);

		if (pid == 0)
			return found;
		if (pid < 0) {
			if (errno == ECHILD)
				return found ? found : -1;
			log_error("waitpid: %s", strerror(errno));
			return found;
		}
		if (pid == workload) {
			*status = child_status;
			found = 1;
		}
	}
}

static void forward_signal(pid_t workload, int sig)
{
	if (kill(workload, sig) == 0)
		log_debug("forwarded signal %d to pid %d", sig, (int)workload);
	else if (errno == ESRCH)
		log_debug("signal %d: workload already gone", sig);
	else
		log_error("forward signal %d to pid %d: %s", sig, (int)workload, strerror(errno));
}

static int has_cap_sys_boot(void)
{
	struct capability_header header = { CAPABILITY_VERSION_3, 0 };
	struct capability_data data[2];

	if (syscall(SYS_capget, &header, data) < 0) {
		log_error("capget: %s", strerror(errno));
		return 0;
	}
	return (data[0].effective >> CAP_SYS_BOOT_BIT) & 1;
}

/* busybox reboot/poweroff/halt without -f signal pid 1 with these. */
static int is_reboot_signal(int sig)
{
	return sig == SIGTERM || sig == SIGUSR2 || sig == SIGUSR1;
}

static int reboot_command(int sig)
{
	if (sig == SIGTERM)
		return RB_AUTOBOOT;
	return sig == SIGUSR2 ? RB_POWER_OFF : RB_HALT_SYSTEM;
}

static const char *reboot_record(int sig)
{
	if (sig == SIGTERM)
		return "reboot";
	return sig == SIGUSR2 ? "poweroff" : "halt";
}

/*
 * A reboot request comes from inside our own pid namespace, to pid 1. Without
 * CAP_SYS_BOOT reboot(2) cannot work, so the signal is then an ordinary one.
 */
static int is_reboot_request(const siginfo_t *info)
{
	return is_pid1() && info->si_code == SI_USER && info->si_pid > 0 &&
	       is_reboot_signal(info->si_signo) && has_cap_sys_boot();
}

static long long monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec * 1000LL + now.tv_nsec / 1000000;
}

/* Reaps until no child is left or the grace period is over. */
static void wait_for_children(unsigned grace_seconds)
{
	long long deadline = monotonic_ms() + grace_seconds * 1000LL;
	sigset_t sigchld;
	int ignored;

	sigemptyset(&sigchld);
	sigaddset(&sigchld, SIGCHLD);
	while (reap_zombies(0, &ignored) >= 0) {
		long long left = deadline - monotonic_ms();
		struct timespec timeout;

		if (left <= 0)
			return;
		timeout.tv_sec = left / 1000;
		timeout.tv_nsec = left % 1000 * 1000000;
		if (sigtimedwait(&sigchld, NULL, &timeout) < 0 && errno == EAGAIN)
			return;
	}
}

/* Only ever called as pid 1: kill(-1) then reaches just our namespace. */
static void end_namespace(unsigned grace_seconds)
{
	int ignored;

	kill(-1, SIGTERM);
	wait_for_children(grace_seconds);
	kill(-1, SIGKILL);
	while (waitpid(-1, &ignored, 0) > 0 || errno == EINTR)
		;
}

/*
 * Ends the namespace, then reboot(2): inside a pid namespace the kernel kills
 * pid 1 and reports it killed by SIGHUP (reboot) or SIGINT (power off, halt).
 */
static int reboot_container(int sig, unsigned grace_seconds)
{
	log_debug("reboot requested by signal %d", sig);
	end_namespace(grace_seconds);
	sync();
	write_record(reboot_record(sig), -1);
	reboot(reboot_command(sig));
	log_error("reboot after signal %d: %s", sig, strerror(errno));
	write_record("signaled", sig);
	return EXIT_SIGNAL_BASE + sig;
}

static int init_failed(void)
{
	write_record("init-failed", -1);
	return EXIT_INIT_FAILED;
}

/* Returns init's exit status once the workload is gone. */
static int supervise(pid_t workload, const sigset_t *wait_set, unsigned grace_seconds)
{
	siginfo_t info;
	int status;

	for (;;) {
		if (next_signal(wait_set, &info) < 0)
			return init_failed();
		if (info.si_signo == SIGCHLD) {
			if (reap_zombies(workload, &status) == 1) {
				log_debug("workload exited, status %d", exit_code(status));
				record_workload_exit(status);
				return exit_code(status);
			}
		} else if (is_reboot_request(&info)) {
			return reboot_container(info.si_signo, grace_seconds);
		} else {
			forward_signal(workload, info.si_signo);
		}
	}
}

int main(int argc, char **argv)
{
	struct options opt;
	sigset_t wait_set;
	pid_t workload;
	int sig;

	/* Options first (no side effects) so every failure after them can be recorded. */
	if (parse_options(argc, argv, &opt) < 0)
		return EXIT_USAGE;
	verbose = opt.verbose;
	record_fd = opt.record_fd;
	if (make_undumpable() < 0 || clear_record() < 0 || close_fds_above_stderr() < 0 ||
	    block_signals(&wait_set) < 0)
		return init_failed();
	if (opt.wait_for_start) {
		sig = wait_for_start(&wait_set);
		if (sig < 0)
			return init_failed();
		if (sig > 0) {
			write_record("signaled", sig);
			return EXIT_SIGNAL_BASE + sig;
		}
	}
	if (spawn(opt.argv, &workload) < 0)
		return init_failed();
	return supervise(workload, &wait_set, opt.grace_seconds);
}
