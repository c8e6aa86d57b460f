//! Docker's timestamps in CRI terms: nanoseconds since the Unix epoch.

/// Parses Docker's RFC 3339 timestamps (`2026-11-25T12:00:00.123456789Z`).
/// Docker's zero time (`0001-01-01T00:00:00Z`, "never") and garbage are 0.
pub fn rfc3339_to_ns(text: &str) -> i64 {
    match text.parse::<jiff::Timestamp>() {
        Ok(ts) if ts.as_second() > 0 => i64::try_from(ts.as_nanosecond()).unwrap_or(0),
        _ => 0,
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timestamps_become_nanoseconds() {
        for (text, want) in [
            ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123_456_789),
            ("2023-11-14T22:13:20Z", 1_700_000_000_000_000_000),
            ("2023-11-14T23:13:20.5+01:00", 1_700_000_000_500_000_000),
            ("0001-01-01T00:00:00Z", 0),
            ("", 0),
            ("yesterday", 0),
        ] {
            assert_eq!(rfc3339_to_ns(text), want, "{text}");
        }
    }
}
