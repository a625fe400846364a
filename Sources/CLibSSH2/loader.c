/* libssh2 through dlopen("libssh2.so.1") on first use, not linked.
 *
 * Linked, libssh2 and the libcrypto and libz under it are loaded and relocated by every
 * vllmctl run, ~1 ms (`vllmctl status` must stay within 2x of squeue), also by runs that never
 * use SSH; and a login node without libssh2 could not start vllmctl at all. So each libssh2
 * function vllmctl calls is defined here with libssh2.h's own prototype (the compiler checks
 * each against the header) and forwards to the library's, resolved once by vc_ssh2_load.
 * Swift calls them as before (`import CLibSSH2`); SSHSession calls vc_ssh2_load first and
 * turns a failure into an error that says what to install.
 *
 * The stubs below were generated from the preprocessed header (`gcc -E` of shim.h) for the
 * functions in Sources/VLLMCtlKit; a new one is added to VC_SSH2_FUNCTIONS and given a stub of
 * the same shape. */
#include "shim.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define VC_SSH2_FUNCTIONS(X) \
    X(libssh2_agent_connect) \
    X(libssh2_agent_disconnect) \
    X(libssh2_agent_free) \
    X(libssh2_agent_get_identity) \
    X(libssh2_agent_init) \
    X(libssh2_agent_list_identities) \
    X(libssh2_agent_set_identity_path) \
    X(libssh2_agent_userauth) \
    X(libssh2_channel_close) \
    X(libssh2_channel_direct_tcpip_ex) \
    X(libssh2_channel_eof) \
    X(libssh2_channel_free) \
    X(libssh2_channel_get_exit_signal) \
    X(libssh2_channel_get_exit_status) \
    X(libssh2_channel_open_ex) \
    X(libssh2_channel_process_startup) \
    X(libssh2_channel_read_ex) \
    X(libssh2_channel_send_eof) \
    X(libssh2_channel_wait_closed) \
    X(libssh2_channel_write_ex) \
    X(libssh2_free) \
    X(libssh2_hostkey_hash) \
    X(libssh2_init) \
    X(libssh2_keepalive_config) \
    X(libssh2_keepalive_send) \
    X(libssh2_knownhost_checkp) \
    X(libssh2_knownhost_free) \
    X(libssh2_knownhost_init) \
    X(libssh2_knownhost_readline) \
    X(libssh2_session_banner_get) \
    X(libssh2_session_block_directions) \
    X(libssh2_session_callback_set) \
    X(libssh2_session_disconnect_ex) \
    X(libssh2_session_free) \
    X(libssh2_session_get_blocking) \
    X(libssh2_session_handshake) \
    X(libssh2_session_hostkey) \
    X(libssh2_session_init_ex) \
    X(libssh2_session_last_errno) \
    X(libssh2_session_last_error) \
    X(libssh2_session_method_pref) \
    X(libssh2_session_set_blocking) \
    X(libssh2_session_set_timeout) \
    X(libssh2_session_supported_algs) \
    X(libssh2_sftp_close_handle) \
    X(libssh2_sftp_fstat_ex) \
    X(libssh2_sftp_fsync) \
    X(libssh2_sftp_init) \
    X(libssh2_sftp_last_error) \
    X(libssh2_sftp_mkdir_ex) \
    X(libssh2_sftp_open_ex) \
    X(libssh2_sftp_read) \
    X(libssh2_sftp_rename_ex) \
    X(libssh2_sftp_seek64) \
    X(libssh2_sftp_shutdown) \
    X(libssh2_sftp_stat_ex) \
    X(libssh2_sftp_symlink_ex) \
    X(libssh2_sftp_unlink_ex) \
    X(libssh2_sftp_write) \
    X(libssh2_userauth_authenticated) \
    X(libssh2_userauth_keyboard_interactive_ex) \
    X(libssh2_userauth_list) \
    X(libssh2_userauth_publickey_fromfile_ex) \
    X(libssh2_version)

static struct {
#define VC_FIELD(name) __typeof__(name) *name;
    VC_SSH2_FUNCTIONS(VC_FIELD)
#undef VC_FIELD
} api;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char problem[512];

static void load(void) {
    void *lib = dlopen("libssh2.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(problem, sizeof problem, "cannot load libssh2 (%s)", dlerror());
        return;
    }
#define VC_RESOLVE(name)                                                                      \
    *(void **)&api.name = dlsym(lib, #name);                                                  \
    if (!api.name) {                                                                          \
        snprintf(problem, sizeof problem, "libssh2.so.1 has no %s (%s)", #name, dlerror());   \
        return;                                                                               \
    }
    VC_SSH2_FUNCTIONS(VC_RESOLVE)
#undef VC_RESOLVE
    /* Before anything initialises OpenSSL: no atexit cleanup, which would crash an exit while
       another thread is inside libssh2 or libcurl (see shim.h). Looked up through libssh2's
       handle, which searches the libcrypto it brought. */
    int (*init_crypto)(uint64_t, const void *);
    *(void **)&init_crypto = dlsym(lib, "OPENSSL_init_crypto");
    if (init_crypto) init_crypto(0x00080000L /* OPENSSL_INIT_NO_ATEXIT */, NULL);
}

const char *vc_ssh2_load(void) {
    pthread_once(&once, load);
    return problem[0] ? problem : NULL;
}

/* Every stub: libssh2 must be there (SSHSession checked vc_ssh2_load before any use). */
static void vc_ssh2_need(void) {
    const char *failed = vc_ssh2_load();
    if (failed) {
        fprintf(stderr, "vllmctl: %s; install libssh2 (Debian: apt install libssh2-1)\n", failed);
        abort();
    }
}

int libssh2_agent_connect(LIBSSH2_AGENT *agent) {
    vc_ssh2_need();
    return api.libssh2_agent_connect(agent);
}

int libssh2_agent_disconnect(LIBSSH2_AGENT *agent) {
    vc_ssh2_need();
    return api.libssh2_agent_disconnect(agent);
}

void libssh2_agent_free(LIBSSH2_AGENT *agent) {
    vc_ssh2_need();
    api.libssh2_agent_free(agent);
}

int libssh2_agent_get_identity(LIBSSH2_AGENT *agent, struct libssh2_agent_publickey **store, struct libssh2_agent_publickey *prev) {
    vc_ssh2_need();
    return api.libssh2_agent_get_identity(agent, store, prev);
}

LIBSSH2_AGENT * libssh2_agent_init(LIBSSH2_SESSION *session) {
    vc_ssh2_need();
    return api.libssh2_agent_init(session);
}

int libssh2_agent_list_identities(LIBSSH2_AGENT *agent) {
    vc_ssh2_need();
    return api.libssh2_agent_list_identities(agent);
}

void libssh2_agent_set_identity_path(LIBSSH2_AGENT *agent, const char *path) {
    vc_ssh2_need();
    api.libssh2_agent_set_identity_path(agent, path);
}

int libssh2_agent_userauth(LIBSSH2_AGENT *agent, const char *username, struct libssh2_agent_publickey *identity) {
    vc_ssh2_need();
    return api.libssh2_agent_userauth(agent, username, identity);
}

int libssh2_channel_close(LIBSSH2_CHANNEL *channel) {
    vc_ssh2_need();
    return api.libssh2_channel_close(channel);
}

LIBSSH2_CHANNEL * libssh2_channel_direct_tcpip_ex(LIBSSH2_SESSION *session, const char *host, int port, const char *shost, int sport) {
    vc_ssh2_need();
    return api.libssh2_channel_direct_tcpip_ex(session, host, port, shost, sport);
}

int libssh2_channel_eof(LIBSSH2_CHANNEL *channel) {
    vc_ssh2_need();
    return api.libssh2_channel_eof(channel);
}

int libssh2_channel_free(LIBSSH2_CHANNEL *channel) {
    vc_ssh2_need();
    return api.libssh2_channel_free(channel);
}

int libssh2_channel_get_exit_signal(LIBSSH2_CHANNEL* channel, char **exitsignal, size_t *exitsignal_len, char **errmsg, size_t *errmsg_len, char **langtag, size_t *langtag_len) {
    vc_ssh2_need();
    return api.libssh2_channel_get_exit_signal(channel, exitsignal, exitsignal_len, errmsg, errmsg_len, langtag, langtag_len);
}

int libssh2_channel_get_exit_status(LIBSSH2_CHANNEL* channel) {
    vc_ssh2_need();
    return api.libssh2_channel_get_exit_status(channel);
}

LIBSSH2_CHANNEL * libssh2_channel_open_ex(LIBSSH2_SESSION *session, const char *channel_type, unsigned int channel_type_len, unsigned int window_size, unsigned int packet_size, const char *message, unsigned int message_len) {
    vc_ssh2_need();
    return api.libssh2_channel_open_ex(session, channel_type, channel_type_len, window_size, packet_size, message, message_len);
}

int libssh2_channel_process_startup(LIBSSH2_CHANNEL *channel, const char *request, unsigned int request_len, const char *message, unsigned int message_len) {
    vc_ssh2_need();
    return api.libssh2_channel_process_startup(channel, request, request_len, message, message_len);
}

ssize_t libssh2_channel_read_ex(LIBSSH2_CHANNEL *channel, int stream_id, char *buf, size_t buflen) {
    vc_ssh2_need();
    return api.libssh2_channel_read_ex(channel, stream_id, buf, buflen);
}

int libssh2_channel_send_eof(LIBSSH2_CHANNEL *channel) {
    vc_ssh2_need();
    return api.libssh2_channel_send_eof(channel);
}

int libssh2_channel_wait_closed(LIBSSH2_CHANNEL *channel) {
    vc_ssh2_need();
    return api.libssh2_channel_wait_closed(channel);
}

ssize_t libssh2_channel_write_ex(LIBSSH2_CHANNEL *channel, int stream_id, const char *buf, size_t buflen) {
    vc_ssh2_need();
    return api.libssh2_channel_write_ex(channel, stream_id, buf, buflen);
}

void libssh2_free(LIBSSH2_SESSION *session, void *ptr) {
    vc_ssh2_need();
    api.libssh2_free(session, ptr);
}

const char * libssh2_hostkey_hash(LIBSSH2_SESSION *session, int hash_type) {
    vc_ssh2_need();
    return api.libssh2_hostkey_hash(session, hash_type);
}

int libssh2_init(int flags) {
    vc_ssh2_need();
    return api.libssh2_init(flags);
}

void libssh2_keepalive_config(LIBSSH2_SESSION *session, int want_reply, unsigned interval) {
    vc_ssh2_need();
    api.libssh2_keepalive_config(session, want_reply, interval);
}

int libssh2_keepalive_send(LIBSSH2_SESSION *session, int *seconds_to_next) {
    vc_ssh2_need();
    return api.libssh2_keepalive_send(session, seconds_to_next);
}

int libssh2_knownhost_checkp(LIBSSH2_KNOWNHOSTS *hosts, const char *host, int port, const char *key, size_t keylen, int typemask, struct libssh2_knownhost **knownhost) {
    vc_ssh2_need();
    return api.libssh2_knownhost_checkp(hosts, host, port, key, keylen, typemask, knownhost);
}

void libssh2_knownhost_free(LIBSSH2_KNOWNHOSTS *hosts) {
    vc_ssh2_need();
    api.libssh2_knownhost_free(hosts);
}

LIBSSH2_KNOWNHOSTS * libssh2_knownhost_init(LIBSSH2_SESSION *session) {
    vc_ssh2_need();
    return api.libssh2_knownhost_init(session);
}

int libssh2_knownhost_readline(LIBSSH2_KNOWNHOSTS *hosts, const char *line, size_t len, int type) {
    vc_ssh2_need();
    return api.libssh2_knownhost_readline(hosts, line, len, type);
}

const char * libssh2_session_banner_get(LIBSSH2_SESSION *session) {
    vc_ssh2_need();
    return api.libssh2_session_banner_get(session);
}

int libssh2_session_block_directions(LIBSSH2_SESSION *session) {
    vc_ssh2_need();
    return api.libssh2_session_block_directions(session);
}

void * libssh2_session_callback_set(LIBSSH2_SESSION *session, int cbtype, void *callback) {
    vc_ssh2_need();
    return api.libssh2_session_callback_set(session, cbtype, callback);
}

int libssh2_session_disconnect_ex(LIBSSH2_SESSION *session, int reason, const char *description, const char *lang) {
    vc_ssh2_need();
    return api.libssh2_session_disconnect_ex(session, reason, description, lang);
}

int libssh2_session_free(LIBSSH2_SESSION *session) {
    vc_ssh2_need();
    return api.libssh2_session_free(session);
}

int libssh2_session_get_blocking(LIBSSH2_SESSION* session) {
    vc_ssh2_need();
    return api.libssh2_session_get_blocking(session);
}

int libssh2_session_handshake(LIBSSH2_SESSION *session, libssh2_socket_t sock) {
    vc_ssh2_need();
    return api.libssh2_session_handshake(session, sock);
}

const char * libssh2_session_hostkey(LIBSSH2_SESSION *session, size_t *len, int *type) {
    vc_ssh2_need();
    return api.libssh2_session_hostkey(session, len, type);
}

LIBSSH2_SESSION * libssh2_session_init_ex(void *(*my_alloc)(size_t count, void **abstract), void (*my_free)(void *ptr, void **abstract), void *(*my_realloc)(void *ptr, size_t count, void **abstract), void *abstract) {
    vc_ssh2_need();
    return api.libssh2_session_init_ex(my_alloc, my_free, my_realloc, abstract);
}

int libssh2_session_last_errno(LIBSSH2_SESSION *session) {
    vc_ssh2_need();
    return api.libssh2_session_last_errno(session);
}

int libssh2_session_last_error(LIBSSH2_SESSION *session, char **errmsg, int *errmsg_len, int want_buf) {
    vc_ssh2_need();
    return api.libssh2_session_last_error(session, errmsg, errmsg_len, want_buf);
}

int libssh2_session_method_pref(LIBSSH2_SESSION *session, int method_type, const char *prefs) {
    vc_ssh2_need();
    return api.libssh2_session_method_pref(session, method_type, prefs);
}

void libssh2_session_set_blocking(LIBSSH2_SESSION* session, int blocking) {
    vc_ssh2_need();
    api.libssh2_session_set_blocking(session, blocking);
}

void libssh2_session_set_timeout(LIBSSH2_SESSION* session, long timeout) {
    vc_ssh2_need();
    api.libssh2_session_set_timeout(session, timeout);
}

int libssh2_session_supported_algs(LIBSSH2_SESSION* session, int method_type, const char ***algs) {
    vc_ssh2_need();
    return api.libssh2_session_supported_algs(session, method_type, algs);
}

int libssh2_sftp_close_handle(LIBSSH2_SFTP_HANDLE *handle) {
    vc_ssh2_need();
    return api.libssh2_sftp_close_handle(handle);
}

int libssh2_sftp_fstat_ex(LIBSSH2_SFTP_HANDLE *handle, LIBSSH2_SFTP_ATTRIBUTES *attrs, int setstat) {
    vc_ssh2_need();
    return api.libssh2_sftp_fstat_ex(handle, attrs, setstat);
}

int libssh2_sftp_fsync(LIBSSH2_SFTP_HANDLE *handle) {
    vc_ssh2_need();
    return api.libssh2_sftp_fsync(handle);
}

LIBSSH2_SFTP * libssh2_sftp_init(LIBSSH2_SESSION *session) {
    vc_ssh2_need();
    return api.libssh2_sftp_init(session);
}

unsigned long libssh2_sftp_last_error(LIBSSH2_SFTP *sftp) {
    vc_ssh2_need();
    return api.libssh2_sftp_last_error(sftp);
}

int libssh2_sftp_mkdir_ex(LIBSSH2_SFTP *sftp, const char *path, unsigned int path_len, long mode) {
    vc_ssh2_need();
    return api.libssh2_sftp_mkdir_ex(sftp, path, path_len, mode);
}

LIBSSH2_SFTP_HANDLE * libssh2_sftp_open_ex(LIBSSH2_SFTP *sftp, const char *filename, unsigned int filename_len, unsigned long flags, long mode, int open_type) {
    vc_ssh2_need();
    return api.libssh2_sftp_open_ex(sftp, filename, filename_len, flags, mode, open_type);
}

ssize_t libssh2_sftp_read(LIBSSH2_SFTP_HANDLE *handle, char *buffer, size_t buffer_maxlen) {
    vc_ssh2_need();
    return api.libssh2_sftp_read(handle, buffer, buffer_maxlen);
}

int libssh2_sftp_rename_ex(LIBSSH2_SFTP *sftp, const char *source_filename, unsigned int srouce_filename_len, const char *dest_filename, unsigned int dest_filename_len, long flags) {
    vc_ssh2_need();
    return api.libssh2_sftp_rename_ex(sftp, source_filename, srouce_filename_len, dest_filename, dest_filename_len, flags);
}

void libssh2_sftp_seek64(LIBSSH2_SFTP_HANDLE *handle, libssh2_uint64_t offset) {
    vc_ssh2_need();
    api.libssh2_sftp_seek64(handle, offset);
}

int libssh2_sftp_shutdown(LIBSSH2_SFTP *sftp) {
    vc_ssh2_need();
    return api.libssh2_sftp_shutdown(sftp);
}

int libssh2_sftp_stat_ex(LIBSSH2_SFTP *sftp, const char *path, unsigned int path_len, int stat_type, LIBSSH2_SFTP_ATTRIBUTES *attrs) {
    vc_ssh2_need();
    return api.libssh2_sftp_stat_ex(sftp, path, path_len, stat_type, attrs);
}

int libssh2_sftp_symlink_ex(LIBSSH2_SFTP *sftp, const char *path, unsigned int path_len, char *target, unsigned int target_len, int link_type) {
    vc_ssh2_need();
    return api.libssh2_sftp_symlink_ex(sftp, path, path_len, target, target_len, link_type);
}

int libssh2_sftp_unlink_ex(LIBSSH2_SFTP *sftp, const char *filename, unsigned int filename_len) {
    vc_ssh2_need();
    return api.libssh2_sftp_unlink_ex(sftp, filename, filename_len);
}

ssize_t libssh2_sftp_write(LIBSSH2_SFTP_HANDLE *handle, const char *buffer, size_t count) {
    vc_ssh2_need();
    return api.libssh2_sftp_write(handle, buffer, count);
}

int libssh2_userauth_authenticated(LIBSSH2_SESSION *session) {
    vc_ssh2_need();
    return api.libssh2_userauth_authenticated(session);
}

int libssh2_userauth_keyboard_interactive_ex(LIBSSH2_SESSION* session, const char *username, unsigned int username_len, void (*response_callback)(const char *name, int name_len, const char *instruction, int instruction_len, int num_prompts, const LIBSSH2_USERAUTH_KBDINT_PROMPT *prompts, LIBSSH2_USERAUTH_KBDINT_RESPONSE *responses, void **abstract)) {
    vc_ssh2_need();
    return api.libssh2_userauth_keyboard_interactive_ex(session, username, username_len, response_callback);
}

char * libssh2_userauth_list(LIBSSH2_SESSION *session, const char *username, unsigned int username_len) {
    vc_ssh2_need();
    return api.libssh2_userauth_list(session, username, username_len);
}

int libssh2_userauth_publickey_fromfile_ex(LIBSSH2_SESSION *session, const char *username, unsigned int username_len, const char *publickey, const char *privatekey, const char *passphrase) {
    vc_ssh2_need();
    return api.libssh2_userauth_publickey_fromfile_ex(session, username, username_len, publickey, privatekey, passphrase);
}

const char * libssh2_version(int req_version_num) {
    vc_ssh2_need();
    return api.libssh2_version(req_version_num);
}
