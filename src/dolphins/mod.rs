//! Client of the 3Dolphins APIs (README *Connecting the peers*, 3Dolphins): the API token from `POST {apiBaseUrl}/graph/auth`
//! (cached until shortly before its `expireAt`), Conversation History and Contact.

pub mod client;
pub mod token;

use crate::domain::tenant::TenantSettings;
use token::Account;

/// The tenant's 3Dolphins API account, if it configured one (base URL, user, password).
pub fn account(settings: &TenantSettings, password: Option<&str>) -> Option<Account> {
    let d = &settings.dolphins;
    Some(Account {
        api_base_url: d.api_base_url.clone()?,
        username: d.username.clone()?,
        password: password?.to_string(),
    })
}
