use super::log::{civil_from_days, Counters, LogEvent, Told};
use super::*;

#[test]
fn retries_back_off_up_to_five_minutes() {
    let delays: Vec<u64> = (1..=10).map(|n| retry_delay(n).as_secs()).collect();
    assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(retry_delay(u32::MAX).as_secs(), 300);
}

#[test]
fn the_default_state_file_is_per_folder_and_outside_it() {
    let env = |name: &str| match name {
        "HOME" => Some(OsString::from("/home/u")),
        _ => None,
    };
    let a = default_state_file(Path::new("/gpfs/raw"), Each::File, &env).unwrap();
    let b = default_state_file(Path::new("/other/raw"), Each::File, &env).unwrap();
    let scans = default_state_file(Path::new("/gpfs/raw"), Each::Folder, &env).unwrap();
    assert!(a.starts_with("/home/u/.local/state/bt-submit"));
    assert!(a.to_string_lossy().contains("watch-raw-"));
    assert!(scans.to_string_lossy().contains("watch-folders-raw-"));
    assert_ne!(a, b);
    let xdg = |name: &str| (name == "XDG_STATE_HOME").then(|| OsString::from("/state"));
    assert!(default_state_file(Path::new("/gpfs/raw"), Each::File, &xdg)
        .unwrap()
        .starts_with("/state/bt-submit"));
}

#[test]
fn dates_are_civil() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(20_819), (2027, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
}

const FORGED: &str =
    "x\n2026-12-07T00:00:00.000Z important.h5 -> job 4711 (closed after writing)\ny.h5";

fn submitted(file: &str) -> LogEvent<'_> {
    LogEvent::Submitted {
        file,
        job: 5,
        node: Some("btnode1"),
        why: Why::ClosedAfterWriting.to_string(),
        attempt: 2,
    }
}

/// `event`'s JSON line, parsed back, after checking that it is one line.
#[track_caller]
fn json_line(event: &LogEvent) -> serde_json::Value {
    let line = event.line(Format::Json, "2026-12-07T00:00:00.000Z");
    assert_eq!(line.lines().count(), 1, "{line}");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn a_name_with_a_newline_cannot_start_a_log_line_of_its_own() {
    let line = submitted(FORGED).line(Format::Text, "2026-12-07T00:00:01.000Z");
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with("2026-12-07T00:00:01.000Z \"x\\n2026"),
        "{line}"
    );
    assert_eq!(named("scan_1/frame_0001.h5"), "scan_1/frame_0001.h5");
    assert_eq!(named(""), ".");
}

#[test]
fn a_submission_s_text_line_is_the_one_scripts_read() {
    assert_eq!(
        submitted("scan_1/frame_0001.h5").text(),
        "scan_1/frame_0001.h5 -> job 5 on btnode1 (closed after writing)"
    );
}

#[test]
fn json_gives_each_name_whole_on_one_line_whatever_it_holds() {
    let quoted = "scan \"1\"\\frame\t0001.h5";
    for name in [FORGED, quoted] {
        let value = json_line(&submitted(name));
        assert_eq!(value["event"], "submitted", "{value}");
        assert_eq!(value["file"], name, "{value}");
        assert_eq!(value["job"], 5, "{value}");
        assert_eq!(value["node"], "btnode1", "{value}");
        assert_eq!(value["attempt"], 2, "{value}");
        assert_eq!(value["why"], "closed after writing", "{value}");
        assert_eq!(value["time"], "2026-12-07T00:00:00.000Z", "{value}");
    }
}

#[test]
fn a_name_that_is_not_utf8_is_shown_as_the_watch_sees_it_in_both_renderings() {
    use std::os::unix::ffi::OsStrExt;
    // tree.rs's view of such a name: lossy, with U+FFFD for the bytes.
    let seen = std::ffi::OsStr::from_bytes(b"frame_\xff\xfe.h5").to_string_lossy();
    let event = LogEvent::Unusable {
        file: &seen,
        why: "its name is not UTF-8",
    };
    let text = event.text();
    assert_eq!(
        text,
        "\"frame_\u{fffd}\u{fffd}.h5\": not submitted: its name is not UTF-8"
    );
    let value = json_line(&event);
    assert_eq!(value["event"], "unusable");
    assert_eq!(value["file"], "frame_\u{fffd}\u{fffd}.h5");
    assert_eq!(value["error"], "its name is not UTF-8");
}

/// One of each event, with names that need escaping where an event has one.
fn every_event<'a>(patterns: &'a Patterns) -> Vec<LogEvent<'a>> {
    let error = || "sbatch: error: \"x\"\nsecond line".to_owned();
    let counters = Counters {
        seen: 4,
        waiting: 1,
        submitted: 3,
        in_flight: Some(2),
        refused: 1,
        failed: 1,
    };
    vec![
        LogEvent::Watching {
            folder: Path::new("/gpfs/raw"),
            each: Each::Folder,
            patterns,
            done_file: Some("scan.done"),
            settle: None,
            poll_interval: Duration::from_millis(500),
            inotify: true,
            max_in_flight: Some(50),
            state: Path::new("/state/watch.json"),
            submitted_before: 3,
            plan: "reservation 11099001",
        },
        LogEvent::FailedBefore {
            each: Each::File,
            count: 2,
        },
        LogEvent::SkippedExisting {
            each: Each::File,
            count: 2,
            skipped_in_all: 5,
        },
        LogEvent::NoInotify {
            error: error(),
            at_start: true,
            poll_interval: Duration::from_secs(1),
        },
        LogEvent::NoInotifyWatch {
            folder: FORGED,
            error: error(),
        },
        LogEvent::Unusable {
            file: FORGED,
            why: "its name is not UTF-8",
        },
        LogEvent::Disappeared { file: FORGED },
        submitted(FORGED),
        LogEvent::SubmittedNotRecorded {
            file: FORGED,
            job: 7,
        },
        LogEvent::AnswerLost {
            file: FORGED,
            error: "ssh broke off after sbatch started",
        },
        LogEvent::Refused {
            file: FORGED,
            error: "sbatch failed (exit status 1): sbatch: error: \"x\"",
            permanent: true,
            retry_in: Duration::from_secs(4),
            failures: 2,
            attempt: 3,
        },
        LogEvent::Failed {
            file: FORGED,
            error: "sbatch failed",
            refusals: 3,
        },
        LogEvent::Unresolved {
            file: FORGED,
            error: error(),
        },
        LogEvent::CannotCountJobs { error: error() },
        LogEvent::WaitingForRoom {
            in_flight: 50,
            max: 50,
        },
        LogEvent::WaitingForDisk { error: error() },
        LogEvent::StateWritable,
        LogEvent::JournalNotFolded { error: error() },
        LogEvent::RereadRequested,
        LogEvent::MetadataUnreadable {
            error: error(),
            plan: "reservation 11099001",
        },
        LogEvent::PlanChanged {
            old: "reservation 11099001",
            new: "reservation 11099001_1",
        },
        LogEvent::NoPlan {
            error: error(),
            plan: "reservation 11099001",
        },
        LogEvent::FailedTriedAgain {
            each: Each::File,
            count: 1,
        },
        LogEvent::Counters(counters),
        LogEvent::Stopping {
            signal: "SIGTERM",
            each: Each::File,
            submitted_in_run: 3,
            waiting: 1,
        },
    ]
}

#[test]
fn every_event_is_one_text_line_and_one_json_object_named_for_it() {
    let patterns = Patterns::new(&["scan_*".to_owned(), "*.{h5,cbf}".to_owned()]).unwrap();
    let events = every_event(&patterns);
    let mut names = HashSet::new();
    for event in &events {
        let text = event.line(Format::Text, "2026-12-07T00:00:00.000Z");
        assert_eq!(text.lines().count(), 1, "{text}");
        let value = json_line(event);
        assert_eq!(value["event"], event.name(), "{value}");
        assert!(
            names.insert(event.name()),
            "two events named {}",
            event.name()
        );
        if let Some(file) = value.get("file") {
            assert_eq!(file, FORGED, "{value}");
        }
    }
    assert_eq!(names.len(), events.len());
    let watching = json_line(&events[0]);
    assert_eq!(
        watching["patterns"],
        serde_json::json!(["scan_*", "*.{h5,cbf}"])
    );
    assert_eq!(watching["settleSeconds"], serde_json::Value::Null);
    assert_eq!(watching["pollSeconds"], 0.5);
    assert_eq!(watching["doneFile"], "scan.done");
    assert_eq!(
        events[0].text(),
        "watching /gpfs/raw for scan folders scan_* or *.{h5,cbf}, each complete once it holds \
         scan.done (looking every 0.5 s, inotify, at most 50 jobs in flight), state \
         /state/watch.json: 3 folders submitted before; plan reservation 11099001"
    );
}

#[test]
fn the_counters_say_when_jobs_in_flight_are_not_counted() {
    let counters = Counters {
        seen: 3,
        waiting: 1,
        submitted: 2,
        in_flight: None,
        refused: 1,
        failed: 0,
    };
    let event = LogEvent::Counters(counters);
    assert_eq!(
        event.text(),
        "counters: seen 3, waiting to be complete 1, submitted 2, in flight not counted (no \
         --max-in-flight), refused and not yet submitted 1 (0 of them failed)"
    );
    let value = json_line(&event);
    assert_eq!(value["inFlight"], serde_json::Value::Null);
    assert_eq!(value["seen"], 3);
    assert_eq!(value["submitted"], 2);
}

#[test]
fn a_situation_is_told_when_it_begins_or_changes_not_while_it_lasts() {
    let mut told = Told::default();
    let key_unreadable = || "frame.h5\ncannot read the key".to_owned();
    assert!(told.is_news(key_unreadable()));
    for _ in 0..10 {
        assert!(
            !told.is_news(key_unreadable()),
            "said again at a later poll"
        );
    }
    assert!(told.is_news("frame.h5\nno node answered".to_owned()));
    assert!(told.is_news(key_unreadable()), "a change back is news too");
    told.over();
    assert!(
        told.is_news(key_unreadable()),
        "the same again after it ended"
    );
}

#[test]
fn the_lock_refusal_names_the_holder_and_never_suggests_a_second_state() {
    let holder = "pid 4711 on p11-bl since 2026-12-01T22:44:02Z".to_owned();
    let refused = state_failure(StateError::InUse {
        path: PathBuf::from("/home/u/.local/state/bt-submit/watch-raw.json"),
        holder: holder.clone(),
    });
    assert_eq!(refused.status, Status::Usage);
    assert!(refused.problem.what.contains(&holder), "{refused}");
    // A second state for the same folder would submit every file again.
    assert!(!refused.problem.fix.contains("--state"), "{refused}");
    assert!(refused.problem.fix.contains("stop it"), "{refused}");
}
