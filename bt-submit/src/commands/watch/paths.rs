//! Paths as the job sees them: the watched folder is where the watch runs
//! (the beamline computer's mount of the beamline filesystem, say), the job
//! runs on a node that sees the same files elsewhere (the plugin shows the
//! beamline folder at its `target=`, /beamline/<beamline>/current). The
//! folder is mapped once per plan, from an explicit `--map FROM=TO` or from
//! what the site configures, and a folder that cannot be mapped is refused:
//! a job handed a path it cannot open fails only on the node, file by file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use beamtime::problem::Problem;

/// Where the jobs see the watched folder, and why the watch says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnNodes {
    pub folder: PathBuf,
    pub why: String,
}

/// What the site says about where the beamline's files are.
pub struct SiteView<'a> {
    /// The plugin's `source=` for this beamtime: the beamline folder as the
    /// nodes have it, when the plugstack line could be read here.
    pub source: Option<PathBuf>,
    /// The plugin's `target=` for this beamtime: where jobs see that folder.
    pub target: PathBuf,
    /// The metadata's core path, the same on every host of the facility.
    pub core: Option<&'a Path>,
}

/// Maps `folder` (absolute, without links): the longest `--map FROM` it is
/// in; else, in the beamline folder as jobs see it or in the core path, the
/// same; in the beamline folder as the nodes have it (`source=`), the same
/// place below `target=`; anything else is refused.
pub fn on_nodes(
    folder: &Path,
    maps: &[(PathBuf, PathBuf)],
    site: &SiteView,
) -> Result<OnNodes, Problem> {
    let below = |root: &Path| folder.strip_prefix(root).ok().map(Path::to_path_buf);
    if let Some((from, to, rest)) = maps
        .iter()
        .filter_map(|(from, to)| below(from).map(|rest| (from, to, rest)))
        .max_by_key(|(from, _, _)| from.components().count())
    {
        return Ok(OnNodes {
            folder: join(to, &rest),
            why: format!("--map {}={}", from.display(), to.display()),
        });
    }
    if below(&site.target).is_some() {
        return Ok(OnNodes {
            folder: folder.to_path_buf(),
            why: "it is the beamline folder as jobs see it".to_owned(),
        });
    }
    if let Some(core) = site.core.filter(|core| below(core).is_some()) {
        return Ok(OnNodes {
            folder: folder.to_path_buf(),
            why: format!("it is in the beamtime's core path {}", core.display()),
        });
    }
    if let Some((source, rest)) = site
        .source
        .as_ref()
        .and_then(|source| below(source).map(|rest| (source, rest)))
    {
        return Ok(OnNodes {
            folder: join(&site.target, &rest),
            why: format!(
                "the plugin shows {} to jobs as {}",
                source.display(),
                site.target.display()
            ),
        });
    }
    let source = match &site.source {
        Some(source) => format!(", nor where the nodes have it ({})", source.display()),
        None => String::new(),
    };
    let core = match site.core {
        Some(core) => format!(", nor the core path {}", core.display()),
        None => String::new(),
    };
    Err(Problem::new(
        format!(
            "cannot tell where jobs see {}: it is not in the beamline folder as jobs see it \
             ({}){source}{core}, so each job would get a path of this host",
            folder.display(),
            site.target.display()
        ),
        format!(
            "say where the nodes see it with --map {}=PATH-ON-THE-NODES (--map {0}={0} if \
             they see it at the same path)",
            folder.display()
        ),
    ))
}

fn join(root: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rest)
    }
}

/// `--map FROM=TO`, both absolute.
pub fn parse_map(text: &str) -> Result<(PathBuf, PathBuf), String> {
    let (from, to) = text
        .split_once('=')
        .ok_or("expected FROM=TO: the folder here, then where the jobs' nodes see it")?;
    let (from, to) = (Path::new(from), Path::new(to));
    if !from.is_absolute() || !to.is_absolute() {
        return Err("both FROM and TO must be absolute paths".to_owned());
    }
    Ok((
        from.components().collect::<PathBuf>(),
        to.components().collect::<PathBuf>(),
    ))
}

/// The arguments for the file (or scan folder) `rel` below the folder the
/// job sees at `folder_on_nodes`: an argument that is exactly `{}` becomes
/// its path there; `{path}`, `{name}` (its name), `{stem}` (its name without
/// the last extension) and `{rel}` (its path below DIR) are replaced
/// anywhere in an argument (e.g. `-o logs/{stem}.out`). Without any of
/// them, the path is appended as the script's last argument.
pub fn arguments_for(template: &[OsString], folder_on_nodes: &Path, rel: &str) -> Vec<OsString> {
    let path = join(folder_on_nodes, Path::new(rel));
    let name = Path::new(rel)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = Path::new(rel)
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path_text = path.to_string_lossy().into_owned();
    let parts = [
        ("{path}", path_text.as_str()),
        ("{name}", name.as_str()),
        ("{stem}", stem.as_str()),
        ("{rel}", rel),
    ];
    let mut used = false;
    let mut args: Vec<OsString> = template
        .iter()
        .map(|arg| {
            if arg == "{}" {
                used = true;
                return path.clone().into_os_string();
            }
            // Placeholders are ASCII; an argument that is not UTF-8 holds none.
            let Some(text) = arg.to_str() else {
                return arg.clone();
            };
            let mut replaced = text.to_owned();
            for (placeholder, value) in parts {
                if replaced.contains(placeholder) {
                    used = true;
                    replaced = replaced.replace(placeholder, value);
                }
            }
            replaced.into()
        })
        .collect();
    if !used {
        args.push(path.into_os_string());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> SiteView<'static> {
        SiteView {
            source: Some(PathBuf::from("/gpfs/beamline/p11/current")),
            target: PathBuf::from("/beamline/p11/current"),
            core: Some(Path::new("/asap3/petra3/gpfs/p11/2026/data/11099001")),
        }
    }

    #[test]
    fn the_beamline_folder_as_the_nodes_have_it_is_mapped_to_where_jobs_see_it() {
        let mapped = on_nodes(Path::new("/gpfs/beamline/p11/current/raw"), &[], &site()).unwrap();
        assert_eq!(mapped.folder, Path::new("/beamline/p11/current/raw"));
        assert!(mapped.why.contains("/gpfs/beamline/p11/current"));
        let whole = on_nodes(Path::new("/gpfs/beamline/p11/current"), &[], &site()).unwrap();
        assert_eq!(whole.folder, Path::new("/beamline/p11/current"));
    }

    #[test]
    fn the_jobs_view_and_the_core_path_stay_as_they_are() {
        for folder in [
            "/beamline/p11/current/raw",
            "/asap3/petra3/gpfs/p11/2026/data/11099001/raw",
        ] {
            assert_eq!(
                on_nodes(Path::new(folder), &[], &site()).unwrap().folder,
                Path::new(folder)
            );
        }
    }

    #[test]
    fn the_longest_explicit_map_wins_over_the_sites_view() {
        let maps = [
            parse_map("/mnt/p11=/x").unwrap(),
            parse_map("/mnt/p11/current/=/beamline/p11/current").unwrap(),
        ];
        let mapped = on_nodes(Path::new("/mnt/p11/current/raw"), &maps, &site()).unwrap();
        assert_eq!(mapped.folder, Path::new("/beamline/p11/current/raw"));
        assert!(mapped.why.starts_with("--map /mnt/p11/current="));
        // A prefix of a name is not a folder above it.
        let refused = on_nodes(Path::new("/mnt/p110"), &maps, &site());
        assert!(refused.is_err());
    }

    #[test]
    fn a_folder_that_cannot_be_mapped_is_refused_with_the_map_to_give() {
        let problem = on_nodes(Path::new("/home/scientist/raw"), &[], &site()).unwrap_err();
        assert!(
            problem.what.contains("/home/scientist/raw"),
            "{}",
            problem.what
        );
        assert!(problem.what.contains("/beamline/p11/current"));
        assert!(
            problem.fix.contains("--map /home/scientist/raw="),
            "{}",
            problem.fix
        );
    }

    #[test]
    fn a_map_is_two_absolute_paths() {
        assert!(parse_map("/a").is_err());
        assert!(parse_map("a=/b").is_err());
        assert!(parse_map("/a=b").is_err());
        assert_eq!(
            parse_map("/a/=/b").unwrap(),
            (PathBuf::from("/a"), PathBuf::from("/b"))
        );
    }

    fn args(template: &[&str], rel: &str) -> Vec<String> {
        let template: Vec<OsString> = template.iter().map(OsString::from).collect();
        arguments_for(&template, Path::new("/beamline/p11/current/raw"), rel)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn placeholders_give_the_path_on_the_nodes_and_its_parts() {
        assert_eq!(
            args(
                &[
                    "-o",
                    "logs/{stem}.out",
                    "analyse.sh",
                    "{}",
                    "{name}",
                    "{rel}"
                ],
                "scan 1/a.h5"
            ),
            [
                "-o",
                "logs/a.out",
                "analyse.sh",
                "/beamline/p11/current/raw/scan 1/a.h5",
                "a.h5",
                "scan 1/a.h5"
            ]
        );
        // {} inside an argument is left alone (awk's, say); {path} is for that.
        assert_eq!(
            args(&["run.sh", "--in={}", "{}"], "a.h5"),
            ["run.sh", "--in={}", "/beamline/p11/current/raw/a.h5"]
        );
        assert_eq!(
            args(&["analyse.sh", "--in={path}"], "a.h5"),
            ["analyse.sh", "--in=/beamline/p11/current/raw/a.h5"]
        );
    }

    #[test]
    fn without_a_placeholder_the_path_is_the_last_argument() {
        assert_eq!(
            args(&["analyse.sh", "--fast"], "a.h5"),
            ["analyse.sh", "--fast", "/beamline/p11/current/raw/a.h5"]
        );
    }
}
