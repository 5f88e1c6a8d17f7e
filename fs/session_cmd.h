/* session_cmd.h: `sandmount up`, `down` and `list` (session_cmd.c) and what they use of the
 * mount commands in main.c. */
#ifndef SANDMOUNT_SESSION_CMD_H
#define SANDMOUNT_SESSION_CMD_H

#include <stdbool.h>
#include <stddef.h>

/* True when word (argv[1]) names a session command. */
bool session_cmd_is(const char *word);
/* Run it: argv[0] is the command word. Returns the exit status. */
int session_cmd_main(int argc, char **argv);

/* main.c */
/* Canonicalize arg into mp and check it can be mounted on (clearing a stale mount): 0 or -1
 * after printing why. */
int prepare_mountpoint(const char *arg, char *mp, size_t len);
/* sandmount -u: flush, unmount, wait for the daemon to exit. Returns the exit status. */
int cmd_unmount(const char *arg);

#endif
