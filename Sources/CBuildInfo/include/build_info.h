#ifndef VLLMCTL_BUILD_INFO_H
#define VLLMCTL_BUILD_INFO_H
/* The git commit vllmctl was built from (Package.swift defines VLLMCTL_COMMIT from
   SwiftPM's Context.gitInformation), "unknown" when built outside a git checkout. */
const char *vc_build_commit(void);
#endif
