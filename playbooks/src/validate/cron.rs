//! Five-field cron expressions (`minute hour day-of-month month day-of-week`) as cron(8) reads
//! them: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month and weekday
//! names. Validation only; scheduling is the job of the cron daemon on the hosts.

use super::values::{Checked, refuse, shorten};

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field { name: "minute", min: 0, max: 59, names: &[] },
    Field { name: "hour", min: 0, max: 23, names: &[] },
    Field { name: "day of month", min: 1, max: 31, names: &[] },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    // 0 and 7 are both Sunday.
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

const MACROS: [(&str, &str); 6] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
];

const FORM: &str = "write five fields `minute hour day-of-month month day-of-week`, e.g. `0 */6 * * *` (every six hours) or `30 2 * * 1-5` (02:30 on weekdays)";

/// Checks `expr`; returns it with whitespace normalised to single spaces.
pub fn schedule(expr: &str) -> Checked<String> {
    let trimmed = expr.trim();
    if let Some((_, equivalent)) = MACROS.iter().find(|(m, _)| *m == trimmed) {
        return Err(refuse(
            format!("`{trimmed}` is a cron shorthand, not a five-field expression"),
            format!("write `{equivalent}` instead"),
        ));
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(refuse(
            format!("`{}` has {} fields, a schedule needs 5", shorten(trimmed), fields.len()),
            FORM,
        ));
    }
    for (text, field) in fields.iter().zip(FIELDS.iter()) {
        check_field(text, field).map_err(|why| {
            refuse(format!("`{}`: {} field `{text}` {why}", shorten(trimmed), field.name), FORM)
        })?;
    }
    Ok(fields.join(" "))
}

fn check_field(text: &str, field: &Field) -> Result<(), String> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err("has an empty list item".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a, field)?, value(b, field)?);
            if a > b {
                return Err(format!("has the range {a}-{b}, which runs backwards"));
            }
            (a, b)
        } else {
            let v = value(range, field)?;
            // `5/10` means 5 to the maximum, every 10, as in Vixie cron.
            (v, if step.is_some() { field.max } else { v })
        };
        if let Some(step) = step {
            let n: u32 =
                step.parse().map_err(|_| format!("has a step `{step}` that is not a number"))?;
            if n == 0 || n > field.max.max(1) {
                return Err(format!("has a step of {n}; use 1 to {}", field.max));
            }
        }
        debug_assert!(lo <= hi);
    }
    Ok(())
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + if field.min == 1 { 1 } else { 0 });
    }
    let n: u32 =
        text.parse().map_err(|_| format!("has `{}`, which is not a number", shorten(text)))?;
    if n < field.min || n > field.max {
        return Err(format!("has {n}, outside {}-{}", field.min, field.max));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_cron_forms() {
        for ok in [
            "0 */6 * * *",
            "*/15 * * * *",
            "30 2 * * 1-5",
            "0 0 1,15 * *",
            "0 0 * jan-mar sun",
            "5/10 * * * *",
            "0 0 * * 7",
            "0-30/5 1-23/2 * * MON",
        ] {
            assert!(schedule(ok).is_ok(), "{ok}");
        }
        assert_eq!(schedule("  0  */6 * * * ").unwrap(), "0 */6 * * *");
    }

    #[test]
    fn refuses_bad_expressions() {
        for (bad, why) in [
            ("0 */6 * *", "has 4 fields"),
            ("0 */6 * * * *", "has 6 fields"),
            ("60 * * * *", "minute field `60` has 60, outside 0-59"),
            ("0 24 * * *", "hour field"),
            ("0 0 0 * *", "day of month field"),
            ("0 0 * 13 *", "month field"),
            ("0 0 * * 8", "day of week field"),
            ("*/0 * * * *", "step of 0"),
            ("5-1 * * * *", "runs backwards"),
            ("a * * * *", "not a number"),
            ("1,,2 * * * *", "empty list item"),
            ("", "has 0 fields"),
        ] {
            let e = schedule(bad).unwrap_err();
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
        assert!(schedule("@daily").unwrap_err().help.contains("0 0 * * *"));
    }
}
