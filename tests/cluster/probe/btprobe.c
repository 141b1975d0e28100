/*
 * btprobe: a SPANK plugin that only records which of its hooks ran, where and as whom.
 * The harness uses it to measure when slurmd, slurmstepd and the clients (re)read
 * plugstack.conf, independently of the plugin under test.
 *
 * plugstack.conf:  optional /path/btprobe.so dir=/some/world-writable/dir [fail=<hook>:<ctx>]
 * Each hook appends "<hook> ctx=<context> pid=<pid> uid=<uid> job=<id>" to <dir>/<hook-ctx>.log;
 * one file per hook and context, so concurrent appends from several processes don't mix.
 * fail=init:remote (say) makes that hook return an error in that context, to check what
 * the harness reports when a plugin fails there (drained node, held job, …).
 * Compiled with -DBTPROBE_JOB_FAILURE (Slurm 25.05+), it asks Slurm to treat a failed
 * init as the job's fault rather than the node's (spank(7), slurm_spank_init_failure_mode).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <slurm/spank.h>

SPANK_PLUGIN(btprobe, 1);

#ifdef BTPROBE_JOB_FAILURE
int slurm_spank_init_failure_mode = ESPANK_JOB_FAILURE;
#endif

static const char *ctx_name(void)
{
    switch (spank_context()) {
    case S_CTX_LOCAL: return "local";
    case S_CTX_REMOTE: return "remote";
    case S_CTX_ALLOCATOR: return "allocator";
    case S_CTX_SLURMD: return "slurmd";
    case S_CTX_JOB_SCRIPT: return "job_script";
    default: return "error";
    }
}

/* Returns the hook's result: -1 when asked to fail here. */
static int record(const char *hook, spank_t sp, int ac, char **av)
{
    const char *dir = NULL, *fail = NULL;
    char path[4096], line[512], here[128];
    uint32_t job = 0;
    int fd, n;

    for (int i = 0; i < ac; i++)
        if (strncmp(av[i], "dir=", 4) == 0)
            dir = av[i] + 4;
        else if (strncmp(av[i], "fail=", 5) == 0)
            fail = av[i] + 5;
    snprintf(here, sizeof(here), "%s:%s", hook, ctx_name());
    if (!dir)
        return 0;
    /* spank_get_item fails outside remote context: the job id simply stays 0 there. */
    if (sp)
        (void) spank_get_item(sp, S_JOB_ID, &job);
    snprintf(path, sizeof(path), "%s/%s-%s.log", dir, hook, ctx_name());
    n = snprintf(line, sizeof(line), "%s ctx=%s pid=%d uid=%d job=%u\n", hook, ctx_name(),
                 (int) getpid(), (int) getuid(), job);
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd >= 0) {
        (void) fchmod(fd, 0666);
        (void) !write(fd, line, (size_t) n);
        close(fd);
    }
    if (fail && strcmp(fail, here) == 0) {
        slurm_error("btprobe: failing %s as asked", here);
        return -1;
    }
    return 0;
}

int slurm_spank_init(spank_t sp, int ac, char **av) { return record("init", sp, ac, av); }
int slurm_spank_init_post_opt(spank_t sp, int ac, char **av) { return record("init_post_opt", sp, ac, av); }
int slurm_spank_task_init(spank_t sp, int ac, char **av) { return record("task_init", sp, ac, av); }
int slurm_spank_job_prolog(spank_t sp, int ac, char **av) { return record("job_prolog", sp, ac, av); }
int slurm_spank_job_epilog(spank_t sp, int ac, char **av) { return record("job_epilog", sp, ac, av); }
