//! `bt-submit watch` from its command line: the folder, the state file, the
//! sbatch command planned once as `bt-submit sbatch` plans it; then the watch
//! itself (mod.rs).

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use beamtime::metadata::Metadata;

use crate::cli::{Source, WatchAction, WatchArgs, WatchCommand};
use crate::commands::submit::{planned, submitter_for};
use crate::commands::watch;
use crate::failure::{Failure, Status};
use crate::site::metadata_file::{absolute, load_metadata};
use crate::site::settings::Settings;
use crate::slurm::options::{self as slurm_options, Program};

/// The watch itself, or one of its subcommands on a watch's state.
pub fn dispatch(command: WatchCommand, settings: &Settings) -> Result<ExitCode, Failure> {
    match command {
        WatchCommand::Watch(args) => run(args, settings),
        WatchCommand::On(WatchAction::Status(args)) => watch::status::status(args, settings),
        WatchCommand::On(WatchAction::Resubmit(args)) => watch::status::resubmit(args, settings),
    }
}

pub fn run(args: WatchArgs, settings: &Settings) -> Result<ExitCode, Failure> {
    let user = slurm_options::scan(Program::Sbatch, &args.args);
    if !user.comments.is_empty() {
        return Err(Failure::new(
            Status::Usage,
            "bt-submit watch gives each job its own --comment, by which it counts its jobs and \
             finds them after a crash; it cannot take yours",
            "leave --comment out of the sbatch options",
        ));
    }
    if args.done_file.is_some() && args.each != watch::Each::Folder {
        return Err(Failure::new(
            Status::Usage,
            "--done-file tells when a scan folder is complete; this watch submits each file",
            "add --each folder to submit one job per scan folder, or leave --done-file out",
        ));
    }
    let patterns = watch::Patterns::new(&args.patterns).map_err(|problem| Failure {
        status: Status::Usage,
        problem,
    })?;
    let folder = absolute(&args.folder)?.canonicalize().map_err(|error| {
        Failure::new(
            Status::NoInput,
            format!("cannot watch {}: {error}", args.folder.display()),
            "name an existing folder you may read",
        )
    })?;
    if !folder.is_dir() {
        return Err(Failure::new(
            Status::NoInput,
            format!("cannot watch {}: it is not a folder", folder.display()),
            "name the folder the files arrive in",
        ));
    }
    let state = match args.state {
        Some(path) => absolute(&path)?,
        None => watch::default_state_file(&folder, args.each, &|name| env::var_os(name))
            .ok_or_else(|| {
                Failure::new(
                    Status::Usage,
                    "no place for the watch's state file: neither XDG_STATE_HOME nor HOME is set",
                    "give the state file with --state FILE",
                )
            })?,
    };
    let options = watch::Options {
        folder,
        each: args.each,
        done_file: args.done_file,
        patterns,
        settle: args.settle,
        poll_interval: args.poll_interval,
        // 0 lifts the cap.
        max_in_flight: Some(args.max_in_flight as usize).filter(|&n| n > 0),
        state,
        sharing: if args.shared_state {
            watch::Sharing::Shared
        } else {
            watch::Sharing::OnlyMine
        },
        inotify: !args.no_inotify,
        skip_existing: args.skip_existing,
        give_up_after: args.give_up_after,
        format: args.format,
    };
    let beamtime = CommandLine {
        folder: &options.folder,
        maps: &args.maps,
        args: &args.source,
        settings,
        remote: args.remote,
        node: args.node.as_deref(),
        reservation: args.reservation.as_deref(),
        user_args: &args.args,
    };
    if args.dry_run {
        watch::dry_run(&options, &beamtime)?;
    } else {
        watch::run(&options, &beamtime)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The beamtime as the command line names it, chosen and planned the way
/// `bt-submit sbatch` does, each time the watch asks.
struct CommandLine<'a> {
    folder: &'a Path,
    maps: &'a [(PathBuf, PathBuf)],
    args: &'a Source,
    settings: &'a Settings<'a>,
    remote: bool,
    node: Option<&'a str>,
    reservation: Option<&'a str>,
    user_args: &'a [OsString],
}

impl watch::Beamtime for CommandLine<'_> {
    fn metadata(&self) -> Result<Metadata, Failure> {
        load_metadata(self.args, self.settings)
    }

    fn plan(&self, metadata: &Metadata) -> Result<watch::Plan, Failure> {
        let mut submitter = submitter_for(Program::Sbatch, metadata, self.remote, self.node)?;
        // A burst of files is many sbatch and squeue calls: over ssh, one
        // connection serves them (a new plan, new nodes: connections of its own).
        submitter.share_connections()?;
        let invocation = planned(
            Program::Sbatch,
            metadata,
            &submitter,
            self.reservation.map(str::to_owned),
            self.user_args.to_vec(),
        )?;
        let on_nodes = self.folder_on_nodes(metadata)?;
        let online = metadata.online.ready();
        let mut summary = format!("reservation {}", invocation.reservation);
        if let Some(online) = online {
            summary.push_str(&format!(", partition {}", online.partition));
            if self.remote {
                summary.push_str(&format!(", via {}", online.reserved_nodes.join(",")));
            }
        }
        summary.push_str(&format!(
            ", {} seen by jobs as {}",
            self.folder.display(),
            on_nodes.folder.display()
        ));
        Ok(watch::Plan {
            submitter,
            template: invocation.args,
            on_nodes,
            summary,
        })
    }
}

impl CommandLine<'_> {
    /// Where the jobs see the watched folder: from --map, else from the
    /// plugin's source= and target= (the plugstack line as read here) and the
    /// metadata's core path.
    fn folder_on_nodes(&self, metadata: &Metadata) -> Result<watch::OnNodes, Failure> {
        let target = self.settings.target()?;
        let source = match self.settings.plugin() {
            Ok(setup) => match &setup.config {
                Ok(usable) => Some(usable.source.expand(&metadata.id, &metadata.beamline)),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let site = watch::SiteView {
            source,
            target: target.expand(&metadata.id, &metadata.beamline),
            core: metadata.core_path.as_deref(),
        };
        watch::on_nodes(self.folder, self.maps, &site).map_err(|problem| Failure {
            status: Status::Usage,
            problem,
        })
    }
}
