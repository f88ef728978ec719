//! `escape`: the command-line client of an Escape deployment.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use escape_client::tail::{Tail, TailEvent};
use escape_client::{Channel, Client, ClientError, ProfileStore, new_client_msg_id};
use escape_proto::room::{HistoryQuery, RoomSummary};
use escape_proto::{Body, Event, Member, RoomName};

/// Talk to an Escape deployment over mutual TLS.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Which imported profile to use (default: the first imported).
    #[arg(long, global = true, env = "ESCAPE_PROFILE")]
    profile: Option<String>,
    /// Print JSON for scripts instead of human text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 ok, 1 other failure, 2 usage, 3 profile or local file, \
4 cannot connect (network, TLS, closed), 5 refused (not a member, inactive, forbidden), \
6 no such room, 7 already exists, 8 invalid input";

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the profiles (identities) this client can use.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Show who the server thinks you are.
    Whoami,
    /// List the deployment's rooms.
    Rooms,
    /// Create rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Join a room.
    Join { room: RoomName },
    /// Leave a room.
    Leave { room: RoomName },
    /// Send a message (the text from the arguments, or from standard input).
    Send {
        room: RoomName,
        /// The message; read from standard input when absent or `-`.
        text: Vec<String>,
        /// Your own id for the message: sending again with the same id stores it once.
        #[arg(long)]
        client_msg_id: Option<String>,
    },
    /// Show a page of a room's history, oldest first.
    History {
        room: RoomName,
        /// Only messages with a sequence below this one.
        #[arg(long)]
        before: Option<u64>,
        /// Only messages with a sequence above this one.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Follow a room live; reconnects and resumes without gaps.
    Tail {
        room: RoomName,
        /// Also deliver stored messages after this sequence first.
        #[arg(long)]
        since: Option<u64>,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Import a profile file given by an admin (`*.escape-profile`).
    Import {
        file: PathBuf,
        /// Store it under this name instead of the one in the file.
        #[arg(long)]
        name: Option<String>,
        /// Override the server address (`host:port`) written in the file.
        #[arg(long)]
        server: Option<String>,
    },
    /// List imported profiles.
    List,
    /// Make a profile the default.
    Use { name: String },
}

#[derive(Debug, Subcommand)]
enum RoomCommand {
    /// Create a room and join it.
    Create {
        name: RoomName,
        #[arg(long, default_value = "")]
        topic: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ESCAPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("escape: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("escape: {e}");
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn hint(e: &ClientError) -> Option<&'static str> {
    use escape_proto::ErrorCode;
    match e {
        ClientError::Connect { .. } => Some(
            "is the server running, and is the address in the profile right? (`escape profile import --server`)",
        ),
        ClientError::Server {
            code: ErrorCode::NotAMember,
            ..
        } => Some("join the room first: `escape join ROOM`"),
        ClientError::Server {
            code: ErrorCode::UnknownMember | ErrorCode::MemberInactive,
            ..
        } => Some("your membership is not active on this deployment; contact its admins"),
        _ => None,
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let profiles = ProfileStore::from_env()?;
    let json = cli.json;
    let command = match cli.command {
        Command::Profile(command) => return profile(&profiles, command, json),
        command => command,
    };
    let client = Client::new(profiles.load(cli.profile.as_deref())?).await?;
    match command {
        Command::Profile(_) => unreachable!("handled above"),
        Command::Whoami => {
            let me = client.me().await?;
            print(json, &me, || format_member(&me));
        }
        Command::Rooms => {
            let rooms = client.rooms().await?;
            print(json, &rooms, || format_rooms(&rooms));
        }
        Command::Room(RoomCommand::Create { name, topic }) => {
            let room = client.create_room(name, topic).await?;
            print(json, &room, || {
                format!("created {} (you have joined it)", room.name)
            });
        }
        Command::Join { room } => {
            let room = client.join(&room).await?;
            print(json, &room, || {
                format!(
                    "joined {} ({} members, {} messages)",
                    room.name, room.members, room.head
                )
            });
        }
        Command::Leave { room } => {
            let room = client.leave(&room).await?;
            print(json, &room, || format!("left {}", room.name));
        }
        Command::Send {
            room,
            text,
            client_msg_id,
        } => {
            let text = message_text(text)?;
            let client_msg_id = client_msg_id.unwrap_or_else(new_client_msg_id);
            let mut channel = Channel::connect(&client).await?;
            let ack = channel
                .send(&room, &client_msg_id, Body::text(text))
                .await?;
            channel.close().await;
            let value = serde_json::json!({"room": room, "seq": ack.seq, "duplicate": ack.duplicate, "client_msg_id": client_msg_id});
            print(json, &value, || {
                if ack.duplicate {
                    format!(
                        "already stored in {room} as #{} (same client message id)",
                        ack.seq
                    )
                } else {
                    format!("sent to {room} as #{}", ack.seq)
                }
            });
        }
        Command::History {
            room,
            before,
            after,
            limit,
        } => {
            let page = client
                .history(
                    &room,
                    &HistoryQuery {
                        before,
                        after,
                        limit: Some(limit),
                    },
                )
                .await?;
            print(json, &page, || {
                let mut out: Vec<String> = page.messages.iter().map(format_event).collect();
                if page.messages.is_empty() {
                    out.push(format!("no messages in {room} in that range"));
                }
                if page.more {
                    let hint = match (after, page.messages.first(), page.messages.last()) {
                        (Some(_), _, Some(last)) => format!("(more: --after {})", last.seq),
                        (_, Some(first), _) => format!("(more: --before {})", first.seq),
                        _ => String::new(),
                    };
                    out.push(hint);
                }
                out.join("\n")
            });
        }
        Command::Tail { room, since, count } => {
            let mut seen = 0u64;
            let mut tail = Tail::new(client, room.clone(), since);
            tail.run(|event| match event {
                TailEvent::Connected { head } => {
                    if !json {
                        eprintln!("following {room} (newest #{head}); Ctrl-C to stop");
                    }
                    ControlFlow::Continue(())
                }
                TailEvent::Event(event) => {
                    print(json, &event, || format_event(&event));
                    seen += 1;
                    if count.is_some_and(|c| seen >= c) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }
                TailEvent::Disconnected { reason, retry_in } => {
                    eprintln!(
                        "disconnected: {reason}; reconnecting in {} ms",
                        retry_in.as_millis()
                    );
                    ControlFlow::Continue(())
                }
            })
            .await?;
        }
    }
    Ok(())
}

fn profile(
    profiles: &ProfileStore,
    command: ProfileCommand,
    json: bool,
) -> Result<(), ClientError> {
    match command {
        ProfileCommand::Import { file, name, server } => {
            let profile = profiles.import(&file, name.as_deref(), server.as_deref())?;
            let default = profiles.default_name()?;
            let value = serde_json::json!({"name": profile.name, "member_id": profile.member_id, "server": profile.server});
            print(json, &value, || {
                let mut line = format!(
                    "imported profile {} for {} (member {})",
                    profile.name, profile.server, profile.member_id
                );
                if default.as_deref() == Some(profile.name.as_str()) {
                    line.push_str("; it is the default");
                }
                line
            });
        }
        ProfileCommand::List => {
            let names = profiles.names()?;
            let default = profiles.default_name()?;
            print(
                json,
                &serde_json::json!({"profiles": names, "default": default}),
                || {
                    if names.is_empty() {
                        return "no profiles; import one with `escape profile import FILE`".into();
                    }
                    names
                        .iter()
                        .map(|n| {
                            if Some(n) == default.as_ref() {
                                format!("* {n}")
                            } else {
                                format!("  {n}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        ProfileCommand::Use { name } => {
            profiles.set_default(&name)?;
            print(json, &serde_json::json!({"default": name}), || {
                format!("default profile is now {name}")
            });
        }
    }
    Ok(())
}

fn message_text(words: Vec<String>) -> Result<String, ClientError> {
    if words.is_empty() || words == ["-"] {
        let mut text = String::new();
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("type the message, then Ctrl-D:");
        }
        stdin
            .lock()
            .read_to_string(&mut text)
            .map_err(|source| ClientError::Io {
                path: PathBuf::from("<stdin>"),
                source,
            })?;
        return Ok(text.trim_end_matches('\n').to_owned());
    }
    Ok(words.join(" "))
}

fn print<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        match serde_json::to_string(value) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("escape: cannot encode JSON: {e}"),
        }
    } else {
        println!("{}", human());
    }
}

fn format_member(me: &Member) -> String {
    let a = &me.attributes;
    let mut lines = vec![
        format!("{} ({})", me.name, me.id),
        format!(
            "  status:       {:?}{}",
            me.status,
            if me.admin { ", deployment admin" } else { "" }
        ),
    ];
    for (label, value) in [
        ("organisation", &a.organisation),
        ("country", &a.country),
        ("sector", &a.sector),
        ("role", &a.role),
        ("vetting", &a.vetting),
    ] {
        if !value.is_empty() {
            lines.push(format!("  {label:<13} {value}"));
        }
    }
    lines.push(format!("  clearance:    {}", a.clearance));
    lines.join("\n")
}

fn format_rooms(rooms: &[RoomSummary]) -> String {
    if rooms.is_empty() {
        return "no rooms yet; create one with `escape room create NAME`".into();
    }
    let mut out = vec![format!(
        "{:<2}{:<28} {:>7} {:>8}  TOPIC",
        "", "ROOM", "MEMBERS", "MESSAGES"
    )];
    for r in rooms {
        out.push(format!(
            "{:<2}{:<28} {:>7} {:>8}  {}",
            if r.joined { "*" } else { "" },
            r.name,
            r.members,
            r.head,
            r.topic
        ));
    }
    out.push("(* = joined)".into());
    out.join("\n")
}

fn format_event(e: &Event) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    let time = e.sent_at.format(&format).unwrap_or_default();
    let text = match &e.body {
        Body::Text { text } => text.clone(),
        other => format!("{other:?}"),
    };
    format!("#{:<5} {time}  {}: {text}", e.seq, e.sender_name)
}
