//! `task_init_privileged`, as root, in each task's forked child: after
//! slurmstepd joined any job container namespace and before the user's
//! program runs, the job's view of the beamline is built. Everything happens
//! in a mount namespace private to the step on this node: task 0 builds it,
//! the step's other tasks here join it (`step_namespace`), and nothing is left
//! on the host when the step ends.
//!
//! Every folder is opened as a handle, one component at a time without
//! following symlinks, and every mount is made from and onto handles
//! (open_tree/move_mount), never from or onto a path: a user who can rename
//! things in the beamline folder cannot redirect a mount between the check and
//! the mount.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use std::time::Instant;

use beamtime::beamline::{beamline_folder, names_can_be_swapped};
use beamtime::facts::BeamlineFolder;
use beamtime::policy::{Grant, Phase};
use beamtime::problem::ASK_THE_ADMINS;
use beamtime::refusal::{Refusal, Rule};
use beamtime::trust::{FileFacts, TrustPolicy};
use beamtime::walk;
use slurm_spank::{spank_log_info, spank_log_verbose};

use super::decide::refused_line;
use super::mount_failure::MountFailure;
use super::step_namespace::StepNamespace;
use super::{walk_no_symlinks, Granted, Verdict};
use crate::{ffi, PLUGIN};

/// Small, and read-only once set up: it only holds the folders leading to the target.
const HIDE_ROOT_TMPFS_OPTIONS: &str = "mode=0755,size=64k,nr_inodes=256";

/// Puts this task into the step's namespace: task 0 (or a step's only task)
/// builds it, every other task joins what task 0 built. A failure turns the
/// verdict into a refusal, which the task reports as the user (`task_user`).
///
/// `task` is the task's id on this node: task 0 writes the step's one
/// decision line, `decision=accepted` once its mount is up or
/// `decision=refused rule=mount-failed`, so counting either counts steps
/// (`decide` writes the refusals decided before the tasks); another task that
/// fails logs its failure without a decision.
pub fn prepare_task(verdict: &mut Verdict, task: Option<i32>) {
    let Verdict::Granted(granted) = verdict else {
        return;
    };
    let Granted {
        grant,
        trust,
        step,
        accepted,
        namespace,
        ..
    } = granted.as_ref();
    let started = Instant::now();
    let mut waited = None;
    let shown = match (namespace, task) {
        (StepNamespace::Shared { .. }, Some(0)) => namespace.share(show_beamline(grant, trust)),
        (StepNamespace::Shared { .. }, Some(_)) => namespace.join().map(|wait| {
            waited = Some(wait);
        }),
        // Without its id a task cannot know whether it is task 0: it builds its
        // own, and the others, waiting for task 0, stop if it never comes.
        (StepNamespace::Shared { .. }, None) | (StepNamespace::OwnTask, _) => {
            show_beamline(grant, trust)
        }
    };
    // For admins weighing the cost on nodes with large mount tables (bench/ reads it too).
    let took = started.elapsed();
    match waited {
        Some(waited) => spank_log_verbose!(
            "{PLUGIN}: beamtime={} mount namespace joined in {} us after waiting {} us for task 0",
            grant.beamtime,
            (took - waited).as_micros(),
            waited.as_micros()
        ),
        None => spank_log_verbose!(
            "{PLUGIN}: beamtime={} mount namespace set up in {} us",
            grant.beamtime,
            took.as_micros()
        ),
    }
    if shown.is_ok() && matches!(task, Some(0) | None) {
        spank_log_info!("{PLUGIN}: {accepted}");
    }
    if let Err(why) = shown {
        let refusal = Refusal::new(
            Rule::MountFailed,
            format!("the beamline folder could not be set up: {why}"),
            ASK_THE_ADMINS,
        );
        // Info, not error: slurmstepd copies its errors to the user's stderr, where
        // task_init's refusal already says this once.
        match task {
            Some(task) if task != 0 => {
                spank_log_info!("{PLUGIN}: {step} task={task} mount failed: {why}")
            }
            _ => spank_log_info!("{PLUGIN}: {}", refused_line(step, &refusal)),
        }
        *verdict = Verdict::Refused(refusal);
    }
}

/// Shows the granted beamline folder at its target, read-only but for the
/// site's writable subfolders, and hides everything else under the hide root.
fn show_beamline(grant: &Grant, trust: &TrustPolicy) -> Result<(), MountFailure> {
    ffi::enter_private_mount_namespace().map_err(MountFailure::system(
        "cannot create a private mount namespace",
    ))?;

    // Handles are opened only now: open_tree needs them in the caller's namespace.
    let hide_root = walk_no_symlinks(&grant.hide_root)?;
    if grant.phase == Phase::PreStart {
        // Nothing of the beamline: whatever its folder holds now is not this beamtime's.
        return mount_hide_root(grant, &hide_root).and_then(|()| seal_hide_root(grant));
    }
    let source = walk_no_symlinks(&grant.source)?;
    check_source_is_the_beamtimes(grant, &source, trust)?;
    let mut writable: Vec<(&str, OwnedFd)> = Vec::new();
    for name in &grant.writable {
        let shown = grant.source.join(name);
        match walk::open_child_folder(source.as_fd(), OsStr::new(name), &shown) {
            Ok(fd) => writable.push((name, fd)),
            // A beamtime without this subfolder simply has nothing writable there.
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(MountFailure::Walk { path: shown, error }),
        }
    }
    // Without a writable mount every name shows read-only, whatever it names.
    if !writable.is_empty() {
        names_stay_put(grant, &source, trust, &writable)?;
    }

    let beamline = ffi::clone_mount(source.as_fd())
        .and_then(|m| ffi::restrict_mount(m.as_fd(), true, false).map(|()| m))
        .map_err(MountFailure::system(format!(
            "cannot copy the mount of {}",
            grant.source.display()
        )))?;

    mount_hide_root(grant, &hide_root)?;
    // Below the hide root is now the tmpfs just mounted, which only this
    // namespace sees: nobody else can plant anything on the way to the target.
    std::fs::create_dir_all(&grant.target).map_err(MountFailure::system(format!(
        "cannot create {} in the private tmpfs",
        grant.target.display()
    )))?;
    let target = walk_no_symlinks(&grant.target)?;
    ffi::attach(beamline.as_fd(), target.as_fd()).map_err(MountFailure::system(format!(
        "cannot mount {} at {}",
        grant.source.display(),
        grant.target.display()
    )))?;

    for (name, folder) in &writable {
        let shown = grant.target.join(name);
        // Looked up through the attached copy, then compared with the folder
        // that was opened from the source: a swap in between is refused.
        let mountpoint = open_mountpoint(&beamline, name, &shown)?;
        if !same_folder(&mountpoint, folder, &shown)? {
            return Err(MountFailure::Changed(grant.source.join(name)));
        }
        ffi::clone_mount(folder.as_fd())
            .and_then(|m| ffi::restrict_mount(m.as_fd(), false, false).map(|()| m))
            .and_then(|m| ffi::attach(m.as_fd(), mountpoint.as_fd()))
            .map_err(MountFailure::system(format!(
                "cannot make {} writable",
                shown.display()
            )))?;
    }
    if !writable.is_empty() {
        // Checked again with every mount attached: each name still leads to
        // the folder mounted there, and still nobody but the facility can rename.
        for (name, folder) in &writable {
            let shown = grant.target.join(name);
            let now = open_mountpoint(&beamline, name, &shown)?;
            if !same_folder(&now, folder, &shown)? {
                return Err(MountFailure::Changed(grant.source.join(name)));
            }
        }
        names_stay_put(grant, &source, trust, &writable)?;
    }

    seal_hide_root(grant)
}

/// The writable subfolder `name` as the attached copy `beamline` shows it (at `shown`).
fn open_mountpoint(beamline: &OwnedFd, name: &str, shown: &Path) -> Result<OwnedFd, MountFailure> {
    walk::open_child_folder(beamline.as_fd(), OsStr::new(name), shown).map_err(|error| {
        MountFailure::Walk {
            path: shown.to_owned(),
            error,
        }
    })
}

/// Whether the folder found at `shown` is the one opened from the source.
fn same_folder(found: &OwnedFd, opened: &OwnedFd, shown: &Path) -> Result<bool, MountFailure> {
    ffi::same_file(found.as_fd(), opened.as_fd()).map_err(MountFailure::system(format!(
        "cannot compare {} with the folder opened from the source",
        shown.display()
    )))
}

/// The writable subfolders are found by name; only where nobody but root or
/// a trusted owner can rename entries of the source folder does a name stay
/// the folder it was (`beamline::names_can_be_swapped`).
fn names_stay_put(
    grant: &Grant,
    source: &OwnedFd,
    trust: &TrustPolicy,
    writable: &[(&str, OwnedFd)],
) -> Result<(), MountFailure> {
    let facts = FileFacts::of_handle(source.as_fd()).map_err(MountFailure::system(format!(
        "cannot inspect {}",
        grant.source.display()
    )))?;
    let Some(why) = names_can_be_swapped(&facts, trust) else {
        return Ok(());
    };
    Err(MountFailure::NamesNotStable {
        names: writable
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect(),
        source: grant.source.clone(),
        why,
    })
}

/// A small private tmpfs over the hide root, so no other beamline shows.
fn mount_hide_root(grant: &Grant, hide_root: &OwnedFd) -> Result<(), MountFailure> {
    ffi::mount_tmpfs(&ffi::fd_path(hide_root.as_fd()), HIDE_ROOT_TMPFS_OPTIONS).map_err(
        MountFailure::system(format!(
            "cannot mount a tmpfs over {}",
            grant.hide_root.display()
        )),
    )
}

/// The hide root's tmpfs made read-only (and noexec), once what it holds is set up.
fn seal_hide_root(grant: &Grant) -> Result<(), MountFailure> {
    let tmpfs = walk_no_symlinks(&grant.hide_root)?;
    ffi::restrict_mount(tmpfs.as_fd(), true, true).map_err(MountFailure::system(format!(
        "cannot make {} read-only",
        grant.hide_root.display()
    )))
}

/// The source template names the beamline's *current* folder: it must still
/// hold this beamtime's own metadata file, as it did when the step was
/// decided, or the beamline has moved on to another beamtime (or a
/// commissioning run shares it) and mounting it would show someone else's data.
fn check_source_is_the_beamtimes(
    grant: &Grant,
    source: &OwnedFd,
    trust: &TrustPolicy,
) -> Result<(), MountFailure> {
    let beamtime = grant.beamtime.as_str();
    match beamline_folder(
        source.as_fd(),
        &grant.source,
        &grant.metadata_file_name,
        trust,
    ) {
        Ok(BeamlineFolder::ThisBeamtime) => Ok(()),
        Ok(_) => Err(MountFailure::NotTheBeamtimes {
            source: grant.source.clone(),
            beamtime: beamtime.to_owned(),
            why: format!("it no longer holds {}", grant.metadata_file_name),
        }),
        Err(error) => Err(MountFailure::of_folder(
            grant.source.clone(),
            beamtime,
            error,
        )),
    }
}
