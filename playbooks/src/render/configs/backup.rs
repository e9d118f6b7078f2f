//! Scheduled etcd backups (only when `spec.backup.schedule` is set): a CronJob manifest for the
//! addons phase (kube-system, control planes, never two runs at once) and an equivalent systemd
//! service + timer on every etcd member, both running the same `kubeforge backup run …` command
//! line ([`backup_command`]). The cron schedule is translated for systemd by
//! [`cron_to_on_calendar`].

use kubeforge_templates::contexts::{
    BackupService, BackupTimer, EtcdBackupCronJob, HostPathVolume,
};

use super::{ConfigRenderError, Ctx, ETCD_CLIENT_PORT, HostOut, loopback, pki, url};
use crate::model::{Backup, BackupRunner, Cluster, Host};

pub const CRONJOB: &str = "/etc/kubernetes/addons/etcd-backup.yaml";
pub const SERVICE: &str = "/etc/systemd/system/kubeforge-backup.service";
pub const TIMER: &str = "/etc/systemd/system/kubeforge-backup.timer";
/// The kubeforge binary on nodes.
pub const BACKUP_BINARY: &str = "/usr/local/bin/kubeforge";
/// The CronJob's image only supplies a C library for the host's kubeforge binary.
pub const CRONJOB_IMAGE: &str = "docker.io/library/debian:bookworm-slim";

/// The argv of one backup run: snapshot etcd over mutual TLS into `destination`, keep `retention`.
pub fn backup_command(
    backup: &Backup,
    endpoints: &str,
    ca: &str,
    cert: &str,
    key: &str,
) -> Vec<String> {
    vec![
        BACKUP_BINARY.to_string(),
        "backup".to_string(),
        "run".to_string(),
        format!("--etcd-endpoints={endpoints}"),
        format!("--etcd-cacert={ca}"),
        format!("--etcd-cert={cert}"),
        format!("--etcd-key={key}"),
        format!("--destination={}", backup.destination.display()),
        format!("--retention={}", backup.retention),
    ]
}

pub(super) fn add(ctx: Ctx<'_>, out: &mut HostOut<'_>) -> Result<(), ConfigRenderError> {
    let cluster = ctx.cluster();
    let Some(backup) = cluster.backup.as_ref() else { return Ok(()) };
    let Some(schedule) = backup.schedule.as_deref() else { return Ok(()) };
    let host = out.host;
    if backup.runner == BackupRunner::CronJob {
        if host.is_control_plane() {
            out.render(CRONJOB, 0o600, false, &cronjob(ctx, host, backup, schedule))?;
        }
        return Ok(());
    }
    if is_etcd_member(cluster, host) {
        // The local member over loopback, with the member's own etcd client certificate.
        let command = backup_command(
            backup,
            &url("https", loopback(host.address), ETCD_CLIENT_PORT),
            &pki("etcd/ca.crt"),
            &pki("etcd/healthcheck-client.crt"),
            &pki("etcd/healthcheck-client.key"),
        );
        let command = command.iter().map(|a| systemd_escape(a)).collect();
        out.render(SERVICE, 0o644, false, &BackupService { command })?;
        let on_calendar = cron_to_on_calendar(schedule).map_err(|reason| {
            ConfigRenderError::Schedule { schedule: schedule.to_string(), reason }
        })?;
        let timer = BackupTimer { schedule: schedule.to_string(), on_calendar };
        out.render(TIMER, 0o644, false, &timer)?;
    }
    Ok(())
}

fn is_etcd_member(cluster: &Cluster, host: &Host) -> bool {
    cluster.etcd_members().any(|m| m.name == host.name)
}

fn cronjob(ctx: Ctx<'_>, host: &Host, backup: &Backup, schedule: &str) -> EtcdBackupCronJob {
    let ca = pki("etcd/ca.crt");
    let cert = pki("apiserver-etcd-client.crt");
    let key = pki("apiserver-etcd-client.key");
    let endpoints = super::control_plane::etcd_servers(ctx, host);
    let command = backup_command(backup, &endpoints, &ca, &cert, &key);
    let file = |name: &str, path: &str| HostPathVolume {
        name: name.to_string(),
        host_path: path.to_string(),
        kind: "File".to_string(),
        mount_path: path.to_string(),
        read_only: true,
    };
    let destination = backup.destination.display().to_string();
    let volumes = vec![
        file("etcd-ca", &ca),
        file("etcd-client-cert", &cert),
        file("etcd-client-key", &key),
        file("kubeforge", BACKUP_BINARY),
        HostPathVolume {
            name: "destination".to_string(),
            host_path: destination.clone(),
            kind: "DirectoryOrCreate".to_string(),
            mount_path: destination,
            read_only: false,
        },
    ];
    EtcdBackupCronJob {
        schedule: schedule.to_string(),
        image: CRONJOB_IMAGE.to_string(),
        command,
        volumes,
    }
}

/// Quotes one argument for a systemd `ExecStart=` line: `%` and `$` are doubled so systemd does
/// not expand them, and arguments with spaces or quotes are double-quoted.
fn systemd_escape(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if escaped.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\' || c == ';')
    {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Translates a five-field cron expression into systemd `OnCalendar=` expressions that fire at
/// the same times. Cron runs when day-of-month OR day-of-week matches if both are restricted;
/// systemd ANDs them, so that case yields two expressions.
pub fn cron_to_on_calendar(expr: &str) -> Result<Vec<String>, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(format!("expected 5 fields, found {}", fields.len()));
    };
    let minute = field(minute, 0, 59, &[], "minute")?;
    let hour = field(hour, 0, 23, &[], "hour")?;
    let dom_s = field(dom, 1, 31, &[], "day of month")?;
    let month = field(month, 1, 12, &MONTHS, "month")?;
    let days = weekdays(dow)?;
    let time = format!("*-{month}-DOM {hour}:{minute}:00");
    let with = |dom: &str, days: Option<&str>| {
        let date = time.replace("DOM", dom);
        match days {
            Some(d) => format!("{d} {date}"),
            None => date,
        }
    };
    Ok(match (dom == "*", days) {
        (_, None) => vec![with(&dom_s, None)],
        (true, Some(d)) => vec![with("*", Some(&d))],
        (false, Some(d)) => vec![with(&dom_s, None), with("*", Some(&d))],
    })
}

/// One numeric cron field in systemd syntax: lists, ranges (`a..b`), steps (`start/step`).
fn field(text: &str, min: u32, max: u32, names: &[&str], what: &str) -> Result<String, String> {
    let mut items = Vec::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("bad step {s:?} in {what}"))?;
                if step == 0 {
                    return Err(format!("step 0 in {what}"));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = bounds(range, min, max, names, what)?;
        items.push(match (range, step) {
            ("*", None) => "*".to_string(),
            ("*", Some(s)) => format!("{min}/{s}"),
            (_, None) if lo == hi => format!("{lo:02}"),
            (_, None) => format!("{lo:02}..{hi:02}"),
            // A bare `a/s` runs from a to the end; `a-b/s` is spelled out.
            (_, Some(s)) if !range.contains('-') => format!("{lo:02}/{s}"),
            (_, Some(s)) => (lo..=hi)
                .step_by(s as usize)
                .map(|v| format!("{v:02}"))
                .collect::<Vec<_>>()
                .join(","),
        });
    }
    Ok(items.join(","))
}

fn bounds(
    range: &str,
    min: u32,
    max: u32,
    names: &[&str],
    what: &str,
) -> Result<(u32, u32), String> {
    if range == "*" {
        return Ok((min, max));
    }
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        let v = match names.iter().position(|n| *n == lower) {
            Some(i) => min + u32::try_from(i).unwrap_or(0),
            None => s.parse().map_err(|_| format!("bad value {s:?} in {what}"))?,
        };
        if v < min || v > max {
            return Err(format!("{v} is outside {min}-{max} in {what}"));
        }
        Ok(v)
    };
    match range.split_once('-') {
        Some((a, b)) => {
            let (lo, hi) = (value(a)?, value(b)?);
            if lo > hi {
                return Err(format!("range {range} runs backwards in {what}"));
            }
            Ok((lo, hi))
        }
        None => {
            let v = value(range)?;
            Ok((v, v))
        }
    }
}

/// The day-of-week field as systemd weekday names, or `None` for every day.
fn weekdays(text: &str) -> Result<Option<String>, String> {
    let mut set = [false; 7];
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                (r, s.parse::<usize>().map_err(|_| format!("bad step {s:?} in day of week"))?)
            }
            None => (item, 1),
        };
        if step == 0 {
            return Err("step 0 in day of week".to_string());
        }
        // Cron allows 0-7 with 7 = Sunday again.
        let (lo, hi) = bounds(range, 0, 7, &DAYS, "day of week")?;
        for v in (lo..=hi).step_by(step) {
            set[(v % 7) as usize] = true;
        }
    }
    if text == "*" || set.iter().all(|d| *d) {
        return Ok(None);
    }
    let names: Vec<&str> =
        SYSTEMD_DAYS.iter().zip(set).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    Ok(Some(names.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(expr: &str) -> Vec<String> {
        cron_to_on_calendar(expr).unwrap()
    }

    #[test]
    fn common_schedules() {
        assert_eq!(cal("0 3 * * *"), ["*-*-* 03:00:00"]);
        assert_eq!(cal("*/15 * * * *"), ["*-*-* *:0/15:00"]);
        assert_eq!(cal("30 2 * * 1-5"), ["Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00"]);
        assert_eq!(cal("0 0 1 jan,jul *"), ["*-01,07-01 00:00:00"]);
        assert_eq!(cal("0 4 * * 0,7"), ["Sun *-*-* 04:00:00"]);
        assert_eq!(cal("0 1-5/2 * * *"), ["*-*-* 01,03,05:00:00"]);
    }

    #[test]
    fn dom_and_dow_are_ored_like_cron() {
        assert_eq!(cal("0 0 1 * 1"), ["*-*-01 00:00:00", "Mon *-*-* 00:00:00"]);
    }

    #[test]
    fn bad_schedules_are_errors() {
        assert!(cron_to_on_calendar("0 3 * *").unwrap_err().contains("5 fields"));
        assert!(cron_to_on_calendar("61 3 * * *").unwrap_err().contains("outside 0-59"));
        assert!(cron_to_on_calendar("*/0 * * * *").unwrap_err().contains("step 0"));
        assert!(cron_to_on_calendar("0 5-1 * * *").unwrap_err().contains("backwards"));
    }

    #[test]
    fn systemd_arguments_are_escaped() {
        assert_eq!(systemd_escape("--destination=/var/backups"), "--destination=/var/backups");
        assert_eq!(systemd_escape("--destination=/a b"), "\"--destination=/a b\"");
        assert_eq!(systemd_escape("100%$x"), "100%%$$x");
    }
}
