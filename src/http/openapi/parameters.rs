//! The parameters operations share: typed, bounded, described once.

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

pub(super) fn header_param(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// An optional query parameter of type `schema`.
fn query_param(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

pub fn query_string(name: &str, description: &str) -> Parameter {
    query_param(name, description, ObjectBuilder::new().schema_type(Type::String))
}

pub fn query_bool(name: &str, description: &str) -> Parameter {
    query_param(name, description, ObjectBuilder::new().schema_type(Type::Boolean))
}

/// A whole number from `min` to `max`.
pub fn query_integer(name: &str, description: &str, min: i64, max: i64) -> Parameter {
    query_param(
        name,
        description,
        ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(min as f64)).maximum(Some(max as f64)),
    )
}

/// One of `names`.
pub fn query_enum(name: &str, description: &str, names: &[&str]) -> Parameter {
    query_param(
        name,
        description,
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names.iter().copied())),
    )
}

/// A comma-separated list (or the parameter repeated) of `names`.
pub fn query_list(name: &str, description: &str, names: &[&str]) -> Parameter {
    let item = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names.iter().copied()));
    let mut p = query_param(name, description, ArrayBuilder::new().items(item));
    p.explode = Some(false);
    p
}

/// `from`/`to`: an RFC 3339 instant or a `YYYY-MM-DD` local date (`from` before `to`).
pub fn query_time(name: &str, description: &str) -> Parameter {
    let instant =
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
    let date =
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)));
    query_param(name, description, AnyOfBuilder::new().item(instant).item(date))
}

/// `limit` and `cursor`: a page of a list.
pub fn paging() -> [Parameter; 2] {
    let limit = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(crate::http::params::MAX_LIMIT as f64))
        .default(Some(crate::http::params::DEFAULT_LIMIT.into()));
    [
        query_param("limit", "rows per page", limit),
        query_param(
            "cursor",
            "the `nextCursor` of the previous page (opaque, bound to the same filters)",
            ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z0-9_-]+$")),
        ),
    ]
}

/// `tz`: an IANA time zone, default the tenant's.
pub fn query_tz() -> Parameter {
    query_string("tz", "an IANA time zone for local dates and buckets; default the tenant's")
}
