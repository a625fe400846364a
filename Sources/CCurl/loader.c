#include "ccurl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_perform)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} api;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char problem[512];

#define VC_SYMBOL(field, name)                                                              \
    do {                                                                                    \
        *(void **)&api.field = dlsym(lib, name);                                            \
        if (!api.field) {                                                                   \
            snprintf(problem, sizeof problem, "libcurl.so.4 has no %s: %s", name, dlerror()); \
            return;                                                                         \
        }                                                                                   \
    } while (0)

static void load(void) {
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(problem, sizeof problem, "cannot load libcurl: %s", dlerror());
        return;
    }
    VC_SYMBOL(global_init, "curl_global_init");
    VC_SYMBOL(easy_init, "curl_easy_init");
    VC_SYMBOL(easy_cleanup, "curl_easy_cleanup");
    VC_SYMBOL(easy_reset, "curl_easy_reset");
    VC_SYMBOL(easy_perform, "curl_easy_perform");
    VC_SYMBOL(easy_strerror, "curl_easy_strerror");
    VC_SYMBOL(easy_setopt, "curl_easy_setopt");
    VC_SYMBOL(easy_getinfo, "curl_easy_getinfo");
    VC_SYMBOL(slist_append, "curl_slist_append");
    VC_SYMBOL(slist_free_all, "curl_slist_free_all");
    /* Before curl initialises OpenSSL: no atexit cleanup, which would crash an exit while
       another thread is inside libssh2 or libcurl (see CLibSSH2/shim.h). */
    int (*init_crypto)(uint64_t, const void *);
    *(void **)&init_crypto = dlsym(lib, "OPENSSL_init_crypto"); /* through curl's libcrypto */
    if (init_crypto) init_crypto(0x00080000L /* OPENSSL_INIT_NO_ATEXIT */, NULL);
    CURLcode rc = api.global_init(CURL_GLOBAL_ALL);
    if (rc != CURLE_OK) {
        snprintf(problem, sizeof problem, "curl_global_init failed: %s", api.easy_strerror(rc));
    }
}

const char *vc_load(void) {
    pthread_once(&once, load);
    return problem[0] ? problem : NULL;
}

CURL *vc_easy_init(void) { return api.easy_init(); }
void vc_easy_cleanup(CURL *h) { api.easy_cleanup(h); }
void vc_easy_reset(CURL *h) { api.easy_reset(h); }
CURLcode vc_easy_perform(CURL *h) { return api.easy_perform(h); }
const char *vc_easy_strerror(CURLcode code) { return api.easy_strerror(code); }
struct curl_slist *vc_slist_append(struct curl_slist *list, const char *text) { return api.slist_append(list, text); }
void vc_slist_free_all(struct curl_slist *list) { api.slist_free_all(list); }

/* An option's number says the type curl_easy_setopt reads it as (CURLOPTTYPE_*). Through the
   varargs a long read as curl_off_t, or the reverse, is undefined (it only happens to work
   where both are 64 bits), so these two refuse options of the other type. */
CURLcode vc_setopt_long(CURL *h, CURLoption o, long v) {
    if (o >= CURLOPTTYPE_OBJECTPOINT) return CURLE_BAD_FUNCTION_ARGUMENT;
    return api.easy_setopt(h, o, v);
}
CURLcode vc_setopt_str(CURL *h, CURLoption o, const char *v) { return api.easy_setopt(h, o, v); }
CURLcode vc_setopt_ptr(CURL *h, CURLoption o, void *v) { return api.easy_setopt(h, o, v); }
CURLcode vc_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return api.easy_setopt(h, o, v); }
CURLcode vc_setopt_off(CURL *h, CURLoption o, curl_off_t v) {
    if (o < CURLOPTTYPE_OFF_T || o >= CURLOPTTYPE_BLOB) return CURLE_BAD_FUNCTION_ARGUMENT;
    return api.easy_setopt(h, o, v);
}
CURLcode vc_setopt_write_cb(CURL *h, vc_write_cb cb) { return api.easy_setopt(h, CURLOPT_WRITEFUNCTION, cb); }
CURLcode vc_setopt_header_cb(CURL *h, vc_write_cb cb) { return api.easy_setopt(h, CURLOPT_HEADERFUNCTION, cb); }
CURLcode vc_getinfo_long(CURL *h, CURLINFO i, long *v) { return api.easy_getinfo(h, i, v); }
CURLcode vc_getinfo_double(CURL *h, CURLINFO i, double *v) { return api.easy_getinfo(h, i, v); }
