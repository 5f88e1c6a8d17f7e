/* own_change.h: directories with a change of ours in flight, and the watch reports about them
 * that wait for it to end (own_change.c). */
#ifndef SANDMOUNT_OWN_CHANGE_H
#define SANDMOUNT_OWN_CHANGE_H

#include <stdbool.h>
#include <stdint.h>

#include "sftp/sftp_client.h"

struct own_changes;

struct own_changes *own_changes_new(void);
void own_changes_free(struct own_changes *o);

/* A change of ours in directory dir starts. false: not tracked (the table is full); then
 * own_change_end must not be called for it. */
bool own_change_begin(struct own_changes *o, uint64_t dir);
/* The watch reported dir with these attributes. true: a change of ours is in flight there and the
 * report waits for its end (replacing an older one); false: handle it now. */
bool own_change_defer(struct own_changes *o, uint64_t dir, const struct sftp_attrs *reported);
/* A tracked change in dir ended (the attributes its reply brought are remembered). true when it
 * was the last one there and a report waited: *reported is that report, to handle now. */
bool own_change_end(struct own_changes *o, uint64_t dir, struct sftp_attrs *reported);

#endif
