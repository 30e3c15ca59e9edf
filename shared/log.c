/*
 * The log line format is "LEVEL process[pid]: message", on stderr, one
 * write(2) per line so that lines of concurrent processes do not mix.
 */
#include "shared/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static char log_process[32] = "switchboard";
static enum log_level log_min = LOG_LEVEL_INFO;

void log_init(const char *process, enum log_level level)
{
    snprintf(log_process, sizeof(log_process), "%s", process);
    log_min = level;
}

void log_set_level(enum log_level level)
{
    log_min = level;
}

int log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(name, names[i]) == 0)
            return (int)i;
    return -1;
}

static void log_emit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void log_emit(enum log_level level, const char *errstr, const char *fmt, va_list ap)
{
    static const char *const tags[] = {"debug", "info", "warn", "error"};
    char line[2048];
    int n;
    size_t len;

    if (level < log_min)
        return;
    n = snprintf(line, sizeof(line), "%s %s[%d]: ", tags[level], log_process, (int)getpid());
    len = n < 0 ? 0 : (size_t)n;
    if (len < sizeof(line)) {
        n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
        len += n < 0 ? 0 : (size_t)n;
    }
    if (errstr != NULL && len < sizeof(line)) {
        n = snprintf(line + len, sizeof(line) - len, ": %s", errstr);
        len += n < 0 ? 0 : (size_t)n;
    }
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* One write per line; a failed log write has nowhere to be reported. */
    if (write(STDERR_FILENO, line, len) < 0)
        return;
}

#define LOG_BODY(level, errstr)                                                                    \
    do {                                                                                           \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_emit(level, errstr, fmt, ap);                                                          \
        va_end(ap);                                                                                \
    } while (0)

void log_debug(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_DEBUG, NULL);
}

void log_info(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_INFO, NULL);
}

void log_warn(const char *fmt, ...)
{
    const char *err = strerror(errno);
    LOG_BODY(LOG_LEVEL_WARN, err);
}

void log_warnx(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_WARN, NULL);
}

void log_error(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_ERROR, NULL);
}

void log_fatal(int exit_code, const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_ERROR, NULL);
    exit(exit_code);
}

void log_panic(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_ERROR, NULL);
    abort();
}

char *log_sample(char *out, size_t out_size, const void *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t o = 0;

    if (out_size == 0)
        return out;
    for (size_t i = 0; i < len && o + 5 < out_size; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
            out[o++] = (char)p[i];
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 15];
        }
    }
    out[o] = '\0';
    return out;
}
