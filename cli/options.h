/* Command-line options that take a value: NAME VALUE or NAME=VALUE. */
#ifndef SDM_OPTIONS_H
#define SDM_OPTIONS_H

/* When argv[*i] is the option `name`: 1, *value set and *i on the last
 * argument read; -1 when it is NAME with no VALUE after it (the caller
 * says what is missing). 0 for any other argument. */
int sdm_option_value(int argc, char **argv, int *i, const char *name, const char **value);

#endif
