//! `sip-codec`: the SIP message codec of sipedge — sans-IO, zero-copy, panic-free on any input.
//!
//! Where things live:
//! - [`parse`] / [`parse_with`] (`parse.rs`): bytes → borrowed [`Message`] (start line, header spans, body).
//! - [`Message`] (`message.rs`): header lookup and the typed, lazy accessors a proxy needs.
//! - `uri.rs`, `name_addr.rs`, `params.rs`, `via.rs`, `typed.rs`: the value grammars (RFC 3261 §25).
//! - [`Framer`] (`framer.rs`): cuts messages and RFC 5626 keepalives out of a TCP/TLS byte stream.
//! - [`Editor`] (`edit.rs`): proxy edits as span replacements; output as `IoSlice`s or one buffer.
//! - [`ResponseBuilder`] (`response.rs`): responses the edge generates itself (400, 403, 504, ...).
//!
//! Nothing here opens a socket, reads a clock, spawns a thread or logs. I/O lives in `edge-core`.
#![forbid(unsafe_code)]

mod edit;
mod error;
mod framer;
mod header;
mod kept;
mod message;
mod name_addr;
mod params;
mod parse;
mod request;
mod response;
mod scan;
mod status;
mod typed;
mod uri;
mod via;

pub mod fuzzing;

pub use edit::{EditBuf, Editor, MaxForwards};
pub use error::{ErrorKind, ParseError, ValueError};
pub use framer::{Frame, FrameError, Framer};
pub use header::{Header, HeaderName};
pub use kept::Kept;
pub use message::{Defect, DefectKind, Message, StartLine, Version};
pub use name_addr::NameAddr;
pub use params::{Param, Params};
pub use parse::{parse, parse_reusing, parse_with, HeaderBuf, Limits};
pub use request::RequestBuilder;
pub use response::ResponseBuilder;
pub use status::reason_phrase;
pub use typed::{
    split_values, CSeq, Contact, ContactValue, Diagnostic, PushParams, SubscriptionState, Values,
};
pub use uri::{Host, Scheme, SipUri, Uri};
pub use via::Via;
