/*
 * TLS for the group process's etcd connections, over the system's OpenSSL (libssl3; the
 * headers come with libssl-dev, which libpq-dev already needs). Only `pluginhost __group`
 * links this in use: the host itself never opens a network connection.
 *
 * A connection is a non-blocking socket the caller connected; the handshake and every read
 * and write take a deadline in milliseconds of CLOCK_MONOTONIC and poll on their own.
 */
#ifndef PLUGINHOST_TLS_H
#define PLUGINHOST_TLS_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ph_tls_client ph_tls_client;

/*
 * Handshake on the connected socket `fd` (not taken over: the caller closes it after
 * ph_tls_free). The server's certificate must chain to `ca_file` and name `host` (a DNS
 * name or an IP address literal); `cert_file`/`key_file` (both or neither) are the client
 * certificate. TLS 1.2 at least. On failure returns NULL with a message in `error`.
 */
ph_tls_client *_Nullable ph_tls_connect(int fd, const char *_Nonnull host, const char *_Nonnull ca_file,
                                        const char *_Nullable cert_file, const char *_Nullable key_file,
                                        unsigned long long deadline_ms,
                                        char *_Nonnull error, size_t error_size);

/* Writes all of `data`; returns 0, or -1 with a message in `error` (a timeout included). */
int ph_tls_write_all(ph_tls_client *_Nonnull client, const void *_Nonnull data, size_t size,
                     unsigned long long deadline_ms, char *_Nonnull error, size_t error_size);

/*
 * Reads what is available (waiting until something is, or the deadline): returns the count
 * (> 0), 0 at the end of the stream, -2 when the deadline passed with nothing read, or -1
 * with a message in `error`.
 */
ssize_t ph_tls_read(ph_tls_client *_Nonnull client, void *_Nonnull buffer, size_t size,
                    unsigned long long deadline_ms, char *_Nonnull error, size_t error_size);

/* Bytes already decrypted and buffered (poll would not see them). */
int ph_tls_pending(ph_tls_client *_Nonnull client);

/* Sends close_notify (without waiting) and frees. */
void ph_tls_free(ph_tls_client *_Nonnull client);

/* CLOCK_MONOTONIC in milliseconds (the deadlines' clock). */
unsigned long long ph_tls_now_ms(void);

#ifdef __cplusplus
}
#endif

#endif
