//! Change events and per-subject state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A decoded change event: the CloudEvents 1.0 context attributes scimflow uses, and the subject's
/// current attributes as `data` (events carry state, not deltas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// CloudEvents `id`; unique per `source`.
    pub id: String,
    /// CloudEvents `source`.
    pub source: String,
    /// CloudEvents `type`, e.g. `hr.worker.hired`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The person (or group) the event is about; the Kafka key.
    pub subject: String,
    /// When the change happened at the source; used to drop stale events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// The subject's current attributes.
    #[serde(default)]
    pub data: serde_json::Value,
    /// W3C trace context carried with the event, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Where an event was read from; recorded on rejects and used for commit bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum EventOrigin {
    /// A Kafka message.
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// An entry of the embedded durable log (fed by the HTTP ingest endpoint or a JSONL reader).
    Embedded { seq: u64 },
    /// Element `index` of a request to the HTTP ingest endpoint that was rejected before reaching
    /// the log.
    HttpIngest { index: usize },
}

impl std::fmt::Display for EventOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventOrigin::Kafka {
                topic,
                partition,
                offset,
            } => write!(f, "kafka {topic}[{partition}]@{offset}"),
            EventOrigin::Embedded { seq } => write!(f, "embedded log #{seq}"),
            EventOrigin::HttpIngest { index } => write!(f, "ingest request, event #{index}"),
        }
    }
}

/// The latest known state of one subject, kept so that stale and duplicate events can be dropped and
/// updates can be planned against what was applied before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectState {
    pub subject: String,
    /// Id of the last event applied for this subject.
    pub last_event_id: String,
    /// `time` of the last event applied, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<DateTime<Utc>>,
    /// Type of the last event applied.
    pub last_kind: String,
    /// Attributes as of the last applied event.
    pub data: serde_json::Value,
    /// Ids of the most recent applied events (newest last, at most [`RECENT_EVENT_IDS`]), so a
    /// replayed event is recognised as a duplicate even when a newer one was applied since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_event_ids: Vec<String>,
    /// Version of the mapping the last event was planned with (empty when unknown). A minimal PATCH
    /// against this state is only valid under the same mapping.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mapping_version: String,
    /// The Kafka message of the last applied event, when it came from Kafka (see
    /// [`PartitionLedger::continuous_since`](crate::partition::PartitionLedger::continuous_since)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<crate::partition::SourcePosition>,
}

/// How many recent event ids a [`SubjectState`] remembers.
pub const RECENT_EVENT_IDS: usize = 32;

impl SubjectState {
    /// The state after applying `event` to a subject with no history.
    pub fn from_event(event: &Event) -> Self {
        SubjectState {
            subject: event.subject.clone(),
            last_event_id: event.id.clone(),
            last_time: event.time,
            last_kind: event.kind.clone(),
            data: event.data.clone(),
            recent_event_ids: vec![event.id.clone()],
            mapping_version: String::new(),
            position: None,
        }
    }

    /// The state after applying `event` on top of `prior`.
    pub fn advance(prior: Option<&SubjectState>, event: &Event) -> Self {
        let mut next = Self::from_event(event);
        if let Some(p) = prior {
            let mut ids = p.recent_event_ids.clone();
            ids.push(event.id.clone());
            let excess = ids.len().saturating_sub(RECENT_EVENT_IDS);
            ids.drain(..excess);
            next.recent_event_ids = ids;
        }
        next
    }

    /// Whether `event` must be skipped because it is not newer than this state.
    ///
    /// An event is stale when its `time` is strictly older than the last applied one; an event with the
    /// same id as the last applied one is a duplicate. Events without a `time` are never stale by time.
    pub fn staleness(&self, event: &Event) -> Option<Staleness> {
        if event.id == self.last_event_id || self.recent_event_ids.contains(&event.id) {
            return Some(Staleness::Duplicate);
        }
        match (event.time, self.last_time) {
            (Some(new), Some(old)) if new < old => Some(Staleness::Older),
            _ => None,
        }
    }
}

/// Why an event was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Staleness {
    /// Same event id as one already applied.
    Duplicate,
    /// Older than the state already applied.
    Older,
}

/// An input that could not be turned into an [`Event`], kept durably with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedEvent {
    /// When it was rejected.
    pub at: DateTime<Utc>,
    /// Where it came from.
    pub origin: EventOrigin,
    /// The event id, when the input was readable enough to have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// A human-readable reason naming what was wrong.
    pub reason: String,
    /// The first bytes of the raw input (lossy UTF-8), to help find it at the source.
    pub excerpt: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, t: Option<&str>) -> Event {
        Event {
            id: id.into(),
            source: "hr".into(),
            kind: "hr.worker.updated".into(),
            subject: "E1".into(),
            time: t.map(|t| t.parse().unwrap()),
            data: serde_json::json!({}),
            traceparent: None,
        }
    }

    #[test]
    fn staleness_by_id_and_time() {
        let st = SubjectState::from_event(&ev("a", Some("2026-01-02T00:00:00Z")));
        assert_eq!(
            st.staleness(&ev("a", Some("2026-01-03T00:00:00Z"))),
            Some(Staleness::Duplicate)
        );
        assert_eq!(
            st.staleness(&ev("b", Some("2026-01-01T00:00:00Z"))),
            Some(Staleness::Older)
        );
        assert_eq!(st.staleness(&ev("b", Some("2026-01-02T00:00:00Z"))), None);
        assert_eq!(st.staleness(&ev("b", None)), None);
        let st = SubjectState::advance(Some(&st), &ev("c", Some("2026-01-04T00:00:00Z")));
        assert_eq!(st.staleness(&ev("a", None)), Some(Staleness::Duplicate));
    }
}
