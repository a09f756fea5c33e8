//! A SageMaker processing-job simulator for tests.
//!
//! It speaks the AWS JSON 1.1 protocol (`X-Amz-Target: SageMaker.<Operation>`) well enough for
//! `aws-sdk-sagemaker` to work against it unchanged, and behaves like SageMaker where the
//! controller cares: API-constraint validation, `ResourceInUse` on a duplicate name, jobs that
//! start `InProgress`, Stop → `Stopping` → `Stopped`, "Could not find" for missing jobs. Requests
//! are validated against SageMaker's published API model (`model/sagemaker-processing.json`,
//! see `shapes`); jobs are keyed by (account, region, name). An admin API under `/_sim/` injects
//! faults and delays (throttling, errors, latency, provisioning and stopping delays, a lagging
//! List, duplicated and reordered events), drives job states and reports call counts:
//!
//! - `PUT|GET /_sim/config`: the `SimConfig` (camelCase members; absent ones take their
//!   defaults);
//! - `GET /_sim/jobs`: every job by name (`<name>@<account>:<region>` for the later ones of a
//!   name taken in several accounts or regions);
//! - `POST /_sim/jobs/{name}/status` `{"status", "failureReason"?, "exitMessage"?, "region"?,
//!   "account"?}`: sets a job's status;
//! - `POST /_sim/jobs/{name}/fail` `{"class", "message"?, "region"?, "account"?}`: fails an
//!   InProgress job with FailureReason `<class>: <message>` (`CapacityError`,
//!   `InternalServerError`, `ClientError`, `AlgorithmError`; a realistic default message);
//! - `POST /_sim/bulk-status` `{"names", "status"}`; `GET|DELETE /_sim/calls`;
//!   `GET /_sim/creates`, `/_sim/listed-ended`, `/_sim/published`, `/_sim/health`.

mod accounts;
mod events;
mod model;
mod shapes;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use model::{ApiError, Caller, Sim, SimConfig};

/// SageMaker processing-job simulator.
#[derive(Parser)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", env = "SIM_LISTEN")]
    listen: SocketAddr,
    /// Write the chosen port to this file once listening.
    #[arg(long)]
    port_file: Option<std::path::PathBuf>,
    /// Region used in job ARNs.
    #[arg(long, default_value = "us-east-1", env = "AWS_REGION")]
    region: String,
    /// Account of callers whose access key STS does not know (moto's default account).
    #[arg(long, default_value = "123456789012")]
    account: String,
    /// EventBridge endpoint (`http://host:port`, e.g. moto's) that every job state change is
    /// published to, as SageMaker publishes "SageMaker Processing Job State Change" events.
    /// Unset: no events.
    #[arg(long, env = "SIM_EVENTS_URL")]
    events_url: Option<String>,
    /// STS endpoint (moto) asked for the account of an access key it issued (GetCallerIdentity),
    /// so that jobs are partitioned by the caller's account; without it every caller is
    /// `--account`.
    #[arg(long, env = "SIM_STS_ENDPOINT")]
    sts_endpoint: Option<String>,
}

/// The simulator, and who owns which access key.
#[derive(Clone)]
struct Shared {
    sim: Arc<Mutex<Sim>>,
    accounts: Arc<accounts::Accounts>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut state = Sim::new(args.region, args.account);
    state.publish_events = args.events_url.is_some();
    let sim = Shared {
        sim: Arc::new(Mutex::new(state)),
        accounts: Arc::new(accounts::Accounts::new(args.sts_endpoint)),
    };
    if let Some(url) = args.events_url {
        tokio::spawn(events::publish(sim.sim.clone(), url));
    }
    let app = Router::new()
        .route("/", post(api))
        .route("/_sim/config", put(put_config).get(get_config))
        .route("/_sim/jobs", get(list_jobs))
        .route("/_sim/jobs/{name}/status", post(set_status))
        .route("/_sim/jobs/{name}/fail", post(fail_job))
        .route("/_sim/calls", get(get_calls).delete(reset_calls))
        .route("/_sim/creates", get(get_creates))
        .route("/_sim/listed-ended", get(get_listed_ended))
        .route("/_sim/published", get(get_published))
        .route("/_sim/bulk-status", post(bulk_status))
        .route("/_sim/health", get(|| async { "ok" }))
        .with_state(sim);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    if let Some(path) = args.port_file {
        std::fs::write(path, addr.port().to_string())?;
    }
    eprintln!("sagemaker-sim listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

/// The SageMaker API: one POST endpoint dispatching on `X-Amz-Target`.
async fn api(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let sim = shared.sim;
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(operation) = target.strip_prefix("SageMaker.") else {
        return error_response(ApiError::unknown_operation(target));
    };
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error_response(ApiError::serialization(e.to_string())),
        }
    };
    // Faults and latency are decided under the lock, applied outside it.
    let (latency, fault) = {
        let mut s = sim.lock().await;
        s.count_call(operation);
        (s.config.latency(), s.draw_fault(operation))
    };
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(err) = fault {
        return error_response(err);
    }
    let account = match credential_scope(&headers).and_then(|s| s.split('/').next()) {
        Some(key) => shared.accounts.of(key).await,
        None => None,
    };
    let caller = Caller {
        region: signing_region(&headers),
        account: account.as_deref(),
    };
    let result = sim.lock().await.handle(operation, &input, caller);
    match result {
        Ok(v) => (
            StatusCode::OK,
            [("content-type", "application/x-amz-json-1.1")],
            v.to_string(),
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

/// The region a request was signed for: the third field of the SigV4 credential scope
/// (`Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261128/us-east-1/sagemaker/aws4_request, …`).
fn signing_region(headers: &HeaderMap) -> Option<&str> {
    credential_scope(headers)?.split('/').nth(2).filter(|r| !r.is_empty())
}

/// The SigV4 credential (`AKID/date/region/service/aws4_request`) of a request.
fn credential_scope(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    auth.split("Credential=").nth(1)?.split([',', ' ']).next()
}

fn error_response(e: ApiError) -> Response {
    let body = json!({"__type": e.kind, "message": e.message});
    (
        e.status,
        [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amzn-errortype", e.kind),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn put_config(State(Shared { sim, .. }): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<SimConfig>(&body) {
        Ok(config) => {
            let mut s = sim.lock().await;
            s.set_config(config);
            (StatusCode::OK, axum::Json(json!(s.config))).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid config: {e}")).into_response(),
    }
}

async fn get_config(State(Shared { sim, .. }): State<Shared>) -> Response {
    axum::Json(json!(sim.lock().await.config)).into_response()
}

async fn list_jobs(State(Shared { sim, .. }): State<Shared>) -> Response {
    axum::Json(sim.lock().await.admin_jobs()).into_response()
}

async fn set_status(State(Shared { sim, .. }): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    let req: model::StatusChange = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid status change: {e}")).into_response(),
    };
    match sim.lock().await.admin_set_status(&name, req) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(msg) => (StatusCode::NOT_FOUND, msg).into_response(),
    }
}

/// Fails an InProgress job with a FailureReason of one of SageMaker's classes.
async fn fail_job(State(Shared { sim, .. }): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    let req: model::FailRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid failure: {e}")).into_response(),
    };
    match sim.lock().await.admin_fail(&name, req) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err((status, msg)) => (status, msg).into_response(),
    }
}

async fn get_calls(State(Shared { sim, .. }): State<Shared>) -> Response {
    axum::Json(json!(sim.lock().await.calls)).into_response()
}

#[derive(serde::Deserialize)]
struct BulkStatus {
    names: Vec<String>,
    status: String,
}

async fn bulk_status(State(Shared { sim, .. }): State<Shared>, body: Bytes) -> Response {
    let req: BulkStatus = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid bulk status: {e}")).into_response(),
    };
    match sim.lock().await.admin_bulk_status(&req.names, &req.status) {
        Ok(at) => axum::Json(json!({"at": at})).into_response(),
        Err(msg) => (StatusCode::NOT_FOUND, msg).into_response(),
    }
}

async fn get_creates(State(Shared { sim, .. }): State<Shared>) -> Response {
    axum::Json(json!(sim.lock().await.create_attempts)).into_response()
}

/// When a List first returned each job ended (see `Sim::listed_ended`).
async fn get_listed_ended(State(Shared { sim, .. }): State<Shared>) -> Response {
    axum::Json(json!(sim.lock().await.listed_ended)).into_response()
}

/// Each state-change event published (see `Sim::published`).
async fn get_published(State(Shared { sim, .. }): State<Shared>) -> Response {
    axum::Json(json!(sim.lock().await.published)).into_response()
}

async fn reset_calls(State(Shared { sim, .. }): State<Shared>) -> Response {
    let mut s = sim.lock().await;
    s.calls.clear();
    s.listed_ended.clear();
    s.published.clear();
    StatusCode::NO_CONTENT.into_response()
}
