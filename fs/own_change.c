/* own_change.c: the directories we are changing ourselves right now (a create, unlink, mkdir,
 * rename... whose reply, with the directory's new attributes LSTATed in the same round trip, has
 * not come back yet).
 *
 * The watch reports such a change with the attributes the sandbox saw, and that report often
 * arrives before our own reply. Compared at once with the attributes held from before the change,
 * it looked foreign: the directory's attributes were dropped and the reply's were not trusted, so
 * the kernel's next look at the directory cost a round trip (every unlink of `rm -r` at 10 ms RTT
 * took two). A report for a directory with a change of ours in flight now waits for that change
 * to end and is then compared with what its reply brought. It waits for no longer than our
 * request does; the newest report for a directory is the one kept. The table is small and fixed:
 * a change that finds it full is not tracked, and reports about it are handled at once, as
 * before. */
#include "own_change.h"

#include <pthread.h>
#include <stdlib.h>

#define OWN_CHANGE_SLOTS 64

struct slot {
	uint64_t dir;	    /* 0: free */
	unsigned in_flight; /* our changes in dir not ended yet */
	bool reported;	    /* a report waits in `attrs` */
	struct sftp_attrs attrs;
};

struct own_changes {
	pthread_mutex_t lock;
	struct slot slots[OWN_CHANGE_SLOTS];
};

struct own_changes *own_changes_new(void)
{
	struct own_changes *o = calloc(1, sizeof(*o));
	if (o)
		pthread_mutex_init(&o->lock, NULL);
	return o;
}

void own_changes_free(struct own_changes *o)
{
	if (!o)
		return;
	pthread_mutex_destroy(&o->lock);
	free(o);
}

/* The slot of dir, or NULL (o->lock held). */
static struct slot *find(struct own_changes *o, uint64_t dir)
{
	for (size_t i = 0; i < OWN_CHANGE_SLOTS; i++)
		if (o->slots[i].dir == dir)
			return &o->slots[i];
	return NULL;
}

bool own_change_begin(struct own_changes *o, uint64_t dir)
{
	if (!o || !dir)
		return false;
	pthread_mutex_lock(&o->lock);
	struct slot *s = find(o, dir);
	if (!s && (s = find(o, 0)))
		*s = (struct slot){.dir = dir};
	if (s)
		s->in_flight++;
	pthread_mutex_unlock(&o->lock);
	return s != NULL;
}

bool own_change_defer(struct own_changes *o, uint64_t dir, const struct sftp_attrs *reported)
{
	if (!o || !dir)
		return false;
	pthread_mutex_lock(&o->lock);
	struct slot *s = find(o, dir);
	if (s) {
		s->reported = true;
		s->attrs = *reported;
	}
	pthread_mutex_unlock(&o->lock);
	return s != NULL;
}

bool own_change_end(struct own_changes *o, uint64_t dir, struct sftp_attrs *reported)
{
	bool waited = false;
	pthread_mutex_lock(&o->lock);
	struct slot *s = find(o, dir);
	if (s && --s->in_flight == 0) {
		waited = s->reported;
		if (waited)
			*reported = s->attrs;
		*s = (struct slot){0};
	}
	pthread_mutex_unlock(&o->lock);
	return waited;
}
