//! Key encoding of layout version 1 (see the crate docs for the table).
//!
//! Every sequence number is encoded as 8 big-endian bytes so that sled's byte order is numeric order.

/// Key holding the layout version.
pub(crate) const LAYOUT: &[u8] = b"meta:layout";
/// The only layout this build reads and writes.
pub(crate) const LAYOUT_VERSION: &[u8] = b"1";
/// Name of the sled tree holding layout version 1.
pub(crate) const TREE: &str = "v1";

/// Last assigned queue position (shared by all targets).
pub(crate) const SEQ_QUEUE: &[u8] = b"meta:seq:queue";
/// Last assigned embedded-log sequence number.
pub(crate) const SEQ_LOG: &[u8] = b"meta:seq:log";
/// Last assigned rejected-input position.
pub(crate) const SEQ_REJECTED: &[u8] = b"meta:seq:rejected";
/// Last assigned dead-letter position.
pub(crate) const SEQ_DEAD_LETTER: &[u8] = b"meta:seq:dead_letter";
/// Last assigned audit sequence number.
pub(crate) const SEQ_AUDIT: &[u8] = b"meta:seq:audit";
/// Embedded-log consumption cursor.
pub(crate) const LOG_CONSUMED: &[u8] = b"meta:log_consumed";

pub(crate) const SUBJECT: &[u8] = b"subj:";
pub(crate) const QUEUE: &[u8] = b"q:";
pub(crate) const BIND: &[u8] = b"bind:";
pub(crate) const AUDIT: &[u8] = b"audit:";
pub(crate) const REJECTED: &[u8] = b"rej:";
pub(crate) const DEAD_LETTER: &[u8] = b"dl:";
pub(crate) const LOG: &[u8] = b"log:";
pub(crate) const SCHEDULED: &[u8] = b"sched:";
pub(crate) const CHECKPOINT: &[u8] = b"ckpt:";

/// Separates a target name from what follows it in a key.
const SEP: u8 = 0;

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// `subj:{subject}`
pub(crate) fn subject(subject: &str) -> Vec<u8> {
    concat(&[SUBJECT, subject.as_bytes()])
}

/// `q:{target}\0` — the prefix of one target's queue.
pub(crate) fn queue_prefix(target: &str) -> Vec<u8> {
    concat(&[QUEUE, target.as_bytes(), &[SEP]])
}

/// `q:{target}\0{seq BE}`
pub(crate) fn queue(target: &str, seq: u64) -> Vec<u8> {
    concat(&[QUEUE, target.as_bytes(), &[SEP], &seq.to_be_bytes()])
}

/// The target name of a `q:` key.
pub(crate) fn queue_target(key: &[u8]) -> Option<&str> {
    let rest = key.strip_prefix(QUEUE)?;
    let end = rest.iter().position(|b| *b == SEP)?;
    if rest.len() != end + 1 + 8 {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// `bind:{target}\0{subject}`
pub(crate) fn bind(target: &str, subject: &str) -> Vec<u8> {
    concat(&[BIND, target.as_bytes(), &[SEP], subject.as_bytes()])
}

/// `sched:{target}\0` — the prefix of one target's scheduled operations.
/// `bind:{target}\0`: every binding of `target`.
pub(crate) fn bind_prefix(target: &str) -> Vec<u8> {
    concat(&[BIND, target.as_bytes(), &[SEP]])
}

pub(crate) fn scheduled_prefix(target: &str) -> Vec<u8> {
    concat(&[SCHEDULED, target.as_bytes(), &[SEP]])
}

/// `sched:{target}\0{subject}\0{slot}`
pub(crate) fn scheduled(target: &str, subject: &str, slot: &str) -> Vec<u8> {
    concat(&[
        SCHEDULED,
        target.as_bytes(),
        &[SEP],
        subject.as_bytes(),
        &[SEP],
        slot.as_bytes(),
    ])
}

/// `{prefix}{seq BE}`
pub(crate) fn seq(prefix: &[u8], seq: u64) -> Vec<u8> {
    concat(&[prefix, &seq.to_be_bytes()])
}

/// The sequence number at the end of a `{prefix}{seq BE}` key.
pub(crate) fn seq_of(prefix: &[u8], key: &[u8]) -> Option<u64> {
    let tail = key.strip_prefix(prefix)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// The smallest key greater than every key starting with `prefix` (prefixes here never end in 0xff).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    let last = end.last_mut().expect("key prefixes are never empty");
    *last += 1;
    end
}

/// A key as text for error messages: printable ASCII kept, everything else escaped.
pub(crate) fn display(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// An 8-byte big-endian counter value.
pub(crate) fn decode_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_numerically_and_stay_inside_their_target() {
        assert!(queue("a", 2) < queue("a", 256));
        assert!(queue("a", u64::MAX) < prefix_end(&queue_prefix("a")));
        assert!(queue("ab", 1) >= prefix_end(&queue_prefix("a")));
        assert_eq!(queue_target(&queue("crm", 7)), Some("crm"));
        assert_eq!(seq_of(b"log:", &seq(LOG, 9)), Some(9));
    }

    #[test]
    fn display_escapes_binary() {
        assert_eq!(
            display(&queue("t", 1)),
            "q:t\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01"
        );
    }
}
