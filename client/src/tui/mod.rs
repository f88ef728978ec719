//! `escape tui`: a full-screen client for the whole day's work.
//!
//! Where things live: [`app`] holds the state and decides what keys and server news do;
//! [`view`] draws it; [`link`] keeps the real-time channel up (reconnecting, resuming, resending);
//! [`worker`] makes the HTTP calls and transfers; [`commands`] reads the `/commands`. The loop
//! here only moves keys, news and work between them.

pub mod app;
pub mod commands;
#[cfg(test)]
mod fixtures;
pub mod link;
pub mod theme;
pub mod view;
pub mod worker;

use std::io::Stdout;
use std::time::{Duration, Instant};

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    EventStream,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

pub use app::App;
pub use theme::Theme;
pub use worker::Places;

use crate::api::Client;
use crate::error::ClientError;
use app::Effect;

/// How the screen is set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub places: Places,
    /// Capture the mouse (wheel scrolling, clicking rooms); off by default so the terminal's
    /// own text selection keeps working.
    pub mouse: bool,
    pub theme: Theme,
}

/// The terminal in raw mode on the alternate screen, put back as it was on drop (also on
/// errors and panics, so a failure never leaves the member's shell unusable).
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    mouse: bool,
}

impl Screen {
    fn enter(mouse: bool) -> Result<Self, std::io::Error> {
        enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        let entered = execute!(stdout, EnterAlternateScreen, EnableBracketedPaste).and_then(|()| {
            if mouse {
                execute!(stdout, EnableMouseCapture)
            } else {
                Ok(())
            }
        });
        if let Err(e) = entered {
            restore(mouse);
            return Err(e);
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore(mouse);
            previous(info);
            // A panic in any task ends the client: never keep drawing on a restored terminal.
            std::process::exit(101);
        }));
        let terminal = Terminal::new(CrosstermBackend::new(stdout))?;
        Ok(Self { terminal, mouse })
    }
}

fn restore(mouse: bool) {
    let mut stdout = std::io::stdout();
    if mouse {
        let _ = execute!(stdout, DisableMouseCapture);
    }
    let _ = execute!(
        stdout,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore(self.mouse);
        let _ = self.terminal.show_cursor();
    }
}

fn terminal_error(e: std::io::Error) -> ClientError {
    ClientError::Io {
        path: "the terminal".into(),
        source: e,
    }
}

/// Runs the client until the member quits.
pub async fn run(client: Client, options: Options) -> Result<(), ClientError> {
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    let link = link::spawn(client.clone(), link_rx, updates_tx.clone());
    let worker = worker::Worker::new(client.clone(), options.places.clone(), updates_tx);
    let mut app = App::new(client.profile().server.clone(), options.theme);

    let mut screen = Screen::enter(options.mouse).map_err(terminal_error)?;
    let size = screen.terminal.size().map_err(terminal_error)?;
    app.resize(size.width, size.height);
    let mut keys = EventStream::new();
    // Killed or hung up: leave cleanly, terminal restored.
    let mut terminate = signal(SignalKind::terminate()).map_err(terminal_error)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(terminal_error)?;
    let mut clock = tokio::time::interval(Duration::from_millis(500));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        for effect in app.take_effects() {
            match effect {
                Effect::Link(command) => {
                    let _ = link_tx.send(command);
                }
                other => worker.start(other),
            }
        }
        if app.quit {
            break;
        }
        screen
            .terminal
            .draw(|frame| view::draw(frame, &app))
            .map_err(terminal_error)?;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) => app.on_key(key),
                Some(Ok(Event::Paste(text))) => app.on_paste(&text),
                Some(Ok(Event::Mouse(mouse))) => app.on_mouse(mouse),
                Some(Ok(Event::Resize(columns, rows))) => app.resize(columns, rows),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(terminal_error(e)),
                // The terminal went away.
                None => break,
            },
            update = updates.recv() => {
                if let Some(update) = update {
                    app.apply(update);
                }
                // Take everything that queued up before drawing again.
                while let Ok(update) = updates.try_recv() {
                    app.apply(update);
                }
            },
            _ = clock.tick() => app.tick(Instant::now()),
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
        }
    }
    drop(link_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), link).await;
    drop(screen);
    Ok(())
}
