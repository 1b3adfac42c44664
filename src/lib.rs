//! dolphin-bridge: a relay between 3Dolphins and a third-party contact-center system.
//!
//! # Layout
//!
//! - [`config`]: typed settings from the environment, validated once.
//! - [`domain`]: pure rules: event validation and normalisation, ticket states, retry policy.
pub mod config; pub mod domain;
