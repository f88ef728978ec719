//! TLP 2.0 labels: exactly one per shared object, shown before the information.

use serde::{Deserialize, Serialize};

/// A Traffic Light Protocol 2.0 label, ordered from the narrowest audience to the widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tlp {
    #[serde(rename = "TLP:RED")]
    Red,
    #[serde(rename = "TLP:AMBER+STRICT")]
    AmberStrict,
    #[serde(rename = "TLP:AMBER")]
    Amber,
    #[serde(rename = "TLP:GREEN")]
    Green,
    #[serde(rename = "TLP:CLEAR")]
    Clear,
}

/// The STIX 2.1 extension that defines TLP 2.0 marking definitions.
pub const TLP_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

impl Tlp {
    pub const ALL: [Tlp; 5] = [
        Tlp::Red,
        Tlp::AmberStrict,
        Tlp::Amber,
        Tlp::Green,
        Tlp::Clear,
    ];

    /// `TLP:AMBER`, as it is shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Tlp::Red => "TLP:RED",
            Tlp::AmberStrict => "TLP:AMBER+STRICT",
            Tlp::Amber => "TLP:AMBER",
            Tlp::Green => "TLP:GREEN",
            Tlp::Clear => "TLP:CLEAR",
        }
    }

    /// The label without its prefix, as room settings name it (`AMBER`).
    pub fn name(self) -> &'static str {
        &self.as_str()[4..]
    }

    /// `red`, `amber+strict`, ... as the STIX `tlp_2_0` property spells it.
    pub fn stix_value(self) -> &'static str {
        match self {
            Tlp::Red => "red",
            Tlp::AmberStrict => "amber+strict",
            Tlp::Amber => "amber",
            Tlp::Green => "green",
            Tlp::Clear => "clear",
        }
    }

    /// The fixed id of the label's STIX 2.1 marking definition.
    pub fn marking_definition(self) -> &'static str {
        match self {
            Tlp::Clear => "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
            Tlp::Green => "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
            Tlp::Amber => "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
            Tlp::AmberStrict => "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
            Tlp::Red => "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
        }
    }

    /// The label of a marking definition id, if it is one of TLP 2.0's.
    pub fn from_marking_definition(id: &str) -> Option<Tlp> {
        Tlp::ALL.into_iter().find(|t| t.marking_definition() == id)
    }

    /// Reads `TLP:AMBER`, `amber`, `AMBER+STRICT`, `tlp:clear` (and TLP 1.0's `WHITE` as CLEAR).
    pub fn parse(text: &str) -> Option<Tlp> {
        let upper = text.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("TLP:").unwrap_or(&upper).trim();
        Some(match bare {
            "RED" => Tlp::Red,
            "AMBER+STRICT" | "AMBER-STRICT" | "AMBER_STRICT" => Tlp::AmberStrict,
            "AMBER" => Tlp::Amber,
            "GREEN" => Tlp::Green,
            "CLEAR" | "WHITE" => Tlp::Clear,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Tlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_print_and_order_by_audience() {
        for tlp in Tlp::ALL {
            assert_eq!(Tlp::parse(tlp.as_str()), Some(tlp));
            assert_eq!(Tlp::parse(tlp.name()), Some(tlp));
            assert_eq!(
                Tlp::from_marking_definition(tlp.marking_definition()),
                Some(tlp)
            );
            assert_eq!(
                serde_json::to_string(&tlp).expect("json"),
                format!("\"{}\"", tlp.as_str())
            );
        }
        assert_eq!(Tlp::parse("amber+strict"), Some(Tlp::AmberStrict));
        assert_eq!(Tlp::parse("white"), Some(Tlp::Clear));
        assert_eq!(Tlp::parse("orange"), None);
        assert!(Tlp::Red < Tlp::AmberStrict && Tlp::Green < Tlp::Clear);
    }
}
