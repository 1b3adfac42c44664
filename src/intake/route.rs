//! How each kind of event moves through the bridge: the state-machine action it is, the
//! direction and source of its message, the outbox target it is forwarded to, and who it is
//! recorded as coming from.

use super::Event;
use crate::domain::payload::{CommandEvent, MessageEvent};
use crate::domain::ticket::Action;
use crate::domain::{Direction, Peer, Source, Target};

/// An event as the intake handles it: a message with its route, or a command with its sender.
pub(super) enum Way<'e> {
    Message(&'e MessageEvent, &'static MessageRoute),
    Command(&'e CommandEvent, Peer),
}

/// The way of `event`.
pub(super) fn way(event: &Event) -> Way<'_> {
    match event {
        Event::Incoming(m) => Way::Message(m, &INCOMING),
        Event::DolphinsReply(m) => Way::Message(m, &DOLPHINS_REPLY),
        Event::ThirdPartyReply(m) => Way::Message(m, &THIRD_PARTY_REPLY),
        Event::DolphinsCommand(c) => Way::Command(c, Peer::Dolphins),
        Event::ThirdPartyCommand(c) => Way::Command(c, Peer::ThirdParty),
    }
}

/// The way of one kind of message event.
pub(super) struct MessageRoute {
    pub action: Action,
    pub direction: Direction,
    pub source: Source,
    pub target: Target,
    pub actor: &'static str,
}

/// A customer message from 3Dolphins, forwarded to the third party's Incoming URL.
pub(super) const INCOMING: MessageRoute = MessageRoute {
    action: Action::IncomingMessage,
    direction: Direction::In,
    source: Source::Dolphins,
    target: Target::ThirdPartyIncoming,
    actor: "3dolphins",
};

/// A reply 3Dolphins reports (an agent answered there), mirrored to the third party.
pub(super) const DOLPHINS_REPLY: MessageRoute = MessageRoute {
    action: Action::DolphinsReply,
    direction: Direction::Out,
    source: Source::Dolphins,
    target: Target::ThirdPartyOutgoing,
    actor: "3dolphins",
};

/// An agent reply from the third party, sent to the customer through 3Dolphins.
pub(super) const THIRD_PARTY_REPLY: MessageRoute = MessageRoute {
    action: Action::ThirdPartyReply,
    direction: Direction::Out,
    source: Source::ThirdParty,
    target: Target::DolphinsMessage,
    actor: "third_party",
};

/// The way of a command sent by `from`: who it is recorded as, where it is forwarded, and
/// the state-machine action (an unknown word from 3Dolphins is recorded and mirrored, with
/// no state change).
pub(super) fn command_route(from: Peer, is_close: bool) -> (&'static str, Target, Action) {
    match (from, is_close) {
        (Peer::Dolphins, true) => ("3dolphins", Target::ThirdPartyCommand, Action::DolphinsClose),
        (Peer::Dolphins, false) => ("3dolphins", Target::ThirdPartyCommand, Action::DolphinsReply),
        // Only the two relayed systems send commands; the alerts receiver sends nothing.
        (Peer::ThirdParty | Peer::Alerts, _) => ("third_party", Target::DolphinsCommand, Action::ThirdPartyClose),
    }
}
