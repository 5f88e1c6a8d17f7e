/* sandexec_check.h: `sandexec --check`, the gateway wiring report (see sandexec_check.c). */
#ifndef SANDMOUNT_SANDEXEC_CHECK_H
#define SANDMOUNT_SANDEXEC_CHECK_H

/* Print one line per check to stdout: $SHELL, /etc/shells, the config, then each workspace
 * directory given (the gateway's), or with none every configured and live mount. Returns the
 * exit status (0 all good, 1 something wrong). */
int sandexec_check(char *const *workspaces, int n);

#endif
