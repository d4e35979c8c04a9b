/* libFuzzer target: the A1111 prompt-syntax parser on any byte string.
 * Checks the header's promises: a parse has at least one run, no two
 * neighbours share a weight (they are joined), the runs' text is the
 * prompt's text less its syntax (never longer than the prompt, BREAK
 * markers aside), a refusal is a usage error with a message, and the same
 * prompt parses the same way twice.
 * Built by `make fuzz` with -fsanitize=fuzzer,address,undefined. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "prompt.h"


static int same(const sdm_prompt_runs *a, const sdm_prompt_runs *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++) {
        if (strcmp(a->runs[i].text, b->runs[i].text))
            return 0;
        if (memcmp(&a->runs[i].weight, &b->runs[i].weight, sizeof(double)))
            return 0;
    }
    return 1;
}

static void check_runs(const sdm_prompt_runs *r, size_t len)
{
    size_t text = 0;

    if (r->n < 1 || !r->runs)
        abort();
    for (int i = 0; i < r->n; i++) {
        double w = r->runs[i].weight;
        if (!r->runs[i].text)
            abort();
        if (!sdm_prompt_run_is_break(&r->runs[i]))
            text += strlen(r->runs[i].text);
        if (i > 0 && w == r->runs[i - 1].weight)
            abort();
    }
    if (text > len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdm_prompt_runs a = { 0 }, b = { 0 };
    sdm_error ea = { 0 }, eb = { 0 };
    char *text = malloc(size + 1);
    int ra, rb;

    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    text[size] = '\0';
    ra = sdm_prompt_parse(text, &a, &ea);
    rb = sdm_prompt_parse(text, &b, &eb);
    if (ra != rb || (ra == 0) != (ea.code == 0))
        abort();
    if (ra == 0) {
        check_runs(&a, strlen(text));
        if (!same(&a, &b))
            abort();
    } else if (ea.code != SDM_EXIT_USAGE || !ea.msg[0] || strcmp(ea.msg, eb.msg) || a.n || a.runs) {
        abort();
    }
    sdm_prompt_runs_clear(&a);
    sdm_prompt_runs_clear(&b);
    free(text);
    return 0;
}
