/* The entry points libFuzzer calls, declared once for every fuzz target. */
#ifndef SDM_FUZZ_H
#define SDM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
