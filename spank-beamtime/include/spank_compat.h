/*
 * slurm-spank 0.4.1 binds spank_prepend_task_argv(), which Slurm 22.05's
 * spank.h does not declare.  Declaring it lets the crate's bindings compile;
 * the plugin never calls it, so the symbol is dropped at link time and the
 * plugin still loads into a 22.05 slurmstepd.  Newer spank.h files declare the
 * same prototype, so including this is harmless there.
 */
#include <slurm/spank.h>
extern spank_err_t spank_prepend_task_argv(spank_t spank, int argc, const char *argv[]);
