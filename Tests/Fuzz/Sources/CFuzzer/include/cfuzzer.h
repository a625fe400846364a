#ifndef VLLMCTL_CFUZZER_H
#define VLLMCTL_CFUZZER_H
#include <stddef.h>
#include <stdint.h>
/* libFuzzer's driver (linked by -sanitize=fuzzer): runs the fuzzing loop over UserCb with
   libFuzzer's own flags from argv. SwiftPM names an executable's entry point itself, so the
   entry point calls this instead of relying on libFuzzer's main(). */
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));
#endif
