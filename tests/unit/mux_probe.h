/* mux_probe.h: what the parts of mux_probe share: the target the tests run against, and running
 * a command on it. */
#ifndef SANDMOUNT_TESTS_MUX_PROBE_H
#define SANDMOUNT_TESTS_MUX_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "mux/agent_mux.h"
#include "transport.h"

/* What the tests run against: the mux directly, or a transport. */
struct target {
	struct agent_mux *mux;
	struct transport *t;
	const char *dir; /* remote workspace */
};

/* exec_proc.coherent_exit of the last command run() waited for. */
extern bool last_coherent;

/* Run cmd with stdin (NULL: none, EOF at once), collect stdout/stderr; returns the status or
 * -1 (then *e is set). */
int run(struct target *tg, const char *cmd, const uint8_t *in, size_t in_len, struct buf *out,
	struct buf *err, struct err *e);

/* mux_probe_watch.c: the change watch's reports, kind by kind. */
void test_watch(struct target *tg);
/* The CHECKs test_watch passed and failed (check.h counts per file). */
void watch_check_counts(int *passed, int *failed);

#endif
