//! The local HTTP JSON API on 127.0.0.1 (same port number as the UDP port), compatible with
//! ZeroTier One's for the parts that exist so far: `/status`, `/peer`, `/peer/<address>`; plus
//! `POST /unstable/ping/<address>` (weft: send a USER_MESSAGE through the normal send path).
//! Auth with `authtoken.secret` through `X-ZT1-Auth`, `Authorization: Bearer` or `?auth=`.
//! spec: service.md §4.1, §4.2, §4.3, §4.5
//!
//! Handlers never touch the node: they send a request to the service loop, which owns it, and
//! wait for the answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use weft_wire::{Address, NetworkId};

use super::controller_api::{ControllerRequest, CtlAnswer, CtlBody, NetworkTarget};

/// A request from the API to the service loop.
#[derive(Debug)]
pub(crate) enum ApiRequest {
    /// `/status`.
    Status(oneshot::Sender<Value>),
    /// `/peer` (all) or `/peer/<address>` (one; `Value::Null` if unknown).
    Peers(Option<Address>, oneshot::Sender<Value>),
    /// Send a USER_MESSAGE to the peer.
    Ping(Address, oneshot::Sender<Value>),
    /// `GET /bond/show/<address>` (`Value::Null`: no bond).
    BondShow(Address, oneshot::Sender<Value>),
    /// `POST /bond/rotate/<address>` (false: no active-backup bond or nothing to rotate to).
    BondRotate(Address, oneshot::Sender<Value>),
    /// `POST /bond/setmtu/<mtu>/<ifname>/<ip>`: `Value::Null` when done, else the reason.
    BondSetMtu {
        mtu: u32,
        ifname: String,
        ip: Option<std::net::IpAddr>,
        reply: oneshot::Sender<Value>,
    },
    /// `/moon` (all) or `/moon/<id>` (one; `Value::Null` if not orbited).
    Moons(Option<u64>, oneshot::Sender<Value>),
    /// `POST /moon/<id>` with a seed (0 = none).
    Orbit(u64, Address, oneshot::Sender<Value>),
    /// `DELETE /moon/<id>`.
    Deorbit(u64, oneshot::Sender<Value>),
    /// `/network` (all) or `/network/<nwid>` (one; `Value::Null` if not joined).
    Networks(Option<NetworkId>, oneshot::Sender<Value>),
    /// `POST /network/<nwid>`: join (idempotent) and apply the local settings given.
    Join(NetworkId, NetworkSettings, oneshot::Sender<Value>),
    /// `DELETE /network/<nwid>`: leave (`Value::Null` if it was not joined).
    Leave(NetworkId, oneshot::Sender<Value>),
    /// `/health`.
    Health(oneshot::Sender<Value>),
    /// `/metrics` (OpenMetrics text).
    Metrics(oneshot::Sender<String>),
    /// `GET /config`.
    Config(oneshot::Sender<Value>),
    /// `POST /config/settings` (answers `Value::String(error)` when local.conf can't be written).
    ConfigSettings(serde_json::Map<String, Value>, oneshot::Sender<Value>),
    /// `/controller…` requests (handled by the controller in the service loop).
    Controller(ControllerRequest, oneshot::Sender<CtlAnswer>),
}

/// The local settings a `POST /network/<nwid>` may carry; only JSON booleans are honoured.
/// spec: service.md §4.4
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NetworkSettings {
    pub(crate) allow_managed: Option<bool>,
    pub(crate) allow_global: Option<bool>,
    pub(crate) allow_default: Option<bool>,
    pub(crate) allow_dns: Option<bool>,
}

#[derive(Clone)]
struct Ctx {
    token: Arc<String>,
    metrics_token: Arc<String>,
    /// Networks besides loopback that may use the API (`allowManagementFrom`).
    allow: Arc<Vec<ipnet::IpNet>>,
    tx: mpsc::Sender<ApiRequest>,
}

/// Whether the client may use the API at all: loopback, or inside `allowManagementFrom`.
/// Requests without a known peer (in-process tests) count as local. spec: service.md §4.1
fn source_allowed(ctx: &Ctx, req: &axum::extract::Request) -> bool {
    let Some(axum::extract::ConnectInfo(peer)) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    else {
        return true;
    };
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || ctx.allow.iter().any(|n| n.contains(&ip))
}

/// The source check for the routes that need no token (`/health`, `/metrics` checks tokens
/// itself and has no source restriction).
async fn require_source(
    State(ctx): State<Ctx>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if source_allowed(&ctx, &req) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Whether the request carries one of `tokens` (header `X-ZT1-Auth`, `Authorization: Bearer`,
/// or `?auth=`), compared in constant time. spec: service.md §4.1
fn carries_token(
    tokens: &[&str],
    headers: &HeaderMap,
    query: &std::collections::HashMap<String, String>,
) -> bool {
    use subtle::ConstantTimeEq;
    let matches = |given: Option<&str>| {
        given.is_some_and(|g| {
            tokens
                .iter()
                .any(|t| bool::from(g.trim().as_bytes().ct_eq(t.as_bytes())))
        })
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = header("authorization").and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    });
    matches(header("x-zt1-auth"))
        || matches(bearer)
        || matches(query.get("auth").map(String::as_str))
}

fn authorized(
    ctx: &Ctx,
    headers: &HeaderMap,
    query: &std::collections::HashMap<String, String>,
) -> bool {
    carries_token(&[ctx.token.as_str()], headers, query)
}

/// Why a request failed; each maps to a status code and a JSON body naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ApiError {
    Unauthorized,
    BadAddress,
    BadWorldId,
    BadSeed,
    BadNetworkId,
    NotFound(&'static str),
    Unavailable,
    /// 400 with `{}`: no bond for that peer (bonding not in use). spec: service.md §4.1
    NoBond,
    /// 400 with 1.14's text reason (`bond setmtu`). spec: service.md §4.1
    Reason(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, message) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "authentication required"),
            ApiError::BadAddress => (
                StatusCode::BAD_REQUEST,
                "address: expected 10 hex digits (not reserved)",
            ),
            ApiError::BadWorldId => (StatusCode::BAD_REQUEST, "id: expected a world id in hex"),
            ApiError::BadSeed => (
                StatusCode::BAD_REQUEST,
                "seed: expected a 10-hex-digit address",
            ),
            ApiError::BadNetworkId => (
                StatusCode::BAD_REQUEST,
                "network id: expected 16 hex digits",
            ),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, what),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "service is shutting down"),
            ApiError::NoBond => return (StatusCode::BAD_REQUEST, Json(json!({}))).into_response(),
            ApiError::Reason(text) => return (StatusCode::BAD_REQUEST, text).into_response(),
        };
        (code, Json(json!({ "error": message }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;
type Q = Query<std::collections::HashMap<String, String>>;

/// Every route requires the token (a layer, so no handler can forget it).
async fn require_auth(
    State(ctx): State<Ctx>,
    Query(q): Q,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if source_allowed(&ctx, &req) && authorized(&ctx, req.headers(), &q) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

async fn ask(
    ctx: &Ctx,
    make: impl FnOnce(oneshot::Sender<Value>) -> ApiRequest,
) -> Result<Value, ApiError> {
    let (tx, rx) = oneshot::channel();
    ctx.tx
        .send(make(tx))
        .await
        .map_err(|_| ApiError::Unavailable)?;
    rx.await.map_err(|_| ApiError::Unavailable)
}

fn parse_address(s: &str) -> Result<Address, ApiError> {
    s.parse::<Address>()
        .ok()
        .filter(|a| !a.is_reserved())
        .ok_or(ApiError::BadAddress)
}

async fn status(State(ctx): State<Ctx>) -> ApiResult {
    Ok(Json(ask(&ctx, ApiRequest::Status).await?))
}

async fn peers(State(ctx): State<Ctx>) -> ApiResult {
    Ok(Json(ask(&ctx, |tx| ApiRequest::Peers(None, tx)).await?))
}

async fn peer(State(ctx): State<Ctx>, Path(addr): Path<String>) -> ApiResult {
    let a = parse_address(&addr)?;
    match ask(&ctx, |tx| ApiRequest::Peers(Some(a), tx)).await? {
        Value::Null => Err(ApiError::NotFound("peer not known")),
        v => Ok(Json(v)),
    }
}

async fn bond_show(State(ctx): State<Ctx>, Path(addr): Path<String>) -> ApiResult {
    let a = parse_address(&addr)?;
    match ask(&ctx, |tx| ApiRequest::BondShow(a, tx)).await? {
        Value::Null => Err(ApiError::NoBond),
        v => Ok(Json(v)),
    }
}

async fn bond_rotate(State(ctx): State<Ctx>, Path(addr): Path<String>) -> ApiResult {
    let a = parse_address(&addr)?;
    if ask(&ctx, |tx| ApiRequest::BondRotate(a, tx)).await? == Value::Bool(true) {
        Ok(Json(json!({})))
    } else {
        Err(ApiError::NoBond)
    }
}

async fn bond_setmtu(
    State(ctx): State<Ctx>,
    Path((mtu, ifname, ip)): Path<(String, String, String)>,
) -> ApiResult {
    // 1.14's checks, in its order: bonding in use, a reasonable MTU, a matching link
    let mtu = mtu.parse::<u32>().unwrap_or(0);
    let ip = ip.parse().ok();
    let v = ask(&ctx, |reply| ApiRequest::BondSetMtu {
        mtu,
        ifname,
        ip,
        reply,
    })
    .await?;
    match v {
        Value::String(reason) => Err(ApiError::Reason(reason)),
        _ => Ok(Json(json!({}))),
    }
}

async fn ping(State(ctx): State<Ctx>, Path(addr): Path<String>) -> ApiResult {
    let a = parse_address(&addr)?;
    Ok(Json(ask(&ctx, |tx| ApiRequest::Ping(a, tx)).await?))
}

fn parse_world_id(s: &str) -> Result<u64, ApiError> {
    u64::from_str_radix(s, 16).map_err(|_| ApiError::BadWorldId)
}

async fn moons(State(ctx): State<Ctx>) -> ApiResult {
    Ok(Json(ask(&ctx, |tx| ApiRequest::Moons(None, tx)).await?))
}

async fn moon(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let id = parse_world_id(&id)?;
    match ask(&ctx, |tx| ApiRequest::Moons(Some(id), tx)).await? {
        Value::Null => Err(ApiError::NotFound("moon not orbited")),
        v => Ok(Json(v)),
    }
}

/// `POST /moon/<id>` with `{"seed": "<address>"}` (any other body means no seed).
/// spec: service.md §4.6
async fn orbit(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let id = parse_world_id(&id)?;
    let seed = match serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("seed").cloned())
    {
        None | Some(Value::Null) => Address::default(),
        Some(Value::String(s)) => s.parse::<Address>().map_err(|_| ApiError::BadSeed)?,
        Some(_) => return Err(ApiError::BadSeed),
    };
    Ok(Json(ask(&ctx, |tx| ApiRequest::Orbit(id, seed, tx)).await?))
}

async fn deorbit(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let id = parse_world_id(&id)?;
    Ok(Json(ask(&ctx, |tx| ApiRequest::Deorbit(id, tx)).await?))
}

fn parse_network_id(s: &str) -> Result<NetworkId, ApiError> {
    ctl_nwid(s).ok_or(ApiError::BadNetworkId)
}

async fn networks(State(ctx): State<Ctx>) -> ApiResult {
    Ok(Json(ask(&ctx, |tx| ApiRequest::Networks(None, tx)).await?))
}

async fn network(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let id = parse_network_id(&id)?;
    match ask(&ctx, |tx| ApiRequest::Networks(Some(id), tx)).await? {
        Value::Null => Err(ApiError::NotFound("network not joined")),
        v => Ok(Json(v)),
    }
}

/// `POST /network/<nwid>`: join, with optional settings (only JSON booleans count; an empty or
/// invalid body is tolerated, as 1.14 does). spec: service.md §4.4
async fn join(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let id = parse_network_id(&id)?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let flag = |k: &str| v.get(k).and_then(Value::as_bool);
    let settings = NetworkSettings {
        allow_managed: flag("allowManaged"),
        allow_global: flag("allowGlobal"),
        allow_default: flag("allowDefault"),
        allow_dns: flag("allowDNS"),
    };
    Ok(Json(
        ask(&ctx, |tx| ApiRequest::Join(id, settings, tx)).await?,
    ))
}

async fn leave(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult {
    let id = parse_network_id(&id)?;
    match ask(&ctx, |tx| ApiRequest::Leave(id, tx)).await? {
        Value::Null => Ok(Json(json!({}))),
        _ => Ok(Json(json!({ "result": true }))),
    }
}

async fn ctl(ctx: &Ctx, req: ControllerRequest) -> Response {
    let (tx, rx) = oneshot::channel();
    if ctx.tx.send(ApiRequest::Controller(req, tx)).await.is_err() {
        return ApiError::Unavailable.into_response();
    }
    match rx.await {
        Ok(answer) => ctl_response(answer),
        Err(_) => ApiError::Unavailable.into_response(),
    }
}

/// An answer of the controller as HTTP: compact JSON (sorted keys: `serde_json::Map` is a
/// sorted map in this workspace), the literal `GET /controller` text, or an empty body.
/// spec: controller.md §7
pub(crate) fn ctl_response(answer: CtlAnswer) -> Response {
    let code = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match answer.body {
        CtlBody::Json(v) => (code, Json(v)).into_response(),
        CtlBody::Text(t) => (
            code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            t,
        )
            .into_response(),
        CtlBody::Empty => code.into_response(),
    }
}

/// A controller-path network id: exactly 16 hex digits (either case). spec: controller.md §7
fn ctl_nwid(s: &str) -> Option<NetworkId> {
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok().map(NetworkId))
        .flatten()
}

/// A controller-path member id: exactly 10 hex digits (either case; stored lowercase).
fn ctl_addr(s: &str) -> Option<Address> {
    (s.len() == 10 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| s.to_ascii_lowercase().parse().ok())
        .flatten()
}

/// A POST body: valid JSON or a 400 naming the body. spec: controller.md §7.1 (the reference
/// answers 500; weft answers 400, the client's fault)
fn json_body(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(ctl_response(CtlAnswer::error(
            400,
            format!("body: invalid JSON ({e})"),
        )))
    })
}

fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

async fn ctl_info(State(c): State<Ctx>) -> Response {
    ctl(&c, ControllerRequest::Info).await
}

async fn ctl_networks(State(c): State<Ctx>) -> Response {
    ctl(&c, ControllerRequest::Networks).await
}

async fn ctl_unstable_networks(State(c): State<Ctx>) -> Response {
    ctl(&c, ControllerRequest::UnstableNetworks).await
}

async fn ctl_network(State(c): State<Ctx>, Path(id): Path<String>) -> Response {
    match ctl_nwid(&id) {
        Some(n) => ctl(&c, ControllerRequest::Network(n)).await,
        None => not_found(),
    }
}

async fn ctl_post_network_random(State(c): State<Ctx>, body: axum::body::Bytes) -> Response {
    match json_body(&body) {
        Ok(v) => {
            ctl(
                &c,
                ControllerRequest::PostNetwork(NetworkTarget::Random(None), v),
            )
            .await
        }
        Err(r) => *r,
    }
}

async fn ctl_post_network(
    State(c): State<Ctx>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let target = if let Some(prefix) = id.strip_suffix("______")
        && prefix.len() == 10
        && prefix.bytes().all(|b| b.is_ascii_hexdigit())
    {
        NetworkTarget::Random(Some(prefix.to_string()))
    } else if let Some(n) = ctl_nwid(&id) {
        NetworkTarget::Id(n)
    } else {
        return not_found();
    };
    match json_body(&body) {
        Ok(v) => ctl(&c, ControllerRequest::PostNetwork(target, v)).await,
        Err(r) => *r,
    }
}

async fn ctl_delete_network(State(c): State<Ctx>, Path(id): Path<String>) -> Response {
    match ctl_nwid(&id) {
        Some(n) => ctl(&c, ControllerRequest::DeleteNetwork(n)).await,
        None => not_found(),
    }
}

async fn ctl_members(State(c): State<Ctx>, Path(id): Path<String>) -> Response {
    match ctl_nwid(&id) {
        Some(n) => ctl(&c, ControllerRequest::Members(n)).await,
        None => not_found(),
    }
}

async fn ctl_unstable_members(State(c): State<Ctx>, Path(id): Path<String>) -> Response {
    match ctl_nwid(&id) {
        Some(n) => ctl(&c, ControllerRequest::UnstableMembers(n)).await,
        None => not_found(),
    }
}

async fn ctl_member(State(c): State<Ctx>, Path((id, a)): Path<(String, String)>) -> Response {
    match (ctl_nwid(&id), ctl_addr(&a)) {
        (Some(n), Some(a)) => ctl(&c, ControllerRequest::Member(n, a)).await,
        _ => not_found(),
    }
}

async fn ctl_post_member(
    State(c): State<Ctx>,
    Path((id, a)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let (Some(n), Some(a)) = (ctl_nwid(&id), ctl_addr(&a)) else {
        return not_found();
    };
    match json_body(&body) {
        Ok(v) => ctl(&c, ControllerRequest::PostMember(n, a, v)).await,
        Err(r) => *r,
    }
}

async fn ctl_delete_member(
    State(c): State<Ctx>,
    Path((id, a)): Path<(String, String)>,
) -> Response {
    match (ctl_nwid(&id), ctl_addr(&a)) {
        (Some(n), Some(a)) => ctl(&c, ControllerRequest::DeleteMember(n, a)).await,
        _ => not_found(),
    }
}

async fn ctl_export_member(
    State(c): State<Ctx>,
    Path((id, a)): Path<(String, String)>,
) -> Response {
    match (ctl_nwid(&id), ctl_addr(&a)) {
        (Some(n), Some(a)) => ctl(&c, ControllerRequest::ExportMember(n, a)).await,
        _ => not_found(),
    }
}

async fn ctl_erase_member(State(c): State<Ctx>, Path((id, a)): Path<(String, String)>) -> Response {
    match (ctl_nwid(&id), ctl_addr(&a)) {
        (Some(n), Some(a)) => ctl(&c, ControllerRequest::EraseMember(n, a)).await,
        _ => not_found(),
    }
}

/// The router.
/// `/health`: no token needed. spec: service.md §4.2
async fn health(State(ctx): State<Ctx>) -> ApiResult {
    Ok(Json(ask(&ctx, ApiRequest::Health).await?))
}

/// `/metrics`: the auth token or the metrics token. spec: service.md §4.1
async fn metrics(State(ctx): State<Ctx>, Query(q): Q, headers: HeaderMap) -> Response {
    if !carries_token(
        &[ctx.token.as_str(), ctx.metrics_token.as_str()],
        &headers,
        &q,
    ) {
        return ApiError::Unauthorized.into_response();
    }
    let (tx, rx) = oneshot::channel();
    if ctx.tx.send(ApiRequest::Metrics(tx)).await.is_err() {
        return ApiError::Unavailable.into_response();
    }
    match rx.await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => ApiError::Unavailable.into_response(),
    }
}

/// `GET /config`: local.conf as stored (`{}` if none). spec: service.md §4.2
async fn config(State(ctx): State<Ctx>) -> ApiResult {
    Ok(Json(ask(&ctx, ApiRequest::Config).await?))
}

/// `POST /config/settings`: each top-level key is copied into local.conf's `settings`.
async fn config_settings(State(ctx): State<Ctx>, body: axum::body::Bytes) -> Response {
    let v = match json_body(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "body: expected a JSON object" })),
            )
                .into_response();
        }
        Err(r) => return *r,
    };
    match ask(&ctx, |tx| ApiRequest::ConfigSettings(v, tx)).await {
        Ok(Value::String(e)) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response()
        }
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The router: token-protected routes, plus `/health` (open) and `/metrics` (own tokens).
pub(crate) fn router(
    token: String,
    metrics_token: String,
    allow: Vec<ipnet::IpNet>,
    app_dir: Option<std::path::PathBuf>,
    tx: mpsc::Sender<ApiRequest>,
) -> Router {
    let ctx = Ctx {
        token: Arc::new(token),
        metrics_token: Arc::new(metrics_token),
        allow: Arc::new(allow),
        tx,
    };
    let mut open = Router::new().route("/health", get(health));
    if let Some(dir) = app_dir {
        // `settings.enableWebServer`: `<home>/app` at `/app/` without a token, `index.html` for
        // paths that are not files (single-page apps route on the client). spec: service.md §4.2
        let index = dir.join("index.html");
        open = open.nest_service(
            "/app",
            tower_http::services::ServeDir::new(dir)
                .fallback(tower_http::services::ServeFile::new(index)),
        );
    }
    let open = open
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            require_source,
        ))
        .route("/metrics", get(metrics));
    Router::new()
        .route("/config", get(config))
        .route(
            "/config/settings",
            post(config_settings).put(config_settings),
        )
        .route("/status", get(status))
        .route("/peer", get(peers))
        .route("/peer/{addr}", get(peer))
        .route("/bond/show/{addr}", get(bond_show))
        .route("/bond/rotate/{addr}", post(bond_rotate))
        .route("/bond/setmtu/{mtu}/{ifname}/{ip}", post(bond_setmtu))
        .route("/unstable/ping/{addr}", post(ping))
        .route("/moon", get(moons))
        .route("/moon/{id}", get(moon).post(orbit).delete(deorbit))
        .route("/network", get(networks))
        .route("/network/{id}", get(network).post(join).delete(leave))
        .route("/controller", get(ctl_info))
        .route(
            "/controller/network",
            get(ctl_networks)
                .post(ctl_post_network_random)
                .put(ctl_post_network_random),
        )
        .route(
            "/controller/network/{id}",
            get(ctl_network)
                .post(ctl_post_network)
                .put(ctl_post_network)
                .delete(ctl_delete_network),
        )
        .route("/controller/network/{id}/member", get(ctl_members))
        .route(
            "/controller/network/{id}/member/{addr}",
            get(ctl_member)
                .post(ctl_post_member)
                .put(ctl_post_member)
                .delete(ctl_delete_member),
        )
        .route("/unstable/controller/network", get(ctl_unstable_networks))
        .route(
            "/unstable/controller/network/{id}/member",
            get(ctl_unstable_members),
        )
        .route(
            "/unstable/controller/network/{id}/member/{addr}/export",
            get(ctl_export_member),
        )
        .route(
            "/unstable/controller/network/{id}/member/{addr}/erase",
            post(ctl_erase_member),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            require_auth,
        ))
        .merge(open)
        .fallback(|| async { ApiError::NotFound("not found") })
        .with_state(ctx)
}

/// Binds the API on loopback (IPv4, and IPv6 when available) — or on every address when
/// `allowManagementFrom` names other networks — and serves it in the background.
pub(crate) async fn serve(
    port: u16,
    token: String,
    metrics_token: String,
    allow: Vec<ipnet::IpNet>,
    app_dir: Option<std::path::PathBuf>,
    tx: mpsc::Sender<ApiRequest>,
) -> anyhow::Result<Vec<SocketAddr>> {
    let wide = !allow.is_empty();
    let app = router(token, metrics_token, allow, app_dir, tx);
    let mut bound = Vec::new();
    let addrs = if wide {
        [
            SocketAddr::from(([0, 0, 0, 0], port)),
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        ]
    } else {
        [
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        ]
    };
    for addr in addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                bound.push(addr);
                let app = app.clone();
                tokio::spawn(async move {
                    let svc = app.into_make_service_with_connect_info::<SocketAddr>();
                    if let Err(e) = axum::serve(l, svc).await {
                        eprintln!("weft: API server on {addr} stopped: {e}");
                    }
                });
            }
            Err(e) if addr.is_ipv6() => eprintln!("weft: API not on {addr}: {e}"),
            Err(e) => return Err(anyhow::anyhow!("cannot bind the local API on {addr}: {e}")),
        }
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// A stand-in for the service loop that answers every request.
    fn app() -> (Router, tokio::task::JoinHandle<Vec<String>>) {
        let (tx, mut rx) = mpsc::channel(8);
        let loop_task = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(req) = rx.recv().await {
                match req {
                    ApiRequest::Status(tx) => {
                        seen.push("status".to_string());
                        let _ = tx.send(json!({"address": "0123456789"}));
                    }
                    ApiRequest::Peers(None, tx) => {
                        seen.push("peers".to_string());
                        let _ = tx.send(json!([]));
                    }
                    ApiRequest::Peers(Some(a), tx) => {
                        seen.push(format!("peer {a}"));
                        let _ = tx.send(Value::Null);
                    }
                    ApiRequest::BondShow(a, tx) => {
                        seen.push(format!("bond {a}"));
                        let _ = tx.send(Value::Null);
                    }
                    ApiRequest::BondRotate(a, tx) => {
                        seen.push(format!("rotate {a}"));
                        let _ = tx.send(Value::Bool(false));
                    }
                    ApiRequest::BondSetMtu {
                        mtu,
                        ifname,
                        ip,
                        reply,
                    } => {
                        seen.push(format!("setmtu {mtu} {ifname} {ip:?}"));
                        let _ = reply.send(if ifname == "eth1" {
                            Value::Null
                        } else {
                            Value::String("Unable to find specified link".into())
                        });
                    }
                    ApiRequest::Ping(a, tx) => {
                        seen.push(format!("ping {a}"));
                        let _ = tx.send(json!({"sent": true}));
                    }
                    ApiRequest::Moons(id, tx) => {
                        seen.push(format!("moons {id:?}"));
                        let _ = tx.send(if id.is_some() { Value::Null } else { json!([]) });
                    }
                    ApiRequest::Orbit(id, seed, tx) => {
                        seen.push(format!("orbit {id:x} {seed}"));
                        let _ = tx.send(json!({}));
                    }
                    ApiRequest::Deorbit(id, tx) => {
                        seen.push(format!("deorbit {id:x}"));
                        let _ = tx.send(json!({}));
                    }
                    ApiRequest::Networks(id, tx) => {
                        seen.push(format!("networks {id:?}"));
                        let _ = tx.send(if id.is_some() { Value::Null } else { json!([]) });
                    }
                    ApiRequest::Join(id, s, tx) => {
                        seen.push(format!("join {id} {:?}", s.allow_managed));
                        let _ = tx.send(json!({"id": id.to_string()}));
                    }
                    ApiRequest::Leave(id, tx) => {
                        seen.push(format!("leave {id}"));
                        let _ = tx.send(Value::Null);
                    }
                    ApiRequest::Health(tx) => {
                        seen.push("health".to_string());
                        let _ = tx.send(json!({"online": true}));
                    }
                    ApiRequest::Metrics(tx) => {
                        seen.push("metrics".to_string());
                        let _ = tx.send("weft_online 1\n# EOF\n".to_string());
                    }
                    ApiRequest::Config(tx) => {
                        seen.push("config".to_string());
                        let _ = tx.send(json!({}));
                    }
                    ApiRequest::ConfigSettings(m, tx) => {
                        seen.push(format!("settings {}", Value::Object(m)));
                        let _ = tx.send(json!({}));
                    }
                    ApiRequest::Controller(r, tx) => {
                        seen.push(format!("controller {r:?}"));
                        let _ = tx.send(match r {
                            ControllerRequest::Network(_) => CtlAnswer::empty(404),
                            ControllerRequest::PostMember(..) => {
                                CtlAnswer::error(400, "authorized: expected a boolean")
                            }
                            _ => CtlAnswer {
                                status: 200,
                                body: CtlBody::Json(json!({})),
                            },
                        });
                    }
                }
            }
            seen
        });
        (
            router("tok".into(), "mtok".into(), Vec::new(), None, tx),
            loop_task,
        )
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        header: Option<(&str, &str)>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some((k, v)) = header {
            b = b.header(k, v);
        }
        let resp = app
            .clone()
            .oneshot(b.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn call_body(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn auth_routes_and_errors() {
        let (app, task) = app();
        assert_eq!(
            call(&app, "GET", "/status", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, "GET", "/status", Some(("X-ZT1-Auth", "wrong")))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        let (code, v) = call(&app, "GET", "/status", Some(("X-ZT1-Auth", "tok"))).await;
        assert_eq!(
            (code, v["address"].as_str()),
            (StatusCode::OK, Some("0123456789"))
        );
        assert_eq!(
            call(&app, "GET", "/peer", Some(("Authorization", "Bearer tok")))
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "GET", "/peer/0123456789?auth=tok", None).await.0,
            StatusCode::NOT_FOUND
        );
        // No bond: 400 with an empty object. spec: service.md §4.1
        let (code, v) = call(&app, "GET", "/bond/show/0123456789?auth=tok", None).await;
        assert_eq!((code, v), (StatusCode::BAD_REQUEST, json!({})));
        let (code, v) = call(&app, "POST", "/bond/rotate/0123456789?auth=tok", None).await;
        assert_eq!((code, v), (StatusCode::BAD_REQUEST, json!({})));
        // setmtu: 200 {} or 400 with the reason as text. spec: service.md §4.1
        let (code, v) = call(
            &app,
            "POST",
            "/bond/setmtu/1400/eth1/10.0.0.2?auth=tok",
            None,
        )
        .await;
        assert_eq!((code, v), (StatusCode::OK, json!({})));
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .method("POST")
                    .uri("/bond/setmtu/x/eth9/nonsense?auth=tok")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&text[..], b"Unable to find specified link");
        let (code, v) = call(&app, "GET", "/peer/xyz?auth=tok", None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().contains("address"));
        assert_eq!(
            call(&app, "POST", "/unstable/ping/ff00000000?auth=tok", None)
                .await
                .0,
            StatusCode::BAD_REQUEST,
            "reserved"
        );
        assert_eq!(
            call(&app, "POST", "/unstable/ping/0123456789?auth=tok", None)
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "GET", "/nope?auth=tok", None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&app, "GET", "/moon?auth=tok", None).await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "GET", "/moon/9cbc6fc098?auth=tok", None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&app, "GET", "/moon/xyz?auth=tok", None).await.0,
            StatusCode::BAD_REQUEST
        );
        let body = r#"{"seed":"9cbc6fc098"}"#;
        assert_eq!(
            call_body(&app, "POST", "/moon/9cbc6fc098?auth=tok", body)
                .await
                .0,
            StatusCode::OK
        );
        let (code, v) = call_body(&app, "POST", "/moon/9cbc6fc098?auth=tok", r#"{"seed":7}"#).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().starts_with("seed"));
        assert_eq!(
            call(&app, "DELETE", "/moon/9cbc6fc098?auth=tok", None)
                .await
                .0,
            StatusCode::OK
        );
        drop(app);
        let seen = task.await.unwrap();
        assert_eq!(
            seen,
            [
                "status",
                "peers",
                "peer 0123456789",
                "bond 0123456789",
                "rotate 0123456789",
                "setmtu 1400 eth1 Some(10.0.0.2)",
                "setmtu 0 eth9 None",
                "ping 0123456789",
                "moons None",
                "moons Some(673176338584)",
                "orbit 9cbc6fc098 9cbc6fc098",
                "deorbit 9cbc6fc098"
            ]
        );
    }

    /// `/health` needs no token; `/metrics` takes the auth or the metrics token; the metrics token
    /// opens nothing else. spec: service.md §4.1
    #[tokio::test]
    async fn health_metrics_and_config() {
        let (app, task) = app();
        assert_eq!(call(&app, "GET", "/health", None).await.0, StatusCode::OK);
        assert_eq!(
            call(&app, "GET", "/metrics", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/metrics")
                    .header("Authorization", "bearer mtok")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        assert_eq!(
            call(&app, "GET", "/metrics?auth=tok", None).await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "GET", "/status?auth=mtok", None).await.0,
            StatusCode::UNAUTHORIZED,
            "the metrics token opens only /metrics"
        );
        assert_eq!(
            call(&app, "GET", "/config?auth=tok", None).await.0,
            StatusCode::OK
        );
        assert_eq!(
            call_body(&app, "POST", "/config/settings?auth=tok", "[1]")
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call_body(
                &app,
                "POST",
                "/config/settings?auth=tok",
                r#"{"primaryPort":9994}"#
            )
            .await
            .0,
            StatusCode::OK
        );
        drop(app);
        let seen = task.await.unwrap();
        assert_eq!(
            seen,
            [
                "health",
                "metrics",
                "metrics",
                "config",
                "settings {\"primaryPort\":9994}"
            ]
        );
    }

    /// Only loopback and `allowManagementFrom` may use the API, even with the token; `/metrics`
    /// has no source restriction. spec: service.md §4.1
    #[tokio::test]
    async fn management_sources() {
        let (tx, rx) = mpsc::channel(8);
        drop(rx);
        let app = router(
            "tok".into(),
            "mtok".into(),
            vec!["192.0.2.0/24".parse().unwrap()],
            None,
            tx,
        );
        let from = |ip: &str, uri: &str| {
            let mut r = Request::builder().uri(uri).body(Body::empty()).unwrap();
            r.extensions_mut()
                .insert(axum::extract::ConnectInfo(SocketAddr::new(
                    ip.parse().unwrap(),
                    40000,
                )));
            r
        };
        let code = |r: Request<Body>| {
            let app = app.clone();
            async move { app.oneshot(r).await.unwrap().status() }
        };
        assert_eq!(
            code(from("198.51.100.7", "/status?auth=tok")).await,
            StatusCode::UNAUTHORIZED,
            "outside the allowed networks, even with the token"
        );
        assert_eq!(
            code(from("198.51.100.7", "/health")).await,
            StatusCode::UNAUTHORIZED
        );
        // allowed sources reach the routes (the stand-in loop is gone, so 503 means "passed")
        assert_eq!(
            code(from("192.0.2.9", "/status?auth=tok")).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            code(from("::ffff:127.0.0.1", "/status?auth=tok")).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            code(from("198.51.100.7", "/metrics?auth=mtok")).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "/metrics has no source restriction"
        );
    }

    /// `/app`: files from the app folder without a token, `index.html` for everything else; off
    /// unless configured. spec: service.md §4.2
    #[tokio::test]
    async fn app_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<html>spa</html>").unwrap();
        std::fs::write(dir.path().join("app.js"), "console.log(1)").unwrap();
        let (tx, rx) = mpsc::channel(8);
        drop(rx);
        let app = router(
            "tok".into(),
            "mtok".into(),
            Vec::new(),
            Some(dir.path().to_path_buf()),
            tx,
        );
        let get = |uri: &str| {
            let app = app.clone();
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            async move {
                let r = app.oneshot(req).await.unwrap();
                let code = r.status();
                let body = r.into_body().collect().await.unwrap().to_bytes();
                (code, String::from_utf8_lossy(&body).into_owned())
            }
        };
        assert_eq!(
            get("/app/app.js").await,
            (StatusCode::OK, "console.log(1)".into())
        );
        assert_eq!(get("/app/").await.1, "<html>spa</html>");
        assert_eq!(
            get("/app/networks/1234").await,
            (StatusCode::OK, "<html>spa</html>".into()),
            "client-side routes fall back to index.html"
        );
        let (tx, rx) = mpsc::channel(8);
        drop(rx);
        let off = router("tok".into(), "mtok".into(), Vec::new(), None, tx);
        let r = off
            .oneshot(
                Request::builder()
                    .uri("/app/app.js")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    /// `/network` and `/controller` routes: ids are checked before the loop is asked, bodies
    /// are parsed, errors carry their status. spec: service.md §4.4, controller.md §7.1
    #[tokio::test]
    async fn network_and_controller_routes() {
        let (app, task) = app();
        let q = "?auth=tok";
        assert_eq!(
            call(&app, "GET", &format!("/network{q}"), None).await.0,
            StatusCode::OK
        );
        let (code, v) = call(&app, "GET", &format!("/network/123{q}"), None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().starts_with("network id"));
        assert_eq!(
            call(&app, "GET", &format!("/network/9cbc6fc0984c4142{q}"), None)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        let (code, v) = call_body(
            &app,
            "POST",
            &format!("/network/9cbc6fc0984c4142{q}"),
            r#"{"allowManaged":false,"allowGlobal":"yes"}"#,
        )
        .await;
        assert_eq!(
            (code, v["id"].as_str()),
            (StatusCode::OK, Some("9cbc6fc0984c4142"))
        );
        // zerotier-cli sends an empty body; it is tolerated
        assert_eq!(
            call_body(&app, "POST", &format!("/network/9cbc6fc0984c4142{q}"), "")
                .await
                .0,
            StatusCode::OK
        );
        let (code, v) = call(
            &app,
            "DELETE",
            &format!("/network/9cbc6fc0984c4142{q}"),
            None,
        )
        .await;
        assert_eq!((code, v), (StatusCode::OK, json!({})), "not joined: {{}}");

        assert_eq!(
            call(&app, "GET", &format!("/controller{q}"), None).await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(
                &app,
                "GET",
                &format!("/controller/network/9cbc6fc0984c4142{q}"),
                None
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&app, "GET", &format!("/controller/network/9cbc{q}"), None)
                .await
                .0,
            StatusCode::NOT_FOUND,
            "not 16 hex digits"
        );
        let (code, v) = call_body(
            &app,
            "POST",
            &format!("/controller/network/9cbc6fc098______{q}"),
            "{not json",
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["description"].as_str().unwrap().starts_with("body"));
        assert_eq!(
            call_body(
                &app,
                "POST",
                &format!("/controller/network/9cbc6fc098______{q}"),
                "{}"
            )
            .await
            .0,
            StatusCode::OK
        );
        let (code, v) = call_body(
            &app,
            "POST",
            &format!("/controller/network/9cbc6fc0984c4142/member/0123456789{q}"),
            r#"{"authorized":"yes"}"#,
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(v["description"].as_str().unwrap().starts_with("authorized"));
        drop(app);
        let seen = task.await.unwrap();
        assert_eq!(seen.len(), 9, "{seen:?}");
        assert_eq!(seen[2], "join 9cbc6fc0984c4142 Some(false)");
        assert_eq!(seen[3], "join 9cbc6fc0984c4142 None");
        assert!(
            seen[7].starts_with("controller PostNetwork(Random(Some(\"9cbc6fc098\"))"),
            "{seen:?}"
        );
    }
}
