//! Client of the 3Dolphins APIs (CONTRACT §8). So far: the API token from
//! `POST {apiBaseUrl}/graph/auth`, cached until shortly before its `expireAt`, which
//! deliveries to 3Dolphins carry when the tenant sets `useApiToken`.

pub mod token;
