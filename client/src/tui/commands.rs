//! What a line typed in the input becomes: a message, or one of the `/commands`. Parsing is
//! pure so that every command's spelling and its refusals are tested without a terminal.

use std::path::PathBuf;

use escape_proto::alert::Severity;
use escape_proto::tlp::Tlp;
use escape_proto::{MemberId, RoomName};

/// One `/command`, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Join a room (the selected one when none is named) and switch to it.
    Join(Option<RoomName>),
    /// Leave a room (the selected one when none is named).
    Leave(Option<RoomName>),
    /// Answer message `seq` of the selected room.
    Reply {
        seq: u64,
        text: String,
    },
    /// Correct a message this member sent.
    Edit {
        seq: u64,
        text: String,
    },
    /// Send a message that notifies a member.
    Mention {
        member: MemberId,
        text: String,
    },
    /// Share one indicator in the selected room.
    Ioc {
        tlp: Tlp,
        value: String,
        description: String,
    },
    /// Encrypt a file here and share it in the selected room.
    Upload(PathBuf),
    /// Fetch, decrypt and verify a file of the selected room.
    Download {
        file: String,
        output: Option<PathBuf>,
    },
    /// Acknowledge an alert (the one in the alerts bar when no id is given).
    AlertAck(Option<String>),
    /// Send an alert to the members an attribute expression selects.
    AlertSend {
        tlp: Tlp,
        severity: Severity,
        to: String,
        text: String,
    },
    /// Find messages in every room this member may read.
    Search(String),
    /// Who in the selected room is online.
    Who,
    /// Refresh the rooms, indicators and files from the server.
    Refresh,
    Help,
    Quit,
}

/// What the input line holds when Enter is pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Message(String),
    Command(Command),
    Nothing,
}

/// The commands as `?` and `/help` list them: spelling, then what it does.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "/join [ROOM]",
        "join a room (the selected one) and switch to it",
    ),
    ("/leave [ROOM]", "leave a room (the selected one)"),
    ("/reply SEQ TEXT", "answer message #SEQ (a thread)"),
    ("/edit SEQ TEXT", "correct a message you sent"),
    (
        "/mention MEMBER TEXT",
        "send a message that notifies a member",
    ),
    (
        "/ioc TLP VALUE [DESCRIPTION]",
        "share an indicator here (TLP first: clear green amber amber+strict red)",
    ),
    (
        "/upload PATH",
        "encrypt a file on this machine and share it here",
    ),
    (
        "/download FILE [PATH]",
        "fetch a file of this room (id or name), decrypt and verify it",
    ),
    ("/alert ack [ID]", "acknowledge the alert in the alerts bar"),
    (
        "/alert send TLP SEVERITY TO TEXT",
        "alert members by attributes (TO: sector=energy,country=KE)",
    ),
    ("/search TEXT", "find messages in every room you may read"),
    ("/who", "who in this room is online, away or offline"),
    ("/refresh", "reload rooms, indicators and files"),
    ("/help", "this help (also ? or F1)"),
    ("/quit", "leave the client (also Ctrl-Q)"),
];

/// The keys as `?` lists them.
pub const KEYS: &[(&str, &str)] = &[
    ("Enter", "send the message or run the command"),
    ("Ctrl-N / Ctrl-P, Alt-Down / Alt-Up", "next / previous room"),
    (
        "PgUp / PgDn, mouse wheel",
        "scroll; older history loads at the top",
    ),
    ("Ctrl-End", "back to the newest messages"),
    ("Up / Down", "recall lines you typed"),
    ("Ctrl-T", "show or hide the indicators and files panel"),
    ("Ctrl-G", "acknowledge the alert in the alerts bar"),
    ("Esc", "close help or search results"),
    ("? or F1", "this help (when the input line is empty)"),
    ("Ctrl-Q / Ctrl-C", "quit"),
];

/// Reads a typed line. Lines starting with `//` send a message that starts with `/`.
pub fn parse(line: &str) -> Result<Line, String> {
    let line = line.trim_end();
    if line.trim().is_empty() {
        return Ok(Line::Nothing);
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Ok(Line::Message(format!("/{rest}")));
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Line::Message(line.to_owned()));
    };
    let (name, args) = split_word(rest);
    let command = match name.to_ascii_lowercase().as_str() {
        "join" | "j" => Command::Join(optional_room(args)?),
        "leave" | "part" => Command::Leave(optional_room(args)?),
        "reply" | "r" => {
            let (seq, text) = seq_and_text(args, "/reply SEQ TEXT")?;
            Command::Reply { seq, text }
        }
        "edit" => {
            let (seq, text) = seq_and_text(args, "/edit SEQ TEXT")?;
            Command::Edit { seq, text }
        }
        "mention" | "m" => {
            let (member, text) = split_word(args);
            if member.is_empty() || text.trim().is_empty() {
                return Err("usage: /mention MEMBER TEXT".into());
            }
            let member =
                MemberId::parse(member).map_err(|e| format!("/mention: member id: {e}"))?;
            Command::Mention {
                member,
                text: text.trim().to_owned(),
            }
        }
        "ioc" => {
            let (label, rest) = split_word(args);
            let (value, description) = split_word(rest);
            if label.is_empty() || value.is_empty() {
                return Err("usage: /ioc TLP VALUE [DESCRIPTION] (for example /ioc amber 198.51.100.7 C2 server)".into());
            }
            let tlp = Tlp::parse(label).ok_or_else(|| {
                format!(
                    "/ioc: {label:?} is not a TLP label; use clear, green, amber, amber+strict or red"
                )
            })?;
            Command::Ioc {
                tlp,
                value: value.to_owned(),
                description: description.trim().to_owned(),
            }
        }
        "upload" | "up" => {
            let path = args.trim();
            if path.is_empty() {
                return Err("usage: /upload PATH".into());
            }
            Command::Upload(expand_home(path))
        }
        "download" | "down" => {
            let (file, output) = split_word(args);
            if file.is_empty() {
                return Err(
                    "usage: /download FILE [PATH] (FILE: an id or a name from the files panel)"
                        .into(),
                );
            }
            let output = output.trim();
            Command::Download {
                file: file.to_owned(),
                output: (!output.is_empty()).then(|| expand_home(output)),
            }
        }
        "ack" => Command::AlertAck(optional_word(args)),
        "alert" => {
            let (verb, rest) = split_word(args);
            match verb.to_ascii_lowercase().as_str() {
                "" | "ack" => Command::AlertAck(optional_word(rest)),
                "send" => alert_send(rest)?,
                other => {
                    return Err(format!(
                        "/alert {other}: use /alert ack [ID] or /alert send TLP SEVERITY TO TEXT"
                    ));
                }
            }
        }
        "search" | "s" => {
            let text = args.trim();
            if text.is_empty() {
                return Err("usage: /search TEXT".into());
            }
            Command::Search(text.to_owned())
        }
        "who" => Command::Who,
        "refresh" => Command::Refresh,
        "help" | "h" | "?" => Command::Help,
        "quit" | "q" | "exit" => Command::Quit,
        other => {
            return Err(format!(
                "/{other} is not a command; /help lists them (start a message with // to send a slash)"
            ));
        }
    };
    Ok(Line::Command(command))
}

fn alert_send(args: &str) -> Result<Command, String> {
    const USAGE: &str = "usage: /alert send TLP SEVERITY TO TEXT (for example /alert send amber high sector=energy,country=KE Patch now)";
    let (label, rest) = split_word(args);
    let (severity, rest) = split_word(rest);
    let (to, text) = split_word(rest);
    if label.is_empty() || severity.is_empty() || to.is_empty() || text.trim().is_empty() {
        return Err(USAGE.into());
    }
    let tlp = Tlp::parse(label)
        .ok_or_else(|| format!("/alert send: {label:?} is not a TLP label; {USAGE}"))?;
    let severity = Severity::parse(severity).ok_or_else(|| {
        format!("/alert send: severity {severity:?} is not one of low, medium, high, critical")
    })?;
    Ok(Command::AlertSend {
        tlp,
        severity,
        to: to.to_owned(),
        text: text.trim().to_owned(),
    })
}

/// The first word and the rest (leading spaces removed from both).
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], text[at..].trim_start()),
        None => (text, ""),
    }
}

fn optional_word(text: &str) -> Option<String> {
    let word = split_word(text).0;
    (!word.is_empty()).then(|| word.to_owned())
}

fn optional_room(text: &str) -> Result<Option<RoomName>, String> {
    match optional_word(text) {
        None => Ok(None),
        Some(name) => RoomName::parse(name.trim_start_matches('#'))
            .map(Some)
            .map_err(|e| format!("room name: {e}")),
    }
}

fn seq_and_text(args: &str, usage: &str) -> Result<(u64, String), String> {
    let (seq, text) = split_word(args);
    let seq = seq
        .trim_start_matches('#')
        .parse::<u64>()
        .map_err(|_| format!("usage: {usage} (SEQ is the #number shown before a message)"))?;
    if text.trim().is_empty() {
        return Err(format!("usage: {usage}"));
    }
    Ok((seq, text.trim().to_owned()))
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(line: &str) -> Command {
        match parse(line) {
            Ok(Line::Command(c)) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn plain_text_is_a_message_and_double_slash_escapes() {
        assert_eq!(parse("hello"), Ok(Line::Message("hello".into())));
        assert_eq!(
            parse("//etc/passwd"),
            Ok(Line::Message("/etc/passwd".into()))
        );
        assert_eq!(parse("   "), Ok(Line::Nothing));
    }

    #[test]
    fn every_command_parses() {
        assert_eq!(
            command("/join ops"),
            Command::Join(Some(RoomName::parse("ops").expect("room")))
        );
        assert_eq!(command("/join"), Command::Join(None));
        assert_eq!(command("/leave"), Command::Leave(None));
        assert_eq!(
            command("/reply #12 seen it too"),
            Command::Reply {
                seq: 12,
                text: "seen it too".into()
            }
        );
        assert_eq!(
            command("/ioc AMBER+STRICT 198.51.100.7 C2 server"),
            Command::Ioc {
                tlp: Tlp::AmberStrict,
                value: "198.51.100.7".into(),
                description: "C2 server".into()
            }
        );
        assert_eq!(
            command("/upload /tmp/report one.pdf"),
            Command::Upload(PathBuf::from("/tmp/report one.pdf"))
        );
        assert_eq!(
            command("/download f-1 /tmp/out"),
            Command::Download {
                file: "f-1".into(),
                output: Some(PathBuf::from("/tmp/out"))
            }
        );
        assert_eq!(command("/alert"), Command::AlertAck(None));
        assert_eq!(
            command("/alert ack a-1"),
            Command::AlertAck(Some("a-1".into()))
        );
        assert_eq!(
            command("/alert send red critical sector=energy,country=KE Patch now"),
            Command::AlertSend {
                tlp: Tlp::Red,
                severity: Severity::Critical,
                to: "sector=energy,country=KE".into(),
                text: "Patch now".into()
            }
        );
        assert_eq!(command("/search cobalt"), Command::Search("cobalt".into()));
        assert_eq!(command("/help"), Command::Help);
        assert_eq!(command("/q"), Command::Quit);
    }

    #[test]
    fn mistakes_are_explained() {
        for (line, expected) in [
            ("/frobnicate", "not a command"),
            ("/ioc purple 1.2.3.4", "not a TLP label"),
            ("/ioc amber", "usage: /ioc"),
            ("/reply x hi", "SEQ is the #number"),
            ("/reply 3", "usage: /reply"),
            ("/alert send amber loud x=y text", "severity"),
            ("/join ../etc", "room name"),
            ("/upload", "usage: /upload"),
        ] {
            let error = parse(line).expect_err(line);
            assert!(error.contains(expected), "{line}: {error}");
        }
    }
}
