//! Schedules: when a function is called by the clock (cron expressions, parsed by `croner`),
//! and with what request.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// Most schedules one function has.
pub const MAX_SCHEDULES: usize = 16;

/// Largest body a schedule sends: 64 KiB (a scheduled call carries a small fixed payload;
/// what it works on, it reads itself).
pub const MAX_SCHEDULE_BODY: usize = 64 << 10;

/// A schedule: a cron expression, and the request each tick makes (`POST` to the function's
/// route, or to `path` below it, with `body`). In a manifest, a string is the expression
/// alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ScheduleForm")]
pub struct Schedule {
    /// Five fields (minute to weekday), six with seconds first, or seven with a year last;
    /// `CRON_TZ=Europe/Paris ` (or `TZ=`) before it gives a time zone (UTC otherwise).
    pub cron: String,
    /// The path below the function's route each call is made to (`/tick?full=1`); empty:
    /// the route itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The body of each call.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

/// How a schedule may be written: the expression alone, or a table.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScheduleForm {
    Cron(String),
    Table {
        cron: String,
        #[serde(default)]
        path: String,
        #[serde(default)]
        body: String,
    },
}

impl From<ScheduleForm> for Schedule {
    fn from(form: ScheduleForm) -> Self {
        match form {
            ScheduleForm::Cron(cron) => Self {
                cron,
                path: String::new(),
                body: String::new(),
            },
            ScheduleForm::Table { cron, path, body } => Self { cron, path, body },
        }
    }
}

/// A schedule's expression, parsed: what finds its ticks.
#[derive(Debug, Clone)]
pub struct Clock {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl Schedule {
    /// A schedule of `cron` alone.
    pub fn of(cron: &str) -> Self {
        Self {
            cron: cron.to_owned(),
            path: String::new(),
            body: String::new(),
        }
    }

    /// The expression parsed, or why it cannot be (the parser's own words).
    pub fn clock(&self) -> Result<Clock, RegistryError> {
        let invalid = |reason: String| {
            RegistryError::InvalidConfig(format!("schedule `{}`: {reason}", self.cron))
        };
        let text = self.cron.trim();
        let (zone, pattern) = match text
            .strip_prefix("CRON_TZ=")
            .or_else(|| text.strip_prefix("TZ="))
        {
            Some(rest) => {
                let (zone, pattern) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let zone: chrono_tz::Tz = zone
                    .parse()
                    .map_err(|_| invalid(format!("unknown time zone `{zone}`")))?;
                (zone, pattern.trim())
            }
            None => (chrono_tz::UTC, text),
        };
        let cron = croner::parser::CronParser::new()
            .parse(pattern)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Clock { cron, zone })
    }

    /// Checks the expression, the path and the body.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let clock = self.clock()?;
        if clock.next_after(Utc::now()).is_none() {
            return Err(RegistryError::InvalidConfig(format!(
                "schedule `{}` never comes again",
                self.cron
            )));
        }
        let path_ok = self.path.is_empty()
            || (self.path.starts_with('/')
                && !self.path.bytes().any(|b| b.is_ascii_control() || b == b' '));
        if !path_ok {
            return Err(RegistryError::InvalidConfig(format!(
                "schedule `{}`: path `{}` must start with `/` and hold no spaces or control \
                 characters",
                self.cron, self.path
            )));
        }
        if self.body.len() > MAX_SCHEDULE_BODY {
            return Err(RegistryError::InvalidConfig(format!(
                "schedule `{}`: its body is {} bytes; a schedule sends at most {MAX_SCHEDULE_BODY}",
                self.cron,
                self.body.len()
            )));
        }
        Ok(())
    }
}

impl Clock {
    /// The first tick strictly after `time`, if the expression has one (`None` for one
    /// whose last year has passed).
    pub fn next_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // From the whole second: ticks fall on whole seconds, on every node alike.
        let local = time.trunc_subsecs(0).with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(next.with_timezone(&Utc))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn ticks_come_as_the_expression_says_in_its_zone() {
        let every_5_min = Schedule::of("*/5 * * * *").clock().unwrap();
        let next = every_5_min.next_after(at("2026-12-07T10:02:30Z"));
        assert_eq!(next, Some(at("2026-12-07T10:05:00Z")));
        let every_second = Schedule::of("* * * * * *").clock().unwrap();
        let next = every_second.next_after(at("2026-12-07T10:02:30Z"));
        assert_eq!(next, Some(at("2026-12-07T10:02:31Z")));
        let next = every_second.next_after(at("2026-12-07T10:02:30.517Z"));
        assert_eq!(next, Some(at("2026-12-07T10:02:31Z")));
        // 09:00 in Paris is 08:00 UTC in winter.
        let paris = Schedule::of("CRON_TZ=Europe/Paris 0 9 * * *")
            .clock()
            .unwrap();
        let next = paris.next_after(at("2026-12-07T10:00:00Z"));
        assert_eq!(next, Some(at("2026-12-08T08:00:00Z")));
    }

    #[test]
    fn a_bad_schedule_is_refused_with_the_parsers_reason() {
        let e = Schedule::of("61 * * * *")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid configuration: schedule `61 * * * *`: "),
            "{e}"
        );
        let e = Schedule::of("TZ=Mars/Base 0 9 * * *")
            .validate()
            .unwrap_err();
        assert!(
            e.to_string().contains("unknown time zone `Mars/Base`"),
            "{e}"
        );
        let mut schedule = Schedule::of("0 * * * *");
        schedule.path = "tick".into();
        assert!(schedule
            .validate()
            .unwrap_err()
            .to_string()
            .contains("must start with `/`"));
    }

    #[test]
    fn a_schedule_is_a_string_or_a_table() {
        let list: Vec<Schedule> =
            serde_json::from_str(r#"["0 * * * *", {"cron": "0 0 * * *", "path": "/daily"}]"#)
                .unwrap();
        assert_eq!(list[0], Schedule::of("0 * * * *"));
        assert_eq!(list[1].path, "/daily");
    }
}
