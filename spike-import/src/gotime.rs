//! The text Go's SQLite driver (mattn/go-sqlite3) writes for a `time.Time` column.
//!
//! SPIKE's `secrets.created_time` and `deleted_time` hold Go times as text in the layout
//! `2006-01-02 15:04:05.999999999-07:00`: the Nexus's local offset, and a fraction of 0 to 9
//! digits with trailing zeros dropped (none at all on a whole second). `Z` for UTC and a `T`
//! between date and time are accepted too.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Parses `text` as Go's driver wrote it and normalises it to UTC, nanosecond exact; `None`
/// if it is not such a time.
pub(crate) fn parse(text: &str) -> Option<OffsetDateTime> {
    let mut p = Parser { rest: text.as_bytes() };
    let year = p.digits(4)?;
    p.byte(b'-')?;
    let month = p.digits(2)?;
    p.byte(b'-')?;
    let day = p.digits(2)?;
    match p.next()? {
        b' ' | b'T' => {}
        _ => return None,
    }
    let hour = p.digits(2)?;
    p.byte(b':')?;
    let minute = p.digits(2)?;
    p.byte(b':')?;
    let second = p.digits(2)?;
    let mut nanos = 0u32;
    if p.rest.first() == Some(&b'.') {
        p.rest = &p.rest[1..];
        let len = p.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&len) {
            return None;
        }
        nanos = p.digits(len)? * 10u32.pow((9 - len) as u32);
    }
    let offset = match p.next()? {
        b'Z' => UtcOffset::UTC,
        sign @ (b'+' | b'-') => {
            let hours = p.digits(2)?;
            p.byte(b':')?;
            let minutes = p.digits(2)?;
            if minutes > 59 {
                return None;
            }
            let (h, m) = (i8::try_from(hours).ok()?, i8::try_from(minutes).ok()?);
            if sign == b'+' {
                UtcOffset::from_hms(h, m, 0).ok()?
            } else {
                UtcOffset::from_hms(-h, -m, 0).ok()?
            }
        }
        _ => return None,
    };
    if !p.rest.is_empty() {
        return None;
    }
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let time = Time::from_hms_nano(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset).to_offset(UtcOffset::UTC))
}

/// A cursor over ASCII bytes.
struct Parser<'a> {
    rest: &'a [u8],
}

impl Parser<'_> {
    /// The next byte.
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    /// Exactly `b`.
    fn byte(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// Exactly `n` (at most 9) decimal digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let head = self.rest.get(..n)?;
        let mut value = 0u32;
        for &b in head {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.rest = &self.rest[n..];
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::parse;

    #[test]
    fn parses_what_go_wrote_to_the_nanosecond() {
        assert_eq!(
            parse("2026-12-07 12:28:43.319688978+00:00"),
            Some(datetime!(2026-12-07 12:28:43.319688978 UTC))
        );
        // Go drops trailing zeros: four digits are 319 600 000 ns.
        assert_eq!(
            parse("2026-12-07 12:28:43.3196+00:00"),
            Some(datetime!(2026-12-07 12:28:43.3196 UTC))
        );
        assert_eq!(
            parse("2026-12-07 12:28:43.1+00:00"),
            Some(datetime!(2026-12-07 12:28:43.1 UTC))
        );
    }

    #[test]
    fn normalises_offsets_to_utc() {
        let utc = datetime!(2026-12-07 12:28:43.5 UTC);
        assert_eq!(parse("2026-12-07 14:28:43.5+02:00"), Some(utc));
        assert_eq!(parse("2026-12-07 07:58:43.5-04:30"), Some(utc));
        // Across midnight and a year boundary.
        assert_eq!(parse("2026-12-31 23:30:00-01:00"), Some(datetime!(2027-01-01 00:30:00 UTC)));
    }

    #[test]
    fn accepts_no_fraction_z_and_a_t_separator() {
        let whole = datetime!(2026-12-07 12:28:43 UTC);
        assert_eq!(parse("2026-12-07 12:28:43+00:00"), Some(whole));
        assert_eq!(parse("2026-12-07 12:28:43Z"), Some(whole));
        assert_eq!(parse("2026-12-07T12:28:43Z"), Some(whole));
        assert_eq!(
            parse("2026-12-07T12:28:43.000000001Z"),
            Some(datetime!(2026-12-07 12:28:43.000000001 UTC))
        );
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "",
            "garbage",
            "2026-12-07",
            "2026-12-07 12:28:43",                  // no offset
            "2026-12-07 12:28:43.+00:00",           // empty fraction
            "2026-12-07 12:28:43.1234567891+00:00", // ten digits
            "2026-12-07 12:28:43+0000",             // offset without a colon
            "2026-12-07 12:28:43+00:60",
            "2026-12-07 12:28:43+00:00 ",
            "2026-12-07 12:28:43 +0000 UTC", // Go's time.String()
            "2026-13-07 12:28:43Z",
            "2026-02-30 12:28:43Z",
            "2026-12-07 24:00:00Z",
            "2026-12-07 12:60:00Z",
            "2026-12-07 12:28:60Z",
            "2026-12-07_12:28:43Z",
            "1796646515",
            "２026-12-07 12:28:43Z",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
