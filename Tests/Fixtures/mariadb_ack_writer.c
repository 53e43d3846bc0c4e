/* A MariaDB/MySQL write load that records exactly which commits the server acknowledged, and when.
 *
 *   mariadb_ack_writer SOCKET USER PASSWORD TABLE FIRST_ID ACK_FILE
 *
 * Inserts ids FIRST_ID, FIRST_ID+1, … into TABLE (`id BIGINT PRIMARY KEY, payload …`), one
 * autocommit statement at a time on one connection through the unix socket SOCKET (PASSWORD ""
 * for none, e.g. root with unix_socket authentication), and appends
 *
 *   "<id> <sent_us> <acked_us> <retries>\n"
 *
 * to ACK_FILE (one write(2), O_APPEND) only after the server answered OK: for InnoDB with
 * innodb_flush_log_at_trx_commit=1 that answer comes after the commit is durable; for MyISAM
 * after the row was written to the table's files. sent_us is CLOCK_REALTIME just before the first
 * attempt was sent, acked_us just after the OK arrived, so acked_us - sent_us is the commit
 * latency the application saw. A statement refused because the server is read-only (error 1290,
 * what `SET GLOBAL read_only = ON` does to a user without READ ONLY ADMIN) is retried every
 * millisecond and counted in <retries>, as an application that must not lose the write would.
 * So the file lists acknowledged commits in order, and at most one commit (the next id) is in
 * flight at any moment. ACK_FILE must not be on a filesystem that gets frozen. Runs until killed,
 * or until a statement fails otherwise (exit 1).
 *
 * Built by the integration tests and bench/mysql-stall.sh with:
 *   cc -O1 $(pkg-config --cflags libmariadb) mariadb_ack_writer.c $(pkg-config --libs libmariadb)
 */
#include <fcntl.h>
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long realtime_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000000LL + now.tv_nsec / 1000;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: mariadb_ack_writer SOCKET USER PASSWORD TABLE FIRST_ID ACK_FILE\n");
        return 2;
    }
    const char *socket = argv[1], *user = argv[2], *password = argv[3], *table = argv[4];
    MYSQL *connection = mysql_init(NULL);
    if (connection == NULL ||
        mysql_real_connect(connection, NULL, user, password[0] ? password : NULL, NULL, 0, socket, 0) == NULL) {
        fprintf(stderr, "mariadb_ack_writer: connect: %s\n", connection ? mysql_error(connection) : "out of memory");
        return 2;
    }
    int fd = open(argv[6], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror("mariadb_ack_writer: open ACK_FILE");
        return 2;
    }
    for (long long id = atoll(argv[5]);; id++) {
        char sql[256];
        int length = snprintf(sql, sizeof sql, "INSERT INTO %s (id, payload) VALUES (%lld, REPEAT('x', 200))", table, id);
        long long sent = realtime_us();
        int retries = 0;
        while (mysql_real_query(connection, sql, (unsigned long)length) != 0) {
            if (mysql_errno(connection) != 1290) {
                fprintf(stderr, "mariadb_ack_writer: insert %lld into %s: %u %s\n", id, table,
                        mysql_errno(connection), mysql_error(connection));
                return 1;
            }
            retries++;
            usleep(1000);
        }
        long long acked = realtime_us();
        char line[96];
        int size = snprintf(line, sizeof line, "%lld %lld %lld %d\n", id, sent, acked, retries);
        if (write(fd, line, (size_t)size) != size) {
            perror("mariadb_ack_writer: write ACK_FILE");
            return 1;
        }
    }
}
