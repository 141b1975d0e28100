/*
 * btprobe: a SPANK plugin that only records which of its hooks ran, where and as whom, and
 * fails one of them on request. The harness uses it to measure when slurmd, slurmstepd and
 * the clients (re)read plugstack.conf, and what each Slurm release does when a plugin's
 * callback fails — independently of the plugin under test.
 *
 * plugstack.conf:  required /path/btprobe.so dir=/some/world-writable/dir [ctl=/path/file]
 * Each hook appends "<hook> ctx=<context> pid=<pid> uid=<uid> job=<id>" to <dir>/<hook-ctx>.log;
 * one file per hook and context, so concurrent appends from several processes don't mix.
 * The control file, read afresh at every call (so the tests switch the failing hook without
 * rewriting plugstack.conf or restarting slurmd), holds one line "<hook>:<ctx> <rc>": that
 * hook returns <rc> in that context (-1 an error; 1 a positive value, which Slurm took for
 * success before 25.05 and for a failure from then on). No file: every hook returns 0.
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

/* What the control file asks of the hook "<hook>:<ctx>" in `here`: its return value. */
static int asked_rc(const char *ctl, const char *here)
{
    char text[160], which[128];
    int rc, fd;
    ssize_t n;

    if (!ctl)
        return 0;
    /* Written by root in a root-owned folder; O_NOFOLLOW all the same. */
    fd = open(ctl, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    if (sscanf(text, "%127s %d", which, &rc) != 2 || strcmp(which, here) != 0)
        return 0;
    return rc;
}

/* Records the call and returns the hook's result. */
static int record(const char *hook, spank_t sp, int ac, char **av)
{
    const char *dir = NULL, *ctl = NULL;
    char path[4096], line[512], here[128];
    uint32_t job = 0;
    int fd, n, rc;

    for (int i = 0; i < ac; i++)
        if (strncmp(av[i], "dir=", 4) == 0)
            dir = av[i] + 4;
        else if (strncmp(av[i], "ctl=", 4) == 0)
            ctl = av[i] + 4;
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
    rc = asked_rc(ctl, here);
    if (rc != 0)
        slurm_error("btprobe: %s returns %d as asked", here, rc);
    return rc;
}

#define HOOK(name) \
    int slurm_spank_##name(spank_t sp, int ac, char **av) { return record(#name, sp, ac, av); }
HOOK(init)
HOOK(init_post_opt)
HOOK(local_user_init)
HOOK(user_init)
HOOK(task_init_privileged)
HOOK(task_init)
HOOK(task_post_fork)
HOOK(task_exit)
HOOK(exit)
HOOK(job_prolog)
HOOK(job_epilog)
