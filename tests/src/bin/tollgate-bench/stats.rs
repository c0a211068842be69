//! The statistics of the benchmark: medians with their spread, and what wrk's `--latency`
//! report says (requests/s, percentiles, bytes read), read from its text.
//!
//! Figures are printed as the shell runner printed them (awk's `%.0f` at 100 and above,
//! `%.3g` below), so that tables stay comparable with the ones in `BENCHMARKS.md`. Nothing
//! here runs a program.

use std::fmt;

/// The median of `values` (the mean of the two middle ones for an even count); `NaN` when
/// there are none.
pub(crate) fn median(values: &[f64]) -> f64 {
    let sorted = sorted(values);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// A median and the spread (min..max) it came from; displayed as `median (min..max)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(values: &[f64]) -> Spread {
        let sorted = sorted(values);
        Spread {
            median: median(&sorted),
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl fmt::Display for Spread {
    /// `%.0f (%.0f..%.0f)` when the median is 100 or more, else `%.3g (%.3g..%.3g)`; padding
    /// (`{:<22}`) applies to the whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if self.median >= 100.0 {
            format!("{:.0} ({:.0}..{:.0})", self.median, self.min, self.max)
        } else {
            format!(
                "{} ({}..{})",
                fmt_g(self.median, 3),
                fmt_g(self.min, 3),
                fmt_g(self.max, 3)
            )
        };
        f.pad(&text)
    }
}

/// C's `%.{precision}g`: `precision` significant digits, trailing zeros dropped, and the
/// exponent form below 1e-4 or at 10^precision and above.
pub(crate) fn fmt_g(value: f64, precision: usize) -> String {
    if !value.is_finite() {
        return format!("{value}");
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    let precision = precision.max(1);
    // The exponent after rounding to `precision` digits, as C decides the form by it.
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} has a numeric exponent");
    if exponent < -4 || exponent >= precision as i32 {
        let mantissa = trim_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        trim_zeros(&format!("{value:.decimals$}")).to_owned()
    }
}

fn trim_zeros(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

/// Why a wrk report was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WrkError {
    #[error("{count} requests were answered with a status other than 2xx or 3xx:\n{report}")]
    NotSuccess { count: u64, report: String },
    #[error("wrk's report has no {what}:\n{report}")]
    Missing { what: &'static str, report: String },
}

/// What one wrk run with `--latency` measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WrkRun {
    pub(crate) requests_per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// Requests completed, and the bytes wrk read for them (heads and bodies), from its
    /// "N requests in T, X MB read" line.
    pub(crate) requests: u64,
    pub(crate) bytes_read: f64,
}

impl WrkRun {
    /// Reads wrk's report; refuses one where any answer was not a success (wrk counts
    /// "Non-2xx or 3xx responses"), since the figures would then not be of serving files.
    pub(crate) fn parse(report: &str) -> Result<WrkRun, WrkError> {
        let missing = |what| WrkError::Missing {
            what,
            report: report.to_owned(),
        };
        if let Some(line) = report
            .lines()
            .find(|l| l.trim_start().starts_with("Non-2xx or 3xx responses:"))
        {
            let count = line
                .rsplit(':')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            return Err(WrkError::NotSuccess {
                count,
                report: report.to_owned(),
            });
        }
        let requests_per_second = report
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| missing("Requests/sec"))?;
        let (requests, bytes_read) = report
            .lines()
            .find_map(totals)
            .ok_or_else(|| missing("\"requests in ..., ... read\" line"))?;
        Ok(WrkRun {
            requests_per_second,
            p50_ms: percentile_ms(report, 50).ok_or_else(|| missing("50% latency"))?,
            p99_ms: percentile_ms(report, 99).ok_or_else(|| missing("99% latency"))?,
            requests,
            bytes_read,
        })
    }

    /// Bytes read per request, heads included.
    pub(crate) fn bytes_per_request(&self) -> f64 {
        self.bytes_read / self.requests.max(1) as f64
    }
}

/// A percentile (`50`, `99`) of wrk's latency distribution, in milliseconds.
pub(crate) fn percentile_ms(report: &str, percent: u32) -> Option<f64> {
    let label = format!("{percent}%");
    let value = report.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(label.as_str()))
            .then(|| words.next())
            .flatten()
    })?;
    let unit_at = value.find(|c: char| c.is_ascii_alphabetic())?;
    let number: f64 = value[..unit_at].parse().ok()?;
    let scale = match &value[unit_at..] {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(number * scale)
}

/// "  659 requests in 1.10s, 5.81MB read": the requests and the bytes (wrk's units are powers
/// of 1024).
fn totals(line: &str) -> Option<(u64, f64)> {
    let (requests, rest) = line.trim().split_once(" requests in ")?;
    let size = rest.split_once(", ")?.1.strip_suffix(" read")?;
    let unit_at = size.find(|c: char| c.is_ascii_alphabetic())?;
    let number: f64 = size[..unit_at].parse().ok()?;
    let scale = match &size[unit_at..] {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((requests.parse().ok()?, number * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 1s test @ http://127.0.0.1:18765/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.61ms  106.66us   2.40ms   77.24%
    Req/Sec   601.00      5.48   610.00     54.55%
  Latency Distribution
     50%  333.00us
     75%    1.64ms
     90%    1.72ms
     99%    1.91s
  659 requests in 1.10s, 5.81MB read
Requests/sec:    599.15
Transfer/sec:      5.28MB
";

    #[test]
    fn medians() {
        let check = |values: &[f64], expected: f64| {
            assert_eq!(median(values), expected, "{values:?}");
        };
        check(&[3.0], 3.0);
        check(&[3.0, 1.0, 2.0], 2.0);
        check(&[4.0, 1.0, 3.0, 2.0], 2.5);
        check(&[10.0, -1.0], 4.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn spreads_print_as_the_shell_runner_did() {
        let check = |values: &[f64], expected: &str| {
            assert_eq!(Spread::of(values).to_string(), expected, "{values:?}");
        };
        check(&[27404.0, 26416.2, 27689.7], "27404 (26416..27690)");
        check(&[1.21, 1.16, 1.2234], "1.21 (1.16..1.22)");
        check(&[0.0796, 0.0429, 0.096], "0.0796 (0.0429..0.096)");
        check(&[1.0, 1.5, 2.0], "1.5 (1..2)");
        // The median decides the form for all three.
        check(&[99.0, 98.0, 250.0], "99 (98..250)");
        check(&[100.0, 0.5, 250.0], "100 (0..250)");
        check(&[0.00373, 0.00333, 0.0384], "0.00373 (0.00333..0.0384)");
        assert_eq!(format!("{:<8}|", Spread::of(&[1.0])), "1 (1..1)|");
        assert_eq!(format!("{:<10}|", Spread::of(&[1.0])), "1 (1..1)  |");
    }

    #[test]
    fn g_format_matches_c() {
        let check = |value: f64, precision: usize, expected: &str| {
            assert_eq!(fmt_g(value, precision), expected, "{value} at {precision}");
        };
        check(0.0, 3, "0");
        check(1.0, 3, "1");
        check(12.34, 3, "12.3");
        check(99.96, 3, "100");
        check(999.6, 3, "1e+03");
        check(1234.0, 3, "1.23e+03");
        check(0.0001234, 3, "0.000123");
        check(0.00001234, 3, "1.23e-05");
        check(-0.5, 3, "-0.5");
        check(0.0099, 6, "0.0099");
        check(0.859, 6, "0.859");
        check(1234567.0, 6, "1.23457e+06");
    }

    #[test]
    fn wrk_reports() {
        let run = WrkRun::parse(REPORT).expect("a report");
        assert_eq!(run.requests_per_second, 599.15);
        assert!((run.p50_ms - 0.333).abs() < 1e-9, "{}", run.p50_ms);
        assert_eq!(run.p99_ms, 1910.0);
        assert_eq!(run.requests, 659);
        assert!((run.bytes_read - 5.81 * 1024.0 * 1024.0).abs() < 1.0);
        assert!((run.bytes_per_request() - 9244.5).abs() < 1.0);
    }

    #[test]
    fn percentiles() {
        let check = |line: &str, expected: Option<f64>| {
            let report = format!("  Latency Distribution\n{line}\n");
            assert_eq!(percentile_ms(&report, 99), expected, "{line:?}");
        };
        check("     99%    1.91ms", Some(1.91));
        check("     99%  250.00us", Some(0.25));
        check("     99%    2.00s", Some(2000.0));
        check("     99%    1.00m", Some(60_000.0));
        check("     99%    1.91xs", None);
        check("     90%    1.91ms", None);
        // Not the thread statistics' "+/- Stdev" column.
        check("    Latency     1.61ms  106.66us   2.40ms   99%", None);
    }

    #[test]
    fn a_run_with_failed_answers_is_refused() {
        let report = REPORT.replace(
            "Requests/sec:",
            "  Non-2xx or 3xx responses: 2631\nRequests/sec:",
        );
        match WrkRun::parse(&report) {
            Err(WrkError::NotSuccess { count, report: r }) => {
                assert_eq!(count, 2631);
                assert!(r.contains("Requests/sec"), "the report is kept");
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_truncated_report_says_what_is_missing() {
        let report = REPORT.replace("Requests/sec:    599.15\n", "");
        let error = WrkRun::parse(&report).expect_err("no requests/s");
        assert!(error.to_string().contains("no Requests/sec"), "{error}");
        let error = WrkRun::parse("").expect_err("empty");
        assert!(matches!(error, WrkError::Missing { .. }), "{error}");
    }

    #[test]
    fn totals_lines() {
        let check = |line: &str, expected: Option<(u64, f64)>| {
            assert_eq!(totals(line), expected, "{line:?}");
        };
        check("  659 requests in 1.10s, 512.00B read", Some((659, 512.0)));
        check("  2 requests in 4.00s, 1.50KB read", Some((2, 1536.0)));
        check(
            "  2 requests in 4.00s, 2.00GB read",
            Some((2, 2.0 * 1024.0 * 1024.0 * 1024.0)),
        );
        check("Requests/sec: 5", None);
    }
}
