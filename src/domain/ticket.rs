//! The ticket state machine: `open → closed → open (reopened)`.
//!
//! Events from 3Dolphins may create tickets the bridge has not seen (3Dolphins owns the
//! tickets); the third party can only act on tickets that exist, and cannot reply on a
//! closed one.

use super::TicketStatus;

/// What happened to a ticket, as the caller of [`transition`] asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A customer message from 3Dolphins.
    IncomingMessage,
    /// An agent/bot reply reported by 3Dolphins.
    DolphinsReply,
    /// A close reported by 3Dolphins.
    DolphinsClose,
    /// An agent reply from the third party.
    ThirdPartyReply,
    /// A close from the third party.
    ThirdPartyClose,
}

/// The effect of an action on a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The ticket did not exist and is created.
    pub created: bool,
    /// A closed ticket opens again.
    pub reopened: bool,
    /// An open ticket closes.
    pub closed: bool,
    /// The status after the action.
    pub status: TicketStatus,
}

impl Transition {
    /// Closing a closed ticket: success with nothing to do.
    pub fn is_noop_close(&self, action: Action) -> bool {
        matches!(action, Action::DolphinsClose | Action::ThirdPartyClose) && !self.closed
    }
}

/// Why the third party's action cannot apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket not found")]
    NotFound,
    #[error("ticket is closed")]
    Closed,
}

/// Applies `action` to a ticket whose current status is `current` (`None`: unknown ticket).
pub fn transition(current: Option<TicketStatus>, action: Action) -> Result<Transition, TicketError> {
    use TicketStatus::{Closed, Open};
    let stay = |status| Transition { created: false, reopened: false, closed: false, status };
    let created = Transition { created: true, reopened: false, closed: false, status: Open };
    Ok(match (action, current) {
        (Action::IncomingMessage, None) => created,
        (Action::IncomingMessage, Some(Open)) => stay(Open),
        (Action::IncomingMessage, Some(Closed)) => Transition { reopened: true, ..stay(Open) },
        (Action::DolphinsReply, None) => created,
        (Action::DolphinsReply, Some(status)) => stay(status),
        (Action::DolphinsClose, None) => Transition { closed: true, status: Closed, ..created },
        (Action::DolphinsClose | Action::ThirdPartyClose, Some(Open)) => Transition { closed: true, ..stay(Closed) },
        (Action::DolphinsClose | Action::ThirdPartyClose, Some(Closed)) => stay(Closed),
        (Action::ThirdPartyReply | Action::ThirdPartyClose, None) => return Err(TicketError::NotFound),
        (Action::ThirdPartyReply, Some(Closed)) => return Err(TicketError::Closed),
        (Action::ThirdPartyReply, Some(Open)) => stay(Open),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TicketStatus::{Closed, Open};

    #[test]
    fn a_customer_message_creates_an_unknown_ticket() {
        let t = transition(None, Action::IncomingMessage).expect("allowed");
        assert!(t.created && !t.reopened && !t.closed);
        assert_eq!(t.status, Open);
    }

    #[test]
    fn a_customer_message_reopens_a_closed_ticket() {
        let t = transition(Some(Closed), Action::IncomingMessage).expect("allowed");
        assert!(t.reopened && !t.created);
        assert_eq!(t.status, Open);
        assert!(!transition(Some(Open), Action::IncomingMessage).expect("allowed").reopened);
    }

    #[test]
    fn closing_an_open_ticket_closes_it_from_either_side() {
        for action in [Action::DolphinsClose, Action::ThirdPartyClose] {
            let t = transition(Some(Open), action).expect("allowed");
            assert!(t.closed);
            assert_eq!(t.status, Closed);
        }
    }

    #[test]
    fn closing_a_closed_ticket_is_a_no_op() {
        for action in [Action::DolphinsClose, Action::ThirdPartyClose] {
            let t = transition(Some(Closed), action).expect("allowed");
            assert!(t.is_noop_close(action));
            assert_eq!(t.status, Closed);
        }
    }

    #[test]
    fn a_close_from_3dolphins_creates_and_closes_an_unknown_ticket() {
        let t = transition(None, Action::DolphinsClose).expect("allowed");
        assert!(t.created && t.closed);
        assert_eq!(t.status, Closed);
    }

    #[test]
    fn dolphins_replies_are_stored_even_on_closed_tickets_without_reopening() {
        let t = transition(Some(Closed), Action::DolphinsReply).expect("allowed");
        assert_eq!(t.status, Closed);
        assert!(!t.reopened);
        assert!(transition(None, Action::DolphinsReply).expect("allowed").created);
    }

    #[test]
    fn the_third_party_cannot_act_on_unknown_tickets_or_reply_on_closed_ones() {
        assert_eq!(transition(None, Action::ThirdPartyReply), Err(TicketError::NotFound));
        assert_eq!(transition(None, Action::ThirdPartyClose), Err(TicketError::NotFound));
        assert_eq!(transition(Some(Closed), Action::ThirdPartyReply), Err(TicketError::Closed));
        assert_eq!(transition(Some(Open), Action::ThirdPartyReply).map(|t| t.status), Ok(Open));
    }
}
