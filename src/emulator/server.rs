//! The emulator's own accept loop: TCP, optional TLS, HTTP/1 or HTTP/2 per connection, and
//! the front service that records every `/api` request and applies the injected faults
//! before and after the router.
//!
//! A hand-written loop, rather than `axum::serve`, because some faults act on the connection
//! rather than on the answer: when the front service returns an error, hyper closes the
//! connection without writing anything, which is exactly "the answer was lost".

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::faults::Early;
use super::routes::OriginalTarget;
use super::state::Shared;
use super::wire::{ApiError, Wire};
use super::{EmulatorError, RequestRecord};

/// How long a TLS handshake may take before the connection is given up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The error that makes hyper close a connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
pub(crate) struct Dropped;

/// Accepts connections on `listener` until `stop` is cancelled, then lets open connections
/// finish their requests (for a few seconds at most).
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) -> Result<(), EmulatorError> {
    let front = Front {
        router: super::routes::router(shared.clone()),
        shared,
    };
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Accept errors concern one connection (or a momentary lack of file
                // descriptors); pause briefly and go on rather than ending the server.
                tracing::warn!("emulator: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(stream), front, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(TokioIo::new(tls_stream), front, stop).await
                        }
                        Ok(Err(e)) => tracing::debug!("emulator: TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("emulator: TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "emulator: connections still open after {SHUTDOWN_GRACE:?}; stopping anyway"
        );
    }
    Ok(())
}

async fn serve_connection<I>(io: TokioIo<I>, front: Front, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let front = front.clone();
        async move { front.handle(req).await }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("emulator: connection ended: {e}");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The service in front of the router.
#[derive(Clone)]
struct Front {
    router: Router,
    shared: Arc<Shared>,
}

/// Where a request goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Area {
    /// `/api`: recorded, faults apply.
    Api,
    /// Anything else: `/_emulator` inspection, or a 404.
    Other,
}

impl Front {
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        let routed_path = normalise_path(req.uri().path());
        let area = if routed_path == "/api" || routed_path.starts_with("/api/") {
            Area::Api
        } else {
            Area::Other
        };
        let method = req.method().to_string();
        let wire = Wire::negotiate(req.headers());
        let mut req = req.map(Body::new);
        *req.uri_mut() = rebuild_uri(req.uri(), &routed_path);
        req.extensions_mut().insert(OriginalTarget(target.clone()));

        if area == Area::Other {
            return Ok(self.route(req).await);
        }

        let (seq, plan) = {
            let mut st = self.shared.lock();
            let seq = st.requests.len() as u64 + 1;
            st.requests.push(RequestRecord {
                seq,
                method,
                path: target,
                status: None,
                dropped: false,
            });
            (seq, st.faults.plan(Instant::now()))
        };
        let mut record = Outcome {
            shared: &self.shared,
            seq,
            settled: false,
        };
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        match plan.early {
            Some(Early::Drop) => {
                record.dropped();
                return Err(Dropped);
            }
            Some(Early::Answer {
                status,
                retry_after,
                message,
            }) => {
                let status = StatusCode::from_u16(status).expect("fault statuses are valid");
                let mut resp = ApiError::new(status, message).response(wire);
                if let Some(secs) = retry_after {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                record.answered(status);
                return Ok(resp);
            }
            None => {}
        }
        let resp = self.route(req).await;
        if plan.drop_after {
            record.dropped();
            return Err(Dropped);
        }
        record.answered(resp.status());
        Ok(resp)
    }

    async fn route(&self, req: Request<Body>) -> Response<Body> {
        match self.router.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}

/// Settles a request's record: with its status, or as dropped. A request whose future is
/// dropped before it settles (the client went away mid-request) counts as dropped.
struct Outcome<'a> {
    shared: &'a Shared,
    seq: u64,
    settled: bool,
}

impl Outcome<'_> {
    fn settle(&mut self, status: Option<u16>) {
        self.settled = true;
        let mut st = self.shared.lock();
        let index = usize::try_from(self.seq - 1).expect("request counts fit in memory");
        if let Some(r) = st.requests.get_mut(index) {
            r.status = status;
            r.dropped = status.is_none();
        }
    }

    fn answered(&mut self, status: StatusCode) {
        self.settle(Some(status.as_u16()));
    }

    fn dropped(&mut self) {
        self.settle(None);
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(None);
        }
    }
}

/// The path the router sees: lower case (EM matches URLs case-insensitively) and without a
/// trailing slash (`/api/` and `/api/sessionMngr/` are the documented spellings).
pub(crate) fn normalise_path(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn rebuild_uri(uri: &Uri, path: &str) -> Uri {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    // The path came from a valid URI and was only lower-cased and trimmed, so it still is one.
    path_and_query.parse().unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_for_routing() {
        assert_eq!(normalise_path("/api/"), "/api");
        assert_eq!(normalise_path("/api/sessionMngr/"), "/api/sessionmngr");
        assert_eq!(normalise_path("/API/logonSessions"), "/api/logonsessions");
        assert_eq!(normalise_path("/"), "/");
        let uri: Uri = "/API/Security/Accounts/X?format=Entity".parse().unwrap();
        assert_eq!(
            rebuild_uri(&uri, &normalise_path(uri.path())).to_string(),
            "/api/security/accounts/x?format=Entity"
        );
    }
}
