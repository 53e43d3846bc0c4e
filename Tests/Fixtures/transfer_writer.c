/* A two-database write load: money moves from MariaDB to PostgreSQL, one transfer at a time.
 *
 *   transfer_writer MARIADB_SOCKET PG_CONNINFO FIRST_ID ACK_FILE
 *
 * Transfer `id` (FIRST_ID, FIRST_ID+1, …) first debits MariaDB — one transaction:
 * `bank.accounts` balance minus 1 and a row in `bank.debits` — and, once that COMMIT was
 * acknowledged, credits PostgreSQL — one transaction: `ledger_credits` row and `ledger_balance`
 * plus 1. "<id>\n" goes to ACK_FILE (O_APPEND, outside any frozen filesystem) once both were
 * acknowledged. A credit therefore never commits before its debit: a pair of snapshots that
 * holds a credit without its debit is not one consistent cut.
 *
 * A failed statement is retried (the same step of the same transfer); runs until killed.
 * Built by the integration tests with: cc transfer_writer.c $(libmariadb) $(libpq)
 */
#include <fcntl.h>
#include <libpq-fe.h>
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int debit(MYSQL *db, long long id) {
    char sql[256];
    if (mysql_query(db, "START TRANSACTION") != 0) return -1;
    if (mysql_query(db, "UPDATE bank.accounts SET balance = balance - 1 WHERE id = 1") != 0) goto fail;
    snprintf(sql, sizeof sql, "INSERT INTO bank.debits (id, amount) VALUES (%lld, 1)", id);
    if (mysql_query(db, sql) != 0) goto fail;
    if (mysql_query(db, "COMMIT") != 0) goto fail;
    return 0;
fail:
    fprintf(stderr, "transfer_writer: debit %lld: %s\n", id, mysql_error(db));
    mysql_query(db, "ROLLBACK");
    return -1;
}

static int credit(PGconn *db, long long id) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "BEGIN; INSERT INTO ledger_credits (id, amount) VALUES (%lld, 1); "
             "UPDATE ledger_balance SET balance = balance + 1 WHERE id = 1; COMMIT", id);
    PGresult *result = PQexec(db, sql);
    int ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    if (!ok) {
        fprintf(stderr, "transfer_writer: credit %lld: %s", id, PQresultErrorMessage(result));
        PQclear(result);
        PQclear(PQexec(db, "ROLLBACK"));
        return -1;
    }
    PQclear(result);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: transfer_writer MARIADB_SOCKET PG_CONNINFO FIRST_ID ACK_FILE\n");
        return 2;
    }
    MYSQL *maria = mysql_init(NULL);
    if (mysql_real_connect(maria, NULL, "root", NULL, NULL, 0, argv[1], 0) == NULL) {
        fprintf(stderr, "transfer_writer: MariaDB: %s\n", mysql_error(maria));
        return 2;
    }
    PGconn *pg = PQconnectdb(argv[2]);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "transfer_writer: PostgreSQL: %s", PQerrorMessage(pg));
        return 2;
    }
    int fd = open(argv[4], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror("transfer_writer: open ACK_FILE");
        return 2;
    }
    for (long long id = atoll(argv[3]);; id++) {
        while (debit(maria, id) != 0) usleep(10000);
        while (credit(pg, id) != 0) usleep(10000);
        char line[32];
        int length = snprintf(line, sizeof line, "%lld\n", id);
        if (write(fd, line, (size_t)length) != length) {
            perror("transfer_writer: write ACK_FILE");
            return 1;
        }
    }
}
