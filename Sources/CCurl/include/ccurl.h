#ifndef VLLMCTL_CCURL_H
#define VLLMCTL_CCURL_H
/* libcurl, loaded on first use with dlopen instead of linked: libcurl brings ~30 shared
   libraries (TLS, Kerberos, LDAP, ...) whose loading would cost every vllmctl run ~8 ms,
   also the many runs that make no HTTP request. Only libcurl's headers are used at build
   time (libcurl4-openssl-dev); at run time libcurl.so.4 must be installed (libcurl4). */
#include <curl/curl.h>

/* Loads libcurl and runs curl_global_init once (thread-safe). NULL on success, else a
   message saying what failed. Every vc_ function below needs a successful vc_load first. */
const char *vc_load(void);

CURL *vc_easy_init(void);
void vc_easy_cleanup(CURL *h);
void vc_easy_reset(CURL *h);
CURLcode vc_easy_perform(CURL *h);
const char *vc_easy_strerror(CURLcode code);
struct curl_slist *vc_slist_append(struct curl_slist *list, const char *text);
void vc_slist_free_all(struct curl_slist *list);

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call.
   One typed wrapper per argument type; vc_setopt_long and vc_setopt_off answer
   CURLE_BAD_FUNCTION_ARGUMENT for an option of another type (curl_off_t options are
   CURLOPTTYPE_OFF_T, the *_LARGE ones). */
typedef size_t (*vc_write_cb)(char *ptr, size_t size, size_t nmemb, void *userdata);
CURLcode vc_setopt_long(CURL *h, CURLoption o, long v);
CURLcode vc_setopt_str(CURL *h, CURLoption o, const char *v);
CURLcode vc_setopt_ptr(CURL *h, CURLoption o, void *v);
CURLcode vc_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v);
CURLcode vc_setopt_off(CURL *h, CURLoption o, curl_off_t v);
CURLcode vc_setopt_write_cb(CURL *h, vc_write_cb cb);
CURLcode vc_setopt_header_cb(CURL *h, vc_write_cb cb);
CURLcode vc_getinfo_long(CURL *h, CURLINFO i, long *v);
CURLcode vc_getinfo_double(CURL *h, CURLINFO i, double *v);
#endif
