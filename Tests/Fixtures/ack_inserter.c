/* A write load that records exactly which commits the server acknowledged.
 *
 *   ack_inserter CONNINFO FIRST_ID ACK_FILE
 *
 * Inserts ids FIRST_ID, FIRST_ID+1, … into table `acked`, one autocommit transaction at a
 * time on one connection, and appends "<id>\n" to ACK_FILE (one write(2), O_APPEND) only after
 * the server answered the INSERT: with synchronous_commit on, that answer comes after the
 * commit's WAL is flushed. So the file lists acknowledged commits in order, and at most one
 * commit (the next id) is in flight at any moment. ACK_FILE must not be on a filesystem that
 * gets frozen. Runs until killed or until a statement fails (exit 1).
 *
 * Built by the integration tests with: cc -O1 -I<libpq include> ack_inserter.c -lpq
 */
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: ack_inserter CONNINFO FIRST_ID ACK_FILE\n");
        return 2;
    }
    PGconn *connection = PQconnectdb(argv[1]);
    if (PQstatus(connection) != CONNECTION_OK) {
        fprintf(stderr, "ack_inserter: connect: %s", PQerrorMessage(connection));
        return 2;
    }
    int fd = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror("ack_inserter: open ACK_FILE");
        return 2;
    }
    const char *sql = "INSERT INTO acked (id, payload) VALUES ($1::bigint, repeat('x', 200))";
    for (long long id = atoll(argv[2]);; id++) {
        char text[32];
        snprintf(text, sizeof text, "%lld", id);
        const char *values[1] = {text};
        PGresult *result = PQexecParams(connection, sql, 1, NULL, values, NULL, NULL, 0);
        if (PQresultStatus(result) != PGRES_COMMAND_OK) {
            fprintf(stderr, "ack_inserter: insert %lld: %s", id, PQresultErrorMessage(result));
            return 1;
        }
        PQclear(result);
        char line[32];
        int length = snprintf(line, sizeof line, "%lld\n", id);
        if (write(fd, line, (size_t)length) != length) {
            perror("ack_inserter: write ACK_FILE");
            return 1;
        }
    }
}
