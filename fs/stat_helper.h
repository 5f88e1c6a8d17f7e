/* stat_helper.h: a separate process that stats paths through our own mount for the daemon
 * (stat_helper.c says why a process and not a thread). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* The argument that runs this executable as the helper (main() checks it first). */
#define STAT_HELPER_ARG "--stat-helper"

struct stat_helper;

/* The daemon's end; the process starts at the first stat (and again if it died). */
struct stat_helper *stat_helper_new(void);
void stat_helper_free(struct stat_helper *h);

/* stat(path) done by the helper, waited for until `deadline` (now_ms() clock). true when the stat
 * returned in time (successful or not); false past the deadline or when no helper could run. */
bool stat_helper_stat(struct stat_helper *h, const char *path, int64_t deadline);

/* From now on no stat is asked and waits in progress end "not done" (the daemon is stopping:
 * no FUSE worker will answer the stat any more). */
void stat_helper_cancel(struct stat_helper *h);
bool stat_helper_cancelled(struct stat_helper *h);

/* Whether thread `tid` (a FUSE request's caller) is one of the helper's. */
bool stat_helper_owns(struct stat_helper *h, pid_t tid);

/* The helper's own main (argv[1] == STAT_HELPER_ARG): serve requests on descriptor 3. */
int stat_helper_main(void);
