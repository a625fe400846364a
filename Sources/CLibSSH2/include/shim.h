#ifndef VLLMCTL_CLIBSSH2_SHIM_H
#define VLLMCTL_CLIBSSH2_SHIM_H
/* libssh2's short names are function-like macros over the _ex functions; Swift code calls
   the _ex functions directly. */
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <libssh2_publickey.h>

/* OpenSSL (libssh2's and libcurl's crypto) cleans itself up in an atexit handler. When vllmctl
   exits while another thread is still inside libssh2 (a forwarded channel being closed), that
   cleanup frees locks the other thread holds, and the exit crashes. OpenSSL 3's
   OPENSSL_INIT_NO_ATEXIT, given before any other initialisation, leaves the cleanup to the
   kernel: both loaders (this one and CCurl's) give it right after loading their library. */

/* Loads libssh2 (dlopen, once) and resolves every function vllmctl calls: NULL when that
   worked, else what failed, in words. Call it before any libssh2 function (loader.c). */
const char *vc_ssh2_load(void);
#endif
