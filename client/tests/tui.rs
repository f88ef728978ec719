//! `escape tui` driven as a member drives it: the real binary in a pseudo-terminal, keys typed
//! into it, the screen read back through a terminal emulator, against a real server over mutual
//! TLS. Another member, on the library client, is on the other side of each exchange.
//!
//! The day's work in one session: join a room, read, send, reply, share an indicator, upload a
//! file, download another member's file, acknowledge an alert; then the server restarts under
//! the client, which reconnects by itself and sends what was typed meanwhile exactly once.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use escape_client::{Client, Profile, files};
use escape_proto::alert::{SendAlert, Severity};
use escape_proto::room::{CreateRoom, HistoryQuery};
use escape_proto::{Attributes, Body, ProfileBundle, RoomName};
use escape_server::config::Config;

const ROWS: u16 = 32;
const COLUMNS: u16 = 120;
/// How long one step may take on a busy 2-core machine.
const STEP: Duration = Duration::from_secs(30);

/// The client running in a pseudo-terminal, killed if the test fails.
struct Terminal {
    pty: Arc<pty_process::blocking::Pty>,
    screen: Arc<Mutex<vt100::Parser>>,
    child: std::process::Child,
}

impl Terminal {
    fn start(config_dir: &Path, work_dir: &Path) -> Self {
        let (pty, pts) = pty_process::blocking::open().expect("open a pty");
        pty.resize(pty_process::Size::new(ROWS, COLUMNS))
            .expect("size the pty");
        let child = pty_process::blocking::Command::new(env!("CARGO_BIN_EXE_escape"))
            .arg("tui")
            .env("ESCAPE_CONFIG_DIR", config_dir)
            .env("TERM", "xterm-256color")
            .env_remove("ESCAPE_PROFILE")
            .env_remove("NO_COLOR")
            .current_dir(work_dir)
            .spawn(pts)
            .expect("spawn escape tui");
        let pty = Arc::new(pty);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            ROWS.try_into().expect("rows"),
            COLUMNS.try_into().expect("columns"),
            0,
        )));
        let (reader, parser) = (pty.clone(), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match (&*reader).read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => parser.lock().expect("screen").process(&buf[..n]),
                }
            }
        });
        Self { pty, screen, child }
    }

    fn contents(&self) -> String {
        self.screen.lock().expect("screen").screen().contents()
    }

    fn keys(&self, text: &str) {
        (&*self.pty).write_all(text.as_bytes()).expect("type");
        (&*self.pty).flush().expect("flush");
    }

    /// Types a line and presses Enter.
    async fn line(&self, text: &str) {
        self.keys(text);
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.keys("\r");
    }

    /// Waits until the screen shows `text`.
    async fn wait_for(&self, text: &str) {
        self.wait_until(text, |screen| screen.contains(text)).await;
    }

    /// Polls the screen without blocking the runtime (the server runs on it too).
    async fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + STEP;
        loop {
            let screen = self.contents();
            if done(&screen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {STEP:?} for {what:?}; the screen shows:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn profile(path: &Path, addr: SocketAddr) -> Profile {
    let bundle: ProfileBundle =
        serde_json::from_str(&std::fs::read_to_string(path).expect("profile")).expect("json");
    let mut profile = Profile::from_bundle(bundle).expect("profile");
    profile.server = addr.to_string();
    profile
}

/// Polls `check` (an async condition on the server's state) until it holds.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STEP;
    while !check().await {
        assert!(Instant::now() < deadline, "waited {STEP:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn texts(admin: &Client, room: &RoomName) -> Vec<(String, Body)> {
    let page = admin
        .history(
            room,
            &HistoryQuery {
                limit: Some(200),
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("history");
    page.messages
        .into_iter()
        .map(|e| (e.sender_name, e.body))
        .collect()
}

async fn start_on(config: &Config, addr: SocketAddr) -> escape_server::RunningServer {
    // The old listener may take a moment to let the port go.
    let deadline = Instant::now() + STEP;
    loop {
        let mut config = config.clone();
        config.listen = addr;
        match escape_server::start(config).await {
            Ok(server) => return server,
            Err(e) => {
                assert!(Instant::now() < deadline, "restart on {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The member both end-to-end tests enroll as "bo".
fn analyst_fi() -> Attributes {
    Attributes {
        organisation: "NCSC-FI".into(),
        country: "FI".into(),
        sector: "government".into(),
        role: "analyst".into(),
        clearance: 1,
        vetting: "vetted".into(),
        clients: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_work_in_the_terminal_client() {
    let (data, _keys, done, config) = common::new_deployment();
    let (_, bo_bundle) = common::add_member(&config, data.path(), "bo", analyst_fi());
    let server = escape_server::start(config.clone()).await.expect("start");
    let addr = server.local_addr();
    let admin = Client::new(profile(&done.admin_profile, addr))
        .await
        .expect("admin client");
    let ops = RoomName::parse("ops").expect("room");
    let mut create = CreateRoom::new(ops.clone(), "incident 42");
    create.tlp_max = Some("AMBER".into());
    admin.create_room_with(&create).await.expect("create ops");
    send_message(&admin, &ops, "first light from the admin").await;

    // Bo imports the profile an operator handed over, then opens the terminal client.
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let import = std::process::Command::new(env!("CARGO_BIN_EXE_escape"))
        .args(["profile", "import"])
        .arg(&bo_bundle)
        .args(["--server", &addr.to_string()])
        .env("ESCAPE_CONFIG_DIR", home.path())
        .output()
        .expect("import");
    assert!(import.status.success(), "{import:?}");
    let tui = Terminal::start(home.path(), work.path());
    tui.wait_for("● online").await;
    tui.wait_for("bo (NCSC-FI)").await;
    // Not joined yet: the room is listed with its ceiling and how to join.
    tui.wait_for("+ops").await;
    tui.wait_for("/join to join #ops").await;

    // Join, and read what was said before.
    tui.line("/join ops").await;
    tui.wait_for("message to #ops").await;
    tui.wait_for("#1 admin").await;
    tui.wait_for("first light from the admin").await;

    // Send; the other member reads it from the server.
    tui.line("hello from the terminal").await;
    eventually("bo's message stored", || async {
        texts(&admin, &ops)
            .await
            .iter()
            .any(|(who, body)| who == "bo" && *body == Body::text("hello from the terminal"))
    })
    .await;
    tui.wait_until("the message stored, not pending", |s| {
        s.contains("#2 bo (NCSC-FI): hello from the terminal") && !s.contains("sending…")
    })
    .await;

    // The other member answers live; then bo replies in a thread.
    send_message(&admin, &ops, "seen, thanks").await;
    tui.wait_for("#3 admin").await;
    tui.wait_for("seen, thanks").await;
    tui.line("/reply 3 will report at noon").await;
    eventually("the reply stored", || async {
        texts(&admin, &ops)
            .await
            .iter()
            .any(|(_, body)| *body == Body::reply(3, "will report at noon"))
    })
    .await;
    tui.wait_for("↪ #3 will report at noon").await;

    // Share an indicator (GREEN: the whole room may read it, the other organisation too): the
    // label comes first, in the room and in the panel.
    tui.line("/ioc green hxxp://198.51.100.7/payload C2 server")
        .await;
    tui.wait_for("shared TLP:GREEN url http://198.51.100.7/payload in ops")
        .await;
    tui.wait_for("[TLP:GREEN] url").await;
    tui.wait_for("http://198.51.100.7/payload confidence 50 – C2 server")
        .await;
    tui.wait_for("indicators (1)").await;
    let shared = admin.indicators(&ops).await.expect("indicators");
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].indicator.value, "http://198.51.100.7/payload");
    assert_eq!(shared[0].indicator.source_organisation, "NCSC-FI");

    // Upload a file: encrypted on bo's machine, announced in the room.
    let report = work.path().join("report.bin");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&report, &bytes).expect("write report");
    tui.line(&format!("/upload {}", report.display())).await;
    tui.wait_for("shared report.bin in ops").await;
    tui.wait_for("] file report.bin").await;
    let listed = admin.files(&ops).await.expect("files");
    assert!(listed.iter().any(|f| f.name == "report.bin"));

    // Download a file the other member shared: decrypted and verified here.
    let admin_identity = files::file_identity(admin.profile()).expect("admin age key");
    let notes = work.path().join("notes-from-admin.txt");
    std::fs::write(
        &notes,
        b"indicators of the second wave, for CERT eyes only\n",
    )
    .expect("write notes");
    files::upload(
        &admin,
        &ops,
        &notes,
        &admin_identity,
        None,
        files::no_progress(),
    )
    .await
    .expect("admin uploads");
    // The panel lists it once the room's keys reached bo (the panel refresh syncs them).
    tui.wait_for("files (2)").await;
    let saved = work.path().join("saved.txt");
    tui.line(&format!(
        "/download notes-from-admin.txt {}",
        saved.display()
    ))
    .await;
    tui.wait_for("size and SHA-256 verified").await;
    assert_eq!(
        std::fs::read(&saved).expect("downloaded"),
        std::fs::read(&notes).expect("original")
    );

    // An alert for Finland's members: impossible to miss, acknowledged with Ctrl-G.
    let report = admin
        .send_alert(&SendAlert {
            to: "country=FI".into(),
            tlp: "GREEN".into(),
            severity: Severity::High,
            text: "Wiper seen at two energy operators".into(),
            dry_run: false,
        })
        .await
        .expect("alert");
    let alert = report.alert.expect("sent");
    tui.wait_for("⚠ ALERT 1/1 HIGH").await;
    tui.wait_for("Wiper seen at two energy operators").await;
    tui.keys("\x07");
    tui.wait_until("the alerts bar gone", |s| {
        !s.contains("⚠ ALERT") && s.contains("acknowledged")
    })
    .await;
    let status = admin.alert_status(&alert.id).await.expect("status");
    assert_eq!(status.acknowledged.len(), 1);
    assert_eq!(status.acknowledged[0].name, "bo");

    // The server goes away under the client: the screen says so, typed text is kept, and
    // what is sent meanwhile goes out once the server is back.
    tui.keys("typed while the server was away");
    server.shutdown().await;
    tui.wait_for("✕ offline").await;
    tui.wait_for("typed while the server was away").await;
    tui.keys("\r");
    tui.wait_for("(sending…)").await;
    let server = start_on(&config, addr).await;
    tui.wait_for("● online").await;
    eventually("the queued message stored", || async {
        texts(&admin, &ops)
            .await
            .iter()
            .any(|(_, body)| *body == Body::text("typed while the server was away"))
    })
    .await;
    tui.wait_until("the queued message delivered", |s| {
        s.contains("bo (NCSC-FI): typed while the server was away") && !s.contains("sending…")
    })
    .await;
    let stored = texts(&admin, &ops).await;
    assert_eq!(
        stored
            .iter()
            .filter(|(_, body)| *body == Body::text("typed while the server was away"))
            .count(),
        1,
        "sent exactly once"
    );

    // Quitting puts the terminal back and exits cleanly.
    let mut tui = tui;
    tui.keys("\x11");
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = tui.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "escape tui did not quit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    server.shutdown().await;
}

/// Sends a text message as the library client does.
async fn send_message(client: &Client, room: &RoomName, text: &str) {
    let mut channel = escape_client::Channel::connect(client)
        .await
        .expect("channel");
    channel
        .send(room, &escape_client::new_client_msg_id(), Body::text(text))
        .await
        .expect("send");
    channel.close().await;
}

/// The next update that `wanted` accepts; every update passed over on the way is returned too.
async fn until_update(
    updates: &mut tokio::sync::mpsc::UnboundedReceiver<escape_client::tui::app::Update>,
    what: &str,
    wanted: impl Fn(&escape_client::tui::app::Update) -> bool,
) -> Vec<escape_client::tui::app::Update> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let update = tokio::time::timeout(left, updates.recv())
            .await
            .unwrap_or_else(|_| panic!("waited {STEP:?} for {what}; saw {seen:?}"))
            .expect("link running");
        let done = wanted(&update);
        seen.push(update);
        if done {
            return seen;
        }
    }
}

/// The link alone, against a real server: a frame the server drops is reported without
/// reconnecting (the next message goes out on the same connection), and a suspension stops it
/// for good, failing what is sent afterwards instead of keeping it "sending" forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_reconnects_only_when_the_session_ends() {
    use escape_client::tui::app::{Connection, Update};
    use escape_client::tui::link::{self, LinkCommand};

    let (data, _keys, done, config) = common::new_deployment();
    let (bo_id, bo_bundle) = common::add_member(&config, data.path(), "bo", analyst_fi());
    let server = escape_server::start(config.clone()).await.expect("start");
    let addr = server.local_addr();
    let admin = Client::new(profile(&done.admin_profile, addr))
        .await
        .expect("admin");
    let ops = RoomName::parse("ops").expect("room");
    admin
        .create_room_with(&CreateRoom::new(ops.clone(), "link"))
        .await
        .expect("room");
    let bo = Client::new(profile(&bo_bundle, addr)).await.expect("bo");
    bo.join(&ops).await.expect("join");

    let (commands, commands_rx) = tokio::sync::mpsc::unbounded_channel();
    let (updates_tx, mut updates) = tokio::sync::mpsc::unbounded_channel();
    let _link = link::spawn(bo.clone(), commands_rx, updates_tx);
    until_update(&mut updates, "online", |u| {
        matches!(u, Update::Connection(Connection::Online))
    })
    .await;
    let send = |id: &str, text: String| LinkCommand::Send {
        room: ops.clone(),
        client_msg_id: id.to_owned(),
        body: Body::text(text),
    };
    commands
        .send(LinkCommand::Subscribe {
            room: ops.clone(),
            since: Some(0),
        })
        .expect("link");

    // Longer than the server takes: refused by the link at once, not queued, and the
    // connection goes on.
    commands
        .send(send("too-big", "x".repeat(100 * 1024)))
        .expect("link");
    commands
        .send(send("small", "still connected".into()))
        .expect("link");
    let seen = until_update(
        &mut updates,
        "the small message acknowledged",
        |u| matches!(u, Update::Acked { client_msg_id, .. } if client_msg_id == "small"),
    )
    .await;
    assert!(
        seen.iter().any(
            |u| matches!(u, Update::SendFailed { client_msg_id, .. } if client_msg_id == "too-big")
        ),
        "the oversized message fails by name: {seen:?}"
    );
    assert!(
        !seen.iter().any(|u| matches!(
            u,
            Update::Connection(Connection::Offline { .. } | Connection::Connecting)
        )),
        "no reconnection for a dropped frame: {seen:?}"
    );

    // Suspended: the link stops and says why; a message sent now fails at once.
    admin
        .set_status(
            &bo_id,
            escape_proto::vetting::StatusChange::Suspend,
            "review".into(),
        )
        .await
        .expect("suspend");
    until_update(&mut updates, "stopped", |u| {
        matches!(u, Update::Connection(Connection::Stopped(_)))
    })
    .await;
    commands
        .send(send("after", "after the suspension".into()))
        .expect("link");
    until_update(
        &mut updates,
        "the late message failed",
        |u| matches!(u, Update::SendFailed { client_msg_id, .. } if client_msg_id == "after"),
    )
    .await;
    server.shutdown().await;
}
