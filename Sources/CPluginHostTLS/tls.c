#define _GNU_SOURCE
#include "pluginhost_tls.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct ph_tls_client {
    SSL_CTX *context;
    SSL *ssl;
    int fd;
};

unsigned long long ph_tls_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (unsigned long long)now.tv_sec * 1000ULL + (unsigned long long)now.tv_nsec / 1000000ULL;
}

/* OpenSSL's error queue (or `fallback`) into `error`, and the queue cleared. */
static void describe(char *error, size_t size, const char *what, const char *fallback) {
    unsigned long code = ERR_get_error();
    char reason[256] = "";
    if (code != 0) {
        ERR_error_string_n(code, reason, sizeof reason);
    }
    snprintf(error, size, "%s: %s", what, code != 0 ? reason : fallback);
    ERR_clear_error();
}

/* Waits for the socket as SSL wants it; 0 when ready, -2 on the deadline, -1 on error. */
static int wait_for(int fd, int want_write, unsigned long long deadline_ms) {
    for (;;) {
        unsigned long long now = ph_tls_now_ms();
        if (now >= deadline_ms) {
            return -2;
        }
        struct pollfd event = {.fd = fd, .events = want_write ? POLLOUT : POLLIN, .revents = 0};
        unsigned long long left = deadline_ms - now;
        int ready = poll(&event, 1, left > 60000 ? 60000 : (int)left);
        if (ready > 0) {
            return 0;
        }
        if (ready < 0 && errno != EINTR) {
            return -1;
        }
    }
}

ph_tls_client *ph_tls_connect(int fd, const char *host, const char *ca_file, const char *cert_file, const char *key_file,
                              unsigned long long deadline_ms, char *error, size_t error_size) {
    ERR_clear_error();
    SSL_CTX *context = SSL_CTX_new(TLS_client_method());
    if (context == NULL) {
        describe(error, error_size, "TLS setup", "cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(context, ca_file, NULL) != 1) {
        describe(error, error_size, ca_file, "cannot load the CA certificate");
        SSL_CTX_free(context);
        return NULL;
    }
    if (cert_file != NULL && key_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(context, cert_file) != 1) {
            describe(error, error_size, cert_file, "cannot load the client certificate");
            SSL_CTX_free(context);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(context, key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(context) != 1) {
            describe(error, error_size, key_file, "cannot load the client key, or it does not match the certificate");
            SSL_CTX_free(context);
            return NULL;
        }
    }
    SSL *ssl = SSL_new(context);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        describe(error, error_size, "TLS setup", "cannot create a connection");
        if (ssl != NULL) SSL_free(ssl);
        SSL_CTX_free(context);
        return NULL;
    }
    /* The name to check the server's certificate against: an address literal, or a DNS name
     * (then also sent as SNI). */
    unsigned char address[16];
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    int is_address = inet_pton(AF_INET, host, address) == 1 || inet_pton(AF_INET6, host, address) == 1;
    if (is_address ? X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1
                   : (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1)) {
        describe(error, error_size, host, "cannot set the name to verify");
        SSL_free(ssl);
        SSL_CTX_free(context);
        return NULL;
    }
    for (;;) {
        int rc = SSL_connect(ssl);
        if (rc == 1) {
            break;
        }
        int reason = SSL_get_error(ssl, rc);
        int waited = -1;
        if (reason == SSL_ERROR_WANT_READ || reason == SSL_ERROR_WANT_WRITE) {
            waited = wait_for(fd, reason == SSL_ERROR_WANT_WRITE, deadline_ms);
            if (waited == 0) continue;
        }
        long verify = SSL_get_verify_result(ssl);
        if (waited == -2) {
            snprintf(error, error_size, "TLS handshake with %s: no answer in time", host);
            ERR_clear_error();
        } else if (verify != X509_V_OK) {
            snprintf(error, error_size, "TLS handshake with %s: the server's certificate is refused: %s", host,
                     X509_verify_cert_error_string(verify));
            ERR_clear_error();
        } else {
            char what[300];
            snprintf(what, sizeof what, "TLS handshake with %s", host);
            describe(error, error_size, what, reason == SSL_ERROR_SYSCALL ? "the connection was closed" : "failed");
        }
        SSL_free(ssl);
        SSL_CTX_free(context);
        return NULL;
    }
    ph_tls_client *client = calloc(1, sizeof *client);
    if (client == NULL) {
        snprintf(error, error_size, "out of memory");
        SSL_free(ssl);
        SSL_CTX_free(context);
        return NULL;
    }
    client->context = context;
    client->ssl = ssl;
    client->fd = fd;
    return client;
}

int ph_tls_write_all(ph_tls_client *client, const void *data, size_t size, unsigned long long deadline_ms,
                     char *error, size_t error_size) {
    const unsigned char *bytes = data;
    while (size > 0) {
        ERR_clear_error();
        int rc = SSL_write(client->ssl, bytes, size > 1 << 30 ? 1 << 30 : (int)size);
        if (rc > 0) {
            bytes += rc;
            size -= (size_t)rc;
            continue;
        }
        int reason = SSL_get_error(client->ssl, rc);
        if (reason == SSL_ERROR_WANT_READ || reason == SSL_ERROR_WANT_WRITE) {
            int waited = wait_for(client->fd, reason == SSL_ERROR_WANT_WRITE, deadline_ms);
            if (waited == 0) continue;
            snprintf(error, error_size, waited == -2 ? "TLS write: no progress in time" : "TLS write: poll failed");
            return -1;
        }
        describe(error, error_size, "TLS write", "the connection was closed");
        return -1;
    }
    return 0;
}

ssize_t ph_tls_read(ph_tls_client *client, void *buffer, size_t size, unsigned long long deadline_ms,
                    char *error, size_t error_size) {
    for (;;) {
        ERR_clear_error();
        int rc = SSL_read(client->ssl, buffer, size > 1 << 30 ? 1 << 30 : (int)size);
        if (rc > 0) {
            return rc;
        }
        int reason = SSL_get_error(client->ssl, rc);
        if (reason == SSL_ERROR_ZERO_RETURN) {
            return 0;
        }
        if (reason == SSL_ERROR_WANT_READ || reason == SSL_ERROR_WANT_WRITE) {
            int waited = wait_for(client->fd, reason == SSL_ERROR_WANT_WRITE, deadline_ms);
            if (waited == 0) continue;
            if (waited == -2) return -2;
            snprintf(error, error_size, "TLS read: poll failed");
            return -1;
        }
        if (reason == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            return 0; /* closed without close_notify: the end of the stream all the same */
        }
        describe(error, error_size, "TLS read", "failed");
        return -1;
    }
}

int ph_tls_pending(ph_tls_client *client) {
    return SSL_pending(client->ssl);
}

void ph_tls_free(ph_tls_client *client) {
    SSL_set_quiet_shutdown(client->ssl, 0);
    (void)SSL_shutdown(client->ssl);
    ERR_clear_error();
    SSL_free(client->ssl);
    SSL_CTX_free(client->context);
    free(client);
}
