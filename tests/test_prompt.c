/* The prompt-syntax parser against A1111's own parse_prompt_attention
 * (tests/fixtures/prompt_attention.json, made by make_prompt_fixtures.py:
 * every run's text and its weight, compared exactly), and its limits. */
#include <json-c/json.h>

#include "prompt.h"
#include "test.h"

#define FIXTURE "tests/fixtures/prompt_attention.json"

static int same_runs(const sdm_prompt_runs *got, json_object *want)
{
    size_t n = json_object_array_length(want);

    if ((size_t)got->n != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        json_object *pair = json_object_array_get_idx(want, i);
        const char *text = json_object_get_string(json_object_array_get_idx(pair, 0));
        double w = json_object_get_double(json_object_array_get_idx(pair, 1));
        if (strcmp(got->runs[i].text, text) || got->runs[i].weight != w)
            return 0;
    }
    return 1;
}

static void print_runs(const char *prompt, const sdm_prompt_runs *got, json_object *want)
{
    fprintf(stderr, "prompt \"%s\":\n  got ", prompt);
    for (int i = 0; i < got->n; i++)
        fprintf(stderr, "[\"%s\", %.17g] ", got->runs[i].text, got->runs[i].weight);
    fprintf(stderr, "\n  A1111 %s\n", json_object_to_json_string(want));
}

static void test_fixture(void)
{
    json_object *doc = json_object_from_file(FIXTURE), *cases = NULL;
    int n_cases = 0, n_breaks = 0, n_errors = 0;

    if (doc)
        json_object_object_get_ex(doc, "cases", &cases);
    CHECK(cases != NULL);
    if (!cases) {
        fprintf(stderr, "%s: %s\n", FIXTURE, json_util_get_last_err());
        json_object_put(doc);
        return;
    }
    for (size_t i = 0; i < json_object_array_length(cases); i++) {
        json_object *c = json_object_array_get_idx(cases, i), *jp, *parse;
        sdm_prompt_runs runs = { 0 };
        sdm_error err = { 0 };
        const char *prompt;
        int rc;

        json_object_object_get_ex(c, "prompt", &jp);
        prompt = json_object_get_string(jp);
        rc = sdm_prompt_parse(prompt, &runs, &err);
        if (json_object_object_get_ex(c, "parse", &parse)) {
            CHECK_INT(rc, 0);
            if (rc == 0 && !same_runs(&runs, parse)) {
                print_runs(prompt, &runs, parse);
                CHECK(0);
            } else {
                test_passed++;
            }
            for (int k = 0; k < runs.n; k++)
                n_breaks += sdm_prompt_run_is_break(&runs.runs[k]);
        } else {
            /* A1111 raises: a message that names the weight, exit 2 */
            CHECK_INT(rc, -1);
            CHECK_INT(err.code, SDM_EXIT_USAGE);
            CHECK_CONTAINS(err.msg, "is not a number");
            n_errors++;
        }
        sdm_prompt_runs_clear(&runs);
        n_cases++;
    }
    printf("prompt syntax: %d prompts parsed as A1111 does (%d BREAK markers, %d refused weights)\n", n_cases, n_breaks,
           n_errors);
    CHECK(n_cases >= 30);
    CHECK(n_breaks > 0 && n_errors > 0);
    json_object_put(doc);
}

static void test_limits(void)
{
    sdm_prompt_runs runs = { 0 };
    sdm_error err = { 0 };
    char *big = malloc(SDM_PROMPT_MAX_BYTES + 2);

    /* the error names the weight and its place */
    CHECK_INT(sdm_prompt_parse("a (b:1..5) c", &runs, &err), -1);
    CHECK_STR(err.msg, "the weight \"1..5\" at byte 5 of the prompt is not a number");
    CHECK(runs.runs == NULL && runs.n == 0);

    /* NULL reads as the empty prompt */
    memset(&err, 0, sizeof err);
    CHECK_INT(sdm_prompt_parse(NULL, &runs, &err), 0);
    CHECK_INT(runs.n, 1);
    CHECK_STR(runs.runs[0].text, "");
    CHECK(runs.runs[0].weight == 1.0);
    sdm_prompt_runs_clear(&runs);
    CHECK(runs.runs == NULL && runs.n == 0);
    sdm_prompt_runs_clear(&runs);
    sdm_prompt_runs_clear(NULL);

    /* a BREAK marker is exactly ("BREAK", -1); scaled by a bracket it is text */
    CHECK_INT(sdm_prompt_parse("x BREAK (y BREAK)", &runs, &err), 0);
    /* x | BREAK | "" | y | BREAK ×1.1 | "" ×1.1 */
    CHECK_INT(runs.n, 6);
    if (runs.n == 6) {
        CHECK(sdm_prompt_run_is_break(&runs.runs[1]));
        CHECK(!sdm_prompt_run_is_break(&runs.runs[4]));
        CHECK_STR(runs.runs[4].text, "BREAK");
        CHECK(runs.runs[4].weight == -1.0 * 1.1);
    }
    sdm_prompt_runs_clear(&runs);

    /* overlong prompts are refused, the longest allowed one is read */
    CHECK(big != NULL);
    if (big) {
        memset(big, '(', SDM_PROMPT_MAX_BYTES + 1);
        big[SDM_PROMPT_MAX_BYTES + 1] = '\0';
        memset(&err, 0, sizeof err);
        CHECK_INT(sdm_prompt_parse(big, &runs, &err), -1);
        CHECK_CONTAINS(err.msg, "bytes long; at most 65536");
        memset(big, 'a', SDM_PROMPT_MAX_BYTES);
        big[SDM_PROMPT_MAX_BYTES] = '\0';
        CHECK_INT(sdm_prompt_parse(big, &runs, &err), 0);
        CHECK_INT(runs.n, 1);
        sdm_prompt_runs_clear(&runs);
        /* "(a(a(a...": run k is weighted 1.1^(k+1), until that is inf */
        for (int i = 0; i < 8192; i++)
            big[i] = i % 2 ? 'a' : '(';
        big[8192] = '\0';
        CHECK_INT(sdm_prompt_parse(big, &runs, &err), 0);
        CHECK_INT(runs.n, 4096);
        if (runs.n == 4096)
            CHECK(runs.runs[1].weight == 1.1 * 1.1);
        sdm_prompt_runs_clear(&runs);
    }
    free(big);
}

int main(void)
{
    test_fixture();
    test_limits();
    return test_report();
}
