/* sdmorph's version: `sdmorph --version`, --help, and every output's metadata and sidecar. */
#ifndef SDM_VERSION_H
#define SDM_VERSION_H
#define SDM_VERSION "0.2.0"
#endif
