//! Dates as mail writes them: RFC 5322's (Date:, Received:) and asctime's
//! (mbox From_ lines), always in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// An RFC 5322 date in UTC, e.g. `Sat, 21 Nov 2026 19:58:26 +0000`.
pub fn rfc2822(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WD[days.rem_euclid(7) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The date of a From_ line (asctime in UTC): `Sat Nov 21 19:58:26 2026`.
pub fn asctime(t: SystemTime) -> String {
    // Reuse the RFC 5322 formatter: "Sat, 21 Nov 2026 19:58:26 +0000".
    let d = crate::message::date::rfc2822(t);
    let p: Vec<&str> = d.split_whitespace().collect();
    format!("{} {} {:>2} {} {}", p[0].trim_end_matches(','), p[2], p[1], p[4], p[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_dates() {
        assert_eq!(rfc2822(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(UNIX_EPOCH + Duration::from_secs(1795291106)), "Sat, 21 Nov 2026 19:58:26 +0000");
        assert_eq!(rfc2822(UNIX_EPOCH + Duration::from_secs(951782400)), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(asctime(UNIX_EPOCH + Duration::from_secs(1795291106)), "Sat Nov 21 19:58:26 2026");
        assert_eq!(asctime(UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
    }
}
