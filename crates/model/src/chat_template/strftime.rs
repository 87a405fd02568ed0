//! `strftime_now(format)` for templates (Llama 3.x puts today's date in the system prompt):
//! a UTC civil date from Unix seconds and the C/Python `strftime` directives templates use.

use minijinja::{Error, ErrorKind};

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A UTC date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Monday .. 6 = Sunday
    pub weekday: u32,
    /// 1..=366
    pub day_of_year: u32,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

impl DateTime {
    /// The UTC date and time `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil date from day count (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap_extra = u32::from(month > 2 && is_leap(year));
        let day_of_year = cum[(month - 1) as usize] + day + leap_extra;
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday (3).
            weekday: (days + 3).rem_euclid(7) as u32,
            day_of_year,
        }
    }

    /// The current UTC time.
    pub fn now_utc() -> DateTime {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        DateTime::from_unix(secs)
    }

    /// Format like C's `strftime` in the C locale: `%a %A %b %B %d %e %H %I %j %m %M %p %S %y
    /// %Y %F %T %D %%`, and glibc's `%-d`-style flag that drops zero padding. Anything else is an
    /// error naming the directive.
    pub fn strftime(&self, format: &str) -> Result<String, Error> {
        let mut out = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut spec = chars.next();
            let unpadded = spec == Some('-');
            if unpadded {
                spec = chars.next();
            }
            let num = |n: u32, width: usize| {
                if unpadded {
                    n.to_string()
                } else {
                    format!("{n:0width$}")
                }
            };
            let weekday = DAYS.get(self.weekday as usize).copied().unwrap_or("");
            let month = MONTHS
                .get((self.month as usize).wrapping_sub(1))
                .copied()
                .unwrap_or("");
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            match spec {
                Some('a') => out.push_str(weekday.get(..3).unwrap_or(weekday)),
                Some('A') => out.push_str(weekday),
                Some('b') | Some('h') => out.push_str(month.get(..3).unwrap_or(month)),
                Some('B') => out.push_str(month),
                Some('d') => out.push_str(&num(self.day, 2)),
                Some('e') => out.push_str(&format!("{:2}", self.day)),
                Some('H') => out.push_str(&num(self.hour, 2)),
                Some('I') => out.push_str(&num(hour12, 2)),
                Some('j') => out.push_str(&num(self.day_of_year, 3)),
                Some('m') => out.push_str(&num(self.month, 2)),
                Some('M') => out.push_str(&num(self.minute, 2)),
                Some('p') => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                Some('S') => out.push_str(&num(self.second, 2)),
                Some('y') => out.push_str(&num(self.year.rem_euclid(100) as u32, 2)),
                Some('Y') => out.push_str(&self.year.to_string()),
                Some('F') => {
                    out.push_str(&format!("{}-{:02}-{:02}", self.year, self.month, self.day))
                }
                Some('T') => out.push_str(&format!(
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                )),
                Some('D') => out.push_str(&format!(
                    "{:02}/{:02}/{:02}",
                    self.month,
                    self.day,
                    self.year.rem_euclid(100)
                )),
                Some('%') => out.push('%'),
                other => {
                    let shown = other.map(String::from).unwrap_or_default();
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("strftime_now: unsupported directive %{shown} in {format:?}"),
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let d = DateTime::from_unix(0);
        assert_eq!(
            (d.year, d.month, d.day, d.weekday, d.day_of_year),
            (1970, 1, 1, 3, 1)
        );
        // 2024-02-29T13:05:09Z, a Thursday, day 60 of a leap year.
        let d = DateTime::from_unix(1_709_211_909);
        assert_eq!(
            (
                d.year,
                d.month,
                d.day,
                d.hour,
                d.minute,
                d.second,
                d.weekday,
                d.day_of_year
            ),
            (2024, 2, 29, 13, 5, 9, 3, 60)
        );
        // 2025-12-31T23:59:59Z, a Wednesday.
        let d = DateTime::from_unix(1_767_225_599);
        assert_eq!(
            (d.year, d.month, d.day, d.weekday, d.day_of_year),
            (2025, 12, 31, 2, 365)
        );
    }

    #[test]
    fn formats() {
        let d = DateTime::from_unix(1_709_211_909);
        assert_eq!(d.strftime("%d %b %Y").unwrap(), "29 Feb 2024");
        assert_eq!(
            d.strftime("%A, %B %-d, %Y %I:%M %p (%j) %%").unwrap(),
            "Thursday, February 29, 2024 01:05 PM (060) %"
        );
        assert!(d.strftime("%Q").is_err());
    }
}
