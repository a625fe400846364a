/* Declarations only (include/cfuzzer.h); libFuzzer defines them. */
