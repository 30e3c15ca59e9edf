/*
 * Logging for every Switchboard process. Each line names the process
 * (set once by log_init) and, through the callers' format strings, the
 * session and peer. Lines go to stderr, which the supervisor passes on,
 * so one terminal or one journal shows the whole tree.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Names the process in every line ("broker", "xmpp"...) and sets the
 * lowest level that is printed. */
void log_init(const char *process, enum log_level level);
void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn" or "error"; -1 when unknown. */
int log_level_parse(const char *name);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A warning with strerror(errno) appended. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A warning without errno. */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Configuration or resource failure: log and exit with the given code
 * (78, EX_CONFIG, tells the supervisor not to restart). */
void log_fatal(int exit_code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
/* A broken invariant: log and abort so that a core is left. */
void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Writes a printable, bounded sample of untrusted bytes into out (at most
 * out_size - 1 characters plus NUL): non-printable bytes become \xNN. For
 * log lines about input that broke a protocol. Returns out. */
char *log_sample(char *out, size_t out_size, const void *data, size_t len);

#endif
