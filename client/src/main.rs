//! `escape`: the command-line client of an Escape deployment.
#![forbid(unsafe_code)]

mod cli;

use std::io::{IsTerminal, Read};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cli::output::{self, print};
use escape_client::tail::{Tail, TailEvent};
use escape_client::{Channel, Client, ClientError, ProfileStore, new_client_msg_id};
use escape_proto::indicator::ObservableType;
use escape_proto::room::HistoryQuery;
use escape_proto::vetting::{ApplicationStatus, Claims, DirectoryQuery, StatusChange};
use escape_proto::{Body, ErrorCode, MemberId, Published, RoomName};

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
6 not found, 7 already exists or already decided, 8 invalid input or unmet precondition";

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
        /// Answer message SEQ (a thread).
        #[arg(long)]
        reply_to: Option<u64>,
        /// Notify a member of the room (repeatable; a member id).
        #[arg(long = "mention")]
        mentions: Vec<MemberId>,
    },
    /// Correct a message you sent; the original stays in the history.
    Edit {
        room: RoomName,
        seq: u64,
        text: Vec<String>,
    },
    /// Remove a message's content for everyone (yours, or any in a room you administer).
    Redact {
        room: RoomName,
        seq: u64,
        #[arg(long)]
        reason: String,
    },
    /// Who in a room is online, away or offline.
    Who { room: RoomName },
    /// Mark a room read up to SEQ (default: everything).
    Read { room: RoomName, seq: Option<u64> },
    /// Find messages in the rooms you may read.
    Search {
        text: Vec<String>,
        #[arg(long)]
        room: Option<RoomName>,
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
    /// Encrypt a file to the room's key on this machine and share it (resumable upload).
    Upload { room: RoomName, path: PathBuf },
    /// The files shared in a room (also shares the room's keys with members who joined).
    Files { room: RoomName },
    /// Download a file, decrypt it here and check its size and SHA-256.
    Download {
        room: RoomName,
        file_id: String,
        /// Where to write it (default: its name, made safe, in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Threat indicators: share, list, search, sight, relabel, forward, export (TLP first).
    #[command(subcommand)]
    Ioc(IocCommand),
    /// Early-warning alerts: send to an audience by attributes, list, acknowledge, status.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// The full-screen client: rooms, messages, indicators, files and alerts in one terminal.
    Tui {
        /// Capture the mouse (wheel scrolling, clicking rooms); the terminal's own text
        /// selection then needs Shift.
        #[arg(long)]
        mouse: bool,
        /// Write diagnostics to this file (the screen has no room for them).
        #[arg(long)]
        log: Option<PathBuf>,
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
    /// Invitations to apply for membership.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Apply for membership with an invitation (keys are generated here), or check on it.
    Enroll(EnrollArgs),
    /// Vouch for an applicant as a sponsor.
    Vouch {
        application: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Who's who: active members and what they publish.
    Directory {
        #[arg(long)]
        country: Option<String>,
        #[arg(long)]
        sector: Option<String>,
        #[arg(long = "org")]
        organisation: Option<String>,
    },
    /// Choose what the directory shows about you.
    Publish {
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
        email: bool,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        country: bool,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        sector: bool,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        role: bool,
    },
    /// Get a fresh certificate before the current one expires.
    Renew {
        /// Generate a new key instead of keeping the current one.
        #[arg(long)]
        new_key: bool,
    },
    /// Deployment administration (admins only).
    #[command(subcommand)]
    Admin(AdminCommand),
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
    /// Point a profile at another server address (`host:port`).
    SetServer { name: String, server: String },
    /// Make a profile the default.
    Use { name: String },
}

#[derive(Debug, Subcommand)]
enum RoomCommand {
    /// Change a room you administer: topic, history for joiners, retention, invite-only.
    Set {
        room: RoomName,
        #[arg(long)]
        topic: Option<String>,
        /// shared (joiners read the history) or joined (only what comes after they join).
        #[arg(long)]
        history: Option<String>,
        /// Delete messages older than this many days (0: keep).
        #[arg(long)]
        retention_days: Option<u32>,
        #[arg(long)]
        invite_only: Option<bool>,
    },
    /// Let a member join an invite-only room you administer.
    Invite { room: RoomName, member: MemberId },
    /// Remove a member from a room you administer; its file key rotates before the next upload.
    Remove {
        room: RoomName,
        member: MemberId,
        #[arg(long)]
        reason: String,
    },
    /// Create a room and join it; you become its admin.
    Create {
        name: RoomName,
        #[arg(long, default_value = "")]
        topic: String,
        /// The highest TLP label allowed in the room: RED, AMBER+STRICT, AMBER, GREEN, CLEAR.
        #[arg(long)]
        tlp_max: Option<String>,
        /// A classification level policies can compare with clearances.
        #[arg(long)]
        classification: Option<u8>,
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Whether members who join later can read files shared before (default: yes, unless
        /// the room is TLP:RED).
        #[arg(long)]
        history_for_joiners: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
enum AlertCommand {
    /// Warn everyone the audience expression selects, e.g. --to 'sector=energy,country=KE|UG|TZ'
    /// or a Cedar condition: --to 'principal.role == "CERT lead"'.
    Send {
        #[arg(long)]
        to: String,
        #[arg(long)]
        tlp: String,
        /// low, medium, high or critical.
        #[arg(long, value_parser = parse_severity)]
        severity: escape_proto::alert::Severity,
        /// Show who would receive it; send nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Alerts addressed to you that you have not acknowledged.
    List,
    /// Acknowledge an alert.
    Ack { id: String },
    /// Who acknowledged an alert you sent, and who has not.
    Status { id: String },
}

fn command_of(command: AlertCommand) -> cli::alerts::Command {
    match command {
        AlertCommand::Send {
            to,
            tlp,
            severity,
            dry_run,
            text,
        } => cli::alerts::Command::Send {
            to,
            tlp,
            severity,
            dry_run,
            text: text.join(" "),
        },
        AlertCommand::List => cli::alerts::Command::List,
        AlertCommand::Ack { id } => cli::alerts::Command::Ack(id),
        AlertCommand::Status { id } => cli::alerts::Command::Status(id),
    }
}

fn parse_severity(text: &str) -> Result<escape_proto::alert::Severity, String> {
    escape_proto::alert::Severity::parse(text)
        .ok_or_else(|| "one of low, medium, high, critical".to_owned())
}

#[derive(Debug, Subcommand)]
enum IocCommand {
    /// Share indicators: values, or a file (a list, CSV with a header, or a STIX 2.1 bundle;
    /// `-` reads standard input). Prints what was accepted and why anything was not.
    Share {
        room: RoomName,
        file: Option<PathBuf>,
        /// The TLP 2.0 label: CLEAR, GREEN, AMBER, AMBER+STRICT, RED (required unless every
        /// line or object carries its own).
        #[arg(long)]
        tlp: Option<String>,
        /// A value to share (repeatable), besides or instead of a file.
        #[arg(long = "value")]
        values: Vec<String>,
        /// The observable type, when it cannot be recognised from the value.
        #[arg(long = "type", value_parser = parse_observable)]
        kind: Option<ObservableType>,
        #[arg(long)]
        confidence: Option<u8>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        kill_chain_phase: Option<String>,
    },
    /// The indicators of a room that you may read.
    List { room: RoomName },
    /// Where a value was shared, in everything you may read.
    Search {
        value: String,
        #[arg(long = "type", value_parser = parse_observable)]
        kind: Option<ObservableType>,
    },
    /// Report that you saw an indicator.
    Sight {
        room: RoomName,
        seq: u64,
        #[arg(long)]
        note: Option<String>,
    },
    /// Change the label of an indicator you shared.
    Relabel {
        room: RoomName,
        seq: u64,
        #[arg(long)]
        tlp: String,
    },
    /// Copy an indicator to another room (never TLP:RED).
    Forward {
        room: RoomName,
        seq: u64,
        #[arg(long)]
        to: RoomName,
    },
    /// Export a room as a STIX 2.1 bundle.
    Export {
        room: RoomName,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn parse_observable(text: &str) -> Result<ObservableType, String> {
    ObservableType::parse(text).ok_or_else(|| {
        let names: Vec<&str> = ObservableType::ALL.iter().map(|t| t.as_str()).collect();
        format!("one of {}", names.join(", "))
    })
}

#[derive(Debug, Subcommand)]
enum InviteCommand {
    /// Create a single-use invitation code naming you as the sponsor.
    Create {
        /// How long it stays valid: 30m, 12h, 7d.
        #[arg(long, value_parser = cli::vetting::parse_duration)]
        expires: Option<u64>,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct EnrollArgs {
    #[command(subcommand)]
    command: Option<EnrollCommand>,
    /// The enrollment address from the invitation, `host:port`.
    #[arg(long, required = true)]
    server: Option<String>,
    /// The invitation code.
    #[arg(long, required = true)]
    invite: Option<String>,
    #[arg(long, required = true)]
    name: Option<String>,
    #[arg(long, required = true)]
    email: Option<String>,
    #[arg(long = "org", required = true)]
    organisation: Option<String>,
    /// ISO 3166-1 alpha-2, e.g. EE.
    #[arg(long, required = true)]
    country: Option<String>,
    #[arg(long, default_value = "")]
    sector: String,
    #[arg(long, default_value = "")]
    role: String,
    /// The name of the profile created on approval (default: your name, simplified).
    #[arg(long)]
    profile_name: Option<String>,
}

#[derive(Debug, Subcommand)]
enum EnrollCommand {
    /// Ask whether the application was decided; on approval the profile is written.
    Status {
        application: Option<String>,
        /// Keep asking every 5 s until it is decided.
        #[arg(long)]
        wait: bool,
    },
    /// Prove your claims by logging in at an identity provider the deployment trusts.
    Verify {
        application: Option<String>,
        /// Without it, the providers are listed.
        #[arg(long)]
        provider: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// List applications.
    Applications {
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
    },
    /// One application.
    #[command(subcommand)]
    Application(ApplicationCommand),
    /// Approve an application, fixing the member's attributes (`--attr country=EE`).
    Approve {
        application: String,
        #[arg(long = "attr")]
        attrs: Vec<String>,
    },
    /// Reject an application.
    Reject {
        application: String,
        #[arg(long)]
        reason: String,
    },
    /// List members.
    Members,
    /// Members: history, attributes.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Suspend a member: live sessions end, requests are refused until reinstated.
    Suspend {
        member: MemberId,
        #[arg(long)]
        reason: String,
    },
    /// Reinstate a suspended member.
    Reinstate {
        member: MemberId,
        #[arg(long)]
        reason: String,
    },
    /// Revoke a member for good: certificates revoked, live sessions cut.
    Revoke {
        member: MemberId,
        #[arg(long)]
        reason: String,
    },
    /// Access policies (Cedar): the deployment's, or a room's (its admin may change it too).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The server's master key.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Replace the master key that seals the server's store, while it keeps serving.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// The newest entries; with --follow, keep printing new ones.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        #[arg(long)]
        follow: bool,
    },
    /// Every entry after a sequence number, as JSON lines.
    Export {
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the policy of ROOM, or of the deployment.
    Get { room: Option<RoomName> },
    /// Replace it, after validation against the schema.
    Set {
        room: Option<RoomName>,
        #[command(flatten)]
        source: PolicySource,
    },
    /// Dry run: who would gain or lose access; nothing changes.
    Test {
        room: Option<RoomName>,
        #[command(flatten)]
        source: PolicySource,
    },
    /// The ready policies to start from.
    Templates,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PolicySource {
    /// A file of Cedar policies.
    #[arg(long)]
    file: Option<PathBuf>,
    /// A template by name (see `escape admin policy templates`).
    #[arg(long)]
    template: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StatusFilter {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Subcommand)]
enum ApplicationCommand {
    Show { application: String },
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// Every recorded change of a member.
    History { member: MemberId },
    /// Change attributes (`--attr role=cert-lead`).
    Set {
        member: MemberId,
        #[arg(long = "attr", required = true)]
        attrs: Vec<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ESCAPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    match &cli.command {
        // Lines on stderr would tear the full screen: a file, or nothing.
        Command::Tui {
            log: Some(path), ..
        } => match std::fs::File::create(path) {
            Ok(file) => tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init(),
            Err(e) => {
                eprintln!("escape: {}: {e}", path.display());
                return ExitCode::from(3);
            }
        },
        Command::Tui { log: None, .. } => {}
        _ => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
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
        Command::Enroll(args) => return enrollment(&profiles, args, json).await,
        command => command,
    };
    let client = Client::new(profiles.load(cli.profile.as_deref())?).await?;
    match command {
        Command::Profile(_) | Command::Enroll(_) => unreachable!("handled above"),
        Command::Whoami => {
            let me = client.me().await?;
            print(json, &me, || output::member(&me));
        }
        Command::Rooms => {
            let rooms = client.rooms().await?;
            print(json, &rooms, || output::rooms(&rooms));
        }
        Command::Room(RoomCommand::Set {
            room,
            topic,
            history,
            retention_days,
            invite_only,
        }) => {
            let settings = escape_proto::room::RoomSettings {
                topic,
                history,
                retention_days,
                invite_only,
            };
            let summary = client.update_room_settings(&room, &settings).await?;
            print(json, &summary, || format!("{} updated", summary.name));
        }
        Command::Room(RoomCommand::Invite { room, member }) => {
            client.invite_to_room(&room, &member).await?;
            print(
                json,
                &serde_json::json!({"room": room, "invited": member}),
                || format!("{member} may now join {room}"),
            );
        }
        Command::Room(RoomCommand::Remove {
            room,
            member,
            reason,
        }) => {
            client.remove_member(&room, &member, reason).await?;
            print(
                json,
                &serde_json::json!({"room": room, "removed": member}),
                || {
                    format!(
                        "removed {member} from {room}; its file key rotates before the next upload"
                    )
                },
            );
        }
        Command::Room(RoomCommand::Create {
            name,
            topic,
            tlp_max,
            classification,
            tags,
            history_for_joiners,
        }) => {
            let request = escape_proto::room::CreateRoom {
                name,
                topic,
                tlp_max,
                classification,
                tags,
                history_for_joiners,
            };
            let room = client.create_room_with(&request).await?;
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
            reply_to,
            mentions,
        } => {
            let text = message_text(text)?;
            let body = Body::Text {
                text,
                reply_to,
                mentions,
            };
            send(&client, json, room, body, client_msg_id).await?
        }
        Command::Edit { room, seq, text } => {
            let body = Body::Edit {
                target: seq,
                text: message_text(text)?,
            };
            send(&client, json, room, body, None).await?
        }
        Command::Redact { room, seq, reason } => {
            client.redact(&room, seq, reason).await?;
            print(
                json,
                &serde_json::json!({"room": room, "redacted": seq}),
                || format!("removed {room}#{seq} for everyone"),
            );
        }
        Command::Who { room } => {
            let people = client.presence(&room).await?;
            print(json, &people, || {
                people
                    .iter()
                    .map(|p| {
                        format!(
                            "{:<8} {}  {}",
                            format!("{:?}", p.status).to_lowercase(),
                            output::clean(&p.name),
                            p.member
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Read { room, seq } => {
            let summary = client.mark_read(&room, seq.unwrap_or(u64::MAX)).await?;
            print(json, &summary, || {
                format!("{} read; {} unread", summary.name, summary.unread)
            });
        }
        Command::Search { text, room } => {
            let found = client.search(&text.join(" "), room.as_ref()).await?;
            print(json, &found, || {
                if found.is_empty() {
                    "nothing found in the rooms you may read".to_owned()
                } else {
                    found
                        .iter()
                        .map(|e| format!("{:<16} {}", e.room.to_string(), output::event(e)))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
        }
        Command::History {
            room,
            before,
            after,
            limit,
        } => {
            let query = HistoryQuery {
                before,
                after,
                limit: Some(limit),
            };
            let page = client.history(&room, &query).await?;
            print(json, &page, || {
                let mut out: Vec<String> = page.messages.iter().map(output::event).collect();
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
        Command::Tail { room, since, count } => tail(client, json, room, since, count).await?,
        Command::Tui { mouse, .. } => {
            if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
                return Err(ClientError::Io {
                    path: "standard input and output".into(),
                    source: std::io::Error::other(
                        "`escape tui` needs a terminal; scripts use the other commands",
                    ),
                });
            }
            let options = escape_client::tui::Options {
                places: escape_client::tui::Places {
                    resume_dir: profiles.root().join("uploads").join(&client.profile().name),
                },
                mouse,
                theme: escape_client::tui::Theme::from_env(),
            };
            escape_client::tui::run(client, options).await?
        }
        Command::Upload { room, path } => {
            let resume_dir = profiles.root().join("uploads").join(&client.profile().name);
            cli::files::upload(&client, json, &room, &path, &resume_dir).await?
        }
        Command::Files { room } => cli::files::list(&client, json, &room).await?,
        Command::Ioc(command) => ioc(&client, json, command).await?,
        Command::Alert(command) => cli::alerts::run(&client, json, command_of(command)).await?,
        Command::Download {
            room,
            file_id,
            output,
        } => {
            cli::files::download(&client, json, &room, &file_id, output.as_deref()).await?;
        }
        Command::Invite(InviteCommand::Create { expires }) => {
            cli::vetting::invite(&client, json, expires).await?
        }
        Command::Vouch {
            application,
            comment,
        } => cli::vetting::vouch(&client, json, &application, comment).await?,
        Command::Directory {
            country,
            sector,
            organisation,
        } => {
            let query = DirectoryQuery {
                country,
                sector,
                organisation,
            };
            cli::vetting::directory(&client, json, &query).await?;
        }
        Command::Publish {
            email,
            country,
            sector,
            role,
        } => {
            let published = Published {
                email,
                country,
                sector,
                role,
            };
            cli::vetting::publish(&client, json, published).await?;
        }
        Command::Renew { new_key } => {
            cli::vetting::renew(&client, &profiles, json, new_key).await?
        }
        Command::Admin(command) => admin(&client, json, command).await?,
    }
    Ok(())
}

async fn admin(client: &Client, json: bool, command: AdminCommand) -> Result<(), ClientError> {
    use cli::vetting as v;
    match command {
        AdminCommand::Applications { status } => {
            let status = status.map(|s| match s {
                StatusFilter::Pending => ApplicationStatus::Pending,
                StatusFilter::Approved => ApplicationStatus::Approved,
                StatusFilter::Rejected => ApplicationStatus::Rejected,
            });
            v::applications(client, json, status).await
        }
        AdminCommand::Application(ApplicationCommand::Show { application }) => {
            let app = client.application(&application).await?;
            print(json, &app, || v::application_detail(&app));
            Ok(())
        }
        AdminCommand::Approve { application, attrs } => {
            let app = client.approve(&application, v::attributes(&attrs)?).await?;
            print(json, &app, || {
                format!(
                    "approved {}: member {}",
                    output::clean(&app.claims.name),
                    app.member_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )
            });
            Ok(())
        }
        AdminCommand::Reject {
            application,
            reason,
        } => {
            let app = client.reject(&application, reason).await?;
            print(json, &app, || {
                format!("rejected {}", output::clean(&app.claims.name))
            });
            Ok(())
        }
        AdminCommand::Members => {
            let members = client.members().await?;
            print(json, &members, || {
                members
                    .iter()
                    .map(|m| {
                        format!(
                            "{}  {:<9} {}{} | {}",
                            m.id,
                            format!("{:?}", m.status).to_lowercase(),
                            output::clean(&m.name),
                            if m.admin { " (admin)" } else { "" },
                            output::clean(&m.attributes.organisation)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        AdminCommand::Member(MemberCommand::History { member }) => {
            let history = client.member_history(&member).await?;
            print(json, &history, || {
                history
                    .changes
                    .iter()
                    .map(|c| {
                        format!(
                            "v{} {} by {}: {}{}",
                            c.version,
                            output::timestamp(c.at),
                            c.by,
                            c.changes
                                .iter()
                                .map(|x| output::clean(x))
                                .collect::<Vec<_>>()
                                .join("; "),
                            if c.reason.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", output::clean(&c.reason))
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        AdminCommand::Member(MemberCommand::Set {
            member,
            attrs,
            reason,
        }) => {
            let updated = client
                .update_attributes(&member, v::attributes(&attrs)?, reason)
                .await?;
            print(json, &updated, || output::member(&updated));
            Ok(())
        }
        AdminCommand::Suspend { member, reason } => {
            v::lifecycle(client, json, &member, StatusChange::Suspend, reason).await
        }
        AdminCommand::Reinstate { member, reason } => {
            v::lifecycle(client, json, &member, StatusChange::Reinstate, reason).await
        }
        AdminCommand::Revoke { member, reason } => {
            v::lifecycle(client, json, &member, StatusChange::Revoke, reason).await
        }
        AdminCommand::Policy(command) => policy(client, json, command).await,
        AdminCommand::Audit(command) => audit(client, json, command).await,
        AdminCommand::Keys(KeysCommand::Rotate) => {
            let rotated = client.rotate_master_key().await?;
            print(json, &rotated, || {
                format!(
                    "master key rotated: {} data keys re-wrapped to {}",
                    rotated.data_keys,
                    output::clean(&rotated.recipient)
                )
            });
            Ok(())
        }
    }
}

async fn ioc(client: &Client, json: bool, command: IocCommand) -> Result<(), ClientError> {
    use cli::ioc;
    match command {
        IocCommand::Share {
            room,
            file,
            tlp,
            values,
            kind,
            confidence,
            description,
            tags,
            kill_chain_phase,
        } => {
            let template = ioc::Template {
                tlp,
                kind,
                confidence,
                description,
                tags,
                kill_chain_phase,
            };
            ioc::share(client, json, &room, file.as_deref(), &values, template).await
        }
        IocCommand::List { room } => ioc::list(client, json, &room).await,
        IocCommand::Search { value, kind } => ioc::search(client, json, &value, kind).await,
        IocCommand::Sight { room, seq, note } => ioc::sight(client, json, &room, seq, note).await,
        IocCommand::Relabel { room, seq, tlp } => {
            ioc::relabel(client, json, &room, seq, &tlp).await
        }
        IocCommand::Forward { room, seq, to } => ioc::forward(client, json, &room, seq, &to).await,
        IocCommand::Export { room, output } => ioc::export(client, &room, output.as_deref()).await,
    }
}

async fn audit(client: &Client, json: bool, command: AuditCommand) -> Result<(), ClientError> {
    let line = |e: &escape_proto::audit::AuditEntry| {
        format!(
            "#{:<6} {}  {:<22} {} {} {}",
            e.seq,
            output::timestamp(e.at),
            e.action,
            e.actor
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "-".into()),
            output::clean(&e.subject),
            output::clean(&e.detail)
        )
    };
    match command {
        AuditCommand::Export { since } => {
            let mut after = since;
            loop {
                let page = client.audit(after, 1000).await?;
                for entry in &page {
                    print(true, entry, String::new);
                }
                match page.last() {
                    Some(last) if page.len() == 1000 => after = last.seq,
                    _ => return Ok(()),
                }
            }
        }
        AuditCommand::Tail { lines, follow } => {
            // Find the head by paging, then print the last `lines`.
            let mut after = 0;
            let mut recent: std::collections::VecDeque<escape_proto::audit::AuditEntry> =
                Default::default();
            loop {
                let page = client.audit(after, 1000).await?;
                let full = page.len() == 1000;
                for entry in page {
                    after = entry.seq;
                    recent.push_back(entry);
                    if recent.len() as u64 > lines {
                        recent.pop_front();
                    }
                }
                if !full {
                    break;
                }
            }
            for entry in &recent {
                print(json, entry, || line(entry));
            }
            if follow {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    for entry in client.audit(after, 1000).await? {
                        after = entry.seq;
                        print(json, &entry, || line(&entry));
                    }
                }
            }
            Ok(())
        }
    }
}

async fn policy_text(client: &Client, source: PolicySource) -> Result<String, ClientError> {
    if let Some(path) = source.file {
        return std::fs::read_to_string(&path).map_err(|e| ClientError::Io { path, source: e });
    }
    let name = source.template.unwrap_or_default();
    let templates = client.policy_templates().await?;
    let names: Vec<String> = templates.iter().map(|t| t.name.clone()).collect();
    templates
        .into_iter()
        .find(|t| t.name == name)
        .map(|t| t.text)
        .ok_or_else(|| {
            ClientError::BadProfile(format!(
                "no template {name:?}; there are: {}",
                names.join(", ")
            ))
        })
}

async fn policy(client: &Client, json: bool, command: PolicyCommand) -> Result<(), ClientError> {
    let scope = |room: &Option<RoomName>| {
        room.as_ref()
            .map_or("the deployment".to_owned(), |r| format!("room {r}"))
    };
    match command {
        PolicyCommand::Get { room } => {
            let doc = client.policy(room.as_ref()).await?;
            print(json, &doc, || {
                let origin = if doc.version == 0 {
                    "default".to_owned()
                } else {
                    format!("version {}", doc.version)
                };
                format!(
                    "// policy of {} ({origin})\n{}",
                    scope(&room),
                    doc.text.trim_end()
                )
            });
        }
        PolicyCommand::Set { room, source } => {
            let text = policy_text(client, source).await?;
            let doc = client.set_policy(room.as_ref(), text).await?;
            print(json, &doc, || {
                format!("policy of {} is now version {}", scope(&room), doc.version)
            });
        }
        PolicyCommand::Test { room, source } => {
            let text = policy_text(client, source).await?;
            let impact = client.test_policy(room.as_ref(), text).await?;
            print(json, &impact, || {
                let mut lines = vec![format!(
                    "dry run for {}: {} of {} active members would change",
                    scope(&room),
                    impact.changes.len(),
                    impact.members_checked
                )];
                for c in &impact.changes {
                    let mut parts = Vec::new();
                    if !c.gains.is_empty() {
                        parts.push(format!("gains {}", c.gains.join(", ")));
                    }
                    if !c.loses.is_empty() {
                        parts.push(format!("loses {}", c.loses.join(", ")));
                    }
                    lines.push(format!(
                        "  {} ({}): {}",
                        output::clean(&c.name),
                        c.member,
                        parts.join("; ")
                    ));
                }
                lines.join("\n")
            });
        }
        PolicyCommand::Templates => {
            let templates = client.policy_templates().await?;
            print(json, &templates, || {
                templates
                    .iter()
                    .map(|t| format!("{:<22} {}", t.name, t.admits))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

async fn enrollment(
    profiles: &ProfileStore,
    args: EnrollArgs,
    json: bool,
) -> Result<(), ClientError> {
    match args.command {
        Some(EnrollCommand::Status { application, wait }) => {
            return cli::vetting::status(profiles, json, application.as_deref(), wait).await;
        }
        Some(EnrollCommand::Verify {
            application,
            provider,
        }) => {
            return cli::vetting::verify(
                profiles,
                json,
                application.as_deref(),
                provider.as_deref(),
            )
            .await;
        }
        None => {}
    }
    // clap makes these required when no subcommand is given.
    let missing = || {
        ClientError::BadProfile("missing enrollment arguments; see `escape enroll --help`".into())
    };
    let name = args.name.ok_or_else(missing)?;
    let claims = Claims {
        name: name.clone(),
        email: args.email.ok_or_else(missing)?,
        organisation: args.organisation.ok_or_else(missing)?,
        country: args.country.ok_or_else(missing)?,
        sector: args.sector,
        role: args.role,
    };
    let profile = args.profile_name.unwrap_or_else(|| {
        let simple: String = name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        simple.trim_matches('-').to_owned()
    });
    let server = args.server.ok_or_else(missing)?;
    let invite = args.invite.ok_or_else(missing)?;
    cli::vetting::apply(profiles, json, &server, &invite, claims, &profile).await
}

/// Sends once, retrying on a lost connection with the same client message id, so a retry can
/// never store the message twice.
async fn send(
    client: &Client,
    json: bool,
    room: RoomName,
    body: Body,
    client_msg_id: Option<String>,
) -> Result<(), ClientError> {
    let client_msg_id = client_msg_id.unwrap_or_else(new_client_msg_id);
    let mut attempt = 0;
    let ack = loop {
        attempt += 1;
        let result = async {
            let mut channel = Channel::connect(client).await?;
            let ack = channel.send(&room, &client_msg_id, body.clone()).await?;
            channel.close().await;
            Ok::<_, ClientError>(ack)
        }
        .await;
        match result {
            Ok(ack) => break ack,
            Err(e @ (ClientError::Connect { .. } | ClientError::Closed(_))) if attempt < 3 => {
                eprintln!("escape: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
            }
            Err(
                e @ ClientError::Server {
                    code: ErrorCode::Internal,
                    ..
                },
            ) if attempt < 3 => {
                eprintln!("escape: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
            }
            Err(e) => {
                eprintln!(
                    "escape: the message may or may not be stored; retry safely with --client-msg-id {client_msg_id}"
                );
                return Err(e);
            }
        }
    };
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
    Ok(())
}

async fn tail(
    client: Client,
    json: bool,
    room: RoomName,
    since: Option<u64>,
    count: Option<u64>,
) -> Result<(), ClientError> {
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
            print(json, &event, || output::event(&event));
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        TailEvent::Mention {
            room: in_room,
            seq,
            from_name,
            excerpt,
        } => {
            eprintln!(
                "@ {} mentioned you in {in_room}#{seq}: {}",
                output::clean(&from_name),
                output::clean(&excerpt)
            );
            ControlFlow::Continue(())
        }
        TailEvent::Alert(alert) => {
            if json {
                print(json, &alert, String::new);
            } else {
                // On stderr, so a piped stream of messages stays messages.
                eprintln!("{}", cli::alerts::line(&alert));
            }
            ControlFlow::Continue(())
        }
        TailEvent::Disconnected { reason, retry_in } => {
            eprintln!(
                "disconnected: {reason}; reconnecting in {} ms",
                retry_in.as_millis()
            );
            ControlFlow::Continue(())
        }
    })
    .await
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
        ProfileCommand::SetServer { name, server } => {
            let profile = profiles.set_server(&name, &server)?;
            print(
                json,
                &serde_json::json!({"name": profile.name, "server": profile.server}),
                || {
                    format!(
                        "profile {} now connects to {}",
                        profile.name, profile.server
                    )
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
