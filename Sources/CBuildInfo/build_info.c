#include "build_info.h"

#ifndef VLLMCTL_COMMIT
#define VLLMCTL_COMMIT "unknown"
#endif

const char *vc_build_commit(void) { return VLLMCTL_COMMIT; }
