//! Human and JSON output. Everything another member wrote (message text, names, topics) goes
//! through [`clean`] before it reaches the terminal, so nobody can send escape sequences that
//! rewrite the screen or forge lines.

use escape_proto::room::RoomSummary;
use escape_proto::{Body, Event, Member};

/// Prints JSON for scripts, or the human text.
pub fn print<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        match serde_json::to_string(value) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("escape: cannot encode JSON: {e}"),
        }
    } else {
        println!("{}", human());
    }
}

/// Peer text for the command line's output: see [`escape_client::text::visible`]; newlines
/// become an indented continuation.
pub fn clean(text: &str) -> String {
    escape_client::text::visible(text, escape_client::text::Breaks::Indent)
}

pub fn member(me: &Member) -> String {
    let a = &me.attributes;
    let mut lines = vec![
        format!("{} ({})", clean(&me.name), me.id),
        format!(
            "  status:       {:?}{}",
            me.status,
            if me.admin { ", deployment admin" } else { "" }
        ),
    ];
    for (label, value) in [
        ("email", &me.email),
        ("organisation", &a.organisation),
        ("country", &a.country),
        ("sector", &a.sector),
        ("role", &a.role),
        ("vetting", &a.vetting),
    ] {
        if !value.is_empty() {
            lines.push(format!("  {:<13} {}", format!("{label}:"), clean(value)));
        }
    }
    lines.push(format!("  clearance:    {}", a.clearance));
    lines.join("\n")
}

pub fn rooms(rooms: &[RoomSummary]) -> String {
    if rooms.is_empty() {
        return "no rooms yet; create one with `escape room create NAME`".into();
    }
    let mut out = vec![format!(
        "{:<2}{:<28} {:<16} {:>7} {:>8} {:>6}  TOPIC",
        "", "ROOM", "TLP CEILING", "MEMBERS", "MESSAGES", "UNREAD"
    )];
    for r in rooms {
        out.push(format!(
            "{:<2}{:<28} {:<16} {:>7} {:>8} {:>6}  {}",
            if r.joined { "*" } else { "" },
            r.name,
            r.tlp_max.map(|t| t.as_str()).unwrap_or("-"),
            r.members,
            r.head,
            if r.joined {
                r.unread.to_string()
            } else {
                String::new()
            },
            clean(&r.topic)
        ));
    }
    out.push("(* = joined)".into());
    out.join("\n")
}

pub fn event(e: &Event) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    let time = e.sent_at.format(&format).unwrap_or_default();
    let text = match &e.body {
        Body::Text { text, reply_to, .. } => match reply_to {
            Some(parent) => format!("(re #{parent}) {}", clean(text)),
            None => clean(text),
        },
        Body::Edit { target, text } => format!("(edit of #{target}) {}", clean(text)),
        Body::Redaction { target } => format!("(removed #{target})"),
        Body::Redacted => "(message removed)".to_owned(),
        Body::Indicator(i) => format!(
            "{} {} {} (confidence {}){}",
            i.tlp.as_str(),
            i.kind.as_str(),
            clean(&i.value),
            i.confidence,
            if i.description.is_empty() {
                String::new()
            } else {
                format!(": {}", clean(&i.description))
            }
        ),
        Body::File {
            file_id,
            name,
            size,
            ..
        } => format!(
            "shared a file: {} ({}, id {})  -> escape download {} {}",
            clean(name),
            bytes(*size),
            clean(file_id),
            e.room,
            clean(file_id)
        ),
        other => format!("{other:?}"),
    };
    format!("#{:<5} {time}  {}: {text}", e.seq, clean(&e.sender_name))
}

/// A byte count for people.
pub use escape_client::files::human_size as bytes;

pub fn timestamp(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]Z");
    t.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let hostile = "ok\u{1b}[2J\u{1b}]0;pwned\u{7}\r#42 admin: fake\u{202e}";
        let shown = clean(hostile);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        assert!(shown.contains("\\u{1b}"));
        assert_eq!(clean("line1\nline2"), "line1\n        line2");
    }
}
