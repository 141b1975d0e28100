//! Reading a metadata file the way a root process must: the file is opened
//! without following a symlink, and the checks (regular file, trusted owner,
//! not writable by group or others, size cap) are made on the open descriptor
//! that is then read, so swapping the path between check and use gains nothing.

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::capped::{read_capped, ReadFailure};
use crate::discovery::{select_by_id, DiscoveryError, FileIdentity, SearchPath, Selected};
use crate::id::BeamtimeId;
use crate::metadata::{parse_metadata, Metadata, MetadataKind, MAX_METADATA_BYTES};
use crate::plugin_config::OwnerSpec;
use crate::policy::{BeamlineFolder, Refusal, Rule};
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

/// Why the names inside a beamline folder could be swapped by someone the
/// plugin does not trust, or `None` when only root or a trusted owner can
/// rename what is in it. The site's writable subfolders are found by name:
/// where the account (or any member) can rename entries of the folder, it
/// can put another of its folders under a writable name while tasks start,
/// or move a mounted one after (#17), so `writable=` is honoured only in a
/// folder nobody else can change. The mode's group bits are the ACL mask,
/// so an ACL granting writes shows there too.
pub fn names_can_be_swapped(folder: &FileFacts, policy: &TrustPolicy) -> Option<String> {
    if folder.owner != 0 && !policy.owners.contains(&folder.owner) {
        return Some(format!(
            "it is owned by uid {}, who can rename what is in it",
            folder.owner
        ));
    }
    if folder.mode & 0o022 != 0 {
        return Some(format!(
            "it is writable by group or others (mode {:04o}), who can rename what is in it",
            folder.mode & 0o7777
        ));
    }
    None
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

/// Why a beamline folder could not be told apart.
#[derive(Debug)]
pub enum FolderError {
    /// The walk to it failed: a symbolic link on the way, a folder above it
    /// missing (an unmounted file system), no permission …
    Walk(WalkError),
    /// It holds a file of this beamtime's name that is a link or not trusted,
    /// which the start script would never leave.
    Copy(String),
    /// It could not be listed.
    List(std::io::Error),
}

/// What the beamline folder `source` holds, `name` being this beamtime's
/// metadata file: how the node tells whether a beamline's folder is this
/// beamtime's (see [`crate::policy::Phase`]). Walked from `/` following no
/// link. Only the folder itself may be missing (a beamline between two
/// beamtimes, or before the first): a missing folder above it is a fault.
pub fn inspect_beamline_folder(
    source: &Path,
    name: &str,
    policy: &TrustPolicy,
) -> Result<BeamlineFolder, FolderError> {
    let folder = match walk::open_folder(source, &|_| false) {
        Ok(folder) => folder,
        Err(WalkError::Io { at, error })
            if error.kind() == std::io::ErrorKind::NotFound && at == source =>
        {
            return Ok(BeamlineFolder::Absent)
        }
        Err(error) => return Err(FolderError::Walk(error)),
    };
    beamline_folder(folder.as_fd(), source, name, policy)
}

/// The names of the beamtime and commissioning metadata files in the folder
/// behind the handle, listed through its /proc name.
fn metadata_files_in(folder: BorrowedFd<'_>) -> Result<Vec<String>, FolderError> {
    let listed = std::fs::read_dir(format!("/proc/self/fd/{}", folder.as_raw_fd()))
        .map_err(FolderError::List)?;
    Ok(listed
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| MetadataKind::from_file_name(name).is_some())
        .collect())
}

/// What the folder behind the handle `folder` (named `shown` in messages)
/// holds: [`inspect_beamline_folder`] for a folder already open, as a task's
/// mount side has it.
pub fn beamline_folder(
    folder: BorrowedFd<'_>,
    shown: &Path,
    name: &str,
    policy: &TrustPolicy,
) -> Result<BeamlineFolder, FolderError> {
    let file_shown = shown.join(name);
    match walk::open_file_in(folder, OsStr::new(name)) {
        Ok(file) => {
            let stat = file
                .metadata()
                .map_err(|e| FolderError::Copy(format!("{}: {e}", file_shown.display())))?;
            if let Some(why) = distrust(&FileFacts::of(&stat), policy) {
                return Err(FolderError::Copy(format!(
                    "{} is not trusted: {why}",
                    file_shown.display()
                )));
            }
            // A folder that holds another beamtime's file as well is neither's
            // for certain (a leftover of a beamtime switch): refused, not
            // shown to both (#21).
            match metadata_files_in(folder)?
                .into_iter()
                .find(|file| file != name)
            {
                None => Ok(BeamlineFolder::ThisBeamtime),
                Some(other) => Err(FolderError::Copy(format!(
                    "it holds {} too, another beamtime's metadata file, so whose folder it is \
                     cannot be told",
                    crate::untrusted::shown_token(&other)
                ))),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(if metadata_files_in(folder)?.is_empty() {
                BeamlineFolder::NoBeamtime
            } else {
                BeamlineFolder::AnotherBeamtime
            })
        }
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => Err(FolderError::Copy(format!(
            "{} is a symbolic link",
            file_shown.display()
        ))),
        // A folder the caller may not look into (root on the node always may): the
        // walk stopped there, nothing is known of its contents.
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(FolderError::Walk(WalkError::Io {
                at: file_shown,
                error,
            }))
        }
        Err(error) => Err(FolderError::Copy(format!(
            "{}: {error}",
            file_shown.display()
        ))),
    }
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    const GOOD: &[u8] = include_bytes!("../tests/fixtures/beamtime-metadata-11099001.json");

    /// A scratch folder per test, removed when the test ends.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "beamtime-trust-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            path
        }

        fn search(&self) -> SearchPath {
            let pattern = format!("{}/*/beamtime-metadata-{{id}}.json", self.0.display());
            SearchPath::parse_list(&pattern).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
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
        let link = scratch.0.join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let refusal = read_trusted(&link, &owner_of(&real)).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataUntrusted);
        assert!(
            refusal
                .problem
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
            refusal.problem.contains(&format!("owned by uid {owner}")),
            "{refusal}"
        );
        assert!(refusal.problem.contains("(uid 4000000)"), "{refusal}");
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
                .contains(&format!("{} bytes, more than", MAX_METADATA_BYTES + 1)),
            "{refusal}"
        );
    }

    #[test]
    fn a_directory_or_fifo_in_place_of_the_file_is_refused_without_blocking() {
        let scratch = Scratch::new();
        let dir = scratch.0.join("dir.json");
        fs::create_dir(&dir).unwrap();
        let refusal = read_trusted(&dir, &owner_of(&dir)).unwrap_err();
        assert!(refusal.problem.contains("not a regular file"), "{refusal}");

        let fifo = scratch.0.join("fifo.json");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
        let refusal = read_trusted(&fifo, &owner_of(&fifo)).unwrap_err();
        assert!(refusal.problem.contains("not a regular file"), "{refusal}");
    }

    #[test]
    fn a_beamline_folder_holds_this_beamtime_another_or_none() {
        let scratch = Scratch::new();
        let source = scratch.0.join("current");
        let name = "beamtime-metadata-11099001.json";
        let holds = |policy: &TrustPolicy| inspect_beamline_folder(&source, name, policy);
        assert!(matches!(holds(&stranger()), Ok(BeamlineFolder::Absent)));
        fs::create_dir(&source).unwrap();
        assert!(matches!(holds(&stranger()), Ok(BeamlineFolder::NoBeamtime)));
        let other = scratch.write("current/beamtime-metadata-11099002.json", GOOD);
        assert!(matches!(
            holds(&stranger()),
            Ok(BeamlineFolder::AnotherBeamtime)
        ));
        let path = scratch.write(&format!("current/{name}"), GOOD);
        // Both files: whose folder it is cannot be told.
        match holds(&owner_of(&path)) {
            Err(FolderError::Copy(why)) => assert_eq!(
                why,
                "it holds beamtime-metadata-11099002.json too, another beamtime's metadata \
                 file, so whose folder it is cannot be told"
            ),
            other => panic!("{other:?}"),
        }
        fs::remove_file(&other).unwrap();
        assert!(matches!(
            holds(&owner_of(&path)),
            Ok(BeamlineFolder::ThisBeamtime)
        ));
        match holds(&stranger()) {
            Err(FolderError::Copy(why)) => assert!(
                why.starts_with(&format!(
                    "{} is not trusted: it is owned by uid",
                    path.display()
                )),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        match holds(&owner_of(&scratch.0)) {
            Err(FolderError::Copy(why)) => {
                assert_eq!(why, format!("{} is a symbolic link", path.display()))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_folder_above_the_beamline_folder_is_a_fault_not_pre_start() {
        let scratch = Scratch::new();
        let source = scratch.0.join("unmounted/p11/current");
        match inspect_beamline_folder(&source, "beamtime-metadata-11099001.json", &stranger()) {
            Err(FolderError::Walk(error)) => assert!(error.is_not_found(), "{error:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lookup_by_id_finds_checks_and_parses() {
        let scratch = Scratch::new();
        fs::create_dir(scratch.0.join("p11")).unwrap();
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
                .contains("no metadata file for beamtime 11099001"),
            "{refusal}"
        );

        fs::create_dir(scratch.0.join("p11")).unwrap();
        fs::create_dir(scratch.0.join("p21")).unwrap();
        let first = scratch.write("p11/beamtime-metadata-11099001.json", GOOD);
        let second = scratch.write("p21/beamtime-metadata-11099001.json", GOOD);
        let refusal =
            load_trusted_metadata(&id("11099001"), &search, &owner_of(&first)).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataAmbiguous);
        assert!(
            refusal.problem.contains(&first.display().to_string()),
            "{refusal}"
        );
        assert!(
            refusal.problem.contains(&second.display().to_string()),
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
            refusal.problem.contains(&first.display().to_string()),
            "{refusal}"
        );

        // Another beamtime's file renamed into place: the name says 11099002, the content 11099001.
        fs::remove_file(&first).unwrap();
        let renamed = scratch.write("p11/beamtime-metadata-11099002.json", GOOD);
        let refusal =
            load_trusted_metadata(&id("11099002"), &search, &owner_of(&renamed)).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataInvalid);
        assert!(refusal.problem.contains("11099001"), "{refusal}");
    }

    #[test]
    fn a_planted_file_neither_shadows_nor_blocks_the_real_one() {
        let scratch = Scratch::new();
        for folder in ["p11", "p12", "later"] {
            fs::create_dir(scratch.0.join(folder)).unwrap();
        }
        let real = scratch.write("later/beamtime-metadata-11099001.json", GOOD);
        // Next to the real file's pattern, and in an earlier pattern: a user's copy and a symlink.
        let copy = scratch.write("p11/beamtime-metadata-11099001.json", GOOD);
        std::os::unix::fs::chown(&copy, Some(4_000_001), None).unwrap();
        std::os::unix::fs::symlink(&real, scratch.0.join("p12/beamtime-metadata-11099001.json"))
            .unwrap();
        let search = SearchPath::parse_list(&format!(
            "{0}/*/beamtime-metadata-{{id}}.json:{0}/later/beamtime-metadata-{{id}}.json",
            scratch.0.display()
        ))
        .unwrap();
        let metadata = load_trusted_metadata(&id("11099001"), &search, &owner_of(&real)).unwrap();
        assert_eq!(metadata.path, real);

        // With the real file gone, the first planted one says why it is not taken.
        fs::remove_file(&real).unwrap();
        let refusal =
            load_trusted_metadata(&id("11099001"), &search, &owner_of(&scratch.0)).unwrap_err();
        assert_eq!(refusal.rule, Rule::MetadataUntrusted);
        assert!(
            refusal.problem.contains(
                "p11/beamtime-metadata-11099001.json is not trusted: it is owned by uid 4000001"
            ),
            "{refusal}"
        );
    }
    #[test]
    fn writable_subfolders_need_a_folder_only_root_or_a_trusted_owner_can_change() {
        let policy = TrustPolicy {
            owners: vec![0, 900],
        };
        let folder = |owner, mode| FileFacts {
            is_regular: false,
            owner,
            mode: libc::S_IFDIR | mode,
            size: 4096,
        };
        // The facility's layout: root:<beamtime group> 0750.
        assert_eq!(names_can_be_swapped(&folder(0, 0o750), &policy), None);
        assert_eq!(names_can_be_swapped(&folder(900, 0o755), &policy), None);
        let account = names_can_be_swapped(&folder(5001, 0o750), &policy).unwrap();
        assert!(account.contains("owned by uid 5001"), "{account}");
        for mode in [0o770, 0o2770, 0o1777, 0o757] {
            let why = names_can_be_swapped(&folder(0, mode), &policy).unwrap();
            assert!(why.contains(&format!("mode {mode:04o}")), "{why}");
        }
    }
}
