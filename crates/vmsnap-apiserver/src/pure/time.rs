//! Timestamps as Kubernetes writes them (RFC 3339, seconds, `Z`) and ages as kubectl prints them.

use k8s_openapi::jiff::Timestamp;

/// Now, formatted like `metav1.Time` (`2026-11-25T03:25:00Z`).
pub fn now_rfc3339() -> String {
    format_rfc3339(Timestamp::now())
}

/// Formats a timestamp with second precision.
pub fn format_rfc3339(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now with microseconds, like `metav1.MicroTime` (`eventTime`, lease times).
pub fn now_micro() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Parses an RFC 3339 timestamp.
pub fn parse(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// A human duration like kubectl's `HumanDuration`: `45s`, `5m`, `5m30s`, `3h`, `2d`, `3y`.
pub fn human_duration(secs: i64) -> String {
    if secs < 0 {
        return "<invalid>".into();
    }
    if secs == 0 {
        return "0s".into();
    }
    let mins = secs / 60;
    let hours = secs / 3600;
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    if mins < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{mins}m") } else { format!("{mins}m{s}s") };
    }
    if hours < 3 {
        return format!("{mins}m");
    }
    if hours < 8 {
        let m = mins % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{days}d") } else { format!("{days}d{h}h") };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let d = days % 365;
        return if d == 0 { format!("{years}y") } else { format!("{years}y{d}d") };
    }
    format!("{years}y")
}

/// The age of a timestamp string, as kubectl prints it; `<unknown>` if it does not parse.
pub fn age(text: &str) -> String {
    match parse(text) {
        Some(ts) => human_duration((Timestamp::now().as_second() - ts.as_second()).max(0)),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(330), "5m30s");
        assert_eq!(human_duration(300), "5m");
        assert_eq!(human_duration(45 * 60), "45m");
        assert_eq!(human_duration(4 * 3600 + 60 * 5), "4h5m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400), "3d");
        assert_eq!(human_duration(100 * 86400), "100d");
    }

    #[test]
    fn timestamps_have_second_precision() {
        let ts: Timestamp = "2026-11-25T03:25:00.123Z".parse().unwrap();
        assert_eq!(format_rfc3339(ts), "2026-11-25T03:25:00Z");
    }
}
