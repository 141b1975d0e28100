//! Reading a metadata file the way a root process must: the file is opened
//! without following a symlink, and the checks (regular file, trusted owner,
//! not writable by group or others, size cap) are made on the open descriptor
//! that is then read, so swapping the path between check and use gains nothing.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::capped::{read_capped, ReadFailure};
use crate::discovery::{select_by_id, DiscoveryError, FileIdentity, SearchPath, Selected};
use crate::id::BeamtimeId;
use crate::metadata::{parse_metadata, Metadata, MAX_METADATA_BYTES};
use crate::plugin_config::OwnerSpec;
use crate::refusal::{Refusal, Rule};
use crate::users;
use crate::walk::{self, WalkError};

/// Who may own a metadata file: the facility's start script runs as one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    pub owners: Vec<u32>,
}

impl TrustPolicy {
    /// The uids of plugstack's `trusted_owners=`, names resolved through the
    /// user database. Done only when a beamtime job needs it, so other jobs
    /// cost no NSS lookup. The plugin and `bt-submit doctor` both call this.
    pub fn resolve(owners: &[OwnerSpec]) -> Result<TrustPolicy, OwnerError> {
        let mut uids = Vec::with_capacity(owners.len());
        for owner in owners {
            uids.push(match owner {
                OwnerSpec::Uid(uid) => *uid,
                OwnerSpec::Name(name) => match users::uid_of(name) {
                    Ok(Some(uid)) => uid,
                    Ok(None) => return Err(OwnerError::NoSuchUser(name.clone())),
                    Err(error) => return Err(OwnerError::Lookup(error)),
                },
            });
        }
        Ok(TrustPolicy { owners: uids })
    }
}

/// A `trusted_owners` entry that does not resolve to a uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerError {
    NoSuchUser(String),
    Lookup(users::LookupError),
}

impl fmt::Display for OwnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnerError::NoSuchUser(name) => write!(
                f,
                "trusted_owners names user '{}', who does not exist on this host",
                name.escape_default()
            ),
            OwnerError::Lookup(error) => write!(f, "trusted_owners: {error}"),
        }
    }
}

impl std::error::Error for OwnerError {}

/// What `fstat` says about an open file, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    pub is_regular: bool,
    pub owner: u32,
    pub mode: u32,
    pub size: u64,
}

impl FileFacts {
    /// From the metadata of an open file (`File::metadata` is `fstat`), so
    /// the facts are of the object that will be read, whatever its path
    /// names by then.
    pub fn of(stat: &std::fs::Metadata) -> FileFacts {
        FileFacts {
            is_regular: stat.file_type().is_file(),
            owner: stat.uid(),
            mode: stat.mode(),
            size: stat.size(),
        }
    }

    /// Of the object behind a handle (an `O_PATH` one included): `fstat`.
    pub fn of_handle(handle: BorrowedFd<'_>) -> std::io::Result<FileFacts> {
        let file = std::fs::File::from(handle.try_clone_to_owned()?);
        Ok(FileFacts::of(&file.metadata()?))
    }
}

/// Why an open file is not trusted, or `None` when it is.
pub fn distrust(facts: &FileFacts, policy: &TrustPolicy) -> Option<String> {
    if !facts.is_regular {
        return Some("it is not a regular file".to_owned());
    }
    if !policy.owners.contains(&facts.owner) {
        let trusted: Vec<String> = policy.owners.iter().map(u32::to_string).collect();
        return Some(format!(
            "it is owned by uid {}, not by a trusted owner (uid {})",
            facts.owner,
            trusted.join(", ")
        ));
    }
    if facts.mode & 0o022 != 0 {
        return Some(format!(
            "it is writable by group or others (mode {:04o})",
            facts.mode & 0o7777
        ));
    }
    if facts.size > MAX_METADATA_BYTES as u64 {
        return Some(format!(
            "it is {} bytes, more than the {MAX_METADATA_BYTES}-byte limit",
            facts.size
        ));
    }
    None
}

/// Reads one metadata file if, and only if, it is trusted.
/// Returns its bytes, read from the descriptor that passed the checks, and
/// its identity, which tells one file reached by two paths.
pub fn read_trusted(path: &Path, policy: &TrustPolicy) -> Result<(FileIdentity, Vec<u8>), Refusal> {
    let untrusted = |why: String| {
        Refusal::new(
            Rule::MetadataUntrusted,
            format!("metadata file {} is not trusted: {why}", path.display()),
            "Only the facility's start script may write metadata files; ask the beamline \
             staff to restore it",
        )
    };
    let trusted_link_owner = |uid: u32| uid == 0 || policy.owners.contains(&uid);
    let file = walk::open_file(path, trusted_link_owner).map_err(|error| match error {
        WalkError::FileIsLink => untrusted("it is a symbolic link".to_owned()),
        WalkError::UntrustedLink { link, owner } => untrusted(format!(
            "{} on its path is a symbolic link owned by uid {owner}, and only links of root \
             or a trusted owner are followed",
            link.display()
        )),
        WalkError::TooManyLinks { path: at } => untrusted(format!(
            "too many symbolic links on its path (at {})",
            at.display()
        )),
        not_found if not_found.is_not_found() => Refusal::new(
            Rule::MetadataNotFound,
            format!("metadata file {} disappeared while it was being read", path.display()),
            "Try again; if it keeps happening, ask the beamline staff whether the beamtime was stopped",
        ),
        WalkError::Io { at, error } => Refusal::new(
            Rule::MetadataUntrusted,
            if at == path {
                format!("metadata file {} cannot be opened: {error}", path.display())
            } else {
                format!(
                    "metadata file {} cannot be opened: {}: {error}",
                    path.display(),
                    at.display()
                )
            },
            "Ask the beamline staff to check the file's permissions",
        ),
    })?;
    let stat = file
        .metadata()
        .map_err(|e| untrusted(format!("fstat failed: {e}")))?;
    let facts = FileFacts::of(&stat);
    if let Some(why) = distrust(&facts, policy) {
        return Err(untrusted(why));
    }
    let bytes = read_capped(&file, facts.size).map_err(|failure| {
        untrusted(match failure {
            ReadFailure::TooLarge(_) => {
                format!("it grew past the {MAX_METADATA_BYTES}-byte limit while being read")
            }
            other => format!("reading failed: {other}"),
        })
    })?;
    Ok((FileIdentity::of(&stat), bytes))
}

/// Finds, reads, checks and parses the metadata of beamtime `id` in the
/// admin's search path. Only trusted files count: the first pattern with one
/// decides, two different trusted files are ambiguous, and a file anybody
/// could plant (a symlink, a user's copy) neither shadows nor blocks the real
/// one. With no trusted file at all, the first untrusted one says why.
pub fn load_trusted_metadata(
    id: &BeamtimeId,
    search: &SearchPath,
    policy: &TrustPolicy,
) -> Result<Metadata, Refusal> {
    match select_by_id(search, id, |path| read_trusted(path, policy)) {
        Selected::One { path, file } => parse_trusted(id, &path, &file),
        Selected::Several { paths } => Err(Refusal::new(
            Rule::MetadataAmbiguous,
            DiscoveryError::Ambiguous {
                id: id.clone(),
                paths,
            }
            .to_string(),
            "Ask the beamline staff to remove the stale one",
        )),
        Selected::Nothing {
            first_rejected: Some(untrusted),
            ..
        } => Err(untrusted),
        // The message already says what to check.
        Selected::Nothing { denied, .. } => Err(Refusal::new(
            Rule::MetadataNotFound,
            DiscoveryError::NotFound {
                id: id.clone(),
                searched: search.patterns().iter().map(|p| p.substitute(id)).collect(),
                denied,
            }
            .to_string(),
            "",
        )),
    }
}

fn parse_trusted(id: &BeamtimeId, path: &Path, bytes: &[u8]) -> Result<Metadata, Refusal> {
    // The parser's message already names the place and what to do.
    let metadata = parse_metadata(bytes, path)
        .map_err(|e| Refusal::new(Rule::MetadataInvalid, e.to_string(), ""))?;
    if &metadata.id != id {
        return Err(Refusal::new(
            Rule::MetadataInvalid,
            format!(
                "{} describes beamtime {}, not {id}",
                path.display(),
                metadata.id
            ),
            "Ask the beamline staff to fix the metadata file",
        ));
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    const GOOD: &[u8] = include_bytes!("../tests/fixtures/beamtime-metadata-11099001.json");

    /// A scratch folder per test, removed when the test ends.
    struct Scratch(tempfile::TempDir);

    impl Scratch {
        fn new() -> Scratch {
            Scratch(tempfile::tempdir().unwrap())
        }

        fn path(&self) -> &Path {
            self.0.path()
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.path().join(name);
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            path
        }

        fn search(&self) -> SearchPath {
            let pattern = format!("{}/*/beamtime-metadata-{{id}}.json", self.path().display());
            SearchPath::parse_list(&pattern).unwrap()
        }
    }

    fn owner_of(path: &Path) -> TrustPolicy {
        TrustPolicy {
            owners: vec![fs::metadata(path).unwrap().uid()],
        }
    }

    fn stranger() -> TrustPolicy {
        TrustPolicy {
            owners: vec![4_000_000],
        }
    }

    fn id(text: &str) -> BeamtimeId {
        BeamtimeId::parse(text).unwrap()
    }

    #[test]
    fn a_trusted_file_is_read_whole() {
        let scratch = Scratch::new();
        let path = scratch.write("m.json", GOOD);
        assert_eq!(read_trusted(&path, &owner_of(&path)).unwrap().1, GOOD);
    }

    #[test]
    fn a_symlink_is_refused_even_to_a_trusted_file() {
        let scratch = Scratch::new();
        let real = scratch.write("real.json", GOOD);
        let link = scratch.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let refusal = read_trusted(&link, &owner_of(&real)).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataUntrusted);
        assert!(
            refusal
                .problem
                .what
                .contains("link.json is not trusted: it is a symbolic link"),
            "{refusal}"
        );
    }

    #[test]
    fn a_file_of_an_untrusted_owner_is_refused_naming_both_uids() {
        let scratch = Scratch::new();
        let path = scratch.write("m.json", GOOD);
        let refusal = read_trusted(&path, &stranger()).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataUntrusted);
        let owner = fs::metadata(&path).unwrap().uid();
        assert!(
            refusal
                .problem
                .what
                .contains(&format!("owned by uid {owner}")),
            "{refusal}"
        );
        assert!(refusal.problem.what.contains("(uid 4000000)"), "{refusal}");
    }

    #[test]
    fn a_group_or_world_writable_file_is_refused() {
        let scratch = Scratch::new();
        for mode in [0o664, 0o646] {
            let path = scratch.write("m.json", GOOD);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let refusal = read_trusted(&path, &owner_of(&path)).unwrap_err();
            assert!(
                refusal
                    .problem
                    .what
                    .contains(&format!("writable by group or others (mode 0{mode:o})")),
                "{refusal}"
            );
        }
    }

    #[test]
    fn a_file_over_the_cap_is_refused_before_it_is_read() {
        let scratch = Scratch::new();
        let path = scratch.write("m.json", &vec![b' '; MAX_METADATA_BYTES + 1]);
        let refusal = read_trusted(&path, &owner_of(&path)).unwrap_err();
        assert!(
            refusal
                .problem
                .what
                .contains(&format!("{} bytes, more than", MAX_METADATA_BYTES + 1)),
            "{refusal}"
        );
    }

    #[test]
    fn a_directory_or_fifo_in_place_of_the_file_is_refused_without_blocking() {
        let scratch = Scratch::new();
        let dir = scratch.path().join("dir.json");
        fs::create_dir(&dir).unwrap();
        let refusal = read_trusted(&dir, &owner_of(&dir)).unwrap_err();
        assert!(
            refusal.problem.what.contains("not a regular file"),
            "{refusal}"
        );

        let fifo = scratch.path().join("fifo.json");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
        let refusal = read_trusted(&fifo, &owner_of(&fifo)).unwrap_err();
        assert!(
            refusal.problem.what.contains("not a regular file"),
            "{refusal}"
        );
    }

    #[test]
    fn lookup_by_id_finds_checks_and_parses() {
        let scratch = Scratch::new();
        fs::create_dir(scratch.path().join("p11")).unwrap();
        let path = scratch.write("p11/beamtime-metadata-11099001.json", GOOD);
        let metadata =
            load_trusted_metadata(&id("11099001"), &scratch.search(), &owner_of(&path)).unwrap();
        assert_eq!(metadata.id.as_str(), "11099001");
        assert_eq!(metadata.path, path);
    }

    #[test]
    fn lookup_refuses_missing_ambiguous_untrusted_invalid_and_mislabelled_files() {
        let scratch = Scratch::new();
        let search = scratch.search();
        let policy = TrustPolicy { owners: vec![0] };

        let refusal = load_trusted_metadata(&id("11099001"), &search, &policy).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataNotFound);
        assert!(
            refusal
                .problem
                .what
                .contains("no metadata file for beamtime 11099001"),
            "{refusal}"
        );

        fs::create_dir(scratch.path().join("p11")).unwrap();
        fs::create_dir(scratch.path().join("p21")).unwrap();
        let first = scratch.write("p11/beamtime-metadata-11099001.json", GOOD);
        let second = scratch.write("p21/beamtime-metadata-11099001.json", GOOD);
        let refusal =
            load_trusted_metadata(&id("11099001"), &search, &owner_of(&first)).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataAmbiguous);
        assert!(
            refusal.problem.what.contains(&first.display().to_string()),
            "{refusal}"
        );
        assert!(
            refusal.problem.what.contains(&second.display().to_string()),
            "{refusal}"
        );
        fs::remove_file(&second).unwrap();

        let refusal = load_trusted_metadata(&id("11099001"), &search, &stranger()).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataUntrusted);

        scratch.write("p11/beamtime-metadata-11099001.json", b"{\"beamtimeId\": ");
        let refusal =
            load_trusted_metadata(&id("11099001"), &search, &owner_of(&first)).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataInvalid);
        assert!(
            refusal.problem.what.contains(&first.display().to_string()),
            "{refusal}"
        );

        // Another beamtime's file renamed into place: the name says 11099002, the content 11099001.
        fs::remove_file(&first).unwrap();
        let renamed = scratch.write("p11/beamtime-metadata-11099002.json", GOOD);
        let refusal =
            load_trusted_metadata(&id("11099002"), &search, &owner_of(&renamed)).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataInvalid);
        assert!(refusal.problem.what.contains("11099001"), "{refusal}");
    }

    #[test]
    fn a_planted_file_neither_shadows_nor_blocks_the_real_one() {
        let scratch = Scratch::new();
        for folder in ["p11", "p12", "later"] {
            fs::create_dir(scratch.path().join(folder)).unwrap();
        }
        let real = scratch.write("later/beamtime-metadata-11099001.json", GOOD);
        // Next to the real file's pattern, and in an earlier pattern: a user's copy and a symlink.
        let copy = scratch.write("p11/beamtime-metadata-11099001.json", GOOD);
        std::os::unix::fs::chown(&copy, Some(4_000_001), None).unwrap();
        std::os::unix::fs::symlink(
            &real,
            scratch.path().join("p12/beamtime-metadata-11099001.json"),
        )
        .unwrap();
        let search = SearchPath::parse_list(&format!(
            "{0}/*/beamtime-metadata-{{id}}.json:{0}/later/beamtime-metadata-{{id}}.json",
            scratch.path().display()
        ))
        .unwrap();
        let metadata = load_trusted_metadata(&id("11099001"), &search, &owner_of(&real)).unwrap();
        assert_eq!(metadata.path, real);

        // With the real file gone, the first planted one says why it is not taken.
        fs::remove_file(&real).unwrap();
        let refusal =
            load_trusted_metadata(&id("11099001"), &search, &owner_of(scratch.path())).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataUntrusted);
        assert!(
            refusal.problem.what.contains(
                "p11/beamtime-metadata-11099001.json is not trusted: it is owned by uid 4000001"
            ),
            "{refusal}"
        );
    }
}
