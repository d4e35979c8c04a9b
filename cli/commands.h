/* The subcommands of sdmorph; each returns the process exit code. */
#ifndef SDM_COMMANDS_H
#define SDM_COMMANDS_H

int sdm_cmd_render(int argc, char **argv);
int sdm_cmd_check(int argc, char **argv);
int sdm_cmd_tokenize(int argc, char **argv);
int sdm_cmd_import(int argc, char **argv);
int sdm_cmd_samplers(int argc, char **argv);
int sdm_cmd_measure(int argc, char **argv);
int sdm_cmd_bridge(int argc, char **argv);
int sdm_cmd_join(int argc, char **argv);
int sdm_cmd_slurm(int argc, char **argv);
int sdm_cmd_info(int argc, char **argv);

#endif
