/* sm-fsx: declarations shared by the randomized, model-checked file exerciser's parts:
 * fsx.c (options, op generator, run and replay loops, failure report), fsx_ops.c (runs one op
 * on the real files and on the in-memory model, checks every read) and fsx_log.c (the op log:
 * one line per op, printed on failure and read back by --replay). */
#ifndef SM_FSX_H
#define SM_FSX_H

#include <stdint.h>
#include <stdio.h>

#define FSX_MAX_FILES 4
#define FSX_MAX_SLOTS 8
#define FSX_MAX_LEN   (2L << 20) /* model files never grow past 2 MiB */
#define FSX_EXT_MAX   1024	 /* bytes of one external write (passed as hex in argv) */
#define FSX_BLOCK     4096	 /* O_DIRECT alignment */

enum fsx_kind {
	K_WRITE,     /* pwrite through a slot opened without O_APPEND */
	K_READ,	     /* pread through a readable slot */
	K_APPEND,    /* write() through an O_APPEND slot */
	K_TRUNC,     /* ftruncate through a writable slot */
	K_PTRUNC,    /* truncate(2) by path */
	K_MREAD,     /* mmap(MAP_SHARED) a readable slot, read a range and the tail past EOF */
	K_MWRITE,    /* mmap(MAP_SHARED) an O_RDWR slot, write a range, msync */
	K_DREAD,     /* pread through an O_DIRECT slot, 4096-aligned */
	K_OPEN,	     /* open a file into a free slot */
	K_CLOSE,     /* close a slot */
	K_FSYNC,     /* fsync a slot */
	K_STAT,	     /* fstat a slot (or stat the path when slot is -1): size check */
	K_REOPEN,    /* close every slot and open them again with the same modes */
	K_EXTWRITE,  /* the --external hook writes bytes on the sandbox side */
	K_EXTTRUNC,  /* the --external hook truncates on the sandbox side */
	K_RECONNECT, /* the --reconnect hook (cuts the mount's link) */
	K_COUNT
};

enum fsx_mode { M_RO, M_RW, M_WA, M_RWA, M_DIRECT, M_COUNT };

struct fsx_op {
	unsigned long no;
	enum fsx_kind kind;
	int file;
	int slot;
	enum fsx_mode mode;
	long off;
	long len; /* a length, or the new size of a truncate */
};

struct fsx_slot {
	int fd; /* -1: free */
	int file;
	enum fsx_mode mode;
};

struct fsx_file {
	unsigned char *data;
	long size;
	/* changed on the sandbox side under the `reopen` rule and not opened since: a stat by
	 * path may show the attributes cached before (they live until their TTL) */
	int changed_unopened;
};

struct fsx {
	/* settings (the first four are in the log's header) */
	uint64_t seed;
	unsigned long nops;
	int nfiles;
	long maxlen;
	int nslots; /* descriptors open at once, at most (not in the header: the log lists them) */
	const char *dir;
	int use_direct, use_mmap;
	const char *external;
	int settle_ms; /* -1: external changes are visible after a re-open */
	const char *reconnect;
	unsigned long reconnect_every;
	const char *logpath;
	const char *replay;
	/* state */
	uint64_t rng;
	struct fsx_file files[FSX_MAX_FILES];
	struct fsx_slot slots[FSX_MAX_SLOTS];
	struct fsx_op *hist;
	unsigned long nhist, caphist;
	unsigned char *buf;  /* read buffer, maxlen + 64 KiB */
	unsigned char *dbuf; /* O_DIRECT buffer, aligned */
	unsigned char *wbuf; /* data of the op being written */
	char fail[2048];     /* what went wrong, set by a failing op */
	int bad_file;	     /* a read mismatch: file, first differing offset (-1: none) */
	long bad_off;
	unsigned char bad_got[16]; /* the bytes read there */
	int bad_n;
};

/* fsx_ops.c */
int fsx_setup(struct fsx *x);
int fsx_exec(struct fsx *x, const struct fsx_op *op);
int fsx_slot_writable(enum fsx_mode m);
void fsx_teardown(struct fsx *x);

/* fsx_log.c */
const char *fsx_kind_name(enum fsx_kind k);
void fsx_fill(const struct fsx *x, unsigned long no, unsigned char *dst, long len);
void fsx_format_op(const struct fsx_op *op, char *out, size_t cap);
int fsx_parse_op(const char *line, struct fsx_op *op);
int fsx_parse_header(const char *line, struct fsx *x);
void fsx_write_log(const struct fsx *x, FILE *f, unsigned long from);

#endif
