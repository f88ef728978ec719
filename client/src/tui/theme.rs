//! Colours and emphasis. TLP labels are drawn in the colours the TLP 2.0 standard gives them
//! (on black); with `NO_COLOR` set every style falls back to bold, reverse and underline so
//! that nothing depends on colour to be understood.

use escape_proto::alert::Severity;
use escape_proto::tlp::Tlp;
use ratatui::style::{Color, Modifier, Style};

/// The palette in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
    /// 24-bit colour (`COLORTERM=truecolor`); otherwise the nearest of the 256 indexed colours.
    pub truecolor: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to a non-empty value (the convention terminals share).
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let truecolor =
            std::env::var("COLORTERM").is_ok_and(|v| matches!(v.as_str(), "truecolor" | "24bit"));
        Self {
            color: !no_color,
            truecolor,
        }
    }

    /// Full colour (the TLP colours exactly).
    pub fn colored() -> Self {
        Self {
            color: true,
            truecolor: true,
        }
    }

    pub fn plain() -> Self {
        Self {
            color: false,
            truecolor: false,
        }
    }

    fn pick(&self, color: Style, fallback: Style) -> Style {
        if self.color { color } else { fallback }
    }

    /// A TLP badge: the label's colour on black, as TLP 2.0 prescribes.
    pub fn tlp(&self, tlp: Tlp) -> Style {
        let (fg, indexed) = match tlp {
            Tlp::Red => (Color::Rgb(0xFF, 0x2B, 0x2B), 203),
            Tlp::AmberStrict | Tlp::Amber => (Color::Rgb(0xFF, 0xC0, 0x00), 214),
            Tlp::Green => (Color::Rgb(0x33, 0xFF, 0x00), 82),
            Tlp::Clear => (Color::Rgb(0xFF, 0xFF, 0xFF), 231),
        };
        let (fg, bg) = if self.truecolor {
            (fg, Color::Rgb(0, 0, 0))
        } else {
            (Color::Indexed(indexed), Color::Indexed(16))
        };
        self.pick(
            Style::new().fg(fg).bg(bg).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
    }

    /// The alerts bar: impossible to overlook.
    pub fn alert(&self, severity: Severity) -> Style {
        let bg = match severity {
            Severity::Critical | Severity::High => Color::Red,
            Severity::Medium => Color::Yellow,
            Severity::Low => Color::Blue,
        };
        let fg = if matches!(severity, Severity::Medium) {
            Color::Black
        } else {
            Color::White
        };
        self.pick(
            Style::new().fg(fg).bg(bg).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
    }

    pub fn error(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    pub fn ok(&self) -> Style {
        self.pick(Style::new().fg(Color::Green), Style::new())
    }

    pub fn warn(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Yellow),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    /// Secondary text: times, organisations, sequence numbers.
    pub fn dim(&self) -> Style {
        self.pick(
            Style::new().fg(Color::DarkGray),
            Style::new().add_modifier(Modifier::DIM),
        )
    }

    pub fn sender(&self, mine: bool) -> Style {
        let color = if mine { Color::Cyan } else { Color::LightBlue };
        self.pick(
            Style::new().fg(color).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    /// The selected room, the focused border.
    pub fn selected(&self) -> Style {
        self.pick(
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }

    /// A line that mentions this member.
    pub fn mention(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::UNDERLINED),
        )
    }

    pub fn title(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
}
