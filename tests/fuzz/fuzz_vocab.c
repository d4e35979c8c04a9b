/* libFuzzer target: the tokenizer's loader, on a bundle's vocab.json and
 * merges.txt. The input is the vocabulary, a NUL byte, then the merges
 * (no NUL: no merges). Loading must succeed or fail with a message; a
 * tokenizer that loads must encode a prompt within its vocabulary.
 * The files are memfds, so nothing touches the disk.
 * Built by `make fuzz` with -fsanitize=fuzzer,address,undefined. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sdm_log_set_level(SDM_LOG_COUNT);
    return 0;
}

/* A memfd holding the bytes, its /proc path in path; -1 on failure. */
static int memfile(const char *name, const uint8_t *data, size_t size, char *path, size_t len)
{
    int fd = memfd_create(name, 0);
    size_t done = 0;

    if (fd < 0)
        return -1;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    snprintf(path, len, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const prompts[] = { "abc ab  c, the city's 123 <|endoftext|>x", "\xff\xc3\xa9 a" };
    const uint8_t *nul = memchr(data, 0, size);
    size_t vocab_len = nul ? (size_t)(nul - data) : size;
    char vocab_path[64], merges_path[64];
    int vfd = memfile("vocab.json", data, vocab_len, vocab_path, sizeof vocab_path);
    int mfd =
        memfile("merges.txt", nul ? nul + 1 : data, nul ? size - vocab_len - 1 : 0, merges_path, sizeof merges_path);
    sdm_tokenizer_params p = sdm_tokenizer_default_params();
    sdm_tokenizer *tok = NULL;
    sdm_error err = { 0 };

    if (vfd < 0 || mfd < 0)
        abort();
    p.token_length = 16;
    if (sdm_tokenizer_load(vocab_path, merges_path, p, &tok, &err)) {
        if (tok || !err.msg[0])
            abort();
    } else {
        for (size_t k = 0; k < sizeof prompts / sizeof prompts[0]; k++) {
            int64_t ids[16];
            sdm_tokenizer_encode(tok, prompts[k], ids, NULL);
            if (ids[0] != sdm_tokenizer_bos_id(tok))
                abort();
            for (int i = 0; i < 16; i++) {
                if (!sdm_tokenizer_piece(tok, ids[i]))
                    abort();
            }
        }
        sdm_tokenizer_free(&tok);
    }
    close(vfd);
    close(mfd);
    return 0;
}
