/* sm-fsx ops: runs one op on the real files (in the directory under test) and on the in-memory
 * model, and checks every read (pread, mmap, O_DIRECT) and every size (stat) against the model.
 * The model keeps each file's bytes with everything past its size zero. External changes run a
 * hook command after every descriptor of the file was fsynced (so the sandbox holds what the
 * model says), then wait for them to become visible: within a settle time (polled: the sizes
 * and the changed bytes through the open descriptors), or after a re-open of the file's
 * descriptors. A SIGBUS while touching a mapping inside the file's size is a failure. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsx.h"

#define HOOK_DEADLINE_MS 120000

static const int mode_flags[M_COUNT] = {
    [M_RO] = O_RDONLY,
    [M_RW] = O_RDWR,
    [M_WA] = O_WRONLY | O_APPEND,
    [M_RWA] = O_RDWR | O_APPEND,
    [M_DIRECT] = O_RDONLY | O_DIRECT,
};

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_armed;

static void on_bus(int sig)
{
	if (bus_armed)
		siglongjmp(bus_jmp, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* memcpy that turns a SIGBUS into -1 (a mapping inside the file's size must not fault). */
static int guarded_copy(void *dst, const void *src, size_t n)
{
	if (sigsetjmp(bus_jmp, 1)) {
		bus_armed = 0;
		return -1;
	}
	bus_armed = 1;
	memcpy(dst, src, n);
	bus_armed = 0;
	return 0;
}

static int failf(struct fsx *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->fail, sizeof(x->fail), fmt, ap);
	va_end(ap);
	return -1;
}

int fsx_slot_writable(enum fsx_mode m)
{
	return m == M_RW || m == M_WA || m == M_RWA;
}

static void path_of(const struct fsx *x, int file, char *out, size_t cap)
{
	snprintf(out, cap, "%s/fsx%d", x->dir, file);
}

static void hex16(char *out, const unsigned char *b, long n)
{
	for (long i = 0; i < n && i < 16; i++)
		out += sprintf(out, "%02x", b[i]);
	*out = '\0';
}

/* Compare n bytes read at file offset off with the model (off + n <= size). */
static int check_bytes(struct fsx *x, const char *what, int file, long off,
		       const unsigned char *got, long n)
{
	const unsigned char *want = x->files[file].data + off;
	long first = -1, ndiff = 0;
	char e[40], a[40];

	for (long i = 0; i < n; i++)
		if (got[i] != want[i] && ndiff++ == 0)
			first = i;
	if (ndiff == 0)
		return 0;
	x->bad_file = file;
	x->bad_off = off + first;
	x->bad_n = n - first < 16 ? (int)(n - first) : 16;
	memcpy(x->bad_got, got + first, x->bad_n);
	hex16(e, want + first, n - first);
	hex16(a, got + first, n - first);
	return failf(x,
		     "%s of fsx%d [%ld, %ld): %ld of %ld bytes differ; first differing offset %ld: "
		     "expected 0x%02x, got 0x%02x (model size %ld)\n  expected @%ld: %s\n"
		     "  actual   @%ld: %s",
		     what, file, off, off + n, ndiff, n, off + first, want[first], got[first],
		     x->files[file].size, off + first, e, off + first, a);
}

/* Check a read of `len` at `off` that returned n bytes in b. */
static int check_read(struct fsx *x, const char *what, int file, long off, long len,
		      const unsigned char *b, long n)
{
	long size = x->files[file].size;
	long want = off >= size ? 0 : (len < size - off ? len : size - off);

	if (check_bytes(x, what, file, off, b, n < want ? n : want) < 0)
		return -1;
	if (n != want)
		return failf(x,
			     "%s of fsx%d at %ld len %ld returned %ld bytes, expected %ld "
			     "(model size %ld)",
			     what, file, off, len, n, want, size);
	return 0;
}

static long pread_full(int fd, unsigned char *b, long len, long off, int direct)
{
	long done = 0;

	while (done < len) {
		ssize_t r = pread(fd, b + done, len - done, off + done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		done += r;
		if (r == 0 || (direct && r % FSX_BLOCK != 0))
			break;
	}
	return done;
}

static int write_full(int fd, const unsigned char *b, long len, long off, int append)
{
	long done = 0;

	while (done < len) {
		ssize_t r = append ? write(fd, b + done, len - done)
				   : pwrite(fd, b + done, len - done, off + done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		done += r;
	}
	return 0;
}

static void model_write(struct fsx *x, int file, long off, const unsigned char *b, long len)
{
	struct fsx_file *f = &x->files[file];

	memcpy(f->data + off, b, len);
	if (off + len > f->size)
		f->size = off + len;
}

static void model_truncate(struct fsx *x, int file, long size)
{
	struct fsx_file *f = &x->files[file];

	if (size < f->size)
		memset(f->data + size, 0, f->size - size);
	f->size = size;
}

static int slot_fd(struct fsx *x, const struct fsx_op *op)
{
	if (op->slot < 0 || x->slots[op->slot].fd < 0 || x->slots[op->slot].file != op->file)
		return failf(x, "op log does not match the state: slot %d is not open on fsx%d",
			     op->slot, op->file);
	return x->slots[op->slot].fd;
}

static int open_slot(struct fsx *x, int slot, int file, enum fsx_mode mode)
{
	char path[4096];
	int fd;

	path_of(x, file, path, sizeof(path));
	fd = open(path, mode_flags[mode] | O_CLOEXEC);
	if (fd < 0)
		return failf(x, "open %s (mode %d): %s", path, mode, strerror(errno));
	x->slots[slot] = (struct fsx_slot){.fd = fd, .file = file, .mode = mode};
	x->files[file].changed_unopened = 0; /* an open revalidates */
	return 0;
}

static int close_slot(struct fsx *x, int slot)
{
	int fd = x->slots[slot].fd;

	x->slots[slot].fd = -1;
	if (close(fd) < 0)
		return failf(x, "close of slot %d (fsx%d): %s", slot, x->slots[slot].file,
			     strerror(errno));
	return 0;
}

/* Close and open again every slot of `file` (-1: of every file). */
static int reopen(struct fsx *x, int file)
{
	for (int s = 0; s < FSX_MAX_SLOTS; s++) {
		struct fsx_slot sl = x->slots[s];

		if (sl.fd < 0 || (file >= 0 && sl.file != file))
			continue;
		if (close_slot(x, s) < 0 || open_slot(x, s, sl.file, sl.mode) < 0)
			return -1;
	}
	return 0;
}

static int do_read(struct fsx *x, const struct fsx_op *op, int direct)
{
	int fd = slot_fd(x, op);
	unsigned char *b = direct ? x->dbuf : x->buf;
	long n;

	if (fd < 0)
		return -1;
	n = pread_full(fd, b, op->len, op->off, direct);
	if (n < 0)
		return failf(x, "%s fsx%d at %ld len %ld: %s", fsx_kind_name(op->kind), op->file,
			     op->off, op->len, strerror(errno));
	return check_read(x, fsx_kind_name(op->kind), op->file, op->off, op->len, b, n);
}

static int do_write(struct fsx *x, const struct fsx_op *op, int append)
{
	int fd = slot_fd(x, op);
	long off = append ? x->files[op->file].size : op->off;
	off_t pos;

	if (fd < 0)
		return -1;
	fsx_fill(x, op->no, x->wbuf, op->len);
	if (write_full(fd, x->wbuf, op->len, off, append) < 0)
		return failf(x, "%s fsx%d at %ld len %ld: %s", fsx_kind_name(op->kind), op->file,
			     off, op->len, strerror(errno));
	model_write(x, op->file, off, x->wbuf, op->len);
	pos = lseek(fd, 0, SEEK_CUR);
	if (append && pos != x->files[op->file].size)
		return failf(x, "append to fsx%d left the position at %lld, expected the end %ld",
			     op->file, (long long)pos, x->files[op->file].size);
	return 0;
}

static int do_truncate(struct fsx *x, const struct fsx_op *op)
{
	char path[4096];
	int fd = -1;

	if (op->kind == K_TRUNC && (fd = slot_fd(x, op)) < 0)
		return -1;
	path_of(x, op->file, path, sizeof(path));
	if ((op->kind == K_TRUNC ? ftruncate(fd, op->len) : truncate(path, op->len)) < 0)
		return failf(x, "%s fsx%d to %ld: %s", fsx_kind_name(op->kind), op->file, op->len,
			     strerror(errno));
	model_truncate(x, op->file, op->len);
	x->files[op->file].changed_unopened = 0; /* the truncate's reply carries the attributes */
	return 0;
}

/* mmap the file's current size through the slot; read or write [off, off+len) there. */
static int do_mmap(struct fsx *x, const struct fsx_op *op, int writing)
{
	long size = x->files[op->file].size, page = sysconf(_SC_PAGESIZE);
	long tail = (size + page - 1) / page * page - size;
	int fd = slot_fd(x, op), rc = 0;
	unsigned char *p;

	if (fd < 0)
		return -1;
	if (size == 0 || op->off + op->len > size)
		return failf(x, "op log does not match the state: %s outside fsx%d's size %ld",
			     fsx_kind_name(op->kind), op->file, size);
	p = mmap(NULL, size, writing ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return failf(x, "mmap fsx%d size %ld: %s", op->file, size, strerror(errno));
	if (writing) {
		fsx_fill(x, op->no, x->wbuf, op->len);
		if (guarded_copy(p + op->off, x->wbuf, op->len) < 0)
			rc = failf(x, "SIGBUS writing fsx%d's mapping at %ld len %ld (size %ld)",
				   op->file, op->off, op->len, size);
		else if (msync(p, size, MS_SYNC) < 0)
			rc = failf(x, "msync fsx%d: %s", op->file, strerror(errno));
		else
			model_write(x, op->file, op->off, x->wbuf, op->len);
	} else if (guarded_copy(x->buf, p + op->off, op->len) < 0 ||
		   guarded_copy(x->buf + op->len, p + size, tail) < 0) {
		rc = failf(x, "SIGBUS reading fsx%d's mapping at %ld len %ld (size %ld)", op->file,
			   op->off, op->len, size);
	} else if ((rc = check_bytes(x, "mread", op->file, op->off, x->buf, op->len)) == 0) {
		for (long i = 0; i < tail && rc == 0; i++)
			if (x->buf[op->len + i] != 0)
				rc = failf(x,
					   "mread of fsx%d: byte 0x%02x at %ld, past EOF %ld in "
					   "the last page (must read as zero)",
					   op->file, x->buf[op->len + i], size + i, size);
	}
	munmap(p, size);
	return rc;
}

static int do_stat(struct fsx *x, const struct fsx_op *op)
{
	char path[4096];
	struct stat st;
	int fd = -1;

	if (op->slot >= 0 && (fd = slot_fd(x, op)) < 0)
		return -1;
	path_of(x, op->file, path, sizeof(path));
	if ((fd >= 0 ? fstat(fd, &st) : stat(path, &st)) < 0)
		return failf(x, "stat fsx%d: %s", op->file, strerror(errno));
	if (fd < 0 && x->files[op->file].changed_unopened)
		return 0;
	if (st.st_size != x->files[op->file].size)
		return failf(x, "%s of fsx%d: size %lld, expected %ld", fd >= 0 ? "fstat" : "stat",
			     op->file, (long long)st.st_size, x->files[op->file].size);
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* Run `cmd "$@"` with /bin/sh and args; it must exit 0 within the deadline. */
static int run_hook(struct fsx *x, const char *cmd, const char *const *args, int nargs)
{
	char script[4096];
	const char *argv[10];
	long deadline = now_ms() + HOOK_DEADLINE_MS;
	int status, n = 0;
	pid_t pid, r;

	snprintf(script, sizeof(script), "%s \"$@\"", cmd);
	argv[n++] = "/bin/sh";
	argv[n++] = "-c";
	argv[n++] = script;
	argv[n++] = "sm-fsx-hook";
	for (int i = 0; i < nargs && n < 9; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return failf(x, "fork: %s", strerror(errno));
	if (pid == 0) {
		execv("/bin/sh", (char *const *)argv);
		_exit(127);
	}
	while ((r = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
		usleep(2000);
	if (r == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return failf(x, "hook `%s %s` still running after %d s; killed", cmd, args[0],
			     HOOK_DEADLINE_MS / 1000);
	}
	if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return failf(x, "hook `%s %s %s` failed (status 0x%x)", cmd, args[0],
			     nargs > 1 ? args[1] : "", r < 0 ? -1 : status);
	return 0;
}

/* Everything written through the file's descriptors goes to the sandbox (fsync each). */
static int flush_file(struct fsx *x, int file)
{
	for (int s = 0; s < FSX_MAX_SLOTS; s++)
		if (x->slots[s].fd >= 0 && x->slots[s].file == file && fsync(x->slots[s].fd) < 0)
			return failf(x, "fsync of slot %d (fsx%d) before an external change: %s", s,
				     file, strerror(errno));
	return 0;
}

static int buffered_readable(enum fsx_mode m)
{
	return m == M_RO || m == M_RW || m == M_RWA;
}

/* Does an external change show as the model says: the size through every open descriptor of
 * the file (a stat by path when none is open) and, for a write, its bytes through every
 * descriptor that reads through the page cache? With `explain`, what does not is the failure. */
static int change_visible(struct fsx *x, const struct fsx_op *op, int explain)
{
	const struct fsx_file *f = &x->files[op->file];
	const char *what = fsx_kind_name(op->kind);
	char path[4096];
	struct stat st;
	int open_fds = 0;
	long n;

	for (int s = 0; s < FSX_MAX_SLOTS; s++) {
		const struct fsx_slot *sl = &x->slots[s];

		if (sl->fd < 0 || sl->file != op->file)
			continue;
		open_fds++;
		if (fstat(sl->fd, &st) < 0 || st.st_size != f->size) {
			if (explain)
				failf(x,
				      "after the sandbox-side %s, fstat of slot %d (fsx%d) shows "
				      "size %lld, expected %ld",
				      what, s, op->file, (long long)st.st_size, f->size);
			return 0;
		}
		if (op->kind != K_EXTWRITE || !buffered_readable(sl->mode))
			continue;
		n = pread_full(sl->fd, x->buf, op->len, op->off, 0);
		if (n == op->len && memcmp(x->buf, f->data + op->off, op->len) == 0)
			continue;
		if (explain)
			check_read(x, "read after the sandbox-side ext-write", op->file, op->off,
				   op->len, x->buf, n < 0 ? 0 : n);
		return 0;
	}
	if (open_fds)
		return 1;
	path_of(x, op->file, path, sizeof(path));
	if (stat(path, &st) == 0 && st.st_size == f->size)
		return 1;
	if (explain)
		failf(x, "after the sandbox-side %s, stat of %s shows size %lld, expected %ld",
		      what, path, (long long)st.st_size, f->size);
	return 0;
}

/* The settle-ms rule: the change is visible within settle_ms (polled every 2 ms; 0: at once). */
static int await_visible(struct fsx *x, const struct fsx_op *op)
{
	long deadline = now_ms() + x->settle_ms;

	while (!change_visible(x, op, 0)) {
		if (now_ms() >= deadline) {
			size_t used;

			change_visible(x, op, 1);
			used = strlen(x->fail);
			snprintf(
			    x->fail + used, sizeof(x->fail) - used,
			    "\n  (the change was still not visible %d ms after the hook returned)",
			    x->settle_ms);
			return -1;
		}
		usleep(2000);
	}
	return 0;
}

static int do_external(struct fsx *x, const struct fsx_op *op)
{
	char name[16], num[32], hex[2 * FSX_EXT_MAX + 1];
	const char *args[4] = {NULL, name, num, hex};
	int rc;

	if (!x->external)
		return failf(x, "the op log has external changes: give --external");
	if (flush_file(x, op->file) < 0)
		return -1;
	snprintf(name, sizeof(name), "fsx%d", op->file);
	if (op->kind == K_EXTWRITE) {
		if (op->len < 1 || op->len > FSX_EXT_MAX)
			return failf(x, "op log: external write of %ld bytes", op->len);
		fsx_fill(x, op->no, x->wbuf, op->len);
		for (long i = 0; i < op->len; i++)
			sprintf(hex + 2 * i, "%02x", x->wbuf[i]);
		snprintf(num, sizeof(num), "%ld", op->off);
		args[0] = "write";
		rc = run_hook(x, x->external, args, 4);
	} else {
		snprintf(num, sizeof(num), "%ld", op->len);
		args[0] = "truncate";
		rc = run_hook(x, x->external, args, 3);
	}
	if (rc < 0)
		return -1;
	if (op->kind == K_EXTWRITE)
		model_write(x, op->file, op->off, x->wbuf, op->len);
	else
		model_truncate(x, op->file, op->len);
	if (x->settle_ms >= 0)
		return await_visible(x, op);
	x->files[op->file].changed_unopened = 1;
	return reopen(x, op->file);
}

static int do_reconnect(struct fsx *x)
{
	const char *args[1] = {"reconnect"};

	if (!x->reconnect)
		return failf(x, "the op log has reconnects: give --reconnect");
	return run_hook(x, x->reconnect, args, 1);
}

int fsx_exec(struct fsx *x, const struct fsx_op *op)
{
	int fd;

	switch (op->kind) {
	case K_READ:
	case K_DREAD:
		return do_read(x, op, op->kind == K_DREAD);
	case K_WRITE:
	case K_APPEND:
		return do_write(x, op, op->kind == K_APPEND);
	case K_TRUNC:
	case K_PTRUNC:
		return do_truncate(x, op);
	case K_MREAD:
	case K_MWRITE:
		return do_mmap(x, op, op->kind == K_MWRITE);
	case K_OPEN:
		if (op->slot < 0 || x->slots[op->slot].fd >= 0)
			return failf(x, "op log does not match the state: slot %d in use",
				     op->slot);
		return open_slot(x, op->slot, op->file, op->mode);
	case K_CLOSE:
		return slot_fd(x, op) < 0 ? -1 : close_slot(x, op->slot);
	case K_FSYNC:
		if ((fd = slot_fd(x, op)) < 0)
			return -1;
		return fsync(fd) < 0 ? failf(x, "fsync fsx%d: %s", op->file, strerror(errno)) : 0;
	case K_STAT:
		return do_stat(x, op);
	case K_REOPEN:
		return reopen(x, -1);
	case K_EXTWRITE:
	case K_EXTTRUNC:
		return do_external(x, op);
	case K_RECONNECT:
		return do_reconnect(x);
	default:
		return failf(x, "unknown op kind %d", op->kind);
	}
}

/* Fresh, empty files fsx0.. in the directory; buffers; the SIGBUS handler. */
int fsx_setup(struct fsx *x)
{
	struct sigaction sa = {.sa_handler = on_bus};
	char path[4096];
	int fd;

	sigaction(SIGBUS, &sa, NULL);
	x->buf = malloc(x->maxlen + (64 << 10));
	x->wbuf = malloc(x->maxlen + (64 << 10));
	if (!x->buf || !x->wbuf || posix_memalign((void **)&x->dbuf, FSX_BLOCK, 64 << 10) != 0)
		return failf(x, "out of memory");
	for (int s = 0; s < FSX_MAX_SLOTS; s++)
		x->slots[s].fd = -1;
	for (int i = 0; i < x->nfiles; i++) {
		x->files[i].data = calloc(1, x->maxlen + (64 << 10));
		if (!x->files[i].data)
			return failf(x, "out of memory");
		path_of(x, i, path, sizeof(path));
		if (unlink(path) < 0 && errno != ENOENT)
			return failf(x, "unlink %s: %s", path, strerror(errno));
		fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
		if (fd < 0 || close(fd) < 0)
			return failf(x, "create %s: %s", path, strerror(errno));
	}
	return 0;
}

/* After a failure: close what is still open, free the model and buffers. */
void fsx_teardown(struct fsx *x)
{
	for (int s = 0; s < FSX_MAX_SLOTS; s++)
		if (x->slots[s].fd >= 0)
			close(x->slots[s].fd);
	for (int i = 0; i < x->nfiles; i++)
		free(x->files[i].data);
	free(x->buf);
	free(x->wbuf);
	free(x->dbuf);
}
