#!/bin/sh
# A private MariaDB server for the storage tests (ctest fixture "mariadb").
#
#   tests/mariadb.sh start DIR   initialize DIR/data once, start mariadbd on
#                                DIR/mysql.sock (no TCP), wait until it answers,
#                                and create database `switchboard` with user
#                                switchboard@localhost (password "switchboard")
#   tests/mariadb.sh stop DIR    shut it down (mariadb-admin shutdown, then
#                                SIGTERM and SIGKILL after deadlines)
#
# Both are idempotent: start reuses an initialized datadir and a server that
# is already running; stop does nothing when no server runs. No option file
# of the machine is read (--no-defaults), so a system MariaDB is not touched.
# Needs mariadb-server (scripts/test installs it).
set -eu

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
datadir=$dir/data
sock=$dir/mysql.sock
pidfile=$dir/mariadbd.pid
errlog=$dir/error.log
deadline=30

find_tool() {
    for candidate in "$@"; do
        if command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

MARIADBD=$(find_tool /usr/sbin/mariadbd mariadbd /usr/sbin/mysqld) || {
    echo "mariadb.sh: mariadbd not found: install mariadb-server" >&2
    exit 1
}
INSTALL_DB=$(find_tool mariadb-install-db mysql_install_db) || {
    echo "mariadb.sh: mariadb-install-db not found: install mariadb-server" >&2
    exit 1
}
ADMIN=$(find_tool mariadb-admin mysqladmin) || {
    echo "mariadb.sh: mariadb-admin not found: install mariadb-client" >&2
    exit 1
}
CLIENT=$(find_tool mariadb mysql) || {
    echo "mariadb.sh: mariadb (client) not found: install mariadb-client" >&2
    exit 1
}

# mariadbd refuses to run as root unless told to.
user_opt=
if [ "$(id -u)" -eq 0 ]; then
    user_opt=--user=root
fi

# The pid of our server when it is running, else nothing. The pid file may
# be stale (a killed server, a rebooted machine): check the process is a
# mariadbd whose command line names our datadir.
server_pid() {
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    case "$pid" in
    '' | *[!0-9]*) return 0 ;;
    esac
    if [ -r "/proc/$pid/cmdline" ] &&
        tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "--datadir=$datadir"; then
        echo "$pid"
    fi
}

ping_server() {
    "$ADMIN" --no-defaults --socket="$sock" --user=root --connect-timeout=2 ping >/dev/null 2>&1
}

start() {
    # Unix socket paths are limited to 108 bytes.
    if [ ${#sock} -gt 100 ]; then
        echo "mariadb.sh: socket path too long (${#sock} bytes): $sock" >&2
        exit 1
    fi
    pid=$(server_pid)
    if [ -z "$pid" ]; then
        if [ ! -d "$datadir/mysql" ]; then
            rm -rf "$datadir"
            if ! "$INSTALL_DB" --no-defaults --datadir="$datadir" \
                --auth-root-authentication-method=normal --skip-test-db \
                $user_opt >"$dir/install.log" 2>&1; then
                echo "mariadb.sh: mariadb-install-db failed; see $dir/install.log:" >&2
                tail -n 20 "$dir/install.log" >&2
                exit 1
            fi
        fi
        rm -f "$sock" "$sock.lock" "$pidfile"
        # Detached from our stdout/stderr: ctest waits for them to close.
        "$MARIADBD" --no-defaults --datadir="$datadir" --socket="$sock" \
            --pid-file="$pidfile" --log-error="$errlog" --skip-networking \
            --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
            $user_opt </dev/null >>"$dir/mariadbd.out" 2>&1 &
        server=$!
    else
        server=$pid
    fi

    waited=0
    until ping_server; do
        if ! kill -0 "$server" 2>/dev/null; then
            echo "mariadb.sh: mariadbd exited during start; see $errlog:" >&2
            tail -n 20 "$errlog" >&2 2>/dev/null || true
            exit 1
        fi
        if [ "$waited" -ge $((deadline * 10)) ]; then
            echo "mariadb.sh: mariadbd did not answer within ${deadline}s; see $errlog" >&2
            kill "$server" 2>/dev/null || true
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done

    "$CLIENT" --no-defaults --socket="$sock" --user=root <<'SQL'
CREATE DATABASE IF NOT EXISTS switchboard CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'switchboard'@'localhost' IDENTIFIED BY 'switchboard';
GRANT ALL PRIVILEGES ON switchboard.* TO 'switchboard'@'localhost';
SQL
    echo "mariadb.sh: mariadbd $(server_pid) serving $sock"
}

stop() {
    pid=$(server_pid)
    if [ -z "$pid" ]; then
        echo "mariadb.sh: no server running in $dir"
        return 0
    fi
    "$ADMIN" --no-defaults --socket="$sock" --user=root --connect-timeout=5 \
        shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -eq $((deadline * 10)) ]; then
            echo "mariadb.sh: mariadbd $pid still running after ${deadline}s; SIGTERM" >&2
            kill -TERM "$pid" 2>/dev/null || true
        fi
        if [ "$waited" -ge $((deadline * 20)) ]; then
            echo "mariadb.sh: mariadbd $pid still running; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$pidfile"
    echo "mariadb.sh: mariadbd $pid stopped"
}

case "$cmd" in
start) start ;;
stop) stop ;;
*) usage ;;
esac
