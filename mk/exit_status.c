/* A GNU make plugin (the `load` directive): `$(exit N)` ends make at once with status N.
 *
 * GNU make exits 2 whenever a recipe fails, whatever the command's own status, so
 * `make compare` could not tell a hold (1) from an inconclusive comparison (2) or a
 * broken run (3). The Makefile builds this file with the system C compiler and loads
 * it; without a compiler the function is missing and make exits 2 as before. */
#include <stdlib.h>
#include <gnumake.h>

int plugin_is_GPL_compatible;

static char *exit_with(const char *name, unsigned int argc, char **argv)
{
    (void)name;
    (void)argc;
    exit(atoi(argv[0]));
}

int exit_status_gmk_setup(const gmk_floc *floc)
{
    (void)floc;
    gmk_add_function("exit", exit_with, 1, 1, GMK_FUNC_DEFAULT);
    return 1;
}
