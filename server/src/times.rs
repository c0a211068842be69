//! Times as people write them (RFC 3339, ages such as `24h`) and as tollgate prints them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RFC 3339 (`2027-01-31T00:00:00Z`), or an age (`24h`, `7days`) counted back from now.
pub(crate) fn parse_time(text: &str) -> anyhow::Result<i64> {
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(at) => at,
        Err(_) => {
            let age = humantime::parse_duration(text).map_err(|_| {
                anyhow::anyhow!(
                    "{text:?} is not a time: give RFC 3339 (2027-01-31T00:00:00Z) or an age (24h)"
                )
            })?;
            SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH)
        }
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
}

/// RFC 3339 (`2027-01-31T00:00:00Z`) as seconds since the epoch.
pub(crate) fn parse_rfc3339(text: &str) -> anyhow::Result<i64> {
    let at = humantime::parse_rfc3339_weak(text)
        .map_err(|_| anyhow::anyhow!("{text:?} is not an RFC 3339 time (2027-01-31T00:00:00Z)"))?;
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
}

/// Seconds since the epoch as RFC 3339; as the plain number past the year 9999, where RFC 3339
/// ends.
pub(crate) fn time(secs: i64) -> String {
    match u64::try_from(secs) {
        Ok(s) if s < 253_402_300_800 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
        }
        _ => secs.to_string(),
    }
}
