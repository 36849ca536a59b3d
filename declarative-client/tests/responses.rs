//! Response types and errors, against a real hyper server.
#![allow(missing_docs)]

mod common;

use bytes::Bytes;
use common::Echo;
use palisade_client::http::{Response, StatusCode};
use palisade_client::stack::StackBuilder;
use palisade_client::{ApiError, ClientError, Json, ResponseBody, client};
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
pub struct Problem {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
pub struct Title {
    pub id: u64,
    pub name: String,
}

#[client]
pub trait Responses {
    #[get("/echo")]
    async fn json(&self) -> Result<Json<Echo>, ClientError>;

    #[get("/text")]
    async fn string(&self) -> Result<String, ClientError>;

    #[get("/text")]
    async fn bytes(&self) -> Result<Bytes, ClientError>;

    #[get("/empty")]
    async fn unit(&self) -> Result<(), ClientError>;

    #[get("/status/{code}")]
    async fn raw(&self, #[path] code: u16) -> Result<Response<ResponseBody>, ClientError>;

    #[get("/stream")]
    async fn stream(&self) -> Result<ResponseBody, ClientError>;

    #[get("/status/{code}")]
    async fn status(&self, #[path] code: u16) -> Result<Json<Title>, ClientError>;

    #[get("/status/{code}")]
    async fn typed(&self, #[path] code: u16) -> Result<Json<Title>, ApiError<Problem>>;

    #[get("/text-error")]
    async fn typed_untyped_body(&self) -> Result<Json<Title>, ApiError<Problem>>;

    #[get("/malformed")]
    async fn malformed(&self) -> Result<Json<Title>, ClientError>;
}

async fn client() -> (
    common::Server,
    ResponsesClient<palisade_client::stack::Stack<palisade_client::transport::HttpTransport>>,
) {
    let server = common::start().await;
    let stack = StackBuilder::new("responses")
        .base_url(&server.url())
        .unwrap()
        .build()
        .unwrap();
    (server, ResponsesClient::new(stack))
}

#[tokio::test]
async fn json_string_bytes_and_unit() {
    let (_s, c) = client().await;
    assert_eq!(c.json().await.unwrap().path, "/echo");
    assert_eq!(c.string().await.unwrap(), "hello, world");
    assert_eq!(
        c.bytes().await.unwrap(),
        Bytes::from_static(b"hello, world")
    );
    c.unit().await.unwrap();
}

#[tokio::test]
async fn raw_response_keeps_every_status() {
    let (_s, c) = client().await;
    let resp = c.raw(404).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.into_body().bytes().await.unwrap();
    assert!(body.starts_with(b"{\"code\":\"E42\""));
}

#[tokio::test]
async fn streaming_response_body() {
    let (_s, c) = client().await;
    let mut body = c.stream().await.unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = body.chunk().await {
        chunks.push(chunk.unwrap());
    }
    let all: Vec<u8> = chunks.concat();
    assert_eq!(all, b"chunk0;chunk1;chunk2;");
}

#[tokio::test]
async fn error_status_carries_status_and_body() {
    let (_s, c) = client().await;
    let err = c.status(404).await.unwrap_err();
    assert!(err.is_status());
    assert!(!err.is_transport() && !err.is_timeout() && !err.is_rejected() && !err.is_decode());
    assert_eq!(err.status_code(), Some(StatusCode::NOT_FOUND));
    assert_eq!(err.method(), "Responses::status");
    assert!(err.body().unwrap().starts_with(b"{\"code\":\"E42\""));
    assert_eq!(err.headers().unwrap()["content-type"], "application/json");
    assert_eq!(
        err.to_string(),
        "Responses::status: HTTP status 404 Not Found"
    );
}

#[tokio::test]
async fn typed_error_body() {
    let (_s, c) = client().await;
    match c.typed(409).await.unwrap_err() {
        ApiError::Api { status, error } => {
            assert_eq!(status, StatusCode::CONFLICT);
            assert_eq!(
                error,
                Problem {
                    code: "E42".into(),
                    message: "no such title".into()
                }
            );
        }
        ApiError::Client(e) => panic!("expected a typed error, got {e:?}"),
    }
    // A body that is not a `Problem` stays a client error with the status.
    let err = c.typed_untyped_body().await.unwrap_err();
    let e = err.client().expect("not a Problem");
    assert_eq!(e.status_code(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(e.body().unwrap(), &Bytes::from_static(b"plain failure"));
}

#[tokio::test]
async fn malformed_json_is_a_decode_error_naming_the_method() {
    let (_s, c) = client().await;
    let err = c.malformed().await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    assert_eq!(err.method(), "Responses::malformed");
    let msg = err.to_string();
    assert!(
        msg.starts_with("Responses::malformed: cannot decode the response:"),
        "{msg}"
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // Bind then drop a listener, so the port is very likely closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stack = StackBuilder::new("nowhere")
        .base_url(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .build()
        .unwrap();
    let err = ResponsesClient::new(stack).string().await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    assert_eq!(err.method(), "Responses::string");
}
