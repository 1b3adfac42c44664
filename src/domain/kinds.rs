//! The closed vocabularies of the data model, stored as text with `CHECK` constraints.

use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in PostgreSQL and shown in the API.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Reads the stored text back; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Which way a message travels.
    Direction { In = "in", Out = "out" }
);

text_enum!(
    /// Who a message came from.
    Source { Dolphins = "3dolphins", ThirdParty = "third_party", History = "history" }
);

text_enum!(
    /// A ticket's state as the bridge tracks it.
    TicketStatus { Open = "open", Closed = "closed" }
);

text_enum!(
    /// Who the bridge delivers to: the two systems it relays between, and the tenant's
    /// operational alerts receiver. Deliveries are ordered per ticket (or alert queue) and peer.
    Peer { ThirdParty = "third_party", Dolphins = "dolphins", Alerts = "alerts" }
);

text_enum!(
    /// Where a delivery goes.
    Target {
        ThirdPartyIncoming = "third_party_incoming",
        ThirdPartyOutgoing = "third_party_outgoing",
        ThirdPartyCommand = "third_party_command",
        DolphinsMessage = "dolphins_message",
        DolphinsCommand = "dolphins_command",
        Alerts = "alerts",
    }
);

impl Target {
    pub fn peer(self) -> Peer {
        match self {
            Target::ThirdPartyIncoming | Target::ThirdPartyOutgoing | Target::ThirdPartyCommand => Peer::ThirdParty,
            Target::DolphinsMessage | Target::DolphinsCommand => Peer::Dolphins,
            Target::Alerts => Peer::Alerts,
        }
    }

    /// The targets an operational alert can be about: every one but `alerts` itself.
    pub fn watched() -> impl Iterator<Item = Target> {
        Target::ALL.iter().copied().filter(|t| *t != Target::Alerts)
    }
}

/// The ordering key of a tenant's alert deliveries (where a ticket number would be).
pub const ALERTS_QUEUE: &str = "#alerts";

text_enum!(
    /// Where a delivery stands. `pending` and `failed` are waiting to be sent and hold
    /// back the ticket's later deliveries to the same peer.
    DeliveryStatus {
        Pending = "pending",
        Failed = "failed",
        Delivered = "delivered",
        Dead = "dead",
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// Kinds of lifecycle events in a ticket's audit. `command` records a command
    /// word the bridge does not act on (3Dolphins side only; see the README).
    EventKind {
        Created = "created",
        MessageIn = "message_in",
        MessageOut = "message_out",
        Closed = "closed",
        Reopened = "reopened",
        Command = "command",
        Delivered = "delivered",
        DeliveryFailed = "delivery_failed",
        Dead = "dead",
        Retried = "retried",
        Cancelled = "cancelled",
        NotForwarded = "not_forwarded",
        Echo = "echo",
        Purged = "purged",
        Paused = "paused",
        Resumed = "resumed",
    }
);

text_enum!(
    /// What a credential may do (README *HTTP surface*, admin and credentials).
    KeyKind { Inbound = "inbound", ThirdParty = "third_party", Read = "read" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_text() {
        for t in Target::ALL {
            assert_eq!(Target::parse(t.as_str()), Some(*t));
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(*s));
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Source::parse("3dolphins"), Some(Source::Dolphins));
        assert_eq!(KeyKind::parse("admin"), None);
    }

    #[test]
    fn targets_belong_to_their_peer() {
        assert_eq!(Target::DolphinsCommand.peer(), Peer::Dolphins);
        assert_eq!(Target::DolphinsMessage.peer(), Peer::Dolphins);
        assert_eq!(Target::ThirdPartyCommand.peer(), Peer::ThirdParty);
    }

    #[test]
    fn serde_uses_the_stored_text() {
        assert_eq!(serde_json::to_value(Target::DolphinsMessage).ok(), Some(serde_json::json!("dolphins_message")));
    }
}
