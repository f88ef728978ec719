//! Drawing the state. One function per region; the layout fits 80×24 and gives wider terminals
//! the indicators and files panel. Text from the server is shown with control characters made
//! visible, so no message can move the cursor or recolour the screen.

use escape_proto::file::FileInfo;
use escape_proto::indicator::IndicatorRecord;
use escape_proto::room::PresenceStatus;
use escape_proto::tlp::Tlp;
use escape_proto::{Body, Event};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use unicode_width::UnicodeWidthChar;

use super::app::{App, Connection, Overlay, Pending, Room, Transfer};
use super::commands::{COMMANDS, KEYS};
use super::theme::Theme;
use crate::files::human_size as bytes;

/// The rooms list's width, borders included.
pub const ROOMS_WIDTH: u16 = 22;
/// The side panel's width at most.
const PANEL_WIDTH: u16 = 36;

/// The screen's regions: header, alerts bar, main, input, status.
fn regions(app: &App, area: Rect) -> [Rect; 5] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(app.alert_rows()),
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(area)
}

fn rooms_width(main: Rect) -> u16 {
    ROOMS_WIDTH.min(main.width / 3)
}

/// The first room shown when `visible` rows show `selected`.
fn rooms_offset(selected: usize, visible: usize) -> usize {
    (selected + 1).saturating_sub(visible.max(1))
}

/// The room listed at a screen position, if any (for mouse clicks): the same geometry as drawn.
pub fn room_at(app: &App, column: u16, row: u16) -> Option<usize> {
    let area = Rect::new(0, 0, app.size.0, app.size.1);
    let [_, _, main, _, _] = regions(app, area);
    let list = Block::bordered().inner(Rect {
        width: rooms_width(main),
        ..main
    });
    if !list.contains(ratatui::layout::Position::new(column, row)) {
        return None;
    }
    let offset = rooms_offset(app.selected, usize::from(list.height));
    let index = offset + usize::from(row - list.y);
    (index < app.rooms.len()).then_some(index)
}

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let [header, alerts, main, input, status] = regions(app, area);
    draw_header(frame, app, header);
    draw_alerts(frame, app, alerts);
    let panel = if app.panel_shown() && main.width >= ROOMS_WIDTH + 30 + 20 {
        PANEL_WIDTH.min(main.width / 3)
    } else {
        0
    };
    let [rooms, messages, side] = Layout::horizontal([
        Constraint::Length(rooms_width(main)),
        Constraint::Min(10),
        Constraint::Length(panel),
    ])
    .areas(main);
    draw_rooms(frame, app, rooms);
    match &app.overlay {
        None => draw_messages(frame, app, messages),
        Some(Overlay::Help) => {}
        Some(Overlay::Search { query, hits }) => draw_search(frame, app, messages, query, hits),
        Some(Overlay::Who { room, list }) => {
            let lines: Vec<Line> = list
                .iter()
                .map(|p| {
                    let (mark, style) = match p.status {
                        PresenceStatus::Online => ("● online ", app.theme.ok()),
                        PresenceStatus::Away => ("◐ away   ", app.theme.warn()),
                        PresenceStatus::Offline => ("○ offline", app.theme.dim()),
                    };
                    Line::from(vec![
                        Span::styled(mark, style),
                        Span::raw(" "),
                        Span::raw(clean(&p.name)),
                    ])
                })
                .collect();
            let block = Block::bordered()
                .title(format!(" who is in {room} "))
                .title_bottom(" Esc closes ");
            frame.render_widget(Paragraph::new(lines).block(block), messages);
        }
    }
    if panel > 0 {
        draw_panel(frame, app, side);
    }
    draw_input(frame, app, input);
    draw_status(frame, app, status);
    if matches!(app.overlay, Some(Overlay::Help)) {
        draw_help(frame, app, area);
    }
}

/// Peer text on one line of the screen: see [`crate::text::visible`].
pub fn clean(text: &str) -> String {
    crate::text::visible(text, crate::text::Breaks::Space)
}

/// The label's name, AMBER+STRICT shortened to fit the rooms list.
fn short_tlp(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::AmberStrict => "AMB+S",
        tlp => tlp.name(),
    }
}

fn badge(theme: &Theme, tlp: Tlp) -> Span<'static> {
    Span::styled(format!("[{}]", tlp.as_str()), theme.tlp(tlp))
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let who = match &app.me {
        Some(me) => format!(
            " Escape · {} ({}) · {}",
            clean(&me.name),
            clean(&me.attributes.organisation),
            app.server
        ),
        None => format!(" Escape · {}", app.server),
    };
    let (state, style) = match &app.connection {
        Connection::Online => ("● online".to_owned(), theme.ok()),
        Connection::Connecting => ("… connecting".to_owned(), theme.warn()),
        Connection::Offline { reason, retry_at } => {
            let left = retry_at.saturating_duration_since(std::time::Instant::now());
            (
                format!(
                    "✕ offline: {} · retry in {} s",
                    clean(reason),
                    left.as_secs() + 1
                ),
                theme.error(),
            )
        }
        Connection::Stopped(reason) => {
            (format!("✕ disconnected: {}", clean(reason)), theme.error())
        }
    };
    let state_width = u16::try_from(state.chars().count())
        .unwrap_or(u16::MAX)
        .saturating_add(1)
        .min(area.width / 2 + area.width / 4);
    let [left, right] =
        Layout::horizontal([Constraint::Min(1), Constraint::Length(state_width)]).areas(area);
    frame.render_widget(Paragraph::new(Span::styled(who, theme.title())), left);
    frame.render_widget(Paragraph::new(Span::styled(state, style)), right);
}

fn draw_alerts(frame: &mut Frame, app: &App, area: Rect) {
    let Some(alert) = app.alerts.first() else {
        return;
    };
    let style = app.theme.alert(alert.severity);
    let first = Line::from(vec![
        Span::styled(
            format!(
                " ⚠ ALERT {}/{} {} ",
                1,
                app.alerts.len(),
                alert.severity.as_str().to_uppercase()
            ),
            style,
        ),
        Span::raw(" "),
        badge(&app.theme, alert.tlp),
        Span::styled(
            format!(
                " from {} ({}) {} UTC · Ctrl-G or /alert ack to acknowledge ",
                clean(&alert.sender_name),
                clean(&alert.sender_organisation),
                hh_mm(alert.sent_at)
            ),
            style,
        ),
    ]);
    let second = Line::styled(format!(" {}", clean(&alert.text)), style);
    frame.render_widget(Paragraph::new(vec![first, second]).style(style), area);
}

fn draw_rooms(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let inner = area.width.saturating_sub(2) as usize;
    let visible = usize::from(area.height.saturating_sub(2));
    let offset = rooms_offset(app.selected, visible);
    let mut lines = Vec::new();
    for (i, room) in app.rooms.iter().enumerate().skip(offset) {
        let selected = i == app.selected;
        let s = &room.summary;
        let tlp = s.tlp_max.map(short_tlp).unwrap_or("");
        let unread = if s.joined && s.unread > 0 {
            if s.unread > 999 {
                "999+".to_owned()
            } else {
                s.unread.to_string()
            }
        } else {
            String::new()
        };
        let mark = if s.joined { "#" } else { "+" };
        let fixed = 1 + 1 + tlp.len() + 1 + unread.len();
        let name_width = inner.saturating_sub(fixed).max(1);
        let name = fit(&s.name.to_string(), name_width);
        let base = if selected {
            theme.selected()
        } else if !s.joined {
            theme.dim()
        } else if s.unread > 0 {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        let mut spans = vec![Span::styled(format!("{mark}{name:<name_width$} "), base)];
        if let Some(t) = s.tlp_max {
            spans.push(Span::styled(tlp, theme.tlp(t)));
        }
        spans.push(Span::styled(
            format!(" {unread}"),
            base.add_modifier(Modifier::BOLD),
        ));
        lines.push(Line::from(spans));
    }
    if lines.is_empty() {
        lines.push(Line::styled("no rooms yet:", theme.dim()));
        lines.push(Line::styled("/join ROOM", theme.dim()));
    }
    let mut block = Block::bordered().title(" rooms ");
    if offset > 0 || app.rooms.len() > offset + visible {
        block = block.title_bottom(format!(" {}/{} ", app.selected + 1, app.rooms.len()));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_messages(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let Some(room) = app.selected_room() else {
        let block = Block::bordered().title(" Escape ");
        let text = vec![
            Line::raw("You have not joined a room yet."),
            Line::raw(""),
            Line::raw("Type /join ROOM and press Enter, or ? for help."),
        ];
        frame.render_widget(
            Paragraph::new(text).block(block).wrap(Wrap { trim: false }),
            area,
        );
        return;
    };
    let s = &room.summary;
    let mut title = vec![Span::styled(format!(" #{} ", s.name), theme.title())];
    if let Some(tlp) = s.tlp_max {
        title.push(badge(theme, tlp));
        title.push(Span::raw(" "));
    }
    if !s.topic.is_empty() {
        title.push(Span::styled(format!("{} ", clean(&s.topic)), theme.dim()));
    }
    let mut block = Block::bordered().title(Line::from(title));
    if let Some((name, _)) = &room.typing {
        block = block.title_bottom(Span::styled(
            format!(" {} is typing… ", clean(name)),
            theme.dim(),
        ));
    } else if room.scroll > 0 {
        block = block.title_bottom(Span::styled(
            format!(
                " ↑ reading back ({} newer) · Ctrl-End for the newest ",
                room.scroll
            ),
            theme.warn(),
        ));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if !s.joined {
        let text = vec![
            Line::raw(format!("You have not joined {}.", s.name)),
            Line::raw(format!("{} members, {} messages.", s.members, s.head)),
            Line::raw(""),
            Line::raw("Type /join and press Enter to join it."),
        ];
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
        return;
    }
    let width = inner.width as usize;
    let height = inner.height as usize;
    // From the newest shown message upwards until the pane is full.
    let mut lines: Vec<Line> = Vec::new();
    if room.scroll == 0 {
        for pending in room.pending.iter().rev() {
            let mut wrapped = wrap(pending_line(app, pending), width);
            wrapped.reverse();
            lines.extend(wrapped);
        }
    }
    let mut reached_top = true;
    for event in room.shown().rev().skip(room.scroll) {
        if lines.len() >= height {
            reached_top = false;
            break;
        }
        let mut wrapped = wrap(event_line(app, room, event), width);
        wrapped.reverse();
        lines.extend(wrapped);
    }
    if reached_top && lines.len() < height {
        let note = if room.loading_history {
            "loading older messages…"
        } else if room.more_before {
            "PgUp for older messages"
        } else {
            "the beginning of the room"
        };
        lines.push(Line::styled(format!("— {note} —"), theme.dim()));
    }
    lines.truncate(height);
    lines.reverse();
    // Bottom-aligned, like a chat.
    let top = height.saturating_sub(lines.len()) as u16;
    let area = Rect {
        y: inner.y + top,
        height: inner.height - top,
        ..inner
    };
    frame.render_widget(Paragraph::new(lines), area);
}

/// `09:41` today, `11-22 09:41` on other days (UTC, as the help says).
fn hh_mm(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    if at.date() == time::OffsetDateTime::now_utc().date() {
        format!("{:02}:{:02}", at.hour(), at.minute())
    } else {
        format!(
            "{:02}-{:02} {:02}:{:02}",
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        )
    }
}

/// One message as spans (before wrapping).
fn event_line(app: &App, room: &Room, event: &Event) -> Vec<Span<'static>> {
    let theme = &app.theme;
    let mine = app.me.as_ref().is_some_and(|m| m.id == event.sender);
    let mut spans = vec![
        Span::styled(format!("{} ", hh_mm(event.sent_at)), theme.dim()),
        Span::styled(format!("#{} ", event.seq), theme.dim()),
        Span::styled(clean(&event.sender_name), theme.sender(mine)),
    ];
    if !event.sender_organisation.is_empty() {
        spans.push(Span::styled(
            format!(" ({})", clean(&event.sender_organisation)),
            theme.dim(),
        ));
    }
    spans.push(Span::raw(": "));
    match &event.body {
        Body::Text {
            text,
            reply_to,
            mentions,
        } => {
            if let Some(parent) = reply_to {
                spans.push(Span::styled(format!("↪ #{parent} "), theme.dim()));
            }
            let mentioned = app.mentions.contains(&(room.name().clone(), event.seq))
                || app.me.as_ref().is_some_and(|m| mentions.contains(&m.id));
            let style = if mentioned {
                theme.mention()
            } else {
                Style::new()
            };
            match room.edited(event.seq) {
                Some(edited) => {
                    spans.push(Span::styled(clean(edited), style));
                    spans.push(Span::styled(" (edited)", theme.dim()));
                }
                None => spans.push(Span::styled(clean(text), style)),
            }
        }
        Body::Redacted => spans.push(Span::styled(
            "(message removed)",
            theme.dim().add_modifier(Modifier::ITALIC),
        )),
        Body::Indicator(indicator) => {
            spans.push(badge(theme, indicator.tlp));
            spans.push(Span::styled(
                format!(" {} ", indicator.kind.as_str()),
                theme.dim(),
            ));
            spans.push(Span::styled(
                clean(&indicator.value),
                Style::new().add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::styled(
                format!(" confidence {}", indicator.confidence),
                theme.dim(),
            ));
            if let Some(from) = &indicator.forwarded_from {
                spans.push(Span::styled(format!(" (from {from})"), theme.dim()));
            }
            if !indicator.description.is_empty() {
                spans.push(Span::raw(format!(" – {}", clean(&indicator.description))));
            }
        }
        Body::File {
            file_id,
            name,
            size,
            ..
        } => {
            if let Some(tlp) = room.summary.tlp_max {
                spans.push(badge(theme, tlp));
                spans.push(Span::raw(" "));
            }
            spans.push(Span::styled(
                format!("file {}", clean(name)),
                Style::new().add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::styled(
                format!(" ({}, encrypted) /download {file_id}", bytes(*size)),
                theme.dim(),
            ));
        }
        _ => spans.push(Span::styled(
            "(a kind of message this client cannot show)",
            theme.dim(),
        )),
    }
    spans
}

fn pending_line(app: &App, pending: &Pending) -> Vec<Span<'static>> {
    let theme = &app.theme;
    let name = app.me.as_ref().map(|m| clean(&m.name)).unwrap_or_default();
    let text = match &pending.body {
        Body::Text { text, .. } | Body::Edit { text, .. } => clean(text),
        _ => String::new(),
    };
    let mut spans = vec![
        Span::styled("--:-- ", theme.dim()),
        Span::styled(format!("{name}: "), theme.dim()),
        Span::styled(text, theme.dim()),
    ];
    match &pending.failed {
        None => spans.push(Span::styled(" (sending…)", theme.dim())),
        Some(error) => spans.push(Span::styled(
            format!(" (not sent: {})", clean(error)),
            theme.error(),
        )),
    }
    spans
}

/// Word-wraps styled text to `width` columns (long words are cut).
fn wrap(spans: Vec<Span<'static>>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut lines: Vec<Vec<Span<'static>>> = vec![Vec::new()];
    let mut used = 0;
    for span in spans {
        let style = span.style;
        // Words with the spaces that follow them, so breaks fall between words.
        let mut words: Vec<String> = Vec::new();
        let mut current = String::new();
        for c in span.content.chars() {
            current.push(c);
            if c == ' ' {
                words.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            words.push(current);
        }
        for word in words {
            let w: usize = word.chars().map(|c| c.width().unwrap_or(0)).sum();
            let visible: usize = word
                .trim_end()
                .chars()
                .map(|c| c.width().unwrap_or(0))
                .sum();
            if used + visible > width && used > 0 && w <= width {
                lines.push(Vec::new());
                used = 0;
            }
            if w <= width - used.min(width) {
                used += w;
                if let Some(line) = lines.last_mut() {
                    line.push(Span::styled(word, style));
                }
                continue;
            }
            // Longer than a line: cut it.
            let mut piece = String::new();
            for c in word.chars() {
                let cw = c.width().unwrap_or(0);
                if used + cw > width {
                    if let Some(line) = lines.last_mut() {
                        line.push(Span::styled(std::mem::take(&mut piece), style));
                    }
                    lines.push(Vec::new());
                    used = 0;
                }
                piece.push(c);
                used += cw;
            }
            if let Some(line) = lines.last_mut() {
                line.push(Span::styled(piece, style));
            }
        }
    }
    lines.into_iter().map(Line::from).collect()
}

/// `text` cut to `width` columns, with an ellipsis when cut.
fn fit(text: &str, width: usize) -> String {
    let total: usize = text.chars().map(|c| c.width().unwrap_or(0)).sum();
    if total <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

fn draw_panel(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let width = area.width.saturating_sub(2) as usize;
    let (indicators, files): (&[IndicatorRecord], &[FileInfo]) = match app.selected_room() {
        Some(room) => (&room.indicators, &room.files),
        None => (&[], &[]),
    };
    let mut lines: Vec<Line> = Vec::new();
    for record in indicators.iter().rev() {
        let i = &record.indicator;
        lines.push(Line::from(vec![
            Span::styled(short_tlp(i.tlp), theme.tlp(i.tlp)),
            Span::styled(format!(" {} ", i.kind.as_str()), theme.dim()),
            Span::raw(fit(&clean(&i.value), width.saturating_sub(12))),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::styled("none yet: /ioc TLP VALUE", theme.dim()));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(format!(" indicators ({}) ", indicators.len()))),
        top,
    );
    let mut lines: Vec<Line> = Vec::new();
    for file in files.iter().rev() {
        lines.push(Line::raw(fit(&clean(&file.name), width)));
        lines.push(Line::styled(
            fit(
                &format!(
                    "  {} · {} · {}",
                    bytes(file.size),
                    clean(&file.sender_name),
                    file.id
                ),
                width,
            ),
            theme.dim(),
        ));
    }
    if lines.is_empty() {
        lines.push(Line::styled("none yet: /upload PATH", theme.dim()));
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" files ({}) ", files.len()))),
        bottom,
    );
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let title = if app.input.text.starts_with('/') && !app.input.text.starts_with("//") {
        " command (Enter runs it · /help) ".to_owned()
    } else {
        match app.selected_room() {
            Some(room) if room.summary.joined => format!(" message to #{} ", room.summary.name),
            Some(room) => format!(" /join to join #{} ", room.summary.name),
            None => " /join ROOM ".to_owned(),
        }
    };
    let mut block = Block::bordered().title(title);
    // An error holds the status line: a transfer under way shows here meanwhile.
    if let (Some(_), Some(t)) = (
        app.status.as_ref().filter(|s| s.error),
        app.transfers.first(),
    ) {
        block = block.title_bottom(Span::styled(
            format!(
                " {} ",
                transfer_line(t, area.width.saturating_sub(4) as usize)
            ),
            theme.title(),
        ));
    } else if matches!(
        app.connection,
        Connection::Offline { .. } | Connection::Connecting
    ) {
        block = block.title_bottom(Span::styled(
            " offline: what you send is kept and sent on reconnection ",
            theme.warn(),
        ));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Scroll sideways so the cursor stays visible.
    let chars: Vec<char> = app.input.text.chars().collect();
    let width = inner.width.saturating_sub(1) as usize;
    let mut start = 0;
    let width_of = |from: usize, to: usize| -> usize {
        chars[from..to].iter().map(|c| c.width().unwrap_or(0)).sum()
    };
    while start < app.input.cursor && width_of(start, app.input.cursor) > width {
        start += 1;
    }
    let shown: String = chars[start..].iter().collect();
    frame.render_widget(Paragraph::new(clean(&shown)), inner);
    if app.overlay.is_none() {
        let x = inner.x + width_of(start, app.input.cursor.min(chars.len())) as u16;
        frame.set_cursor_position((x.min(inner.right().saturating_sub(1)), inner.y));
    }
}

/// A transfer as one line: what, stage, percentage, a bar, bytes.
pub fn transfer_line(t: &Transfer, width: usize) -> String {
    let stage = t
        .stage
        .map(|s| format!("{s:?}").to_lowercase())
        .unwrap_or_else(|| "starting".into());
    let percent = (t.done.min(t.total) * 100)
        .checked_div(t.total)
        .unwrap_or(0) as usize;
    let bar_width = 20;
    let filled = percent * bar_width / 100;
    let bar = format!("[{}{}]", "=".repeat(filled), " ".repeat(bar_width - filled));
    let text = format!(
        "{} · {stage} {percent:>3}% {bar} {} / {}",
        clean(&t.label),
        bytes(t.done),
        bytes(t.total)
    );
    fit(&text, width)
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let width = area.width as usize;
    let error = app.status.as_ref().filter(|s| s.error);
    let line = if let Some(status) = error {
        Line::styled(
            fit(&format!("error: {}", clean(&status.text)), width),
            theme.error(),
        )
    } else if let Some(t) = app.transfers.first() {
        Line::styled(transfer_line(t, width), theme.title())
    } else if let Some(status) = &app.status {
        Line::raw(fit(&clean(&status.text), width))
    } else {
        Line::styled(
            fit(
                "? help · Ctrl-N/Ctrl-P rooms · PgUp history · Ctrl-T panel · Ctrl-Q quit",
                width,
            ),
            theme.dim(),
        )
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_search(frame: &mut Frame, app: &App, area: Rect, query: &str, hits: &[Event]) {
    let theme = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let mut lines: Vec<Line> = Vec::new();
    for hit in hits {
        let text = match &hit.body {
            Body::Text { text, .. } | Body::Edit { text, .. } => clean(text),
            Body::Indicator(i) => {
                format!("{} {} {}", i.tlp.as_str(), i.kind.as_str(), clean(&i.value))
            }
            Body::File { name, .. } => format!("file {}", clean(name)),
            _ => String::new(),
        };
        let spans = vec![
            Span::styled(format!("{} #{} ", hit.room, hit.seq), theme.dim()),
            Span::styled(format!("{} ", hh_mm(hit.sent_at)), theme.dim()),
            Span::styled(clean(&hit.sender_name), theme.sender(false)),
            Span::raw(format!(": {text}")),
        ];
        lines.extend(wrap(spans, width));
    }
    if lines.is_empty() {
        lines.push(Line::styled(
            "nothing found in the rooms you may read",
            theme.dim(),
        ));
    }
    let block = Block::bordered()
        .title(format!(" search: {} ({} found) ", clean(query), hits.len()))
        .title_bottom(" Esc closes ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_help(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let mut lines = vec![Line::styled("Keys", theme.title())];
    let key_width = KEYS.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(
                format!("  {key:<key_width$}  "),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(*what),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Commands (type them in the input line)",
        theme.title(),
    ));
    let command_width = COMMANDS.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, what) in COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(
                format!("  {command:<command_width$}  "),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(*what),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "TLP labels are shown in their colours: [TLP:RED] [TLP:AMBER+STRICT] [TLP:AMBER] [TLP:GREEN] [TLP:CLEAR]. Times are UTC.",
        theme.dim(),
    ));
    let block = Block::bordered()
        .title(" help ")
        .title_bottom(" Esc closes · PgUp/PgDn scroll ");
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((app.help_scroll, 0)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyCode;
    use escape_proto::tlp::Tlp;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::style::{Color, Modifier};

    use super::*;
    use crate::tui::app::{Connection, Transfer, Update};
    use crate::tui::fixtures::{self, key};
    use crate::tui::theme::Theme;

    fn render(app: &App) -> Buffer {
        let backend = TestBackend::new(app.size.0, app.size.1);
        let mut terminal = Terminal::new(backend).expect("terminal");
        terminal.draw(|f| draw(f, app)).expect("draw");
        terminal.backend().buffer().clone()
    }

    fn rows(buffer: &Buffer) -> Vec<String> {
        let area = buffer.area;
        (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    fn screen_text(buffer: &Buffer) -> String {
        rows(buffer).join("\n")
    }

    /// The cell where `needle` starts (first occurrence, by rows).
    fn find(buffer: &Buffer, needle: &str) -> (u16, u16) {
        for (y, row) in rows(buffer).iter().enumerate() {
            if let Some(at) = row.find(needle) {
                let x = row[..at].chars().count();
                return (x as u16, y as u16);
            }
        }
        panic!("{needle:?} is not on screen:\n{}", screen_text(buffer));
    }

    #[test]
    fn the_main_screen_fits_80_by_24() {
        let app = fixtures::app(Theme::colored(), 80, 24);
        let buffer = render(&app);
        let text = screen_text(&buffer);
        for expected in [
            "Ana Tamm (CERT-EE)",
            "● online",
            " rooms ",
            "#watch",
            "#ops",
            "+lobby",
            "#ops [TLP:AMBER]",
            "09:41 #1 Bo Lind (NCSC-FI): Seeing beacons",
            "↪ #1 Same here",
            "[TLP:AMBER] ipv4",
            "198.51.100.7 confidence 80 – C2 server",
            "pcap-summary.pdf (1.5 MiB, encrypted)",
            "/download f-42",
            "message to #ops",
            "? help",
        ] {
            assert!(text.contains(expected), "{expected:?} missing:\n{text}");
        }
        // The RED room shows its ceiling and its 3 unread messages on one line.
        let watch = rows(&buffer)
            .into_iter()
            .find(|r| r.contains("#watch"))
            .expect("watch row");
        assert!(watch.contains("RED 3│"), "{watch:?}");
        // 80 columns leave no room for the side panel: it is toggled with Ctrl-T.
        assert!(!text.contains("indicators ("), "{text}");
    }

    #[test]
    fn tlp_badges_wear_the_tlp_colours() {
        let app = fixtures::app(Theme::colored(), 80, 24);
        let buffer = render(&app);
        let (x, y) = find(&buffer, "[TLP:AMBER] ipv4");
        let cell = &buffer[(x, y)];
        assert_eq!(cell.fg, Color::Rgb(0xFF, 0xC0, 0x00));
        assert_eq!(cell.bg, Color::Rgb(0, 0, 0));
        let (x, y) = find(&buffer, "RED");
        assert_eq!(buffer[(x, y)].fg, Color::Rgb(0xFF, 0x2B, 0x2B));
        let (x, y) = find(&buffer, "AMBER ");
        assert_eq!(
            buffer[(x, y)].fg,
            Color::Rgb(0xFF, 0xC0, 0x00),
            "the ceiling in the rooms list"
        );
    }

    #[test]
    fn no_color_uses_no_colour_and_keeps_badges_apart() {
        let mut app = fixtures::app(Theme::plain(), 80, 24);
        app.apply(Update::Alert(Box::new(fixtures::alert(
            "a-1",
            &fixtures::member("m-bo", "Bo Lind", "NCSC-FI"),
        ))));
        let buffer = render(&app);
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                let cell = &buffer[(x, y)];
                assert_eq!(
                    (cell.fg, cell.bg),
                    (Color::Reset, Color::Reset),
                    "colour at {x},{y}"
                );
            }
        }
        let (x, y) = find(&buffer, "[TLP:AMBER] ipv4");
        assert!(buffer[(x, y)].modifier.contains(Modifier::REVERSED));
        let (x, y) = find(&buffer, "ALERT");
        assert!(buffer[(x, y)].modifier.contains(Modifier::REVERSED));
    }

    #[test]
    fn an_unacknowledged_alert_takes_the_top_of_the_screen() {
        let mut app = fixtures::app(Theme::colored(), 80, 24);
        let bo = fixtures::member("m-bo", "Bo Lind", "NCSC-FI");
        app.apply(Update::Alert(Box::new(fixtures::alert("a-1", &bo))));
        app.apply(Update::Alert(Box::new(fixtures::alert("a-2", &bo))));
        let buffer = render(&app);
        let rows = rows(&buffer);
        assert!(rows[1].contains("⚠ ALERT 1/2 HIGH"), "{}", rows[1]);
        assert!(rows[1].contains("[TLP:AMBER]"), "{}", rows[1]);
        assert!(rows[2].contains("Ransomware campaign"), "{}", rows[2]);
        let (x, y) = find(&buffer, "ALERT");
        assert_eq!(buffer[(x, y)].bg, Color::Red);
        // The rooms still fit below it.
        assert!(screen_text(&buffer).contains("#ops"));
        assert!(
            screen_text(&buffer).contains("Ctrl-G"),
            "how to acknowledge is said"
        );
    }

    #[test]
    fn a_wide_terminal_shows_indicators_and_files() {
        let app = fixtures::app(Theme::colored(), 130, 40);
        let text = screen_text(&render(&app));
        for expected in [
            "indicators (1)",
            "AMBER ipv4 198.51.100.7",
            "files (1)",
            "pcap-summary.pdf",
            "1.5 MiB · Bo Lind · f-42",
        ] {
            assert!(text.contains(expected), "{expected:?} missing:\n{text}");
        }
    }

    #[test]
    fn ctrl_t_shows_the_panel_at_80_columns() {
        let mut app = fixtures::app(Theme::colored(), 100, 24);
        assert!(!screen_text(&render(&app)).contains("indicators ("));
        app.on_key(fixtures::ctrl('t'));
        assert!(screen_text(&render(&app)).contains("indicators (1)"));
    }

    #[test]
    fn help_lists_keys_and_commands_and_scrolls() {
        let mut app = fixtures::app(Theme::colored(), 80, 24);
        app.on_key(key(KeyCode::Char('?')));
        let text = screen_text(&render(&app));
        assert!(text.contains("Keys") && text.contains("Ctrl-N"), "{text}");
        assert!(text.contains("/join [ROOM]"), "{text}");
        for _ in 0..3 {
            app.on_key(key(KeyCode::PageDown));
        }
        let text = screen_text(&render(&app));
        assert!(text.contains("/quit"), "{text}");
        app.on_key(key(KeyCode::Esc));
        assert!(!screen_text(&render(&app)).contains("Esc closes"));
    }

    #[test]
    fn offline_state_is_shown_and_typed_text_stays() {
        let mut app = fixtures::app(Theme::colored(), 80, 24);
        for c in "half a sentence".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        app.apply(Update::Connection(Connection::Offline {
            reason: "connection reset".into(),
            retry_at: std::time::Instant::now() + std::time::Duration::from_secs(4),
        }));
        let text = screen_text(&render(&app));
        assert!(text.contains("✕ offline: connection reset"), "{text}");
        assert!(text.contains("kept and sent on reconnection"), "{text}");
        assert!(text.contains("half a sentence"), "{text}");
        app.apply(Update::Connection(Connection::Online));
        let text = screen_text(&render(&app));
        assert!(text.contains("● online") && text.contains("half a sentence"));
    }

    #[test]
    fn errors_and_transfers_use_the_status_line() {
        let mut app = fixtures::app(Theme::colored(), 80, 24);
        app.apply(Update::Error(
            "upload of /tmp/x: No such file or directory".into(),
        ));
        let bottom = rows(&render(&app));
        assert!(
            bottom[23].starts_with("error: upload of /tmp/x: No such file"),
            "{}",
            bottom[23]
        );
        let transfer = Transfer {
            id: 1,
            label: "upload dump.pcap".into(),
            stage: Some(crate::files::Stage::Encrypting),
            done: 45 * 1024 * 1024,
            total: 100 * 1024 * 1024,
        };
        assert_eq!(
            transfer_line(&transfer, 120),
            "upload dump.pcap · encrypting  45% [=========           ] 45.0 MiB / 100.0 MiB"
        );
        app.on_key(key(KeyCode::Esc));
        fixtures::type_line(&mut app, "/upload /tmp/dump.pcap");
        let id = app.transfers[0].id;
        app.apply(Update::Transfer {
            id,
            stage: crate::files::Stage::Uploading,
            done: 10,
            total: 40,
        });
        let rows = rows(&render(&app));
        assert!(
            rows[23].contains("upload /tmp/dump.pcap · uploading  25%"),
            "{}",
            rows[23]
        );
    }

    #[test]
    fn control_characters_from_peers_are_made_visible() {
        let mut app = fixtures::app(Theme::colored(), 80, 24);
        let bo = fixtures::member("m-bo", "Bo\u{1b}[2J", "NCSC-FI");
        app.apply(Update::Event(Box::new(fixtures::event(
            "ops",
            5,
            &bo,
            escape_proto::Body::text("pay\u{202e}fdp.exe \u{1b}[31mred"),
        ))));
        let text = screen_text(&render(&app));
        assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'));
        assert!(text.contains("Bo\\u{1b}[2J"), "{text}");
        assert!(text.contains("pay\\u{202e}fdp.exe"), "{text}");
    }

    #[test]
    fn a_room_not_joined_says_how_to_join() {
        let mut app = fixtures::app(Theme::colored(), 80, 24);
        app.on_key(fixtures::ctrl('p'));
        let text = screen_text(&render(&app));
        assert!(text.contains("You have not joined lobby."), "{text}");
        assert!(text.contains("/join to join #lobby"), "{text}");
        assert!(text.contains("[TLP:CLEAR]"), "{text}");
        let _ = Tlp::Clear;
    }

    #[test]
    fn the_rooms_list_scrolls_to_the_selection_and_clicks_hit_rooms() {
        let mut app = fixtures::app(Theme::colored(), 80, 24);
        let many: Vec<_> = (0..40)
            .map(|i| fixtures::summary(&format!("room-{i:02}"), Tlp::Green, true, 0, 0))
            .collect();
        app.apply(Update::Rooms(many));
        for _ in 0..39 {
            app.on_key(fixtures::ctrl('n'));
        }
        let buffer = render(&app);
        let text = screen_text(&buffer);
        assert!(text.contains("#room-39"), "{text}");
        assert!(text.contains("40/40"), "{text}");
        // A click on the first listed row selects the room shown there.
        let (_, y) = find(&buffer, "│#room-");
        let shown = rows(&buffer)[usize::from(y)].clone();
        let index = room_at(&app, 3, y).expect("a room");
        assert!(
            shown.contains(&format!("#{}", app.rooms[index].name())),
            "{shown}"
        );
        assert_eq!(room_at(&app, 3, 22), None, "the input line is not the list");
        assert_eq!(
            room_at(&app, 40, y),
            None,
            "the message pane is not the list"
        );
    }

    #[test]
    fn tiny_terminals_do_not_break_drawing() {
        for (w, h) in [(1, 1), (10, 5), (30, 8), (80, 3)] {
            let mut app = fixtures::app(Theme::colored(), w, h);
            app.apply(Update::Alert(Box::new(fixtures::alert(
                "a-1",
                &fixtures::member("m-bo", "Bo Lind", "NCSC-FI"),
            ))));
            app.on_key(key(KeyCode::Char('?')));
            render(&app);
            app.on_key(key(KeyCode::Esc));
            render(&app);
        }
    }

    #[test]
    fn without_truecolor_tlp_uses_indexed_colours() {
        let theme = Theme {
            color: true,
            truecolor: false,
        };
        assert_eq!(theme.tlp(Tlp::Red).fg, Some(Color::Indexed(203)));
        assert_eq!(theme.tlp(Tlp::Amber).fg, Some(Color::Indexed(214)));
    }

    #[test]
    fn long_messages_wrap_by_words() {
        let lines = wrap(vec![Span::raw("alpha beta gamma delta epsilon")], 12);
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(text, vec!["alpha beta ", "gamma delta ", "epsilon"]);
        let lines = wrap(vec![Span::raw("abcdefghijklmnop")], 5);
        assert_eq!(lines.len(), 4);
    }
}
