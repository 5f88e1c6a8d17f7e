/* sm-fsx: the randomized, model-checked file exerciser (fsx-like). It drives a few files in a
 * directory (a sandmount mount in the e2e suite) with ops drawn from a seeded PRNG: pwrite and
 * pread at random offsets and sizes (also across EOF), ftruncate/truncate up and down, mmap reads
 * and writes (MAP_SHARED + msync), O_APPEND writes, several descriptors open at once in mixed
 * modes, O_DIRECT reads, fsync, close and re-open, size checks — plus changes made on the sandbox
 * side through an --external hook and link cuts through a --reconnect hook. Every read is checked
 * against an in-memory model; on the first mismatch it prints the op log and the first differing
 * offset and exits 1. The same command reproduces a run; --replay LOG replays a printed log.
 *
 *   sm-fsx [--seed N] [--ops N] [--files N] [--maxlen BYTES] [--fds N] [--no-direct] [--no-mmap]
 *          [--external CMD [--external-visibility reopen|settle-ms=N]]
 *          [--reconnect CMD [--reconnect-every K]] [--log FILE] [--replay FILE] DIR
 *
 * External changes: before one, every descriptor of the file is fsynced; then `CMD write FILE
 * OFFSET HEX` or `CMD truncate FILE SIZE` runs (FILE relative to DIR) and must exit 0; after it,
 * reads must see the change — after a re-open of the file's descriptors (`reopen`, the default:
 * what the product promises without a change watch: close-to-open; a stat by path may show the
 * cached attributes until the file is opened again) or through the open descriptors within N ms
 * (`settle-ms=N`: with a watch, or 0 when the hook returns after an exec barrier; the sizes and
 * the changed bytes are polled until they match, and a change still unseen at N ms fails).
 * Link cuts: `CMD reconnect` (the --reconnect hook) runs every K ops (default 50), must exit 0,
 * and nothing written before it may be lost. --fds N (default 8) bounds the open descriptors.
 * Exit status: 0 all reads matched; 1 a check failed (or an op/hook failed); 2 usage. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsx.h"

#define READ_MAX    (64L << 10)
#define LOG_TAIL    40 /* ops printed on stderr when the full log goes to --log */
#define HIST_STEP   1024
#define EXPLAIN_OPS 8 /* writes/truncates listed after a mismatch */

static const struct {
	enum fsx_kind kind;
	int weight;
} weights[] = {
    {K_READ, 16}, {K_WRITE, 16}, {K_APPEND, 7}, {K_TRUNC, 5},	 {K_PTRUNC, 2},
    {K_MREAD, 8}, {K_MWRITE, 6}, {K_DREAD, 5},	{K_OPEN, 8},	 {K_CLOSE, 6},
    {K_FSYNC, 4}, {K_STAT, 6},	 {K_REOPEN, 2}, {K_EXTWRITE, 5}, {K_EXTTRUNC, 2},
};

static uint64_t rnd(struct fsx *x)
{
	x->rng ^= x->rng << 13;
	x->rng ^= x->rng >> 7;
	x->rng ^= x->rng << 17;
	return x->rng;
}

static long below(struct fsx *x, long n)
{
	return n <= 0 ? 0 : (long)(rnd(x) % (uint64_t)n);
}

static long clamp(long v, long lo, long hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* A length in [1, max]: mostly small, sometimes up to 64 KiB. */
static long pick_len(struct fsx *x, long max)
{
	static const long caps[] = {64, 4096, 16384, READ_MAX};
	long cap = caps[below(x, 4)];

	return 1 + below(x, cap < max ? cap : max);
}

/* An offset in [0, limit): anywhere, near EOF, or inside the file. */
static long pick_off(struct fsx *x, int file, long limit)
{
	long size = x->files[file].size;

	switch (below(x, 3)) {
	case 0:
		return below(x, limit);
	case 1:
		return clamp(size - 4096 + below(x, 8192), 0, limit - 1);
	default:
		return clamp(below(x, size + 1), 0, limit - 1);
	}
}

/* A new size: anywhere up to maxlen, or a little above or below the current one. */
static long pick_size(struct fsx *x, int file)
{
	long size = x->files[file].size;

	if (below(x, 2))
		return below(x, x->maxlen + 1);
	return clamp(size - 5000 + below(x, 10000), 0, x->maxlen);
}

static int mode_fits(enum fsx_kind k, enum fsx_mode m)
{
	switch (k) {
	case K_READ:
	case K_MREAD:
		return m == M_RO || m == M_RW || m == M_RWA;
	case K_WRITE:
	case K_MWRITE:
		return m == M_RW;
	case K_APPEND:
		return m == M_WA || m == M_RWA;
	case K_TRUNC:
		return fsx_slot_writable(m);
	case K_DREAD:
		return m == M_DIRECT;
	default:
		return 1;
	}
}

/* A random open slot whose mode suits kind k (-1: none). */
static int pick_slot(struct fsx *x, enum fsx_kind k)
{
	int cand[FSX_MAX_SLOTS], n = 0;

	for (int s = 0; s < x->nslots; s++)
		if (x->slots[s].fd >= 0 && mode_fits(k, x->slots[s].mode))
			cand[n++] = s;
	return n ? cand[below(x, n)] : -1;
}

static int kind_enabled(const struct fsx *x, enum fsx_kind k)
{
	if (k == K_DREAD)
		return x->use_direct;
	if (k == K_MREAD || k == K_MWRITE)
		return x->use_mmap;
	if (k == K_EXTWRITE || k == K_EXTTRUNC)
		return x->external != NULL;
	return 1;
}

static enum fsx_kind pick_kind(struct fsx *x)
{
	int total = 0, r;
	size_t i;

	for (i = 0; i < sizeof(weights) / sizeof(weights[0]); i++)
		total += kind_enabled(x, weights[i].kind) ? weights[i].weight : 0;
	r = (int)below(x, total);
	for (i = 0; i < sizeof(weights) / sizeof(weights[0]); i++) {
		if (!kind_enabled(x, weights[i].kind))
			continue;
		if (r < weights[i].weight)
			break;
		r -= weights[i].weight;
	}
	return weights[i].kind;
}

/* An open of a free slot in a mode that suits `want` (or any mode); a close when all are used. */
static void gen_open(struct fsx *x, struct fsx_op *op, enum fsx_kind want)
{
	int free_slots[FSX_MAX_SLOTS], n = 0;
	enum fsx_mode m;

	for (int s = 0; s < x->nslots; s++)
		if (x->slots[s].fd < 0)
			free_slots[n++] = s;
	if (n == 0) {
		op->kind = K_CLOSE;
		op->slot = (int)below(x, x->nslots);
		op->file = x->slots[op->slot].file;
		op->mode = x->slots[op->slot].mode;
		return;
	}
	do
		m = (enum fsx_mode)below(x, M_COUNT);
	while (!mode_fits(want, m) || (m == M_DIRECT && !x->use_direct));
	op->kind = K_OPEN;
	op->slot = free_slots[below(x, n)];
	op->file = (int)below(x, x->nfiles);
	op->mode = m;
}

static void gen_args(struct fsx *x, struct fsx_op *op)
{
	long size = x->files[op->file].size;

	switch (op->kind) {
	case K_READ:
		op->off = below(x, x->maxlen + 8192);
		if (below(x, 2))
			op->off = pick_off(x, op->file, x->maxlen);
		op->len = pick_len(x, READ_MAX);
		break;
	case K_WRITE:
		op->off = pick_off(x, op->file, x->maxlen);
		op->len = pick_len(x, x->maxlen - op->off);
		break;
	case K_APPEND:
		op->off = size;
		op->len = pick_len(x, x->maxlen - size);
		break;
	case K_TRUNC:
	case K_PTRUNC:
	case K_EXTTRUNC:
		op->len = pick_size(x, op->file);
		break;
	case K_MREAD:
	case K_MWRITE:
		op->off = below(x, size);
		op->len = pick_len(x, size - op->off);
		break;
	case K_DREAD:
		op->off = below(x, x->maxlen / FSX_BLOCK + 2) * FSX_BLOCK;
		op->len = (1 + below(x, READ_MAX / FSX_BLOCK)) * FSX_BLOCK;
		break;
	case K_EXTWRITE:
		op->off = pick_off(x, op->file, x->maxlen);
		op->len = pick_len(x, x->maxlen - op->off < FSX_EXT_MAX ? x->maxlen - op->off
									: FSX_EXT_MAX);
		break;
	default:
		break;
	}
}

/* The next op, drawn from the PRNG given the model's state. */
static void gen_op(struct fsx *x, struct fsx_op *op, unsigned long no)
{
	enum fsx_kind k = pick_kind(x);
	int slot = -1;

	*op = (struct fsx_op){.no = no, .kind = k, .slot = -1, .mode = M_RO};
	if (x->reconnect && no % x->reconnect_every == 0) {
		op->kind = K_RECONNECT;
		return;
	}
	if (k == K_OPEN) {
		gen_open(x, op, K_OPEN);
		return;
	}
	if (k != K_PTRUNC && k != K_REOPEN && k != K_EXTWRITE && k != K_EXTTRUNC &&
	    !(k == K_STAT && below(x, 3) == 0)) {
		slot = pick_slot(x, k);
		if (slot < 0) {
			gen_open(x, op, k);
			return;
		}
		op->file = x->slots[slot].file;
		op->mode = x->slots[slot].mode;
	} else {
		op->file = (int)below(x, x->nfiles);
	}
	op->slot = slot;
	if ((k == K_MREAD || k == K_MWRITE) && x->files[op->file].size == 0)
		op->kind = K_STAT;
	if (k == K_APPEND && x->files[op->file].size >= x->maxlen)
		op->kind = K_TRUNC;
	gen_args(x, op);
}

static int record_and_exec(struct fsx *x, const struct fsx_op *op)
{
	if (x->nhist == x->caphist) {
		struct fsx_op *h = realloc(x->hist, (x->caphist + HIST_STEP) * sizeof(*h));

		if (!h) {
			snprintf(x->fail, sizeof(x->fail), "out of memory");
			return -1;
		}
		x->hist = h;
		x->caphist += HIST_STEP;
	}
	x->hist[x->nhist++] = *op;
	return fsx_exec(x, op);
}

/* The end of a run: close every slot (close reports lost writes), then read every file whole
 * through a fresh descriptor and check its size by path. */
static int final_check(struct fsx *x, unsigned long no)
{
	struct fsx_op op;

	for (int s = 0; s < FSX_MAX_SLOTS; s++) {
		if (x->slots[s].fd < 0)
			continue;
		op = (struct fsx_op){
		    .no = no++, .kind = K_CLOSE, .file = x->slots[s].file, .slot = s};
		if (record_and_exec(x, &op) < 0)
			return -1;
	}
	for (int f = 0; f < x->nfiles; f++) {
		op =
		    (struct fsx_op){.no = no++, .kind = K_OPEN, .file = f, .slot = 0, .mode = M_RO};
		if (record_and_exec(x, &op) < 0)
			return -1;
		for (long off = 0; off <= x->files[f].size; off += READ_MAX) {
			op = (struct fsx_op){
			    .no = no++, .kind = K_READ, .file = f, .off = off, .len = READ_MAX};
			if (record_and_exec(x, &op) < 0)
				return -1;
		}
		op = (struct fsx_op){.no = no++, .kind = K_CLOSE, .file = f};
		if (record_and_exec(x, &op) < 0)
			return -1;
		op = (struct fsx_op){.no = no++, .kind = K_STAT, .file = f, .slot = -1};
		if (record_and_exec(x, &op) < 0)
			return -1;
	}
	return 0;
}

static void shell_quote(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++)
		fputs(*s == '\'' ? "'\\''" : (char[2]){*s, 0}, f);
	fputc('\'', f);
}

/* The command that replays `log` with this run's hooks and options. */
static void print_replay(const struct fsx *x, const char *prog, const char *log)
{
	fprintf(stderr, "sm-fsx: replay: %s --replay ", prog);
	shell_quote(stderr, log);
	if (!x->use_direct)
		fputs(" --no-direct", stderr);
	if (!x->use_mmap)
		fputs(" --no-mmap", stderr);
	if (x->external) {
		fputs(" --external ", stderr);
		shell_quote(stderr, x->external);
		if (x->settle_ms >= 0)
			fprintf(stderr, " --external-visibility settle-ms=%d", x->settle_ms);
	}
	if (x->reconnect) {
		fputs(" --reconnect ", stderr);
		shell_quote(stderr, x->reconnect);
	}
	fputc(' ', stderr);
	shell_quote(stderr, x->dir);
	fputc('\n', stderr);
}

static int writes_at(const struct fsx_op *op, long off)
{
	return (op->kind == K_WRITE || op->kind == K_MWRITE || op->kind == K_APPEND ||
		op->kind == K_EXTWRITE) &&
	       op->off <= off && off < op->off + op->len;
}

static int cuts_below(const struct fsx_op *op, long off)
{
	return (op->kind == K_TRUNC || op->kind == K_PTRUNC || op->kind == K_EXTTRUNC) &&
	       op->len <= off;
}

/* Whether the bytes read at the first differing offset are the data op wrote there. */
static int read_is_from(struct fsx *x, const struct fsx_op *op)
{
	long at = x->bad_off - op->off;
	long n = op->len - at < x->bad_n ? op->len - at : x->bad_n;

	fsx_fill(x, op->no, x->wbuf, at + n);
	return memcmp(x->wbuf + at, x->bad_got, n) == 0;
}

/* After a read mismatch: the last ops that set the byte at the first differing offset (writes
 * over it, truncates below it), marking the write whose data was read (stale data). */
static void explain(struct fsx *x)
{
	unsigned long from = x->nhist - 1, shown = 0;
	int zeros = 1;
	char line[160];

	if (x->bad_off < 0)
		return;
	while (from > 0 && shown < EXPLAIN_OPS) {
		const struct fsx_op *op = &x->hist[--from];

		if (op->file == x->bad_file &&
		    (writes_at(op, x->bad_off) || cuts_below(op, x->bad_off)))
			shown++;
	}
	fprintf(stderr, "sm-fsx: the last ops that set fsx%d's byte %ld:\n", x->bad_file,
		x->bad_off);
	for (unsigned long i = from; i + 1 < x->nhist; i++) {
		const struct fsx_op *op = &x->hist[i];
		int w = writes_at(op, x->bad_off);

		if (op->file != x->bad_file || (!w && !cuts_below(op, x->bad_off)))
			continue;
		fsx_format_op(op, line, sizeof(line));
		fprintf(stderr, "  %s%s\n", line,
			w && read_is_from(x, op) ? "   <- the bytes read are this op's" : "");
	}
	for (int i = 0; i < x->bad_n; i++)
		zeros &= x->bad_got[i] == 0;
	if (zeros)
		fprintf(stderr, "  (the bytes read there are zeros)\n");
}

static int report_failure(struct fsx *x, int argc, char **argv)
{
	const struct fsx_op *last = &x->hist[x->nhist - 1];
	char line[160];
	FILE *f;

	fsx_format_op(last, line, sizeof(line));
	fprintf(stderr, "sm-fsx: FAIL seed %llu at op %lu: %s\n%s\n", (unsigned long long)x->seed,
		last->no, line, x->fail);
	if (x->logpath && (f = fopen(x->logpath, "w")) != NULL) {
		fsx_write_log(x, f, 0);
		fprintf(f, "# FAIL at op %lu: %s\n# ", last->no, line);
		for (const char *c = x->fail; *c; c++)
			fputs(*c == '\n' ? "\n# " : (char[2]){*c, 0}, f);
		fputc('\n', f);
		fclose(f);
		fprintf(stderr, "sm-fsx: op log (last %d ops; the whole log is in %s):\n", LOG_TAIL,
			x->logpath);
		fsx_write_log(x, stderr, x->nhist > LOG_TAIL ? x->nhist - LOG_TAIL : 0);
		print_replay(x, argv[0], x->logpath);
	} else {
		fsx_write_log(x, stderr, 0);
	}
	explain(x);
	fprintf(stderr, "sm-fsx: FAIL at op %lu: %s\nsm-fsx: reproduce:", last->no, line);
	for (int i = 0; i < argc; i++) {
		fputc(' ', stderr);
		shell_quote(stderr, argv[i]);
	}
	fputc('\n', stderr);
	return 1;
}

/* Bounds of an op read from a log (the generator never makes others). */
static int op_fits(const struct fsx *x, const struct fsx_op *op)
{
	long end = op->off + op->len;

	if (op->file >= x->nfiles || end > x->maxlen + READ_MAX)
		return 0;
	if (op->kind == K_READ || op->kind == K_DREAD || op->kind == K_MREAD)
		return op->len <= READ_MAX;
	if (op->kind == K_WRITE || op->kind == K_APPEND || op->kind == K_MWRITE)
		return end <= x->maxlen + READ_MAX && op->len <= x->maxlen;
	return op->kind != K_EXTWRITE || op->len <= FSX_EXT_MAX;
}

/* Read a printed op log: its header into x, its ops into *ops. */
static int load_log(struct fsx *x, const char *path, struct fsx_op **ops, unsigned long *n)
{
	FILE *f = fopen(path, "r");
	char line[512];
	struct fsx_op op, *grown;
	unsigned long cap = 0;
	int header = 0, lineno = 0, r = 0;

	if (!f) {
		fprintf(stderr, "sm-fsx: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (r >= 0 && fgets(line, sizeof(line), f)) {
		lineno++;
		if (!header && (header = fsx_parse_header(line, x)) == 1) {
			r = x->nfiles >= 1 && x->nfiles <= FSX_MAX_FILES && x->maxlen >= READ_MAX &&
				    x->maxlen <= FSX_MAX_LEN
				? 0
				: -1;
			continue;
		}
		r = fsx_parse_op(line, &op);
		if (r < 0 || (r == 1 && (!header || !op_fits(x, &op)))) {
			r = -1;
			break;
		}
		if (r == 1 && *n == cap) {
			grown = realloc(*ops, (cap + HIST_STEP) * sizeof(op));
			if (!grown) {
				r = -1;
				break;
			}
			*ops = grown;
			cap += HIST_STEP;
		}
		if (r == 1)
			(*ops)[(*n)++] = op;
	}
	fclose(f);
	if (r < 0 || !header) {
		fprintf(stderr, "sm-fsx: %s:%d: not a valid sm-fsx op log\n", path, lineno);
		return -1;
	}
	return 0;
}

static int usage(void)
{
	fprintf(
	    stderr,
	    "usage: sm-fsx [--seed N] [--ops N] [--files N] [--maxlen BYTES] [--fds N] "
	    "[--no-direct]\n"
	    "              [--no-mmap] [--external CMD [--external-visibility "
	    "reopen|settle-ms=N]]\n"
	    "              [--reconnect CMD [--reconnect-every K]] [--log FILE] [--replay FILE] "
	    "DIR\n");
	return 2;
}

static int parse_visibility(struct fsx *x, const char *v)
{
	char *end;

	if (strcmp(v, "reopen") == 0) {
		x->settle_ms = -1;
		return 0;
	}
	if (strncmp(v, "settle-ms=", 10) != 0)
		return -1;
	x->settle_ms = (int)strtol(v + 10, &end, 10);
	return *end || end == v + 10 || x->settle_ms < 0 || x->settle_ms > 60000 ? -1 : 0;
}

static int parse_args(struct fsx *x, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"seed", 1, 0, 's'},
	    {"ops", 1, 0, 'n'},
	    {"files", 1, 0, 'f'},
	    {"maxlen", 1, 0, 'm'},
	    {"fds", 1, 0, 'F'},
	    {"no-direct", 0, 0, 'D'},
	    {"no-mmap", 0, 0, 'M'},
	    {"external", 1, 0, 'e'},
	    {"external-visibility", 1, 0, 'v'},
	    {"reconnect", 1, 0, 'r'},
	    {"reconnect-every", 1, 0, 'k'},
	    {"log", 1, 0, 'l'},
	    {"replay", 1, 0, 'p'},
	    {0, 0, 0, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			x->seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			x->nops = strtoul(optarg, NULL, 0);
			break;
		case 'f':
			x->nfiles = atoi(optarg);
			break;
		case 'm':
			x->maxlen = strtol(optarg, NULL, 0);
			break;
		case 'F':
			x->nslots = atoi(optarg);
			break;
		case 'D':
			x->use_direct = 0;
			break;
		case 'M':
			x->use_mmap = 0;
			break;
		case 'e':
			x->external = optarg;
			break;
		case 'v':
			if (parse_visibility(x, optarg) < 0)
				return -1;
			break;
		case 'r':
			x->reconnect = optarg;
			break;
		case 'k':
			x->reconnect_every = strtoul(optarg, NULL, 0);
			break;
		case 'l':
			x->logpath = optarg;
			break;
		case 'p':
			x->replay = optarg;
			break;
		default:
			return -1;
		}
	}
	if (optind != argc - 1 || x->nfiles < 1 || x->nfiles > FSX_MAX_FILES ||
	    x->maxlen < READ_MAX || x->maxlen > FSX_MAX_LEN || x->reconnect_every < 1 ||
	    x->nslots < 1 || x->nslots > FSX_MAX_SLOTS)
		return -1;
	x->dir = argv[optind];
	return 0;
}

int main(int argc, char **argv)
{
	struct fsx x = {.seed = 1,
			.nops = 1000,
			.nfiles = 2,
			.nslots = FSX_MAX_SLOTS,
			.maxlen = 256 << 10,
			.use_direct = 1,
			.use_mmap = 1,
			.settle_ms = -1,
			.reconnect_every = 50,
			.bad_off = -1};
	struct fsx_op op, *ops = NULL;
	unsigned long nloaded = 0, no;
	int rc = 0;

	if (parse_args(&x, argc, argv) < 0)
		return usage();
	if (x.replay && load_log(&x, x.replay, &ops, &nloaded) < 0)
		return 2;
	x.rng = x.seed * 0x2545f4914f6cdd1dULL + 0x9e3779b97f4a7c15ULL;
	if (fsx_setup(&x) < 0) {
		fprintf(stderr, "sm-fsx: %s\n", x.fail);
		return 2;
	}
	for (no = 1; rc == 0 && (x.replay ? no <= nloaded : no <= x.nops); no++) {
		if (x.replay)
			op = ops[no - 1];
		else
			gen_op(&x, &op, no);
		rc = record_and_exec(&x, &op);
	}
	if (rc == 0 && !x.replay)
		rc = final_check(&x, no);
	if (rc < 0)
		rc = report_failure(&x, argc, argv);
	else
		printf("sm-fsx: seed %llu: %lu ops, every read matched the model\n",
		       (unsigned long long)x.seed, x.nhist);
	fsx_teardown(&x);
	free(x.hist);
	free(ops);
	return rc;
}
