#ifndef VLLMCTL_CLIBSSH2_SHIM_H
#define VLLMCTL_CLIBSSH2_SHIM_H
/* libssh2's short names are function-like macros over the _ex functions; Swift code calls
   the _ex functions directly. */
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <libssh2_publickey.h>
#endif
