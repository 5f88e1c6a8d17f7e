/* mux_watch.c: the change watcher of `sandmount-agent serve` (docs/design.md, decision 5). inotify
 * watches every directory under the watched one; a directory created or moved in is watched too,
 * and what it already holds is reported (it may have been filled before its watch existed). Paths
 * are relative to the watched directory. Events are gathered for MUX_WATCH_COALESCE_MS and sent
 * once per path: as CHANGED when its name changed (created, removed, moved), else as
 * CHANGED_INSIDE (its data, attributes or entries changed; a directory's lstat goes with it, in
 * the SFTP server's attribute encoding). A queue overflow, or more paths than we keep, becomes
 * one OVERFLOW. A directory that cannot be watched (the inotify limit: ENOSPC, ENOMEM; or the
 * client's max_watches) is counted, and the count sent as PARTIAL, so the client knows its
 * changes go unreported. */
#include "mux.h"
#include "sftp_server.h" /* sftp_attrs_put_stat: the attributes as a stat@sandmount reply has them */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define HIDDEN_DIR  ".sandmount-agent"
#define MAX_PENDING 2048
#define EVENT_MASK                                                                                 \
	(IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM |          \
	 IN_MOVED_TO | IN_DONT_FOLLOW | IN_EXCL_UNLINK | IN_ONLYDIR)
#define PATHS_PER_FRAME_BYTES (MUX_FRAME_MAX / 2)
/* A longer path becomes an OVERFLOW: one path and its attributes always fit in what is left of a
 * frame past PATHS_PER_FRAME_BYTES. */
#define PATH_SENT_MAX (MUX_FRAME_MAX / 4)

/* What happened to a pending path. A name change implies everything: NAME wins at the flush. */
enum change { CH_NAME = 1, CH_INSIDE = 2 };

struct pending {
	char *path;
	unsigned kinds; /* enum change bits */
};

struct watch {
	int fd;
	char *root;
	char **wd_path; /* indexed by watch descriptor: relative path ("" = root), NULL = none */
	int nwd;
	struct pending pending[MAX_PENDING];
	int npending;
	bool overflow;
	uint32_t max_watches;		    /* 0: no bound but the kernel's */
	uint32_t nwatched;		    /* watch descriptors held */
	uint32_t unwatched, unwatched_sent; /* directories we could not watch; the last PARTIAL */
	int64_t first_at;		    /* when the oldest gathered event arrived */
};

static void note(struct watch *w)
{
	if (w->npending == 0 && !w->overflow && w->unwatched == w->unwatched_sent)
		w->first_at = mono_ms();
}

static void mark_overflow(struct watch *w)
{
	note(w);
	w->overflow = true;
}

/* Note a change of kind `kind` (enum change) to rel, joined with what is pending for it. */
static void mark(struct watch *w, const char *rel, unsigned kind)
{
	if (w->overflow)
		return;
	for (int i = 0; i < w->npending; i++) {
		if (!strcmp(w->pending[i].path, rel)) {
			w->pending[i].kinds |= kind;
			return;
		}
	}
	bool fits = w->npending < MAX_PENDING && strlen(rel) <= PATH_SENT_MAX;
	char *copy = fits ? strdup(rel) : NULL;
	if (!copy) {
		mark_overflow(w);
		return;
	}
	note(w);
	w->pending[w->npending++] = (struct pending){copy, kind};
}

/* Its name changed (created, removed, moved from or to). */
static void mark_changed(struct watch *w, const char *rel)
{
	mark(w, rel, CH_NAME);
}

/* Only what it refers to changed: data, attributes, a directory's entries. */
static void mark_inside(struct watch *w, const char *rel)
{
	mark(w, rel, CH_INSIDE);
}

static char *join(const char *rel, const char *name)
{
	size_t a = strlen(rel), b = strlen(name);
	char *s = malloc(a + b + 2);
	if (!s)
		return NULL;
	if (a) {
		memcpy(s, rel, a);
		s[a++] = '/';
	}
	memcpy(s + a, name, b + 1);
	return s;
}

static bool set_wd_path(struct watch *w, int wd, const char *rel)
{
	if (wd >= w->nwd) {
		int n = wd + 64;
		char **v = realloc(w->wd_path, (size_t)n * sizeof(*v));
		if (!v)
			return false;
		memset(v + w->nwd, 0, (size_t)(n - w->nwd) * sizeof(*v));
		w->wd_path = v;
		w->nwd = n;
	}
	char *copy = strdup(rel);
	if (!copy)
		return false;
	/* The same directory watched again (moved): the wd is reused, its path is updated. */
	if (!w->wd_path[wd])
		w->nwatched++;
	free(w->wd_path[wd]);
	w->wd_path[wd] = copy;
	return true;
}

/* One more directory goes unwatched (said once on stderr, counted in PARTIAL). */
static void note_unwatched(struct watch *w, const char *abs, int err)
{
	if (!w->unwatched)
		fprintf(stderr, "sandmount-agent: watch %s: %s (watching %u directories)\n", abs,
			err ? strerror(err) : "max_watches reached", w->nwatched);
	note(w);
	if (w->unwatched < UINT32_MAX)
		w->unwatched++;
}

/* Watch the directory abs (rel). 0: watched; 1: not watched for lack of watches (its entries are
 * still walked and counted); -1: gone, or not a directory we may read. */
static int watch_dir(struct watch *w, const char *abs, const char *rel)
{
	if (w->max_watches && w->nwatched >= w->max_watches) {
		note_unwatched(w, abs, 0);
		return 1;
	}
	int wd = inotify_add_watch(w->fd, abs, EVENT_MASK);
	if (wd >= 0 && set_wd_path(w, wd, rel))
		return 0;
	if (wd >= 0) { /* out of memory keeping its path: its events could not be named */
		inotify_rm_watch(w->fd, wd);
		mark_overflow(w);
		return -1;
	}
	if (errno == ENOSPC || errno == ENOMEM) {
		note_unwatched(w, abs, errno);
		return 1;
	}
	if (errno != ENOENT && errno != ENOTDIR && errno != EACCES)
		fprintf(stderr, "sandmount-agent: watch %s: %s\n", abs, strerror(errno));
	return -1;
}

/* Watch rel and every directory below it. With `report`, every entry found is reported. */
static void add_tree(struct watch *w, const char *rel, bool report)
{
	char *abs = join(w->root, rel);
	if (!abs) {
		mark_overflow(w);
		return;
	}
	if (watch_dir(w, abs, rel) < 0) {
		free(abs);
		return;
	}
	DIR *d = opendir(abs);
	free(abs);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!*rel && !strcmp(de->d_name, HIDDEN_DIR))
			continue;
		char *child = join(rel, de->d_name);
		if (!child) {
			mark_overflow(w);
			break;
		}
		if (report)
			mark_changed(w, child);
		bool dir = de->d_type == DT_DIR;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;
			dir = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			      S_ISDIR(st.st_mode);
		}
		if (dir)
			add_tree(w, child, report);
		free(child);
	}
	closedir(d);
}

struct watch *watch_open(const char *dir, uint32_t max_watches, char *msg, size_t size)
{
	struct watch *w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(msg, size, "out of memory");
		return NULL;
	}
	w->max_watches = max_watches;
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	w->root = strdup(dir);
	struct stat st;
	if (w->fd < 0 || !w->root || stat(dir, &st) < 0) {
		snprintf(msg, size, "cannot watch %s: %s", dir, strerror(errno));
		watch_free(w);
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(msg, size, "cannot watch %s: not a directory", dir);
		watch_free(w);
		return NULL;
	}
	spawn_note_fd(w->fd);
	add_tree(w, "", false);
	return w;
}

void watch_free(struct watch *w)
{
	if (!w)
		return;
	if (w->fd >= 0) {
		spawn_forget_fd(w->fd);
		close(w->fd);
	}
	for (int i = 0; i < w->nwd; i++)
		free(w->wd_path[i]);
	for (int i = 0; i < w->npending; i++)
		free(w->pending[i].path);
	free(w->wd_path);
	free(w->root);
	free(w);
}

int watch_fd(const struct watch *w)
{
	return w->fd;
}

static void handle_event(struct watch *w, const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW) {
		mark_overflow(w);
		return;
	}
	if (ev->wd < 0 || ev->wd >= w->nwd || !w->wd_path[ev->wd])
		return;
	const char *dir = w->wd_path[ev->wd];
	if (ev->mask & IN_IGNORED) {
		free(w->wd_path[ev->wd]);
		w->wd_path[ev->wd] = NULL;
		w->nwatched--;
		return;
	}
	if (!ev->len) { /* the directory itself (its attributes) */
		mark_inside(w, dir);
		return;
	}
	if (!*dir && !strcmp(ev->name, HIDDEN_DIR))
		return;
	char *rel = join(dir, ev->name);
	if (!rel) {
		mark_overflow(w);
		return;
	}
	if (ev->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)) {
		mark_changed(w, rel);
		/* The directory holding it changed inside (its entries, its mtime). */
		mark_inside(w, dir);
	} else {
		mark_inside(w, rel); /* IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE */
	}
	if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)))
		add_tree(w, rel, true);
	free(rel);
}

void watch_read(struct watch *w)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(w->fd, buf, sizeof(buf));
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return;
		}
		for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
			const struct inotify_event *ev = (const void *)(buf + off);
			handle_event(w, ev);
			off += (ssize_t)sizeof(*ev) + ev->len;
		}
	}
}

int watch_due_in(const struct watch *w, int64_t now)
{
	if (!w->npending && !w->overflow && w->unwatched == w->unwatched_sent)
		return -1;
	int64_t left = w->first_at + MUX_WATCH_COALESCE_MS - now;
	return left > 0 ? (int)left : 0;
}

/* The attributes of a CHANGED_INSIDE entry: its lstat (attrs_follow 1). False: it is gone, its
 * name changed. */
static bool put_inside_attrs(struct watch *w, const char *rel, struct buf *out)
{
	char *abs = join(w->root, rel);
	struct stat st;
	bool ok = abs && lstat(abs, &st) == 0;
	free(abs);
	if (!ok)
		return false;
	buf_put_u8(out, 1);
	sftp_attrs_put_stat(out, &st);
	return true;
}

/* Frames of one type holding counted entries; a frame ends once it passed PATHS_PER_FRAME_BYTES
 * (an entry is at most PATH_SENT_MAX and attributes, so a frame stays within MUX_FRAME_MAX). */
struct batch {
	struct buf *out;
	uint8_t type;
	uint32_t ch;
	size_t start, count_at; /* of the open frame, when count > 0 */
	uint32_t count;
};

/* Where the next entry starts (a frame is begun when none is open). */
static size_t batch_entry(struct batch *b)
{
	if (!b->count) {
		b->start = frame_begin(b->out, b->type, b->ch);
		b->count_at = b->out->len;
		buf_put_u32(b->out, 0);
	}
	return b->out->len;
}

/* The entry begun at `at` is complete (keep), or taken back (with its frame, if it was alone). */
static void batch_done(struct batch *b, size_t at, bool keep)
{
	if (!keep) {
		buf_truncate(b->out, b->count ? at : b->start);
		return;
	}
	buf_set_u32_at(b->out, b->count_at, ++b->count);
	if (b->out->len - b->start >= PATHS_PER_FRAME_BYTES) {
		frame_end(b->out, b->start);
		b->count = 0;
	}
}

static void batch_end(struct batch *b)
{
	if (b->count)
		frame_end(b->out, b->start);
}

/* Paths pending only as CH_INSIDE, in CHANGED_INSIDE frames; one that vanished becomes CH_NAME. */
static void flush_inside(struct watch *w, struct buf *out, uint32_t ch)
{
	struct batch b = {.out = out, .type = MUX_CHANGED_INSIDE, .ch = ch};
	for (int i = 0; i < w->npending; i++) {
		struct pending *p = &w->pending[i];
		if (p->kinds != CH_INSIDE)
			continue;
		size_t at = batch_entry(&b);
		buf_put_cstring(out, p->path);
		bool here = put_inside_attrs(w, p->path, out);
		batch_done(&b, at, here);
		if (!here)
			p->kinds = CH_NAME;
	}
	batch_end(&b);
}

/* Paths pending with CH_NAME, in CHANGED frames. */
static void flush_names(struct watch *w, struct buf *out, uint32_t ch)
{
	struct batch b = {.out = out, .type = MUX_CHANGED, .ch = ch};
	for (int i = 0; i < w->npending; i++) {
		if (!(w->pending[i].kinds & CH_NAME))
			continue;
		size_t at = batch_entry(&b);
		buf_put_cstring(out, w->pending[i].path);
		batch_done(&b, at, true);
	}
	batch_end(&b);
}

void watch_flush(struct watch *w, struct buf *out, uint32_t ch)
{
	if (w->unwatched != w->unwatched_sent) {
		size_t start = frame_begin(out, MUX_PARTIAL, ch);
		buf_put_u32(out, w->unwatched);
		frame_end(out, start);
		w->unwatched_sent = w->unwatched;
	}
	if (w->overflow) {
		frame_end(out, frame_begin(out, MUX_OVERFLOW, ch));
	} else {
		/* INSIDE first: a directory found gone there is sent as a name change. */
		flush_inside(w, out, ch);
		flush_names(w, out, ch);
	}
	for (int i = 0; i < w->npending; i++)
		free(w->pending[i].path);
	w->npending = 0;
	w->overflow = false;
}
