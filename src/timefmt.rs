//! Times for people: UTC dates, RFC 3339, durations and "… ago".

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a unix time.
pub fn utc(t: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(t);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a unix time.
pub fn rfc3339(t: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Year, month, day, hour, minute, second (UTC) of a unix time.
fn civil(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// `3 h 12 min 5 s`.
pub fn human(d: i64) -> String {
    format!("{} h {} min {} s", d / 3600, d % 3600 / 60, d % 60)
}

/// The two largest units of a duration: `42 s`, `5 min 3 s`, `3 h 12 min`, `2 d 4 h`.
pub fn short(d: i64) -> String {
    let d = d.max(0);
    let (days, h, m, s) = (d / 86_400, d % 86_400 / 3600, d % 3600 / 60, d % 60);
    if days > 0 {
        format!("{days} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

/// `3 h 12 min ago`, or `just now`.
pub fn ago(t: i64, now: i64) -> String {
    if now - t < 1 {
        "just now".into()
    } else {
        format!("{} ago", short(now - t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(rfc3339(1_714_130_000), "2024-04-26T11:13:20Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(short(42), "42 s");
        assert_eq!(short(3 * 3600 + 12 * 60 + 5), "3 h 12 min");
        assert_eq!(short(2 * 86_400 + 4 * 3600), "2 d 4 h");
        assert_eq!(ago(100, 100), "just now");
        assert_eq!(ago(100, 400), "5 min 0 s ago");
    }
}
