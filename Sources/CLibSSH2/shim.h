#ifndef VLLMCTL_CLIBSSH2_SHIM_H
#define VLLMCTL_CLIBSSH2_SHIM_H
/* libssh2's short names are function-like macros over the _ex functions; Swift code calls
   the _ex functions directly. */
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <libssh2_publickey.h>
#include <dlfcn.h>
#include <stdint.h>

/* OpenSSL (libssh2's and libcurl's crypto) cleans itself up in an atexit handler. When vllmctl
   exits while another thread is still inside libssh2 (a forwarded channel being closed), that
   cleanup frees locks the other thread holds, and the exit crashes. OpenSSL 3's
   OPENSSL_INIT_NO_ATEXIT, given before any other initialisation, leaves the cleanup to the
   kernel. libcrypto is already loaded with libssh2; it is looked up rather than linked. */
static inline void vc_openssl_no_atexit(void) {
    typedef int (*init_crypto_fn)(uint64_t, const void *);
    init_crypto_fn init = (init_crypto_fn)dlsym(RTLD_DEFAULT, "OPENSSL_init_crypto");
    if (init) init(0x00080000L /* OPENSSL_INIT_NO_ATEXIT */, NULL);
}
#endif
