/*
 * tswriter: append a timestamp line to a file at a fixed interval, to measure
 * from inside the guest how long a filesystem freeze blocks writers.
 *
 *   tswriter [-s] FILE INTERVAL_US   daemonize, print the daemon's pid, then
 *                                    append "<CLOCK_REALTIME us> <seq>\n" to
 *                                    FILE every INTERVAL_US (write() per tick,
 *                                    fsync() too with -s)
 *   tswriter --now                   print CLOCK_REALTIME in microseconds
 *
 * Each tick is one write() call, so while the filesystem is frozen the call
 * blocks and the gap between two consecutive lines is the freeze window seen
 * by an application. A late tick is not made up for: the next one is
 * scheduled from the time the write returned.
 *
 * The daemon detaches completely (double fork, setsid, every fd closed) so
 * that qemu-ga's guest-exec with capture-output returns at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long realtime_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static void add_us(struct timespec *t, long us)
{
	t->tv_nsec += (us % 1000000L) * 1000L;
	t->tv_sec += us / 1000000L + t->tv_nsec / 1000000000L;
	t->tv_nsec %= 1000000000L;
}

static int later(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

static void usage(void)
{
	fprintf(stderr, "usage: tswriter [-s] FILE INTERVAL_US\n       tswriter --now\n");
	exit(2);
}

static void run(int fd, long interval_us, int sync_each)
{
	char line[64];
	unsigned long long seq = 0;
	struct timespec next, now;

	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		int n = snprintf(line, sizeof line, "%lld %llu\n", realtime_us(), seq++);
		if (write(fd, line, (size_t)n) != n)
			_exit(1);
		if (sync_each && fsync(fd) != 0)
			_exit(1);
		add_us(&next, interval_us);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (later(&now, &next))
			next = now;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}
}

int main(int argc, char **argv)
{
	int sync_each = 0, fd, status;
	long interval_us;
	char *end;
	pid_t child;

	if (argc == 2 && strcmp(argv[1], "--now") == 0) {
		printf("%lld\n", realtime_us());
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "-s") == 0) {
		sync_each = 1;
		argv++;
		argc--;
	}
	if (argc != 3)
		usage();
	interval_us = strtol(argv[2], &end, 10);
	if (*argv[2] == '\0' || *end != '\0' || interval_us <= 0)
		usage();

	/* Open before detaching so that a bad path is reported to the caller. */
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "tswriter: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	fflush(stdout);
	child = fork();
	if (child < 0) {
		perror("tswriter: fork");
		return 1;
	}
	if (child > 0) {
		/* The intermediate child exits as soon as it has printed the pid. */
		if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return 1;
		return 0;
	}

	setsid();
	child = fork();
	if (child < 0)
		_exit(1);
	if (child > 0) {
		printf("%d\n", (int)child);
		fflush(stdout);
		_exit(0);
	}

	/* The daemon: keep only the output file, with its number moved to 3. */
	if (dup2(fd, 3) < 0)
		_exit(1);
	{
		struct rlimit rl;
		int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
		for (int i = 0; i < max; i++)
			if (i != 3)
				close(i);
	}
	if (chdir("/") != 0)
		_exit(1);
	{
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
			if (null > 2)
				close(null);
		}
	}
	run(3, interval_us, sync_each);
	return 0;
}
