/* A read-only walk of the flattened device tree the boot protocol hands
   over in x0. */
#ifndef HYPERPROF_GUEST_FDT_H
#define HYPERPROF_GUEST_FDT_H

#include "runtime.h"

/* /chosen/bootargs of the tree at `dtb`, or "" when the tree, the node or
   the property is missing or malformed. The string lives in the tree. */
const char *fdt_bootargs(u64 dtb);

#endif
