/* sm-fsx op log: every op as one line "NO KIND f=F s=S m=MODE off=OFF len=LEN" under a header
 * "# sm-fsx seed=S ops=N files=F maxlen=L"; the data an op writes is derived from the seed and
 * the op's number, so the log alone replays a run (--replay). Lines starting with '#' are
 * comments (the failure report is written as comments). */
#include <stdio.h>
#include <string.h>

#include "fsx.h"

static const char *const kind_names[K_COUNT] = {
    [K_WRITE] = "pwrite",	 [K_READ] = "pread",	     [K_APPEND] = "append",
    [K_TRUNC] = "ftruncate",	 [K_PTRUNC] = "truncate",    [K_MREAD] = "mread",
    [K_MWRITE] = "mwrite",	 [K_DREAD] = "dread",	     [K_OPEN] = "open",
    [K_CLOSE] = "close",	 [K_FSYNC] = "fsync",	     [K_STAT] = "stat",
    [K_REOPEN] = "reopen",	 [K_EXTWRITE] = "ext-write", [K_EXTTRUNC] = "ext-truncate",
    [K_RECONNECT] = "reconnect",
};

static const char *const mode_names[M_COUNT] = {
    [M_RO] = "ro", [M_RW] = "rw", [M_WA] = "wa", [M_RWA] = "rwa", [M_DIRECT] = "direct",
};

const char *fsx_kind_name(enum fsx_kind k)
{
	return k < K_COUNT ? kind_names[k] : "?";
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* The bytes op `no` writes: distinct per op, reproducible from seed and op number. */
void fsx_fill(const struct fsx *x, unsigned long no, unsigned char *dst, long len)
{
	uint64_t s = x->seed * 0x100000001b3ULL + no;
	uint64_t v = 0;

	for (long i = 0; i < len; i++) {
		if (i % 8 == 0)
			v = splitmix(&s);
		dst[i] = (unsigned char)(v >> (8 * (i % 8)));
	}
}

void fsx_format_op(const struct fsx_op *op, char *out, size_t cap)
{
	snprintf(out, cap, "%lu %s f=%d s=%d m=%s off=%ld len=%ld", op->no, fsx_kind_name(op->kind),
		 op->file, op->slot, op->mode < M_COUNT ? mode_names[op->mode] : "?", op->off,
		 op->len);
}

static int lookup(const char *name, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

/* 1: an op was parsed; 0: a comment or blank line; -1: malformed. */
int fsx_parse_op(const char *line, struct fsx_op *op)
{
	char kind[32], mode[16];
	int k, m;

	line += strspn(line, " \t");
	if (*line == '#' || *line == '\n' || *line == '\0')
		return 0;
	if (sscanf(line, "%lu %31s f=%d s=%d m=%15s off=%ld len=%ld", &op->no, kind, &op->file,
		   &op->slot, mode, &op->off, &op->len) != 7)
		return -1;
	k = lookup(kind, kind_names, K_COUNT);
	m = lookup(mode, mode_names, M_COUNT);
	if (k < 0 || m < 0 || op->file < 0 || op->file >= FSX_MAX_FILES || op->slot < -1 ||
	    op->slot >= FSX_MAX_SLOTS || op->off < 0 || op->off > FSX_MAX_LEN || op->len < 0 ||
	    op->len > FSX_MAX_LEN)
		return -1;
	op->kind = (enum fsx_kind)k;
	op->mode = (enum fsx_mode)m;
	return 1;
}

/* 1: the header was parsed into x; 0: not the header. */
int fsx_parse_header(const char *line, struct fsx *x)
{
	unsigned long long seed;

	if (sscanf(line, "# sm-fsx seed=%llu ops=%lu files=%d maxlen=%ld", &seed, &x->nops,
		   &x->nfiles, &x->maxlen) != 4)
		return 0;
	x->seed = seed;
	return 1;
}

/* The header and the ops from index `from` of the history. */
void fsx_write_log(const struct fsx *x, FILE *f, unsigned long from)
{
	char line[160];

	fprintf(f, "# sm-fsx seed=%llu ops=%lu files=%d maxlen=%ld\n", (unsigned long long)x->seed,
		x->nops, x->nfiles, x->maxlen);
	if (from > 0)
		fprintf(f, "# ... %lu earlier ops left out\n", from);
	for (unsigned long i = from; i < x->nhist; i++) {
		fsx_format_op(&x->hist[i], line, sizeof(line));
		fprintf(f, "%s\n", line);
	}
}
