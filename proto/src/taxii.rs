//! The query parameters of TAXII 2.1 listings (`added_after`, `limit`, `next`, `match[...]`),
//! decoded in one place so that the server and the fuzzers agree on what a query means.
//!
//! A TAXII client is any program a member's organisation runs, so the query string is peer
//! input: every value is checked and a refusal names the parameter that was wrong. Parameters
//! this decoder does not know are ignored, as TAXII 2.1 asks of servers.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The page size when a request names none.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page the server hands out, whatever the request asks (a larger `limit` is cut
/// to this, as the specification allows).
pub const MAX_LIMIT: usize = 1000;

/// What a listing request asks for. Lists are empty when the request does not filter on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    /// Only objects added strictly after this instant.
    pub added_after: Option<OffsetDateTime>,
    /// At most this many objects per page: from 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// The page after this token (one this server handed out in `next`).
    pub next: Option<u64>,
    /// `match[id]`: object ids.
    pub ids: Vec<String>,
    /// `match[type]`: STIX object types.
    pub types: Vec<String>,
    /// `match[version]`: `first`, `last`, `all` or timestamps.
    pub versions: Vec<String>,
    /// `match[spec_version]`: STIX specification versions.
    pub spec_versions: Vec<String>,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            added_after: None,
            limit: DEFAULT_LIMIT,
            next: None,
            ids: Vec::new(),
            types: Vec::new(),
            versions: Vec::new(),
            spec_versions: Vec::new(),
        }
    }
}

/// Why a query was refused: the parameter and the value as the request gave it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("added_after: {0:?} is not a timestamp")]
    AddedAfter(String),
    #[error("limit: {0:?} is not a positive number")]
    Limit(String),
    #[error("next: {0:?} is not from this server")]
    Next(String),
}

impl Filters {
    /// Decodes a raw query string (without the `?`); `None` is a request without one.
    pub fn parse(query: Option<&str>) -> Result<Self, FilterError> {
        let mut f = Self::default();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key);
            let value = percent_decode(value);
            let list = || {
                value
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .collect::<Vec<_>>()
            };
            match key.as_str() {
                "added_after" => {
                    f.added_after = Some(
                        OffsetDateTime::parse(&value, &Rfc3339)
                            .map_err(|_| FilterError::AddedAfter(value.clone()))?,
                    )
                }
                "limit" => {
                    f.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|l| *l > 0)
                        .ok_or_else(|| FilterError::Limit(value.clone()))?
                        .min(MAX_LIMIT)
                }
                "next" => {
                    f.next = Some(
                        value
                            .parse()
                            .map_err(|_| FilterError::Next(value.clone()))?,
                    )
                }
                "match[id]" => f.ids = list(),
                "match[type]" => f.types = list(),
                "match[version]" => f.versions = list(),
                "match[spec_version]" => f.spec_versions = list(),
                _ => {}
            }
        }
        Ok(f)
    }
}

/// Decodes `%XX` escapes and `+` (a space in query strings). An escape that is not two hex
/// digits stays as written; bytes that do not form UTF-8 become U+FFFD, so a value is always
/// text and a bad one is refused by its parameter's check, not here.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_decodes_into_its_filters() {
        let f = Filters::parse(Some(
            "added_after=2026-01-02T03%3A04%3A05.123Z&limit=5000&next=7&match%5Btype%5D=indicator,%20malware&match[version]=all&x=1",
        ))
        .expect("valid");
        assert_eq!(f.limit, MAX_LIMIT, "a larger limit is cut to the maximum");
        assert_eq!(f.next, Some(7));
        assert_eq!(f.types, ["indicator", "malware"]);
        assert_eq!(f.versions, ["all"]);
        assert!(f.added_after.is_some());
        assert_eq!(Filters::parse(None), Ok(Filters::default()));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        assert_eq!(
            Filters::parse(Some("limit=0")),
            Err(FilterError::Limit("0".into()))
        );
        assert_eq!(
            Filters::parse(Some("next=-1")),
            Err(FilterError::Next("-1".into()))
        );
        assert!(matches!(
            Filters::parse(Some("added_after=yesterday")),
            Err(FilterError::AddedAfter(_))
        ));
    }

    #[test]
    fn escapes_at_the_end_and_half_escapes_stay_as_written() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz+%41"), "%zz A");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
