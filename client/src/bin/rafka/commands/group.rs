//! `rafka group list|describe|delete|reset-offsets`, as `kafka-consumer-groups.sh` does them.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use rafka_client::Client;
use rafka_client::group::admin::{GroupAdmin, GroupDescription, ResetTo};

/// Consumer group administration.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the cluster's groups: id, state and protocol type.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a group's state, members and assignment, and per partition the committed offset,
    /// log end offset and lag.
    Describe {
        /// Group id.
        group: String,
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Delete a group with no members, and its committed offsets.
    Delete {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets for a topic (refused while the group has members).
    ResetOffsets(ResetArgs),
}

/// `group reset-offsets`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("to").required(true).multiple(false)))]
pub struct ResetArgs {
    /// Group id.
    pub group: String,
    /// The topic whose offsets move (every partition).
    #[arg(long)]
    pub topic: String,
    /// To the log start.
    #[arg(long, group = "to")]
    pub to_earliest: bool,
    /// To the log end.
    #[arg(long, group = "to")]
    pub to_latest: bool,
    /// To this offset (clamped into each partition's log).
    #[arg(long, group = "to", value_name = "N")]
    pub to_offset: Option<i64>,
    /// To the first record at or after this time: ISO 8601, e.g. 2026-12-07T06:00:00Z or
    /// 2026-12-07T07:00:00.000+01:00 (no zone: UTC).
    #[arg(long, group = "to", value_name = "ISO8601", value_parser = parse_datetime)]
    pub to_datetime: Option<i64>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
}

impl ResetArgs {
    fn to(&self) -> ResetTo {
        match (self.to_offset, self.to_datetime, self.to_latest) {
            (Some(o), _, _) => ResetTo::Offset(o),
            (_, Some(ts), _) => ResetTo::Timestamp(ts),
            (_, _, true) => ResetTo::Latest,
            _ => ResetTo::Earliest,
        }
    }
}

/// Milliseconds since the Unix epoch of an ISO 8601 date and time:
/// `YYYY-MM-DDTHH:MM[:SS[.fff]]` followed by `Z`, `±HH:MM`, `±HHMM` or nothing (UTC).
pub fn parse_datetime(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not an ISO 8601 date and time (e.g. 2026-12-07T06:00:00Z)");
    let (date, rest) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut d = date
        .splitn(3, '-')
        .map(|x| x.parse::<i64>().map_err(|_| bad()));
    let (y, mo, day) = (
        d.next().ok_or_else(bad)??,
        d.next().ok_or_else(bad)??,
        d.next().ok_or_else(bad)??,
    );
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let mut t = time.splitn(3, ':');
    let h: i64 = t.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let mi: i64 = t.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let (sec, ms) = match t.next() {
        None => (0, 0),
        Some(sec) => match sec.split_once('.') {
            None => (sec.parse().map_err(|_| bad())?, 0),
            Some((whole, frac)) => {
                let digits: String = frac.chars().chain("000".chars()).take(3).collect();
                (
                    whole.parse::<i64>().map_err(|_| bad())?,
                    digits.parse::<i64>().map_err(|_| bad())?,
                )
            }
        },
    };
    let offset_min = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z.chars().skip(1).filter(|c| *c != ':').collect();
            if digits.len() != 4 {
                return Err(bad());
            }
            let hh: i64 = digits
                .get(..2)
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            let mm: i64 = digits
                .get(2..)
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            sign * (hh * 60 + mm)
        }
    };
    let valid = (1..=12).contains(&mo)
        && (1..=31).contains(&day)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..=60).contains(&sec);
    if !valid {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, day);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Ok(secs * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn dash(v: Option<i64>) -> String {
    v.map_or("-".to_owned(), |v| v.to_string())
}

/// Prints a description as `kafka-consumer-groups.sh --describe` does (offsets, then members).
fn describe(out: &mut impl Write, d: &GroupDescription) -> std::io::Result<()> {
    if d.state == "Dead" && d.members.is_empty() && d.offsets.is_empty() {
        // What DescribeGroups answers for a group id the coordinator does not know.
        return writeln!(
            out,
            "Group {} does not exist (no members, no committed offsets).",
            d.group
        );
    }
    writeln!(
        out,
        "Group: {}\tState: {}\tProtocolType: {}\tAssignor: {}\tCoordinator: {}\tMembers: {}",
        d.group,
        d.state,
        d.protocol_type,
        d.protocol,
        d.coordinator,
        d.members.len()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:>9} {:>16} {:>16} {:>8}  MEMBER",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
    )?;
    for p in &d.offsets {
        writeln!(
            out,
            "{:<24} {:>9} {:>16} {:>16} {:>8}  {}",
            p.topic,
            p.partition,
            dash(p.committed),
            dash(p.log_end),
            dash(p.lag),
            p.member_id.as_deref().unwrap_or("-")
        )?;
    }
    writeln!(out)?;
    if d.members.is_empty() {
        return writeln!(out, "Group {} has no active members.", d.group);
    }
    writeln!(
        out,
        "{:<40} {:<16} {:<16} {:<16} ASSIGNMENT",
        "MEMBER", "INSTANCE", "CLIENT-ID", "HOST"
    )?;
    for m in &d.members {
        writeln!(
            out,
            "{:<40} {:<16} {:<16} {:<16} {}",
            m.member_id,
            m.instance_id.as_deref().unwrap_or("-"),
            m.client_id,
            m.client_host,
            m.assignment.join(",")
        )?;
    }
    Ok(())
}

/// Runs a group command.
pub async fn run(client: &Client, cmd: GroupCommand) -> anyhow::Result<()> {
    let admin = GroupAdmin::new(client.clone());
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupCommand::List { json } => {
            let groups = admin.list().await.context("list groups")?;
            if json {
                serde_json::to_writer_pretty(&mut out, &groups)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{:<32} {:<20} PROTOCOL-TYPE", "GROUP", "STATE")?;
                for g in groups {
                    writeln!(out, "{:<32} {:<20} {}", g.group, g.state, g.protocol_type)?;
                }
            }
        }
        GroupCommand::Describe { group, json } => {
            let d = admin
                .describe(&group)
                .await
                .with_context(|| format!("describe group {group}"))?;
            if json {
                serde_json::to_writer_pretty(&mut out, &d)?;
                writeln!(out)?;
            } else {
                describe(&mut out, &d)?;
            }
        }
        GroupCommand::Delete { group } => {
            admin
                .delete(&group)
                .await
                .with_context(|| format!("delete group {group}"))?;
            writeln!(out, "Deleted group {group}.")?;
        }
        GroupCommand::ResetOffsets(args) => {
            let plan = admin
                .reset_offsets(&args.group, &args.topic, args.to(), !args.dry_run)
                .await
                .with_context(|| format!("reset offsets of group {}", args.group))?;
            writeln!(
                out,
                "{:<24} {:>9} {:>12}",
                "TOPIC", "PARTITION", "NEW-OFFSET"
            )?;
            for (tp, offset) in &plan {
                writeln!(out, "{:<24} {:>9} {:>12}", tp.topic, tp.partition, offset)?;
            }
            if args.dry_run {
                writeln!(out, "(dry run: nothing committed)")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rafka_client::group::admin::{GroupMember, PartitionLag};

    use super::*;

    fn description(state: &str) -> GroupDescription {
        GroupDescription {
            group: "billing".into(),
            state: state.into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            coordinator: 2,
            members: Vec::new(),
            offsets: Vec::new(),
        }
    }

    fn text(d: &GroupDescription) -> String {
        let mut out = Vec::new();
        describe(&mut out, d).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn describe_prints_offsets_then_members_and_says_when_there_are_none() {
        let dead = text(&description("Dead"));
        assert_eq!(
            dead,
            "Group billing does not exist (no members, no committed offsets).\n"
        );

        let mut d = description("Empty");
        d.offsets.push(PartitionLag {
            topic: "orders".into(),
            partition: 1,
            committed: Some(7),
            log_end: Some(10),
            lag: Some(3),
            member_id: None,
        });
        let empty = text(&d);
        assert!(
            empty.starts_with("Group: billing\tState: Empty\t"),
            "{empty}"
        );
        let row: Vec<&str> = empty
            .lines()
            .find(|l| l.starts_with("orders"))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(row, ["orders", "1", "7", "10", "3", "-"]);
        assert!(
            empty.ends_with("Group billing has no active members.\n"),
            "{empty}"
        );

        d.state = "Stable".into();
        d.offsets[0].member_id = Some("m-1".into());
        d.members.push(GroupMember {
            member_id: "m-1".into(),
            instance_id: None,
            client_id: "rafka-cli".into(),
            client_host: "/127.0.0.1".into(),
            topics: vec!["orders".into()],
            assignment: vec!["orders-0".into(), "orders-1".into()],
        });
        let stable = text(&d);
        let member: Vec<&str> = stable.lines().last().unwrap().split_whitespace().collect();
        assert_eq!(
            member,
            ["m-1", "-", "rafka-cli", "/127.0.0.1", "orders-0,orders-1"]
        );
        assert!(!stable.contains("no active members"), "{stable}");
    }

    #[test]
    fn iso_8601_times_parse_to_epoch_millis() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:01.5Z"), Ok(1_500));
        assert_eq!(
            parse_datetime("2026-12-07T06:00:00Z"),
            Ok(1_796_623_200_000)
        );
        assert_eq!(
            parse_datetime("2026-12-07T07:00:00.000+01:00"),
            parse_datetime("2026-12-07T06:00:00Z")
        );
        assert_eq!(
            parse_datetime("2026-12-07T05:30-0030"),
            parse_datetime("2026-12-07T06:00:00")
        );
        assert_eq!(parse_datetime("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        for bad in [
            "",
            "2026-12-07",
            "2026-13-01T00:00Z",
            "2026-12-07T25:00Z",
            "x-y-zT1:2",
            "2026-12-07T06:00+1",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }
}
