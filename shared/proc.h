/*
 * What a worker process inherits from the supervisor, and how it talks back.
 *
 * The supervisor fork+execs every worker as "<binary> --config <path>" with:
 *   fd 3  the read end of the life pipe: it reaches EOF when the supervisor
 *         is gone, and the worker must then exit (no orphan keeps a port);
 *   fd 4  the write end of the worker's status pipe: text lines "READY"
 *         (once, when the worker serves) and "CONNS <n>" (open connections);
 *   fd 5+ the listening sockets, named in SWITCHBOARD_LISTEN_FDS as
 *         "name=fd name=fd ..." (listener names from the configuration).
 * SWITCHBOARD_SUPERVISED=1 says all of this is present. A worker started by
 * hand (for debugging) has none of it and these calls are no-ops.
 */
#ifndef SB_PROC_H
#define SB_PROC_H

#include <stdbool.h>

#define PROC_LIFE_FD 3
#define PROC_STATUS_FD 4
#define PROC_FIRST_LISTEN_FD 5
#define PROC_ENV_SUPERVISED "SWITCHBOARD_SUPERVISED"
#define PROC_ENV_LISTEN_FDS "SWITCHBOARD_LISTEN_FDS"
/* Exit code that tells the supervisor "configuration error, do not restart". */
#define PROC_EXIT_CONFIG 78

bool proc_supervised(void);
/* The life pipe's fd, or -1 when not supervised. */
int proc_life_fd(void);
/* Tells the supervisor this worker is up. */
void proc_report_ready(void);
/* Tells the supervisor how many connections are open (sent on change). */
void proc_report_conns(unsigned conns);
/* The inherited listening socket with this name, or -1. */
int proc_listen_fd(const char *name);
/* When running as root and user is set: switch to that user (and its
 * group) for good. -1 with *error_r on failure. */
int proc_drop_privileges(const char *user, const char **error_r);
/* Parses "--config PATH" (and "--help"); exits 78 on bad usage. */
const char *proc_config_arg(int argc, char **argv, const char *program);

#endif
