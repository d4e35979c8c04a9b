#ifndef SDM_VERSION_H
#define SDM_VERSION_H
#define SDM_VERSION "0.1.0"
#endif
