//! The CRI log format kubelet and crictl read:
//! `<RFC3339Nano time> <stdout|stderr> <F|P> <content>\n`, one record per
//! line; `P` marks a piece of a line that continues in the next record.
//! Pure functions, shared by the writer and its tests.

/// Longest content of one record; longer lines are split into `P` pieces.
pub const MAX_RECORD: usize = 16 * 1024;

/// Which output a record came from. TTY output counts as stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends the records for one message to `out`; returns how many. A
/// message ending in `\n` is a full line (its last record is `F`); one
/// without is a piece (all records `P`). `\r` before the `\n` is kept, as
/// the process wrote it, except for the newline itself.
pub fn encode(ts: &str, stream: Stream, message: &[u8], max: usize, out: &mut Vec<u8>) -> usize {
    let (content, full) = match message.strip_suffix(b"\n") {
        Some(c) => (c, true),
        None => (message, false),
    };
    let max = max.max(1);
    let mut records = 0;
    let mut rest = content;
    loop {
        let take = rest.len().min(max);
        let (piece, tail) = rest.split_at(take);
        let last = tail.is_empty();
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.as_str().as_bytes());
        out.extend_from_slice(if last && full { b" F " } else { b" P " });
        out.extend_from_slice(piece);
        out.push(b'\n');
        records += 1;
        rest = tail;
        if last {
            return records;
        }
    }
}

/// How many records [`encode`] makes for a message (without making them).
pub fn record_count(message: &[u8], max: usize) -> usize {
    let len = message.strip_suffix(b"\n").unwrap_or(message).len();
    len.div_ceil(max.max(1)).max(1)
}

/// Splits one message of Docker's log API (`timestamps=true`) into its
/// timestamp and content.
pub fn split_docker_message(frame: &[u8]) -> Option<(&str, &[u8])> {
    let space = frame.iter().position(|b| *b == b' ')?;
    let ts = std::str::from_utf8(&frame[..space]).ok()?;
    ts.contains('T').then_some((ts, &frame[space + 1..]))
}

/// The newest timestamp in a CRI log's tail, and how many records carry it
/// (where a resumed writer picks up). The newest, not the last: a record of
/// one stream may be written after a newer one of the other.
pub fn last_position(tail: &str) -> Option<(i64, usize)> {
    let stamps: Vec<i64> = tail
        .lines()
        .filter_map(|l| l.split(' ').next())
        .map(crate::docker::time::rfc3339_to_ns)
        .filter(|ns| *ns > 0)
        .collect();
    let newest = *stamps.iter().max()?;
    let count = stamps.iter().filter(|t| **t == newest).count();
    Some((newest, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(message: &str, max: usize) -> String {
        let mut out = vec![];
        let n = encode(
            "2026-01-01T00:00:00.000000001Z",
            Stream::Stderr,
            message.as_bytes(),
            max,
            &mut out,
        );
        assert_eq!(n, record_count(message.as_bytes(), max), "{message:?}");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn records_are_full_partial_and_split() {
        let ts = "2026-01-01T00:00:00.000000001Z";
        for (message, max, want) in [
            ("hello\n", 16, vec!["stderr F hello"]),
            ("no newline", 16, vec!["stderr P no newline"]),
            ("\n", 16, vec!["stderr F "]),
            (
                "abcdefgh\n",
                3,
                vec!["stderr P abc", "stderr P def", "stderr F gh"],
            ),
            ("abcdef\n", 3, vec!["stderr P abc", "stderr F def"]),
            ("abcdef", 3, vec!["stderr P abc", "stderr P def"]),
            ("crlf\r\n", 16, vec!["stderr F crlf\r"]),
        ] {
            let got = enc(message, max);
            let want: String = want.iter().map(|w| format!("{ts} {w}\n")).collect();
            assert_eq!(got, want, "{message:?}");
        }
    }

    #[test]
    fn docker_messages_split_at_the_first_space() {
        let (ts, content) = split_docker_message(b"2026-01-01T00:00:00.5Z a b\n").unwrap();
        assert_eq!((ts, content), ("2026-01-01T00:00:00.5Z", &b"a b\n"[..]));
        assert!(split_docker_message(b"garbage").is_none());
        assert!(split_docker_message(b"not-a-time content").is_none());
    }

    #[test]
    fn the_resume_position_counts_records_at_the_last_time() {
        let tail = "2026-01-01T00:00:01Z stdout F a\n2026-01-01T00:00:02Z stdout P b\n2026-01-01T00:00:02Z stdout F c\n";
        let (ts, n) = last_position(tail).unwrap();
        assert_eq!(
            ts,
            crate::docker::time::rfc3339_to_ns("2026-01-01T00:00:02Z")
        );
        assert_eq!(n, 2);
        assert!(last_position("").is_none());
        // A stderr record stamped before the stdout ones, written after them.
        let late = format!("{tail}2026-01-01T00:00:01.5Z stderr F d\n");
        assert_eq!(last_position(&late), Some((ts, 2)));
    }
}
