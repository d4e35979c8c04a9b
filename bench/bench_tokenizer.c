/* Tokenizer speed on the real CLIP vocabulary (../shared/clip):
 *  - load time of vocab.json + merges.txt;
 *  - 10,000 generated SD-style prompts: prompts/s, and the ratio to a
 *    baseline measured in the same run on the same prompts: a bare
 *    whitespace split with ASCII lowercasing (the least any tokenizer does);
 *  - one long word of 10 kB and of 100 kB: BPE must scale about linearly
 *    (a quadratic rescan would make the 100 kB word 100x slower, not 10x).
 * Times are this thread's CPU time, best of 3 (5 for the long words), so
 * that other work on the machine moves them little. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tokenizer.h"

#define CLIP_DIR "../shared/clip"
#define N_PROMPTS 10000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *const subjects[] = {
    "a rainy city street at night",
    "a technopriest in a cathedral of machines",
    "an abandoned gas station",
    "a misty forest with ancient trees",
    "portrait of an old fisherman",
    "a castle on a cliff above the sea",
    "a café in Paris",
    "a dragon 🐉 over snowy mountains",
    "a bowl of ramen",
    "a cyberpunk marketplace",
    "a lighthouse in a storm",
    "an astronaut riding a horse",
    "the surface of Mars, 4k",
};
static const char *const styles[] = {
    "oil painting",      "digital art",         "trending on artstation", "cinematic lighting",
    "by Greg Rutkowski", "35mm photo",          "(masterpiece:1.2)",      "ultra-detailed, 8k",
    "watercolor",        "isometric, low poly", "volumetric fog",         "golden hour",
    "don't crop",
};

/* The least work a tokenizer can do: split on spaces, lowercase ASCII. */
static long baseline_split(char **prompts, int n)
{
    long words = 0;
    char buf[512];
    for (int i = 0; i < n; i++) {
        const char *s = prompts[i];
        int in_word = 0;
        size_t k = 0;
        for (; *s && k < sizeof buf - 1; s++) {
            char c = *s;
            if (c == ' ' || c == '\t' || c == '\n') {
                in_word = 0;
                continue;
            }
            if (!in_word)
                words++;
            in_word = 1;
            buf[k++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        buf[k] = '\0';
        words += buf[0] == '\x01'; /* keep the lowercasing from being optimized away */
    }
    return words;
}

static double time_encode(const sdm_tokenizer *tok, char **prompts, int n, long *checksum)
{
    int64_t ids[77];
    double t0 = now();
    *checksum = 0;
    for (int i = 0; i < n; i++) {
        sdm_tokenizer_encode(tok, prompts[i], ids, NULL);
        *checksum += ids[1] + ids[5];
    }
    return now() - t0;
}

static double time_long_word(const sdm_tokenizer *tok, size_t len)
{
    char *s = malloc(len + 1);
    int64_t ids[77];
    sdm_tokenize_info info;
    double best = 1e9;

    for (size_t i = 0; i < len; i++)
        s[i] = "qwertyuiopasdfghjklzxcvbnm"[(i * 7 + i / 3) % 26];
    s[len] = '\0';
    for (int rep = 0; rep < 5; rep++) {
        double t = now();
        sdm_tokenizer_encode(tok, s, ids, &info);
        t = now() - t;
        if (t < best)
            best = t;
    }
    free(s);
    return best;
}

int main(void)
{
    sdm_tokenizer *tok = NULL;
    sdm_error err = { 0 };
    char **prompts;
    double t0, t_load, t_tok = 1e9, t_base = 1e9, t10, t100;
    long checksum = 0, words = 0;

    if (access(CLIP_DIR "/vocab.json", R_OK) != 0) {
        printf("bench_tokenizer: skipped: %s is absent\n", CLIP_DIR);
        return 0;
    }
    t0 = now();
    if (sdm_tokenizer_load(CLIP_DIR "/vocab.json", CLIP_DIR "/merges.txt", sdm_tokenizer_default_params(), &tok,
                           &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    t_load = now() - t0;

    prompts = malloc(sizeof *prompts * N_PROMPTS);
    srand(1234);
    for (int i = 0; i < N_PROMPTS; i++) {
        char buf[512];
        int ns = (int)(sizeof subjects / sizeof *subjects), nt = (int)(sizeof styles / sizeof *styles);
        snprintf(buf, sizeof buf, "%s, %s, %s, %s, seed %d", subjects[rand() % ns], styles[rand() % nt],
                 styles[rand() % nt], styles[rand() % nt], rand() % 100000);
        prompts[i] = strdup(buf);
    }
    for (int rep = 0; rep < 3; rep++) {
        double t;
        long c;
        t = time_encode(tok, prompts, N_PROMPTS, &c);
        if (t < t_tok)
            t_tok = t;
        checksum += c;
        t0 = now();
        words += baseline_split(prompts, N_PROMPTS);
        t = now() - t0;
        if (t < t_base)
            t_base = t;
    }
    t10 = time_long_word(tok, 10 * 1024);
    t100 = time_long_word(tok, 100 * 1024);

    printf("bench_tokenizer: load vocab.json + merges.txt: %.1f ms\n", 1e3 * t_load);
    printf("bench_tokenizer: %d prompts in %.1f ms: %.0f prompts/s (best of 3)\n", N_PROMPTS, 1e3 * t_tok,
           N_PROMPTS / t_tok);
    printf("bench_tokenizer: baseline whitespace split of the same prompts: %.2f ms; tokenizer/baseline = %.1fx\n",
           1e3 * t_base, t_tok / t_base);
    printf("bench_tokenizer: one long word: 10 kB %.2f ms, 100 kB %.2f ms (ratio %.1f; linear is 10)\n", 1e3 * t10,
           1e3 * t100, t100 / t10);
    printf("(checksum %ld, words %ld)\n", checksum, words);
    for (int i = 0; i < N_PROMPTS; i++)
        free(prompts[i]);
    free(prompts);
    sdm_tokenizer_free(&tok);
    return 0;
}
