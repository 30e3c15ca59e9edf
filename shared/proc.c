/*
 * The worker side of the supervisor contract described in proc.h.
 */
#include "shared/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool proc_supervised(void)
{
    const char *v = getenv(PROC_ENV_SUPERVISED);
    return v != NULL && strcmp(v, "1") == 0;
}

int proc_life_fd(void)
{
    return proc_supervised() ? PROC_LIFE_FD : -1;
}

static void status_write(const char *line)
{
    size_t len = strlen(line);

    if (!proc_supervised())
        return;
    /* The pipe is tiny traffic; a short or failed write means the supervisor
     * is gone, which the life pipe reports separately. */
    if (write(PROC_STATUS_FD, line, len) < 0 && errno != EAGAIN)
        return;
}

void proc_report_ready(void)
{
    status_write("READY\n");
}

void proc_report_conns(unsigned conns)
{
    char line[32];
    snprintf(line, sizeof(line), "CONNS %u\n", conns);
    status_write(line);
}

int proc_listen_fd(const char *name)
{
    const char *v = getenv(PROC_ENV_LISTEN_FDS);
    size_t nlen = strlen(name);

    if (!proc_supervised() || v == NULL)
        return -1;
    while (*v != '\0') {
        const char *eq = strchr(v, '=');
        const char *sp;

        if (eq == NULL)
            return -1;
        sp = strchr(eq, ' ');
        if ((size_t)(eq - v) == nlen && strncmp(v, name, nlen) == 0)
            return atoi(eq + 1);
        if (sp == NULL)
            break;
        v = sp + 1;
    }
    return -1;
}

int proc_drop_privileges(const char *user, const char **error_r)
{
    struct passwd *pw;

    if (user == NULL || geteuid() != 0)
        return 0;
    pw = getpwnam(user);
    if (pw == NULL) {
        *error_r = "unknown user";
        return -1;
    }
    if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        *error_r = strerror(errno);
        return -1;
    }
    if (setuid(0) == 0) {
        *error_r = "privileges could be regained";
        return -1;
    }
    return 0;
}

const char *proc_config_arg(int argc, char **argv, const char *program)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            return argv[i + 1];
    }
    fprintf(stderr, "usage: %s --config PATH\n", program);
    exit(PROC_EXIT_CONFIG);
}
