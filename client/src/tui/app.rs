//! The client's state and everything that changes it: keys the member presses and news from
//! the server ([`Update`]). What the state wants done outside ([`Effect`]) is queued and carried
//! out by the link (real-time channel) and the worker (HTTP calls, transfers), whose answers come
//! back as updates. Nothing here touches the network or the terminal, so every behaviour is
//! tested by feeding keys and updates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use escape_proto::alert::{Alert, AlertReport, SendAlert};
use escape_proto::file::FileInfo;
use escape_proto::indicator::{IndicatorDraft, IndicatorRecord, ShareOutcome, ShareReport};
use escape_proto::room::{HistoryPage, Presence, RoomSummary};
use escape_proto::{Body, Event, Member, RoomName};

use super::commands::{self, Command, Line};
use super::link::LinkCommand;
use super::theme::Theme;
use crate::files::Stage;

/// Messages asked for at a time: on subscription and for each step back in history.
pub const PAGE: u64 = 50;
/// How long "X is typing" stays up without another notice.
const TYPING_SHOWN: Duration = Duration::from_secs(6);
/// How often this member's own typing is announced.
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// How long an informational status stays (errors stay until the next status).
const INFO_SHOWN: Duration = Duration::from_secs(12);
const QUIT_WARNING: &str = "not quitting yet";
/// The longest message the server takes by default (its `max_body_bytes`).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// The real-time channel's state, always shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Online,
    /// Lost; the link tries again at `retry_at`.
    Offline {
        reason: String,
        retry_at: Instant,
    },
    /// Refused for a reason retrying cannot cure (revoked, suspended).
    Stopped(String),
}

/// News for the state: from the link, the worker, or the clock.
#[derive(Debug, Clone)]
pub enum Update {
    Connection(Connection),
    Me(Member),
    Rooms(Vec<RoomSummary>),
    Joined(RoomSummary),
    Left(RoomName),
    Event(Box<Event>),
    /// A message was durably stored.
    Acked {
        room: RoomName,
        client_msg_id: String,
    },
    /// A message was refused; it stays in the pane, marked, so nothing typed is lost.
    SendFailed {
        room: RoomName,
        client_msg_id: String,
        error: String,
    },
    /// The link could not follow a room (left, removed, refused).
    SubscriptionFailed {
        room: RoomName,
        error: String,
    },
    History(HistoryPage),
    HistoryFailed(RoomName, String),
    Indicators(RoomName, Vec<IndicatorRecord>),
    Files(RoomName, Vec<FileInfo>),
    Shared(RoomName, ShareReport),
    Alert(Box<Alert>),
    PendingAlerts(Vec<Alert>),
    AlertAcked(String),
    AlertSent(Box<AlertReport>),
    Mention {
        room: RoomName,
        seq: u64,
        from_name: String,
        excerpt: String,
    },
    Typing {
        room: RoomName,
        name: String,
    },
    SearchResults {
        query: String,
        hits: Vec<Event>,
    },
    Who(RoomName, Vec<Presence>),
    Transfer {
        id: u64,
        stage: Stage,
        done: u64,
        total: u64,
    },
    TransferDone {
        id: u64,
        outcome: Result<String, String>,
    },
    Info(String),
    Error(String),
}

/// Work the state asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Over the real-time channel.
    Link(LinkCommand),
    Me,
    Rooms,
    PendingAlerts,
    Join(RoomName),
    Leave(RoomName),
    History {
        room: RoomName,
        before: u64,
    },
    /// The side panel's indicators and files (listing files also shares room keys with
    /// members who joined, as `escape files` does).
    Panel(RoomName),
    MarkRead {
        room: RoomName,
        seq: u64,
    },
    Share {
        room: RoomName,
        draft: IndicatorDraft,
    },
    Upload {
        id: u64,
        room: RoomName,
        path: PathBuf,
    },
    Download {
        id: u64,
        room: RoomName,
        file_id: String,
        output: Option<PathBuf>,
    },
    AckAlert(String),
    SendAlert(SendAlert),
    Search(String),
    Who(RoomName),
}

/// A message typed here that the server has not stored yet.
#[derive(Debug, Clone)]
pub struct Pending {
    pub client_msg_id: String,
    pub body: Body,
    pub failed: Option<String>,
}

/// A room as this client knows it.
#[derive(Debug, Clone)]
pub struct Room {
    pub summary: RoomSummary,
    pub messages: BTreeMap<u64, Event>,
    /// Older messages exist on the server.
    pub more_before: bool,
    pub loading_history: bool,
    /// Messages hidden below the bottom of the pane (0: following the newest).
    pub scroll: usize,
    pub indicators: Vec<IndicatorRecord>,
    pub files: Vec<FileInfo>,
    pub pending: Vec<Pending>,
    pub subscribed: bool,
    marked_read: u64,
    /// A read marker to send at the next tick (at most one request per room per tick).
    mark_due: Option<u64>,
    /// Events up to here are already in the server's unread count.
    counted_upto: u64,
    pub typing: Option<(String, Instant)>,
}

impl Room {
    fn new(summary: RoomSummary) -> Self {
        Self {
            marked_read: summary.head.saturating_sub(summary.unread),
            mark_due: None,
            counted_upto: summary.head,
            summary,
            messages: BTreeMap::new(),
            more_before: false,
            loading_history: false,
            scroll: 0,
            indicators: Vec::new(),
            files: Vec::new(),
            pending: Vec::new(),
            subscribed: false,
            typing: None,
        }
    }

    pub fn name(&self) -> &RoomName {
        &self.summary.name
    }

    /// Drops everything shown of a room no longer joined (however it was left); returns whether
    /// it was followed, so the caller stops following it.
    fn forget(&mut self) -> bool {
        self.messages.clear();
        self.pending.clear();
        self.indicators.clear();
        self.files.clear();
        self.scroll = 0;
        std::mem::replace(&mut self.subscribed, false)
    }

    /// Messages shown as lines of their own (edits and redactions change others instead).
    pub fn shown(&self) -> impl DoubleEndedIterator<Item = &Event> {
        self.messages
            .values()
            .filter(|e| !matches!(e.body, Body::Edit { .. } | Body::Redaction { .. }))
    }

    /// The newest text of message `seq`, after its sender's corrections.
    pub fn edited(&self, seq: u64) -> Option<&str> {
        self.messages.values().rev().find_map(|e| match &e.body {
            Body::Edit { target, text } if *target == seq => Some(text.as_str()),
            _ => None,
        })
    }
}

/// A file going up or down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: u64,
    pub label: String,
    pub stage: Option<Stage>,
    pub done: u64,
    pub total: u64,
}

/// The line at the bottom: what just happened, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
    pub at: Instant,
}

/// What covers the message pane for a moment.
#[derive(Debug, Clone)]
pub enum Overlay {
    Help,
    Search { query: String, hits: Vec<Event> },
    Who { room: RoomName, list: Vec<Presence> },
}

/// The text being typed, with a cursor (in characters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    pub text: String,
    pub cursor: usize,
}

impl Input {
    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn insert(&mut self, c: char) {
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    fn insert_str(&mut self, s: &str) {
        for c in s.chars() {
            // A pasted newline would send half a message: keep it as a space.
            self.insert(if c == '\n' || c == '\r' { ' ' } else { c });
        }
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.text.chars().count() {
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn delete_word(&mut self) {
        let chars: Vec<char> = self.text.chars().collect();
        let mut start = self.cursor.min(chars.len());
        while start > 0 && chars[start - 1] == ' ' {
            start -= 1;
        }
        while start > 0 && chars[start - 1] != ' ' {
            start -= 1;
        }
        let (from, to) = (self.byte_at(start), self.byte_at(self.cursor));
        self.text.replace_range(from..to, "");
        self.cursor = start;
    }

    fn set(&mut self, text: String) {
        self.cursor = text.chars().count();
        self.text = text;
    }

    fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }
}

/// Everything the screen shows.
#[derive(Debug)]
pub struct App {
    pub theme: Theme,
    pub server: String,
    pub me: Option<Member>,
    pub rooms: Vec<Room>,
    pub selected: usize,
    pub input: Input,
    recall: Vec<String>,
    recall_at: Option<usize>,
    pub connection: Connection,
    /// Alerts not yet acknowledged, oldest first.
    pub alerts: Vec<Alert>,
    pub status: Option<Status>,
    pub transfers: Vec<Transfer>,
    next_transfer: u64,
    pub overlay: Option<Overlay>,
    /// How far the help is scrolled.
    pub help_scroll: u16,
    /// Shown or hidden by Ctrl-T; by default shown when the terminal is wide enough.
    pub side_panel: Option<bool>,
    /// Messages that mention this member: (room, seq).
    pub mentions: BTreeSet<(RoomName, u64)>,
    /// The terminal's size (columns, rows).
    pub size: (u16, u16),
    last_typing: Option<(RoomName, Instant)>,
    effects: Vec<Effect>,
    pub quit: bool,
}

impl App {
    pub fn new(server: String, theme: Theme) -> Self {
        Self {
            theme,
            server,
            me: None,
            rooms: Vec::new(),
            selected: 0,
            input: Input::default(),
            recall: Vec::new(),
            recall_at: None,
            connection: Connection::Connecting,
            alerts: Vec::new(),
            status: None,
            transfers: Vec::new(),
            next_transfer: 0,
            overlay: None,
            help_scroll: 0,
            side_panel: None,
            mentions: BTreeSet::new(),
            size: (80, 24),
            last_typing: None,
            effects: vec![Effect::Me, Effect::Rooms, Effect::PendingAlerts],
            quit: false,
        }
    }

    /// The work asked for since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn selected_room(&self) -> Option<&Room> {
        self.rooms.get(self.selected)
    }

    fn selected_mut(&mut self) -> Option<&mut Room> {
        self.rooms.get_mut(self.selected)
    }

    fn room_mut(&mut self, name: &RoomName) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|r| r.name() == name)
    }

    /// Whether the indicators and files panel is shown at the current width.
    pub fn panel_shown(&self) -> bool {
        self.side_panel.unwrap_or(self.size.0 >= 110)
    }

    /// Roughly how many messages a page holds (for scrolling).
    fn page(&self) -> usize {
        usize::from(self.size.1.saturating_sub(10) / 2).max(3)
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
            at: Instant::now(),
        });
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
            at: Instant::now(),
        });
    }

    /// Time passes: typing notices and old news fade.
    pub fn tick(&mut self, now: Instant) {
        for room in &mut self.rooms {
            if let Some(seq) = room.mark_due.take() {
                self.effects.push(Effect::MarkRead {
                    room: room.name().clone(),
                    seq,
                });
            }
        }
        for room in &mut self.rooms {
            if room
                .typing
                .as_ref()
                .is_some_and(|(_, at)| now.duration_since(*at) > TYPING_SHOWN)
            {
                room.typing = None;
            }
        }
        if self
            .status
            .as_ref()
            .is_some_and(|s| !s.error && now.duration_since(s.at) > INFO_SHOWN)
        {
            self.status = None;
        }
    }

    pub fn resize(&mut self, columns: u16, rows: u16) {
        self.size = (columns, rows);
    }

    // ----- keys -----

    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if let Some(overlay) = &self.overlay {
            let help = matches!(overlay, Overlay::Help);
            match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::F(1) | KeyCode::Char('?') => {
                    self.overlay = None;
                    self.help_scroll = 0;
                    return;
                }
                KeyCode::PageDown | KeyCode::Down if help => {
                    let by = if key.code == KeyCode::Down { 1 } else { 10 };
                    self.help_scroll = (self.help_scroll + by).min(40);
                    return;
                }
                KeyCode::PageUp | KeyCode::Up if help => {
                    let by = if key.code == KeyCode::Up { 1 } else { 10 };
                    self.help_scroll = self.help_scroll.saturating_sub(by);
                    return;
                }
                KeyCode::Char('q' | 'c') if ctrl => {}
                // Typing goes on underneath; the overlay closes.
                _ => self.overlay = None,
            }
        }
        match key.code {
            KeyCode::Char('q' | 'c') if ctrl => self.ask_quit(),
            KeyCode::Char('u') if ctrl => {
                let at = self.input.byte_at(self.input.cursor);
                self.input.text.replace_range(..at, "");
                self.input.cursor = 0;
            }
            KeyCode::Char('w') if ctrl => self.input.delete_word(),
            KeyCode::Char('n') if ctrl => self.select_step(1),
            KeyCode::Char('p') if ctrl => self.select_step(-1),
            KeyCode::Down if alt => self.select_step(1),
            KeyCode::Up if alt => self.select_step(-1),
            KeyCode::Char('t') if ctrl => {
                let shown = self.panel_shown();
                self.side_panel = Some(!shown);
            }
            KeyCode::Char('g') if ctrl => self.run(Command::AlertAck(None)),
            KeyCode::End if ctrl => self.scroll_to_newest(),
            KeyCode::PageUp => self.scroll_up(self.page()),
            KeyCode::PageDown => self.scroll_down(self.page()),
            KeyCode::F(1) => self.overlay = Some(Overlay::Help),
            KeyCode::Char('?') if self.input.text.is_empty() => self.overlay = Some(Overlay::Help),
            KeyCode::Enter => self.submit(),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.cursor = self.input.cursor.saturating_sub(1),
            KeyCode::Right => {
                self.input.cursor = (self.input.cursor + 1).min(self.input.text.chars().count())
            }
            KeyCode::Home => self.input.cursor = 0,
            KeyCode::End => self.input.cursor = self.input.text.chars().count(),
            KeyCode::Up => self.recall_step(-1),
            KeyCode::Down => self.recall_step(1),
            KeyCode::Esc => self.status = None,
            KeyCode::Char(c) if !ctrl => {
                self.input.insert(c);
                self.typed();
            }
            _ => {}
        }
        self.settle();
    }

    pub fn on_paste(&mut self, text: &str) {
        self.input.insert_str(text);
    }

    pub fn on_mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll_up(3),
            MouseEventKind::ScrollDown => self.scroll_down(3),
            MouseEventKind::Down(_) => {
                // A click in the rooms list selects the room on that row.
                if let Some(index) = super::view::room_at(self, mouse.column, mouse.row) {
                    self.select(index);
                }
            }
            _ => {}
        }
        self.settle();
    }

    /// Rows the alerts bar takes (0 without alerts).
    pub fn alert_rows(&self) -> u16 {
        if self.alerts.is_empty() { 0 } else { 2 }
    }

    fn typed(&mut self) {
        if self.input.text.starts_with('/') {
            return;
        }
        let Some(room) = self.selected_room().filter(|r| r.summary.joined) else {
            return;
        };
        let name = room.name().clone();
        let now = Instant::now();
        let due = match &self.last_typing {
            Some((last, at)) => *last != name || now.duration_since(*at) >= TYPING_EVERY,
            None => true,
        };
        if due {
            self.last_typing = Some((name.clone(), now));
            self.effects.push(Effect::Link(LinkCommand::Typing(name)));
        }
    }

    fn recall_step(&mut self, step: isize) {
        if self.recall.is_empty() {
            return;
        }
        let last = self.recall.len() as isize;
        let at = self.recall_at.map_or(last, |i| i as isize) + step;
        if at >= last {
            self.recall_at = None;
            self.input.set(String::new());
        } else {
            let at = at.max(0) as usize;
            self.recall_at = Some(at);
            self.input.set(self.recall[at].clone());
        }
    }

    fn select_step(&mut self, step: isize) {
        if self.rooms.is_empty() {
            return;
        }
        let n = self.rooms.len() as isize;
        let next = (self.selected as isize + step).rem_euclid(n) as usize;
        self.select(next);
    }

    fn select(&mut self, index: usize) {
        if index == self.selected && self.rooms.get(index).is_some() {
            return;
        }
        self.selected = index;
        if let Some(room) = self.rooms.get(index).filter(|r| r.summary.joined) {
            self.effects.push(Effect::Panel(room.name().clone()));
        }
    }

    fn select_name(&mut self, name: &RoomName) {
        if let Some(index) = self.rooms.iter().position(|r| r.name() == name) {
            self.select(index);
        }
    }

    fn scroll_up(&mut self, by: usize) {
        let Some(room) = self.selected_mut() else {
            return;
        };
        let shown = room.shown().count();
        room.scroll = (room.scroll + by).min(shown.saturating_sub(1));
        if room.scroll + by >= shown
            && room.more_before
            && !room.loading_history
            && !room.messages.is_empty()
        {
            room.loading_history = true;
            let before = room.messages.keys().next().copied().unwrap_or(1);
            let name = room.name().clone();
            self.effects.push(Effect::History { room: name, before });
        }
    }

    fn scroll_down(&mut self, by: usize) {
        if let Some(room) = self.selected_mut() {
            room.scroll = room.scroll.saturating_sub(by);
        }
    }

    fn scroll_to_newest(&mut self) {
        if let Some(room) = self.selected_mut() {
            room.scroll = 0;
        }
    }

    /// After every change: the room on screen, followed to its newest message, is read.
    fn settle(&mut self) {
        let Some(room) = self.rooms.get_mut(self.selected) else {
            return;
        };
        if !room.summary.joined || room.scroll > 0 || self.overlay.is_some() {
            return;
        }
        let newest = room.messages.keys().next_back().copied().unwrap_or(0);
        if newest > room.marked_read {
            room.marked_read = newest;
            room.mark_due = Some(newest);
        }
        room.summary.unread = 0;
    }

    fn submit(&mut self) {
        let line = self.input.text.clone();
        if line.len() > MAX_MESSAGE_BYTES {
            // Said before the line is taken, so nothing typed is lost.
            self.error(format!(
                "the line is {} bytes; the server takes at most {MAX_MESSAGE_BYTES}: share long text as a file (/upload)",
                line.len()
            ));
            return;
        }
        match commands::parse(&line) {
            // The line stays so the mistake can be corrected.
            Err(e) => self.error(e),
            Ok(Line::Nothing) => {}
            Ok(Line::Message(text)) => {
                let Some(room) = self.joined_selected("send a message") else {
                    return;
                };
                self.remember_line();
                self.send(room, Body::text(text));
            }
            Ok(Line::Command(command)) => {
                self.remember_line();
                self.run(command);
            }
        }
    }

    fn remember_line(&mut self) {
        let line = self.input.take();
        self.recall_at = None;
        if self.recall.last() != Some(&line) {
            self.recall.push(line);
        }
        if self.recall.len() > 200 {
            self.recall.remove(0);
        }
    }

    /// The selected room, if this member has joined it; otherwise says why `what` cannot be done.
    fn joined_selected(&mut self, what: &str) -> Option<RoomName> {
        match self.selected_room() {
            Some(room) if room.summary.joined => Some(room.name().clone()),
            Some(room) => {
                let name = room.name().clone();
                self.error(format!(
                    "you have not joined {name}; type /join to join it, then {what}"
                ));
                None
            }
            None => {
                self.error(format!("no room selected; /join ROOM first, then {what}"));
                None
            }
        }
    }

    fn send(&mut self, room: RoomName, body: Body) {
        if body.size() > MAX_MESSAGE_BYTES {
            self.error(format!(
                "the message is {} bytes; the server takes at most {MAX_MESSAGE_BYTES}: share long text as a file (/upload)",
                body.size()
            ));
            return;
        }
        let client_msg_id = crate::channel::new_client_msg_id();
        if let Some(r) = self.room_mut(&room) {
            r.pending.push(Pending {
                client_msg_id: client_msg_id.clone(),
                body: body.clone(),
                failed: None,
            });
            r.scroll = 0;
        }
        self.effects.push(Effect::Link(LinkCommand::Send {
            room,
            client_msg_id,
            body,
        }));
    }

    fn run(&mut self, command: Command) {
        match command {
            Command::Join(name) => {
                let name = name.or_else(|| self.selected_room().map(|r| r.name().clone()));
                match name {
                    Some(name) => self.effects.push(Effect::Join(name)),
                    None => self.error("usage: /join ROOM"),
                }
            }
            Command::Leave(name) => {
                let name = name.or_else(|| self.selected_room().map(|r| r.name().clone()));
                match name {
                    Some(name) => self.effects.push(Effect::Leave(name)),
                    None => self.error("usage: /leave ROOM"),
                }
            }
            Command::Reply { seq, text } => {
                if let Some(room) = self.joined_selected("reply") {
                    self.send(room, Body::reply(seq, text));
                }
            }
            Command::Edit { seq, text } => {
                if let Some(room) = self.joined_selected("edit") {
                    self.send(room, Body::Edit { target: seq, text });
                }
            }
            Command::Mention { member, text } => {
                if let Some(room) = self.joined_selected("mention someone") {
                    let body = Body::Text {
                        text,
                        reply_to: None,
                        mentions: vec![member],
                    };
                    self.send(room, body);
                }
            }
            Command::Ioc {
                tlp,
                value,
                description,
            } => {
                if let Some(room) = self.joined_selected("share an indicator") {
                    let draft = IndicatorDraft {
                        value,
                        tlp: tlp.as_str().to_owned(),
                        description,
                        ..IndicatorDraft::default()
                    };
                    self.info(format!("sharing {} indicator in {room}…", tlp.as_str()));
                    self.effects.push(Effect::Share { room, draft });
                }
            }
            Command::Upload(path) => {
                if let Some(room) = self.joined_selected("upload") {
                    let id = self.new_transfer(format!("upload {}", path.display()));
                    self.effects.push(Effect::Upload { id, room, path });
                }
            }
            Command::Download { file, output } => {
                if let Some(room) = self.joined_selected("download") {
                    // The panel's list, and the files announced in the messages loaded so far.
                    let mut files = self
                        .selected_room()
                        .map(|r| r.files.clone())
                        .unwrap_or_default();
                    if let Some(room) = self.selected_room() {
                        for event in room.messages.values() {
                            if let Body::File {
                                file_id,
                                name,
                                size,
                                generation,
                            } = &event.body
                                && !files.iter().any(|f| &f.id == file_id)
                            {
                                files.push(FileInfo {
                                    id: file_id.clone(),
                                    room: event.room.clone(),
                                    name: name.clone(),
                                    size: *size,
                                    generation: *generation,
                                    sender: event.sender.clone(),
                                    sender_name: event.sender_name.clone(),
                                    shared_at: event.sent_at,
                                });
                            }
                        }
                    }
                    // An id, or a name from the files panel (the newest file of that name).
                    let found = files
                        .iter()
                        .find(|f| f.id == file)
                        .or_else(|| files.iter().rev().find(|f| f.name == file));
                    let (file_id, label) = match found {
                        Some(f) => (f.id.clone(), f.name.clone()),
                        None => (file.clone(), file),
                    };
                    let id = self.new_transfer(format!("download {label}"));
                    self.effects.push(Effect::Download {
                        id,
                        room,
                        file_id,
                        output,
                    });
                }
            }
            Command::AlertAck(id) => match id.or_else(|| self.alerts.first().map(|a| a.id.clone()))
            {
                Some(id) => self.effects.push(Effect::AckAlert(id)),
                None => self.info("no alert is waiting for your acknowledgement"),
            },
            Command::AlertSend {
                tlp,
                severity,
                to,
                text,
            } => self.effects.push(Effect::SendAlert(SendAlert {
                to,
                tlp: tlp.as_str().to_owned(),
                severity,
                text,
                dry_run: false,
            })),
            Command::Search(query) => {
                self.info(format!("searching for {query:?}…"));
                self.effects.push(Effect::Search(query));
            }
            Command::Who => {
                if let Some(room) = self.joined_selected("see who is there") {
                    self.effects.push(Effect::Who(room));
                }
            }
            Command::Refresh => {
                self.effects.push(Effect::Rooms);
                self.effects.push(Effect::PendingAlerts);
                if let Some(room) = self.selected_room().filter(|r| r.summary.joined) {
                    self.effects.push(Effect::Panel(room.name().clone()));
                }
            }
            Command::Help => self.overlay = Some(Overlay::Help),
            Command::Quit => self.ask_quit(),
        }
    }

    /// Quits, unless messages typed here are still on their way: then the first request warns.
    fn ask_quit(&mut self) {
        let unsent: usize = self
            .rooms
            .iter()
            .map(|r| r.pending.iter().filter(|p| p.failed.is_none()).count())
            .sum();
        let warned = self
            .status
            .as_ref()
            .is_some_and(|s| s.text.starts_with(QUIT_WARNING));
        if unsent == 0 || warned || matches!(self.connection, Connection::Stopped(_)) {
            self.quit = true;
        } else {
            self.error(format!(
                "{QUIT_WARNING}: {unsent} message(s) not yet stored by the server; quit again to drop them"
            ));
        }
    }

    fn new_transfer(&mut self, label: String) -> u64 {
        self.next_transfer += 1;
        let id = self.next_transfer;
        self.transfers.push(Transfer {
            id,
            label,
            stage: None,
            done: 0,
            total: 0,
        });
        id
    }

    // ----- news -----

    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Connection(state) => {
                if state == Connection::Online {
                    // Catch up on what changed while away (rooms joined elsewhere, unread counts).
                    self.effects.push(Effect::Rooms);
                    if self.me.is_none() {
                        self.effects.push(Effect::Me);
                    }
                }
                self.connection = state;
            }
            Update::Me(member) => self.me = Some(member),
            Update::Rooms(list) => self.merge_rooms(list),
            Update::Joined(summary) => {
                let name = summary.name.clone();
                self.merge_room(summary);
                self.subscribe_joined();
                self.sort_rooms();
                self.select_name(&name);
                if let Some(room) = self.selected_room().filter(|r| r.name() == &name) {
                    self.effects.push(Effect::Panel(room.name().clone()));
                }
                self.info(format!("joined {name}"));
            }
            Update::Left(name) => {
                if let Some(room) = self.room_mut(&name) {
                    room.summary.joined = false;
                    room.forget();
                }
                self.effects
                    .push(Effect::Link(LinkCommand::Unsubscribe(name.clone())));
                self.sort_rooms();
                self.info(format!("left {name}"));
            }
            Update::Event(event) => self.on_event(*event),
            Update::Acked {
                room,
                client_msg_id,
            } => {
                if let Some(r) = self.room_mut(&room) {
                    // Shown as pending until the stored event arrives (it carries the same id).
                    if r.messages
                        .values()
                        .any(|e| e.client_msg_id == client_msg_id)
                    {
                        r.pending.retain(|p| p.client_msg_id != client_msg_id);
                    }
                }
            }
            Update::SendFailed {
                room,
                client_msg_id,
                error,
            } => {
                if let Some(r) = self.room_mut(&room)
                    && let Some(p) = r
                        .pending
                        .iter_mut()
                        .find(|p| p.client_msg_id == client_msg_id)
                {
                    p.failed = Some(error.clone());
                }
                self.error(format!("not sent to {room}: {error}"));
            }
            Update::SubscriptionFailed { room, error } => {
                if let Some(r) = self.room_mut(&room) {
                    r.subscribed = false;
                }
                self.error(format!("cannot follow {room}: {error}"));
            }
            Update::History(page) => {
                if let Some(room) = self.room_mut(&page.room) {
                    room.loading_history = false;
                    room.more_before = page.more;
                    for event in page.messages {
                        room.messages.entry(event.seq).or_insert(event);
                    }
                }
            }
            Update::HistoryFailed(name, error) => {
                if let Some(room) = self.room_mut(&name) {
                    room.loading_history = false;
                }
                self.error(format!("older messages of {name}: {error}"));
            }
            Update::Indicators(name, list) => {
                if let Some(room) = self.room_mut(&name) {
                    room.indicators = list;
                }
            }
            Update::Files(name, list) => {
                if let Some(room) = self.room_mut(&name) {
                    room.files = list;
                }
            }
            Update::Shared(room, report) => self.on_shared(&room, &report),
            Update::Alert(alert) => {
                if !self.alerts.iter().any(|a| a.id == alert.id) {
                    self.alerts.push(*alert);
                }
            }
            Update::PendingAlerts(list) => {
                for alert in list {
                    if !self.alerts.iter().any(|a| a.id == alert.id) {
                        self.alerts.push(alert);
                    }
                }
            }
            Update::AlertAcked(id) => {
                self.alerts.retain(|a| a.id != id);
                self.info(format!("alert {id} acknowledged"));
            }
            Update::AlertSent(report) => self.info(format!(
                "alert sent to {} member(s){}",
                report.audience_size,
                report
                    .alert
                    .as_ref()
                    .map(|a| format!(" as {}", a.id))
                    .unwrap_or_default()
            )),
            Update::Mention {
                room,
                seq,
                from_name,
                excerpt,
            } => {
                self.mentions.insert((room.clone(), seq));
                self.info(format!(
                    "{from_name} mentioned you in {room} #{seq}: {excerpt}"
                ));
            }
            Update::Typing { room, name } => {
                if let Some(r) = self.room_mut(&room) {
                    r.typing = Some((name, Instant::now()));
                }
            }
            Update::SearchResults { query, hits } => {
                self.status = None;
                self.overlay = Some(Overlay::Search { query, hits });
            }
            Update::Who(room, list) => self.overlay = Some(Overlay::Who { room, list }),
            Update::Transfer {
                id,
                stage,
                done,
                total,
            } => {
                if let Some(t) = self.transfers.iter_mut().find(|t| t.id == id) {
                    t.stage = Some(stage);
                    t.done = done;
                    t.total = total;
                }
            }
            Update::TransferDone { id, outcome } => {
                self.transfers.retain(|t| t.id != id);
                match outcome {
                    Ok(text) => self.info(text),
                    Err(text) => self.error(text),
                }
            }
            Update::Info(text) => self.info(text),
            Update::Error(text) => self.error(text),
        }
        self.settle();
    }

    fn on_event(&mut self, event: Event) {
        let selected = self.selected;
        let mine = self.me.as_ref().is_some_and(|m| m.id == event.sender);
        let Some(index) = self.rooms.iter().position(|r| r.name() == &event.room) else {
            return;
        };
        let room = &mut self.rooms[index];
        if room.messages.contains_key(&event.seq) {
            return;
        }
        // Matched by id alone: this client made the id, whoever it thinks it is.
        room.pending
            .retain(|p| p.client_msg_id != event.client_msg_id);
        if room
            .typing
            .as_ref()
            .is_some_and(|(name, _)| *name == event.sender_name)
        {
            room.typing = None;
        }
        let refresh_panel = matches!(event.body, Body::Indicator(_) | Body::File { .. });
        let shown = !matches!(event.body, Body::Edit { .. } | Body::Redaction { .. });
        let seq = event.seq;
        room.summary.head = room.summary.head.max(seq);
        room.messages.insert(seq, event);
        if room.scroll > 0 && shown {
            // Keep the same messages on screen while reading back.
            room.scroll += 1;
        }
        if seq > room.counted_upto {
            room.counted_upto = seq;
            if seq > room.marked_read && !mine && (index != selected || room.scroll > 0) {
                room.summary.unread += 1;
            }
        }
        if refresh_panel && index == selected {
            let name = room.name().clone();
            self.effects.push(Effect::Panel(name));
        }
    }

    fn on_shared(&mut self, room: &RoomName, report: &ShareReport) {
        for outcome in &report.outcomes {
            match outcome {
                ShareOutcome::Accepted {
                    seq,
                    indicator,
                    seen_in,
                } => {
                    let also = if seen_in.is_empty() {
                        String::new()
                    } else {
                        let rooms: Vec<String> = seen_in.iter().map(ToString::to_string).collect();
                        format!(
                            "; also in {} room(s) you can read: {}",
                            seen_in.len(),
                            rooms.join(", ")
                        )
                    };
                    self.info(format!(
                        "shared {} {} {} in {room} as #{seq}{also}",
                        indicator.tlp.as_str(),
                        indicator.kind.as_str(),
                        indicator.value
                    ));
                }
                ShareOutcome::Rejected { value, error, .. } => {
                    self.error(format!("indicator {value:?} refused: {error}"));
                }
            }
        }
    }

    fn merge_room(&mut self, summary: RoomSummary) {
        match self.rooms.iter_mut().find(|r| r.name() == &summary.name) {
            Some(room) => {
                if !summary.joined && room.summary.joined {
                    // Left from another session, or removed: stop following it.
                    if room.forget() {
                        self.effects
                            .push(Effect::Link(LinkCommand::Unsubscribe(summary.name.clone())));
                    }
                }
                let unread = if room.scroll == 0 && room.subscribed {
                    // Live events keep this count; the server's may lag behind them.
                    room.summary.unread
                } else {
                    summary.unread
                };
                if unread == summary.unread {
                    room.counted_upto = room.counted_upto.max(summary.head);
                }
                room.marked_read = room
                    .marked_read
                    .max(summary.head.saturating_sub(summary.unread));
                room.summary = RoomSummary { unread, ..summary };
            }
            None => self.rooms.push(Room::new(summary)),
        }
    }

    fn merge_rooms(&mut self, list: Vec<RoomSummary>) {
        let had_selection = self.selected_room().map(|r| r.name().clone());
        let names: BTreeSet<RoomName> = list.iter().map(|r| r.name.clone()).collect();
        self.rooms.retain(|r| names.contains(r.name()));
        for summary in list {
            self.merge_room(summary);
        }
        self.subscribe_joined();
        self.sort_rooms();
        match had_selection {
            Some(name) if self.rooms.iter().any(|r| r.name() == &name) => {}
            _ => {
                self.selected = 0;
                if let Some(room) = self.selected_room().filter(|r| r.summary.joined) {
                    self.effects.push(Effect::Panel(room.name().clone()));
                }
            }
        }
    }

    /// Follows every joined room not yet followed, starting a page before its newest message.
    fn subscribe_joined(&mut self) {
        for room in &mut self.rooms {
            if room.summary.joined && !room.subscribed {
                room.subscribed = true;
                let since = room.summary.head.saturating_sub(PAGE);
                room.more_before = since > 0;
                self.effects.push(Effect::Link(LinkCommand::Subscribe {
                    room: room.name().clone(),
                    since: Some(since),
                }));
            }
        }
    }

    /// Joined rooms first, then the others, each by name; the selection stays on its room.
    fn sort_rooms(&mut self) {
        let selected = self.selected_room().map(|r| r.name().clone());
        self.rooms
            .sort_by(|a, b| (!a.summary.joined, a.name()).cmp(&(!b.summary.joined, b.name())));
        if let Some(name) = selected
            && let Some(index) = self.rooms.iter().position(|r| r.name() == &name)
        {
            self.selected = index;
        }
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyCode;
    use escape_proto::tlp::Tlp;

    use super::*;
    use crate::tui::fixtures::{self, ctrl, key, room, type_line};

    fn app() -> App {
        fixtures::app(Theme::colored(), 80, 24)
    }

    fn sends(effects: &[Effect]) -> Vec<(RoomName, String, Body)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Link(LinkCommand::Send {
                    room,
                    client_msg_id,
                    body,
                }) => Some((room.clone(), client_msg_id.clone(), body.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_message_is_shown_pending_until_the_server_stores_it() {
        let mut app = app();
        type_line(&mut app, "blocking at the border now");
        let sent = sends(&app.take_effects());
        assert_eq!(sent.len(), 1);
        let (to, id, body) = sent[0].clone();
        assert_eq!(to, room("ops"));
        assert_eq!(body, Body::text("blocking at the border now"));
        assert!(app.input.text.is_empty());
        let ops = app.selected_room().expect("ops");
        assert_eq!(ops.pending.len(), 1);
        // The ack may come before the event: the line stays until the event is here.
        app.apply(Update::Acked {
            room: room("ops"),
            client_msg_id: id.clone(),
        });
        assert_eq!(app.selected_room().expect("ops").pending.len(), 1);
        let me = app.me.clone().expect("me");
        let mut stored = fixtures::event("ops", 5, &me, body);
        stored.client_msg_id = id;
        app.apply(Update::Event(Box::new(stored)));
        let ops = app.selected_room().expect("ops");
        assert!(ops.pending.is_empty());
        assert!(ops.messages.contains_key(&5));
        // Read on screen: the marker follows (at the next tick, one request per room).
        app.tick(Instant::now());
        assert!(app.take_effects().contains(&Effect::MarkRead {
            room: room("ops"),
            seq: 5
        }));
    }

    #[test]
    fn a_refused_message_stays_on_screen_marked() {
        let mut app = app();
        type_line(&mut app, "hello");
        let (_, id, _) = sends(&app.take_effects())[0].clone();
        app.apply(Update::SendFailed {
            room: room("ops"),
            client_msg_id: id,
            error: "you may not send here (forbidden)".into(),
        });
        let pending = &app.selected_room().expect("ops").pending;
        assert_eq!(
            pending[0].failed.as_deref(),
            Some("you may not send here (forbidden)")
        );
        assert!(app.status.as_ref().is_some_and(|s| s.error));
    }

    #[test]
    fn a_mistyped_command_keeps_the_line() {
        let mut app = app();
        type_line(&mut app, "/ioc purple 198.51.100.9");
        assert_eq!(app.input.text, "/ioc purple 198.51.100.9");
        let status = app.status.clone().expect("status");
        assert!(status.error && status.text.contains("not a TLP label"));
        assert!(sends(&app.take_effects()).is_empty());
    }

    #[test]
    fn reconnecting_never_touches_typed_text() {
        let mut app = app();
        for c in "draft of a long report".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        app.on_key(key(KeyCode::Left));
        app.apply(Update::Connection(Connection::Offline {
            reason: "reset".into(),
            retry_at: Instant::now(),
        }));
        app.apply(Update::Connection(Connection::Connecting));
        app.apply(Update::Connection(Connection::Online));
        assert_eq!(app.input.text, "draft of a long report");
        assert_eq!(app.input.cursor, "draft of a long report".len() - 1);
        // Back online, the rooms are fetched again (joined elsewhere, unread counts).
        assert!(app.take_effects().contains(&Effect::Rooms));
    }

    #[test]
    fn scrolling_to_the_top_loads_older_messages_once() {
        let mut app = app();
        let ops = room("ops");
        let bo = fixtures::member("m-bo", "Bo Lind", "NCSC-FI");
        // A room with history beyond what was loaded.
        app.apply(Update::Rooms(vec![fixtures::summary(
            "ops",
            Tlp::Amber,
            true,
            120,
            0,
        )]));
        app.room_mut(&ops).expect("ops").more_before = true;
        for seq in 71..=120 {
            app.apply(Update::Event(Box::new(fixtures::event(
                "ops",
                seq,
                &bo,
                Body::text("x"),
            ))));
        }
        app.take_effects();
        for _ in 0..10 {
            app.on_key(key(KeyCode::PageUp));
        }
        let asked: Vec<Effect> = app
            .take_effects()
            .into_iter()
            .filter(|e| matches!(e, Effect::History { .. }))
            .collect();
        assert_eq!(
            asked,
            vec![Effect::History {
                room: ops.clone(),
                before: 1
            }],
            "asked once, before the oldest loaded"
        );
        let page = HistoryPage {
            room: ops.clone(),
            messages: (21..=70)
                .map(|seq| fixtures::event("ops", seq, &bo, Body::text("older")))
                .collect(),
            more: false,
        };
        app.apply(Update::History(page));
        let room = app.selected_room().expect("ops");
        assert!(!room.loading_history && !room.more_before);
        assert!(room.messages.contains_key(&21));
        for _ in 0..30 {
            app.on_key(key(KeyCode::PageUp));
        }
        assert!(
            !app.take_effects()
                .iter()
                .any(|e| matches!(e, Effect::History { .. })),
            "nothing older exists"
        );
        app.on_key(KeyEvent::new(KeyCode::End, KeyModifiers::CONTROL));
        assert_eq!(app.selected_room().expect("ops").scroll, 0);
    }

    #[test]
    fn unread_counts_follow_what_was_seen() {
        let mut app = app();
        let bo = fixtures::member("m-bo", "Bo Lind", "NCSC-FI");
        app.apply(Update::Event(Box::new(fixtures::event(
            "watch",
            8,
            &bo,
            Body::text("new in watch"),
        ))));
        let watch = app
            .rooms
            .iter()
            .find(|r| r.name() == &room("watch"))
            .expect("watch");
        assert_eq!(watch.summary.unread, 4);
        app.on_key(ctrl('n'));
        assert_eq!(app.selected_room().expect("watch").summary.unread, 0);
        app.tick(Instant::now());
        let effects = app.take_effects();
        assert!(effects.contains(&Effect::MarkRead {
            room: room("watch"),
            seq: 8
        }));
        assert!(effects.contains(&Effect::Panel(room("watch"))));
    }

    #[test]
    fn alerts_are_acknowledged_from_the_keyboard() {
        let mut app = app();
        app.on_key(ctrl('g'));
        assert!(app.take_effects().is_empty());
        let bo = fixtures::member("m-bo", "Bo Lind", "NCSC-FI");
        app.apply(Update::Alert(Box::new(fixtures::alert("a-1", &bo))));
        app.apply(Update::PendingAlerts(vec![
            fixtures::alert("a-1", &bo),
            fixtures::alert("a-2", &bo),
        ]));
        assert_eq!(app.alerts.len(), 2, "the same alert is kept once");
        app.on_key(ctrl('g'));
        assert_eq!(app.take_effects(), vec![Effect::AckAlert("a-1".into())]);
        app.apply(Update::AlertAcked("a-1".into()));
        type_line(&mut app, "/alert ack");
        assert_eq!(app.take_effects(), vec![Effect::AckAlert("a-2".into())]);
    }

    #[test]
    fn commands_become_work() {
        let mut app = app();
        type_line(&mut app, "/ioc amber 198.51.100.9 exfil host");
        match app.take_effects().as_slice() {
            [Effect::Share { room: r, draft }] => {
                assert_eq!(r, &room("ops"));
                assert_eq!(draft.tlp, "TLP:AMBER");
                assert_eq!(draft.value, "198.51.100.9");
                assert_eq!(draft.description, "exfil host");
            }
            other => panic!("{other:?}"),
        }
        type_line(&mut app, "/download pcap-summary.pdf");
        match app.take_effects().as_slice() {
            [
                Effect::Download {
                    file_id, output, ..
                },
            ] => {
                assert_eq!(
                    file_id, "f-42",
                    "a name from the files panel becomes its id"
                );
                assert_eq!(output, &None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(app.transfers.len(), 1);
        type_line(&mut app, "/reply 1 agreed");
        assert_eq!(sends(&app.take_effects())[0].2, Body::reply(1, "agreed"));
        type_line(&mut app, "/join lobby");
        assert_eq!(app.take_effects(), vec![Effect::Join(room("lobby"))]);
        // Up brings back what was typed.
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.input.text, "/join lobby");
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.input.text, "/reply 1 agreed");
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.input.text, "");
    }

    #[test]
    fn joined_rooms_are_followed_from_a_page_before_their_newest() {
        let mut app = App::new("server".into(), Theme::plain());
        app.take_effects();
        app.apply(Update::Rooms(vec![
            fixtures::summary("big", Tlp::Green, true, 500, 0),
            fixtures::summary("small", Tlp::Green, true, 3, 0),
            fixtures::summary("other", Tlp::Green, false, 9, 0),
        ]));
        let subscriptions: Vec<Effect> = app
            .take_effects()
            .into_iter()
            .filter(|e| matches!(e, Effect::Link(LinkCommand::Subscribe { .. })))
            .collect();
        assert_eq!(
            subscriptions,
            vec![
                Effect::Link(LinkCommand::Subscribe {
                    room: room("big"),
                    since: Some(500 - PAGE)
                }),
                Effect::Link(LinkCommand::Subscribe {
                    room: room("small"),
                    since: Some(0)
                }),
            ]
        );
        assert!(app.rooms[0].more_before && !app.rooms[1].more_before);
        // A second listing does not subscribe again.
        app.apply(Update::Rooms(vec![fixtures::summary(
            "big",
            Tlp::Green,
            true,
            501,
            0,
        )]));
        assert!(
            !app.take_effects()
                .iter()
                .any(|e| matches!(e, Effect::Link(LinkCommand::Subscribe { .. })))
        );
    }

    #[test]
    fn replayed_messages_are_not_counted_twice() {
        let mut app = app();
        let bo = fixtures::member("m-bo", "Bo Lind", "NCSC-FI");
        // watch: head 7, 3 unread by the server's count; the subscription replays 1..=7.
        for seq in 1..=7 {
            app.apply(Update::Event(Box::new(fixtures::event(
                "watch",
                seq,
                &bo,
                Body::text("replayed"),
            ))));
        }
        let watch = app
            .rooms
            .iter()
            .find(|r| r.name() == &room("watch"))
            .expect("watch");
        assert_eq!(watch.summary.unread, 3);
    }

    #[test]
    fn quitting_with_unsent_messages_asks_twice() {
        let mut app = app();
        app.apply(Update::Connection(Connection::Offline {
            reason: "reset".into(),
            retry_at: Instant::now(),
        }));
        type_line(&mut app, "queued while offline");
        app.on_key(ctrl('q'));
        assert!(!app.quit);
        assert!(
            app.status
                .as_ref()
                .is_some_and(|s| s.text.contains("1 message(s) not yet stored"))
        );
        app.on_key(ctrl('q'));
        assert!(app.quit);
    }

    #[test]
    fn line_editing_keys() {
        let mut app = app();
        for c in "block the whole range".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        app.on_key(ctrl('w'));
        assert_eq!(app.input.text, "block the whole ");
        app.on_key(ctrl('u'));
        assert_eq!(app.input.text, "");
        let long = "x".repeat(MAX_MESSAGE_BYTES + 1);
        app.on_paste(&long);
        app.on_key(key(KeyCode::Enter));
        assert_eq!(app.input.text.len(), long.len(), "a refused line stays");
        assert!(app.status.as_ref().is_some_and(|s| s.error));
    }

    #[test]
    fn pasted_newlines_do_not_send() {
        let mut app = app();
        app.on_paste("line one\nline two");
        assert_eq!(app.input.text, "line one line two");
        assert!(app.take_effects().is_empty());
    }
}
