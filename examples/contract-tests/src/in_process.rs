//! Serving an app inside the test process: the request a case builds with
//! reqwest goes to the app's service directly (axum: `ServiceExt::oneshot`;
//! actix-web: `test::init_service` on an actix system of its own thread), no
//! socket in between. The socket's peer address a server would see travels
//! with the request as a [`PeerAddr`] extension (axum: `ConnectInfo`;
//! actix-web: the test request's peer address).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service as _, ServiceFactory, ServiceRequest, ServiceResponse};
use http_body_util::BodyExt as _;
use referral_http::Api;
use referral_server_common::Settings;
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt as _;

/// A request and its answer, as plain `http` values.
pub type HttpRequest = http::Request<Vec<u8>>;
/// An answer read whole.
pub type HttpResponse = http::Response<Vec<u8>>;

/// An app that answers requests in process.
pub trait Transport: Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, request: HttpRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>>;
}

/// The socket peer of an in-process request (an extension of the
/// [`HttpRequest`]); every request carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Builds the app of a server from its [`Api`] and [`Settings`].
pub type AppFactory = fn(Api, &Settings) -> Arc<dyn Transport>;

/// An axum app (a `Router`, or a service around one) as a [`Transport`],
/// called with `oneshot`.
#[derive(Debug, Clone)]
pub struct AxumApp<S = axum::Router>(pub S);

impl<S, B> Transport for AxumApp<S>
where
    S: tower::Service<
            axum::extract::Request,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    B: axum::body::HttpBody + Send + 'static,
    B::Data: Send,
{
    fn call(&self, request: HttpRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> {
        let app = self.0.clone();
        Box::pin(async move {
            let mut request = request.map(axum::body::Body::from);
            if let Some(PeerAddr(peer)) = request.extensions().get::<PeerAddr>().copied() {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
            }
            let response = app.oneshot(request).await.unwrap_or_else(|e| match e {});
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes().to_vec())
                .unwrap_or_default();
            http::Response::from_parts(parts, bytes)
        })
    }
}

type Job = (HttpRequest, oneshot::Sender<HttpResponse>);

/// An actix-web `App` as a [`Transport`]: built by `make` on a thread of its
/// own running an actix system (actix services are not `Send`), initialised
/// with `test::init_service`, and fed requests over a channel; the thread
/// ends when the transport is dropped.
#[derive(Debug)]
pub struct ActixApp {
    jobs: mpsc::UnboundedSender<Job>,
}

impl ActixApp {
    /// Starts the app `make` builds.
    pub fn start<F, T>(make: F) -> Self
    where
        F: FnOnce() -> actix_web::App<T> + Send + 'static,
        T: ServiceFactory<
                ServiceRequest,
                Config = (),
                Response = ServiceResponse<actix_web::body::BoxBody>,
                Error = actix_web::Error,
                InitError = (),
            > + 'static,
    {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let service = Rc::new(actix_web::test::init_service(make()).await);
                while let Some((request, reply)) = rx.recv().await {
                    let service = Rc::clone(&service);
                    actix_web::rt::spawn(async move {
                        let response = match service.call(to_actix(request).to_request()).await {
                            Ok(response) => response.into_parts().1,
                            Err(e) => e.error_response(),
                        };
                        let _ = reply.send(from_actix(response).await);
                    });
                }
            });
        });
        Self { jobs }
    }
}

impl Transport for ActixApp {
    fn call(&self, request: HttpRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.jobs.send((request, tx));
        Box::pin(async move {
            assert!(sent.is_ok(), "the actix app's thread is gone");
            rx.await.expect("the actix app answers")
        })
    }
}

fn to_actix(request: HttpRequest) -> actix_web::test::TestRequest {
    let (parts, body) = request.into_parts();
    let peer = parts.extensions.get::<PeerAddr>().copied();
    let method =
        actix_web::http::Method::from_bytes(parts.method.as_str().as_bytes()).expect("a method");
    let uri = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_owned();
    let mut test = actix_web::test::TestRequest::default()
        .method(method)
        .uri(&uri);
    for (name, value) in &parts.headers {
        // `set_payload` writes the Content-Length.
        if name == http::header::CONTENT_LENGTH {
            continue;
        }
        test = test.append_header((name.as_str(), value.as_bytes()));
    }
    if let Some(PeerAddr(peer)) = peer {
        test = test.peer_addr(peer);
    }
    test.set_payload(body)
}

async fn from_actix<B: MessageBody>(response: actix_web::HttpResponse<B>) -> HttpResponse {
    let mut out = http::Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        out = out.header(name.as_str(), value.as_bytes());
    }
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    out.body(body).expect("an answer")
}
