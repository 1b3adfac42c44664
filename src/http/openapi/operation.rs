//! One operation's description: who may call it, what it takes, what it answers (every
//! status, every content type), built by the route that serves it.

use utoipa::openapi::path::{Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, HeaderBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Schema};
use utoipa::ToSchema;

use super::parameters::{header_param, query_bool, query_enum, query_string};
use super::Auth;
use crate::http::error::ErrorOut;

/// What the document says about one operation; built with [`doc`] and its methods.
pub struct Doc {
    operation_id: &'static str,
    summary: &'static str,
    auth: Auth,
    body: Option<(&'static str, RefOr<Schema>)>,
    replies: Vec<(u16, Response)>,
    parameters: Vec<Parameter>,
    errors: Vec<u16>,
    /// The types this operation refers to, collected into the components once per type.
    pub(super) types: Vec<Component>,
}

/// A type whose schema is a component: its name, its schema, and the components it refers to.
#[derive(Clone, Copy)]
pub(super) struct Component {
    pub(super) name: fn() -> std::borrow::Cow<'static, str>,
    pub(super) schema: fn() -> RefOr<Schema>,
    pub(super) nested: fn(&mut Vec<(String, RefOr<Schema>)>),
}

impl Component {
    pub(super) fn of<T: ToSchema>() -> Self {
        Component { name: T::name, schema: T::schema, nested: T::schemas }
    }
}

/// An operation named `operation_id` (unique in the document), with its one-line summary.
pub fn doc(operation_id: &'static str, summary: &'static str, auth: Auth) -> Doc {
    Doc {
        operation_id,
        summary,
        auth,
        body: None,
        replies: Vec::new(),
        parameters: Vec::new(),
        errors: Vec::new(),
        types: Vec::new(),
    }
}

/// A reference to `T`'s schema component, after noting `T` for the components.
fn reference<T: ToSchema>(types: &mut Vec<Component>) -> RefOr<Schema> {
    types.push(Component::of::<T>());
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

impl Doc {
    /// A JSON reply of type `T` with `status`.
    pub fn reply<T: ToSchema>(mut self, status: u16, description: &str) -> Self {
        let schema = reference::<T>(&mut self.types);
        let response =
            ResponseBuilder::new().description(description).content("application/json", Content::new(Some(schema)));
        self.replies.push((status, response.build()));
        self
    }

    /// The 200 reply is also offered as CSV (`?format=csv` or `Accept: text/csv`).
    pub fn csv(mut self) -> Self {
        // Every matching row, one per line; the columns are the JSON properties.
        let csv = Content::new(Some(ObjectBuilder::new().schema_type(Type::String)));
        if let Some((_, response)) = self.replies.iter_mut().find(|(status, _)| *status == 200) {
            response.content.insert("text/csv".into(), csv.into());
        }
        self.parameters.extend([
            query_enum("format", "`csv` for every matching row as CSV", &["json", "csv"]),
            query_bool("bom", "with `format=csv`: start with a UTF-8 byte order mark"),
        ]);
        self
    }

    /// A reply of `status` in `content_type` that is not JSON (HTML, Prometheus text); a
    /// second call for the same status adds a content type.
    pub fn text(mut self, status: u16, content_type: &str, description: &str) -> Self {
        let content = Content::new(Some(ObjectBuilder::new().schema_type(Type::String)));
        match self.replies.iter_mut().find(|(s, _)| *s == status) {
            Some((_, response)) => {
                response.content.insert(content_type.into(), content.into());
            }
            None => self
                .replies
                .push((status, ResponseBuilder::new().description(description).content(content_type, content).build())),
        }
        self
    }

    /// A reply without a body that sends the client on (`Location`).
    pub fn redirect(mut self, status: u16, description: &str) -> Self {
        let location = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some("where to go"))
            .build();
        let mut response = ResponseBuilder::new().description(description).build();
        response.headers.insert("Location".into(), location.into());
        self.replies.push((status, response));
        self
    }

    /// A form (`application/x-www-form-urlencoded`) request body of type `T`.
    pub fn form<T: ToSchema>(mut self) -> Self {
        self.body = Some(("application/x-www-form-urlencoded", reference::<T>(&mut self.types)));
        self
    }

    /// A JSON request body of type `T`.
    pub fn body<T: ToSchema>(mut self) -> Self {
        self.body = Some(("application/json", reference::<T>(&mut self.types)));
        self
    }

    /// Query parameters.
    pub fn query(mut self, parameters: impl IntoIterator<Item = Parameter>) -> Self {
        self.parameters.extend(parameters);
        self
    }

    /// Refusals this operation can answer beyond those of its credential, body and path.
    pub fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    /// The refusals of any operation like this one: its own plus what every layer adds.
    fn all_errors(&self, path: &str) -> Vec<u16> {
        let mut statuses = self.errors.clone();
        statuses.push(408);
        if self.auth != Auth::Public {
            statuses.extend([401, 429, 503]);
        }
        if matches!(self.auth, Auth::Admin | Auth::ThirdParty | Auth::Read | Auth::Write) {
            statuses.push(403);
        }
        if matches!(self.auth, Auth::Read | Auth::Write) {
            statuses.push(404); // with the admin token: X-Bridge-Owner names no tenant
        }
        if let Some((content_type, _)) = &self.body {
            statuses.extend([400, 413]);
            if *content_type == "application/json" && self.auth != Auth::Inbound {
                statuses.push(415);
            }
        }
        if !self.parameters.is_empty() {
            statuses.push(400);
        }
        if path.contains('{') {
            statuses.extend([400, 404]); // 400: a value PostgreSQL cannot hold (NUL)
        }
        if path.starts_with("/webhooks/") {
            statuses.extend([409, 422]); // the Idempotency-Key in use, or used for another body
        }
        statuses.sort_unstable();
        statuses.dedup();
        statuses
    }

    pub(super) fn operation(&self, path: &str) -> Operation {
        let mut op =
            OperationBuilder::new().operation_id(Some(self.operation_id)).summary(Some(self.summary)).tag(tag(path));
        for name in path_params(path) {
            let schema = match name {
                "target" => crate::http::shapes::target(),
                "id" => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .build(),
                _ => ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).build(),
            };
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(schema)),
            );
        }
        for p in &self.parameters {
            op = op.parameter(p.clone());
        }
        if self.auth == Auth::Inbound {
            op = op.parameter(query_string("token", "the inbound token (3Dolphins cannot set headers)"));
        }
        for header in self.headers() {
            op = op.parameter(header);
        }
        if let Some((content_type, schema)) = &self.body {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(*content_type, Content::new(Some(schema.clone())))
                    .build(),
            ));
        }
        for (status, response) in &self.replies {
            op = op.response(status.to_string(), with_request_id(response.clone()));
        }
        // A status the operation answers in its own way (the console's HTML forms) keeps it.
        for status in self.all_errors(path).into_iter().filter(|s| self.replies.iter().all(|(r, _)| r != s)) {
            op = op.response(status.to_string(), error_response(status));
        }
        op.securities(Some(self.security())).build()
    }

    /// The request headers the operation reads.
    fn headers(&self) -> Vec<Parameter> {
        let mut headers = vec![header_param(
            "X-Request-Id",
            "echoed on the reply and written on every log line of the request; a missing one, or one that is not printable ASCII of at most 200 characters, is replaced by a generated id",
        )];
        if matches!(self.auth, Auth::Read | Auth::Write) {
            headers.push(header_param("X-Bridge-Owner", "with the admin token: the tenant to act for"));
        }
        if matches!(self.auth, Auth::Inbound | Auth::ThirdParty) {
            for (name, what) in [
                (
                    "Idempotency-Key",
                    "a retry with the same key and body is answered as the first was, and applied once (24 h)",
                ),
                ("webhook-id", "Standard Webhooks' message id: the idempotency key when Idempotency-Key is absent"),
            ] {
                let mut header = header_param(name, what);
                let key = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(255));
                header.schema = Some(key.into());
                headers.push(header);
            }
        }
        if self.auth == Auth::ThirdParty {
            for (name, what) in [
                ("webhook-timestamp", "Standard Webhooks: seconds since the epoch, within 5 minutes"),
                (
                    "webhook-signature",
                    "Standard Webhooks: `v1,<base64 HMAC-SHA256>` (tenants with inboundAuth = signature)",
                ),
            ] {
                headers.push(header_param(name, what));
            }
        }
        headers
    }

    fn security(&self) -> Vec<SecurityRequirement> {
        let scheme = |name: &str| SecurityRequirement::new(name, Vec::<String>::new());
        match self.auth {
            Auth::Public => Vec::new(),
            Auth::Admin => vec![scheme("adminToken")],
            Auth::Inbound => vec![scheme("inboundToken"), scheme("bearer")],
            Auth::ThirdParty => vec![scheme("bearer"), scheme("standardWebhooks")],
            Auth::Read | Auth::Write => vec![scheme("bearer"), scheme("adminToken")],
        }
    }
}

/// A reply that says it carries `X-Request-Id`.
fn with_request_id(mut response: Response) -> Response {
    let header = HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some("the request's id"))
        .build();
    response.headers.insert("X-Request-Id".into(), header.into());
    response
}

fn error_response(status: u16) -> Response {
    let what = match status {
        400 => "refused: every problem is listed in error.fields",
        401 => "no, unknown or revoked credential",
        403 => "a credential of the wrong kind, another tenant's owner, or the admin API disabled",
        404 => "not found (or another tenant's)",
        408 => "the request took longer than BRIDGE_REQUEST_TIMEOUT",
        409 => "does not fit the resource's state",
        413 => "the body is over BRIDGE_MAX_BODY",
        415 => "the body is not declared as JSON",
        422 => "this idempotency key was used for a different request",
        429 => "the credential's request budget is spent (Retry-After)",
        502 => "3Dolphins is unavailable and nothing is cached",
        503 => "the database is unavailable: nothing was stored, retry (Retry-After)",
        _ => "refused",
    };
    let schema = RefOr::Ref(Ref::from_schema_name(ErrorOut::name()));
    with_request_id(
        ResponseBuilder::new().description(what).content("application/json", Content::new(Some(schema))).build(),
    )
}

fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn tag(path: &str) -> &'static str {
    match path {
        p if p.starts_with("/webhooks/") => "webhooks",
        p if p.starts_with("/admin/") => "admin",
        p if p.starts_with("/api/v1/reports") => "reports",
        p if p.starts_with("/api/v1/deliveries") || p.starts_with("/api/v1/endpoints") => "deliveries",
        p if p.starts_with("/api/v1/") => "query",
        p if p.starts_with("/console") => "console",
        _ => "operations",
    }
}
