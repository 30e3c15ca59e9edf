/*
 * The supervisor's control socket: a unix stream socket (mode 0600) that
 * switchboardctl talks to. The protocol is one request line per connection;
 * the reply is any number of data lines, then a final "OK" or
 * "ERR <message>" line, after which the supervisor closes the connection.
 * This module only does the socket side (accepting, bounded reading,
 * non-blocking writing, timeouts); what a request means is the handler's
 * business (sup_main.c).
 */
#ifndef SB_SUP_CONTROL_H
#define SB_SUP_CONTROL_H

#include <stddef.h>

struct ev_loop;
struct sup_control;
struct sup_reply;

/* Longest request line, newline included. */
#define SUP_CONTROL_MAX_REQUEST 4096
/* Clients served at once; more are told "ERR busy" and closed. */
#define SUP_CONTROL_MAX_CLIENTS 16
/* Largest reply; a handler that writes more gets "ERR reply too long". */
#define SUP_CONTROL_MAX_REPLY (256u << 10)
/* A client that neither sends its request nor reads its reply within this
 * many seconds is dropped. */
#define SUP_CONTROL_TIMEOUT_S 10.0

/* Handles one request (the line without its newline, NUL-terminated and
 * writable). Adds data lines with sup_reply_line(); returns 0 for "OK", or -1
 * with *error_r (one line) for "ERR <error>". */
typedef int sup_control_handler(void *ctx, char *request, struct sup_reply *reply,
                                const char **error_r);

/* Appends one data line (without its newline; must not contain one). */
void sup_reply_line(struct sup_reply *reply, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Binds the socket at path (removing a stale one: the caller holds the lock
 * that makes any existing file stale) with mode 0600 and starts serving on
 * loop. Returns NULL with *error_r on failure. */
struct sup_control *sup_control_new(struct ev_loop *loop, const char *path,
                                    sup_control_handler *handler, void *ctx, const char **error_r);
/* Closes every client and the socket, removes the socket file, and sets
 * *control to NULL. */
void sup_control_free(struct sup_control **control);

#endif
