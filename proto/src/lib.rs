//! Escape's wire protocol: every type a client and the server exchange, and nothing else.
//!
//! The crate holds no I/O so that the server, the client, tests and fuzzers agree on one
//! definition of each frame. One module per resource:
//!
//! - [`member`]: who a member is (id, attributes, status), as `GET /v1/me` returns it.
//! - [`room`]: room names, summaries and the HTTP bodies that create, join and page rooms.
//! - [`message`]: a stored room message as the server delivers it.
//! - [`frame`]: the real-time frames on `/v1/ws`, with their versioned envelope and decoder.
//! - [`taxii`]: the query parameters of TAXII 2.1 listings.
//! - [`vetting`]: invitations, applications, vouches, decisions, lifecycle, directory.
//! - [`error`]: the machine-readable error codes shared by HTTP answers and error frames.
//!
//! Unknown fields in a frame or body are ignored (a newer client may send more than this
//! server knows); unknown frame types and protocol versions are rejected with a coded error.
#![forbid(unsafe_code)]

pub mod alert;
pub mod audit;
pub mod error;
pub mod file;
pub mod frame;
pub mod indicator;
pub mod member;
pub mod message;
pub mod profile;
pub mod room;
pub mod stix;
pub mod taxii;
pub mod tlp;
pub mod vetting;

pub use error::{ErrorBody, ErrorCode};
pub use frame::{
    ClientFrame, ClientRequest, DecodeError, PROTOCOL_VERSION, ServerFrame, ServerMessage,
};
pub use member::{Attributes, Member, MemberId, MemberStatus, Published};
pub use message::{Body, Event};
pub use profile::ProfileBundle;
pub use room::{RoomName, RoomNameError};
