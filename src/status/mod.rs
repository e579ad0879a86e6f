//! Pure mapping from what the cloud said (or why it could not be asked) to `.status`, its
//! conditions, and the Events a change deserves. No I/O here. What is common to every kind lives
//! here; each kind maps its own backup fields ([`vbs`], [`cbr`]).

pub mod cbr;
pub mod vbs;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const AVAILABLE: &str = "available";

/// Condition messages are cut to this many bytes (the API server allows 32 KiB; people read 1).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Event notes are cut to this many bytes (the API server refuses notes over 1 KiB).
pub const MAX_NOTE_BYTES: usize = 1000;
/// Text fields copied from the cloud into `.status` are cut to this many bytes.
pub const MAX_FIELD_BYTES: usize = 1024;
/// Condition reasons derived from a cloud's status string are cut to this many characters.
const MAX_REASON_CHARS: usize = 64;

/// `text` cut at a character boundary to at most `max` bytes, `…` marking a cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

/// A kind's `.status`: the backup fields it mirrors (mapped by the kind from the cloud's answer),
/// `observedGeneration` and the conditions, which are the same for every kind.
pub trait BackupStatus: Clone + PartialEq + Default + serde::Serialize + Send + Sync + 'static {
    /// The backup's state as the cloud reports it.
    fn backup_status(&self) -> Option<&str>;
    /// Why the backup failed, where the cloud says.
    fn fail_reason(&self) -> Option<&str> {
        None
    }
    fn conditions(&self) -> &[Condition];
    fn set_conditions(&mut self, conditions: Vec<Condition>);
    fn set_observed_generation(&mut self, generation: Option<i64>);
    /// Backup states the cloud moves out of by itself; polled at the fast interval.
    fn is_transitional(state: &str) -> bool;
}

/// Backup states that mean the backup failed (`error`, `error_restoring`, ...).
pub fn is_failed(state: &str) -> bool {
    state.starts_with("error")
}

/// Why the last query did not produce a backup. The names are the `Synced` condition's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    SecretNotFound,
    /// The operator's service account may not read the Secret (RBAC).
    SecretForbidden,
    InvalidCloudConfig,
    AuthenticationFailed,
    BackupNotFound,
    ApiError,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::SecretNotFound => "SecretNotFound",
            FailureReason::SecretForbidden => "SecretForbidden",
            FailureReason::InvalidCloudConfig => "InvalidCloudConfig",
            FailureReason::AuthenticationFailed => "AuthenticationFailed",
            FailureReason::BackupNotFound => "BackupNotFound",
            FailureReason::ApiError => "ApiError",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFailure {
    pub reason: FailureReason,
    pub message: String,
}

/// The result of one reconcile's attempt to learn the backup's state: the kind's status fields
/// as mapped from the cloud's answer (no conditions yet), or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncOutcome<S> {
    Observed(Box<S>),
    Failed(SyncFailure),
}

impl<S: BackupStatus> SyncOutcome<S> {
    pub fn observed(fields: S) -> Self {
        SyncOutcome::Observed(Box::new(fields))
    }

    /// Whether the backup was seen in a state the cloud moves out of by itself.
    pub fn is_transitional(&self) -> bool {
        matches!(self, SyncOutcome::Observed(s) if s.backup_status().is_some_and(S::is_transitional))
    }
}

/// The status to write: backup fields from `outcome` (kept from `current` when the query failed,
/// cleared when the backup no longer exists), and `Ready`/`Synced` conditions whose
/// `lastTransitionTime` only moves when their status does.
pub fn desired_status<S: BackupStatus>(
    current: Option<&S>,
    outcome: &SyncOutcome<S>,
    generation: Option<i64>,
    now: Timestamp,
) -> S {
    let previous = current.cloned().unwrap_or_default();
    let (mut status, ready, synced) = match outcome {
        SyncOutcome::Observed(fields) => {
            let status = S::clone(fields);
            let ready = ready_condition(status.backup_status(), status.fail_reason());
            let synced = ConditionSpec::new(
                SYNCED,
                "True",
                "QuerySucceeded",
                "the backup API answered the last query",
            );
            (status, ready, synced)
        }
        SyncOutcome::Failed(f) if f.reason == FailureReason::BackupNotFound => {
            let ready = ConditionSpec::new(READY, "False", f.reason.as_str(), &f.message);
            let synced = ConditionSpec::new(SYNCED, "False", f.reason.as_str(), &f.message);
            (S::default(), ready, synced)
        }
        SyncOutcome::Failed(f) => {
            let ready = match find(previous.conditions(), READY) {
                Some(c) => ConditionSpec::new(READY, &c.status, &c.reason, &c.message),
                None => ConditionSpec::new(
                    READY,
                    "Unknown",
                    f.reason.as_str(),
                    &format!("the backup's state is not known yet: {}", f.message),
                ),
            };
            let synced = ConditionSpec::new(SYNCED, "False", f.reason.as_str(), &f.message);
            (previous.clone(), ready, synced)
        }
    };
    status.set_observed_generation(generation);
    let progress = progress_conditions(outcome, status.backup_status());
    status.set_conditions(
        [ready, synced]
            .into_iter()
            .chain(progress)
            .map(|c| c.into_condition(previous.conditions(), generation, now))
            .collect(),
    );
    status
}

/// kstatus-style `Reconciling` and `Stalled` conditions, present only while True, so that Flux,
/// Argo CD and `kstatus` see a creating backup as in progress and a failed one as failed.
fn progress_conditions<S: BackupStatus>(
    outcome: &SyncOutcome<S>,
    backup_status: Option<&str>,
) -> Option<ConditionSpec> {
    match outcome {
        SyncOutcome::Observed(_) => {
            let state = backup_status?;
            let message = format!("the backup is {state}");
            if S::is_transitional(state) {
                Some(ConditionSpec::new(
                    RECONCILING,
                    "True",
                    &camel_case_reason(state),
                    &message,
                ))
            } else if is_failed(state) {
                Some(ConditionSpec::new(
                    STALLED,
                    "True",
                    &camel_case_reason(state),
                    &message,
                ))
            } else {
                None
            }
        }
        SyncOutcome::Failed(f) if f.reason == FailureReason::ApiError => backup_status
            .is_none()
            .then(|| ConditionSpec::new(RECONCILING, "True", f.reason.as_str(), &f.message)),
        // A missing Secret, bad config, refused credentials or a vanished backup need a person.
        SyncOutcome::Failed(f) => Some(ConditionSpec::new(STALLED, "True", f.reason.as_str(), &f.message)),
    }
}

/// Which of `times` hold something other than a timestamp in one of the API's formats (and are
/// therefore left out of the status), for the log: `(field, what was wrong)`.
pub fn odd_timestamps(times: &[(&'static str, &Option<String>)]) -> Vec<(&'static str, &'static str)> {
    times
        .iter()
        .filter(|(_, v)| v.as_deref().is_some_and(|t| rfc3339_utc(t).is_none()))
        .map(|(field, _)| (*field, "not a timestamp in one of the API's formats; left out"))
        .collect()
}

fn ready_condition(backup_status: Option<&str>, fail_reason: Option<&str>) -> ConditionSpec {
    match backup_status {
        Some(AVAILABLE) => ConditionSpec::new(READY, "True", "Available", "the backup is available"),
        Some(s) => {
            let message = match fail_reason {
                Some(why) if !why.is_empty() => format!("the backup is {s}: {why}"),
                _ => format!("the backup is {s}"),
            };
            ConditionSpec::new(READY, "False", &camel_case_reason(s), &message)
        }
        None => ConditionSpec::new(
            READY,
            "Unknown",
            "StatusUnknown",
            "the backup API reported no status",
        ),
    }
}

/// `error_restoring` -> `ErrorRestoring`; any string becomes a valid condition reason.
pub fn camel_case_reason(status: &str) -> String {
    let reason: String = status
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase())
                .unwrap_or_default()
        })
        .collect();
    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
    match reason.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => reason,
        Some(_) => format!("Status{reason}"),
        None => "StatusUnknown".into(),
    }
}

/// The API prints UTC times without a zone (`2013-06-27T08:48:03.000000`): make them RFC 3339.
/// A time that carries a zone is converted to UTC. Anything else (an epoch number, an empty string,
/// a date without a time) is not one of the API's formats: `None`, never the value verbatim.
pub fn rfc3339_utc(value: &str) -> Option<String> {
    let value = value.trim();
    // Date, `T` or a space, and at least hours and minutes.
    let shaped = value.len() >= 16
        && value.len() <= 64
        && matches!(value.as_bytes().get(10), Some(b'T' | b't' | b' '));
    if !shaped {
        return None;
    }
    if let Ok(ts) = value.parse::<Timestamp>() {
        return Some(ts.to_string());
    }
    value
        .parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp().to_string())
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

struct ConditionSpec {
    type_: &'static str,
    status: String,
    reason: String,
    message: String,
}

impl ConditionSpec {
    fn new(type_: &'static str, status: &str, reason: &str, message: &str) -> Self {
        ConditionSpec {
            type_,
            status: status.into(),
            reason: reason.into(),
            message: truncate(message, MAX_MESSAGE_BYTES),
        }
    }

    fn into_condition(self, previous: &[Condition], generation: Option<i64>, now: Timestamp) -> Condition {
        let last_transition_time = match find(previous, self.type_) {
            Some(old) if old.status == self.status => old.last_transition_time.clone(),
            _ => Time(now),
        };
        Condition {
            type_: self.type_.into(),
            status: self.status,
            reason: self.reason,
            message: self.message,
            observed_generation: generation,
            last_transition_time,
        }
    }
}

/// An Event to publish about the VbsBackup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// Events for what changed between two statuses: backup state transitions (a Warning carrying
/// `fail_reason` when the backup turns to an error state) and the sync breaking or recovering.
/// Nothing for a status that did not change, so retries do not spam.
pub fn notices<S: BackupStatus>(old: Option<&S>, new: &S) -> Vec<Notice> {
    let mut out = Vec::new();
    let old_state = old.and_then(|o| o.backup_status());
    if let Some(state) = new.backup_status().filter(|s| Some(*s) != old_state) {
        let change = match old_state {
            Some(prev) => format!("backup status changed from {prev} to {state}"),
            None => format!("backup status is {state}"),
        };
        out.push(if is_failed(state) {
            let why = new.fail_reason().unwrap_or("the cloud gave no fail_reason");
            Notice {
                warning: true,
                reason: "BackupFailed".into(),
                note: format!("{change}: {why}"),
            }
        } else {
            // The reason names the new state: kube's Recorder folds repeats of a reason into one
            // Event series that keeps the first note, so a shared reason would hide transitions.
            Notice {
                warning: false,
                reason: camel_case_reason(state),
                note: change,
            }
        });
    }
    let old_synced = old.and_then(|o| find(o.conditions(), SYNCED));
    if let Some(synced) = find(new.conditions(), SYNCED) {
        let changed = old_synced.is_none_or(|o| o.status != synced.status || o.reason != synced.reason);
        if changed && synced.status == "False" {
            out.push(Notice {
                warning: true,
                reason: synced.reason.clone(),
                note: synced.message.clone(),
            });
        } else if changed && old_synced.is_some_and(|o| o.status == "False") {
            out.push(Notice {
                warning: false,
                reason: "SyncRecovered".into(),
                note: "the backup API answers again".into(),
            });
        }
    }
    for notice in &mut out {
        notice.note = truncate(&notice.note, MAX_NOTE_BYTES);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Backup;
    use crate::crd::VbsBackupStatus;

    fn observed(b: Backup) -> SyncOutcome<VbsBackupStatus> {
        SyncOutcome::observed(vbs::from_backup(&b))
    }

    fn failed(f: SyncFailure) -> SyncOutcome<VbsBackupStatus> {
        SyncOutcome::Failed(f)
    }

    fn reference_backup() -> Backup {
        Backup {
            id: "1d1139d8-8989-49d3-8aa1-83eb691e6db2".into(),
            status: Some("error".into()),
            size: Some(1),
            fail_reason: Some("Connection to swift failed: [Errno 111] ECONNREFUSED".into()),
            has_dependent_backups: Some(false),
            is_incremental: Some(false),
            volume_id: Some("2748f2f2-4394-4e6e-af8d-8dd34496c024".into()),
            snapshot_id: Some("66a574c0-4415-499e-b0b1-3f340d7f7932".into()),
            container: Some("volumebackups".into()),
            project_id: Some("b23b579f08c84228b9b4673c46f0c442".into()),
            created_at: Some("2013-06-27T08:48:03.000000".into()),
            updated_at: Some("2019-03-27T12:36:17.596602".into()),
            data_timestamp: Some("2019-03-16T11:56:00.917245".into()),
            ..Default::default()
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn cond<'a>(s: &'a VbsBackupStatus, type_: &str) -> &'a Condition {
        find(&s.conditions, type_).expect("condition present")
    }

    #[test]
    fn reference_example_maps_to_status() {
        let now = t("2026-11-27T10:00:00Z");
        let s = desired_status(None, &observed(reference_backup()), Some(3), now);
        assert_eq!(s.backup_status.as_deref(), Some("error"));
        assert_eq!(s.size, Some(1));
        assert_eq!(s.created_at.as_deref(), Some("2013-06-27T08:48:03Z"));
        assert_eq!(s.updated_at.as_deref(), Some("2019-03-27T12:36:17.596602Z"));
        assert_eq!(s.data_timestamp.as_deref(), Some("2019-03-16T11:56:00.917245Z"));
        assert_eq!(
            (s.name.as_deref(), s.description.as_deref(), s.object_count),
            (None, None, None)
        );
        assert_eq!(s.observed_generation, Some(3));
        let ready = cond(&s, READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Error"));
        assert_eq!(
            ready.message,
            "the backup is error: Connection to swift failed: [Errno 111] ECONNREFUSED"
        );
        assert_eq!(ready.last_transition_time, Time(now));
        assert_eq!(cond(&s, SYNCED).status, "True");
    }

    #[test]
    fn available_is_ready() {
        let b = Backup {
            status: Some("available".into()),
            ..reference_backup()
        };
        let s = desired_status(None, &observed(b), Some(1), t("2026-11-27T10:00:00Z"));
        assert_eq!(
            (cond(&s, READY).status.as_str(), cond(&s, READY).reason.as_str()),
            ("True", "Available")
        );
    }

    #[test]
    fn transition_time_is_stable_until_status_changes() {
        let t0 = t("2026-11-27T10:00:00Z");
        let t1 = t("2026-11-27T10:10:00Z");
        let creating = Backup {
            status: Some("creating".into()),
            ..reference_backup()
        };
        let first = desired_status(None, &observed(creating.clone()), Some(1), t0);
        let again = desired_status(Some(&first), &observed(creating), Some(1), t1);
        assert_eq!(
            first, again,
            "an unchanged backup yields an identical status (no write)"
        );
        let available = Backup {
            status: Some("available".into()),
            ..reference_backup()
        };
        let later = desired_status(Some(&again), &observed(available), Some(1), t1);
        assert_eq!(cond(&later, READY).last_transition_time, Time(t1));
        assert_eq!(
            cond(&later, SYNCED).last_transition_time,
            Time(t0),
            "Synced stayed True"
        );
    }

    #[test]
    fn failed_query_keeps_last_known_backup_and_ready() {
        let t0 = t("2026-11-27T10:00:00Z");
        let ok = desired_status(None, &observed(reference_backup()), Some(1), t0);
        let failure = SyncFailure {
            reason: FailureReason::ApiError,
            message: "HTTP 503".into(),
        };
        let s = desired_status(Some(&ok), &failed(failure), Some(1), t("2026-11-27T10:01:00Z"));
        assert_eq!(s.backup_status.as_deref(), Some("error"));
        assert_eq!(s.fail_reason, ok.fail_reason);
        assert_eq!(cond(&s, READY), cond(&ok, READY));
        let synced = cond(&s, SYNCED);
        assert_eq!(
            (
                synced.status.as_str(),
                synced.reason.as_str(),
                synced.message.as_str()
            ),
            ("False", "ApiError", "HTTP 503")
        );
    }

    #[test]
    fn failure_before_any_observation_leaves_ready_unknown() {
        let failure = SyncFailure {
            reason: FailureReason::SecretNotFound,
            message: "Secret team-a/vbs-cloud not found".into(),
        };
        let s = desired_status(None, &failed(failure), Some(1), t("2026-11-27T10:00:00Z"));
        assert_eq!(s.backup_status, None);
        assert_eq!(
            (cond(&s, READY).status.as_str(), cond(&s, READY).reason.as_str()),
            ("Unknown", "SecretNotFound")
        );
        assert_eq!(cond(&s, SYNCED).reason, "SecretNotFound");
    }

    #[test]
    fn not_found_clears_backup_fields() {
        let ok = desired_status(
            None,
            &observed(reference_backup()),
            Some(1),
            t("2026-11-27T10:00:00Z"),
        );
        let gone = SyncFailure {
            reason: FailureReason::BackupNotFound,
            message: "backup x does not exist".into(),
        };
        let s = desired_status(Some(&ok), &failed(gone), Some(1), t("2026-11-27T10:01:00Z"));
        assert_eq!(s.backup_status, None);
        assert_eq!(s.volume_id, None);
        assert_eq!(
            (cond(&s, READY).status.as_str(), cond(&s, READY).reason.as_str()),
            ("False", "BackupNotFound")
        );
        assert_eq!(cond(&s, SYNCED).reason, "BackupNotFound");
    }

    #[test]
    fn kstatus_conditions_follow_progress() {
        let now = t("2026-11-27T10:00:00Z");
        let with = |status: &str| {
            let b = Backup {
                status: Some(status.into()),
                ..reference_backup()
            };
            desired_status(None, &observed(b), Some(1), now)
        };
        let types = |s: &VbsBackupStatus| s.conditions.iter().map(|c| c.type_.clone()).collect::<Vec<_>>();
        assert_eq!(types(&with("creating")), ["Ready", "Synced", "Reconciling"]);
        assert_eq!(cond(&with("creating"), RECONCILING).reason, "Creating");
        assert_eq!(types(&with("available")), ["Ready", "Synced"]);
        assert_eq!(types(&with("error_restoring")), ["Ready", "Synced", "Stalled"]);
        let fail = |reason| {
            failed(SyncFailure {
                reason,
                message: "m".into(),
            })
        };
        let first_error = desired_status(None, &fail(FailureReason::ApiError), Some(1), now);
        assert_eq!(cond(&first_error, RECONCILING).reason, "ApiError");
        let known = with("available");
        let later_error = desired_status(Some(&known), &fail(FailureReason::ApiError), Some(1), now);
        assert_eq!(
            types(&later_error),
            ["Ready", "Synced"],
            "retrying with a known state is not progress"
        );
        let denied = desired_status(None, &fail(FailureReason::AuthenticationFailed), Some(1), now);
        assert_eq!(cond(&denied, STALLED).reason, "AuthenticationFailed");
    }

    #[test]
    fn reasons_are_camel_case() {
        assert_eq!(camel_case_reason("error_restoring"), "ErrorRestoring");
        assert_eq!(camel_case_reason("creating"), "Creating");
        assert_eq!(camel_case_reason("backing-up"), "BackingUp");
        assert_eq!(camel_case_reason("ERROR"), "Error");
        assert_eq!(camel_case_reason("4xx"), "Status4xx");
        assert_eq!(camel_case_reason(""), "StatusUnknown");
    }

    #[test]
    fn timestamps_become_rfc3339_utc() {
        let utc = |v| rfc3339_utc(v);
        assert_eq!(
            utc("2013-06-27T08:48:03.000000").as_deref(),
            Some("2013-06-27T08:48:03Z")
        );
        assert_eq!(
            utc("2019-03-27T12:36:17.596602").as_deref(),
            Some("2019-03-27T12:36:17.596602Z")
        );
        assert_eq!(
            utc("2019-03-27T14:36:17+02:00").as_deref(),
            Some("2019-03-27T12:36:17Z")
        );
        assert_eq!(
            utc("2019-03-27 12:36:17").as_deref(),
            Some("2019-03-27T12:36:17Z")
        );
        for odd in ["yesterday", "", "1552737360", "2019-03-27", "2019-13-45T99:99:99"] {
            assert_eq!(utc(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn odd_answers_are_checked_not_copied() {
        let odd = Backup {
            data_timestamp: Some("1552737360".into()),
            updated_at: Some(String::new()),
            status: Some("x".repeat(5000)),
            fail_reason: Some("é".repeat(3000)),
            ..reference_backup()
        };
        let s = desired_status(None, &observed(odd.clone()), Some(1), t("2026-11-27T10:00:00Z"));
        assert_eq!(
            (s.data_timestamp.as_deref(), s.updated_at.as_deref()),
            (None, None)
        );
        assert_eq!(s.created_at.as_deref(), Some("2013-06-27T08:48:03Z"));
        assert!(
            s.backup_status
                .as_ref()
                .is_some_and(|v| v.len() <= MAX_FIELD_BYTES)
        );
        assert!(
            s.fail_reason
                .as_ref()
                .is_some_and(|v| v.len() <= MAX_FIELD_BYTES && v.ends_with('…'))
        );
        for c in &s.conditions {
            assert!(c.message.len() <= MAX_MESSAGE_BYTES, "{}", c.type_);
            assert!(c.reason.len() <= 64 + 6, "{}", c.reason);
        }
        for n in notices(None, &s) {
            assert!(n.note.len() <= MAX_NOTE_BYTES);
        }
        assert_eq!(
            vbs::anomalies(&odd).iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            ["updated_at", "data_timestamp"]
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        let cut = truncate("ééééé", 6);
        assert!(cut.len() <= 6 && cut.ends_with('…'), "{cut}");
        proptest::proptest!(|(text in ".{0,300}", max in 4usize..400)| {
            let cut = truncate(&text, max);
            proptest::prop_assert!(cut.len() <= max.max(text.len().min(max)));
        });
    }

    #[test]
    fn notices_on_transitions_only() {
        let now = t("2026-11-27T10:00:00Z");
        let creating = desired_status(
            None,
            &observed(Backup {
                status: Some("creating".into()),
                ..reference_backup()
            }),
            Some(1),
            now,
        );
        assert_eq!(
            notices(None, &creating),
            vec![Notice {
                warning: false,
                reason: "Creating".into(),
                note: "backup status is creating".into()
            }]
        );
        assert_eq!(notices(Some(&creating), &creating), vec![]);
        let failed_state = desired_status(Some(&creating), &observed(reference_backup()), Some(1), now);
        assert_eq!(
            notices(Some(&creating), &failed_state),
            vec![Notice {
                warning: true,
                reason: "BackupFailed".into(),
                note: "backup status changed from creating to error: Connection to swift failed: [Errno 111] ECONNREFUSED".into()
            }]
        );
        let broken = desired_status(
            Some(&failed_state),
            &failed(SyncFailure {
                reason: FailureReason::ApiError,
                message: "HTTP 503".into(),
            }),
            Some(1),
            now,
        );
        assert_eq!(
            notices(Some(&failed_state), &broken),
            vec![Notice {
                warning: true,
                reason: "ApiError".into(),
                note: "HTTP 503".into()
            }]
        );
        assert_eq!(notices(Some(&broken), &broken), vec![]);
        let healed = desired_status(Some(&broken), &observed(reference_backup()), Some(1), now);
        assert_eq!(notices(Some(&broken), &healed)[0].reason, "SyncRecovered");
    }
}
