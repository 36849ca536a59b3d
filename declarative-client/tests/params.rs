//! Every parameter and request body kind, against a real hyper server.
#![allow(missing_docs)]

mod common;

use bytes::Bytes;
use common::Echo;
use palisade_client::http::HeaderMap;
use palisade_client::stack::StackBuilder;
use palisade_client::{Body, ClientError, Form, Json, client};
use serde::Serialize;

#[derive(Serialize)]
pub struct Search {
    pub q: String,
    pub page: u32,
    pub tag: Option<String>,
}

#[derive(Serialize)]
pub struct NewTitle {
    pub name: String,
    pub year: u16,
}

#[client(base_path = "/api/v1", headers("user-agent" = "palisade-test"))]
pub trait Echoes {
    #[get("/titles/{id}/lang/{lang}")]
    async fn path(&self, #[path] id: u64, #[path] lang: &str) -> Result<Json<Echo>, ClientError>;

    #[get("/q")]
    async fn query(
        &self,
        #[query] single: &str,
        #[query("opt")] optional: Option<u32>,
        #[query] absent: Option<&str>,
        #[query] repeated: Vec<&str>,
    ) -> Result<Json<Echo>, ClientError>;

    #[get("/search")]
    async fn flatten(
        &self,
        #[query(flatten)] q: &Search,
        #[query] extra: bool,
    ) -> Result<Json<Echo>, ClientError>;

    #[get("/h", headers("x-static" = "on"))]
    async fn headers(
        &self,
        #[header("X-Request-Id")] rid: &str,
        #[header] x_count: u32,
        #[header("x-none")] none: Option<&str>,
        #[headers] extra: &HeaderMap,
    ) -> Result<Json<Echo>, ClientError>;

    #[post("/json")]
    async fn json(&self, #[body] t: Json<NewTitle>) -> Result<Json<Echo>, ClientError>;

    #[put("/form")]
    async fn form(&self, #[body] t: Form<&Search>) -> Result<Json<Echo>, ClientError>;

    #[patch("/bytes")]
    async fn bytes(&self, #[body] b: Bytes) -> Result<Json<Echo>, ClientError>;

    #[post("/text")]
    async fn text(&self, #[body] s: String) -> Result<Json<Echo>, ClientError>;

    #[post("/stream")]
    async fn stream(&self, #[body] b: Body) -> Result<Json<Echo>, ClientError>;

    #[delete("/titles/{id}")]
    async fn delete(&self, #[path] id: u64) -> Result<Json<Echo>, ClientError>;

    #[head("/titles/{id}")]
    async fn head(&self, #[path] id: u64) -> Result<(), ClientError>;

    #[allow(non_snake_case)]
    #[get("/kinds/{type}")]
    async fn raw_idents(
        &self,
        #[path] r#type: &str,
        #[query] r#in: u8,
        #[header] X_Trace_Tag: &str,
    ) -> Result<Json<Echo>, ClientError>;
}

async fn client() -> (
    common::Server,
    EchoesClient<palisade_client::stack::Stack<palisade_client::transport::HttpTransport>>,
) {
    let server = common::start().await;
    let stack = StackBuilder::new("echo")
        .base_url(&server.url())
        .unwrap()
        .build()
        .unwrap();
    (server, EchoesClient::new(stack))
}

#[tokio::test]
async fn path_params_are_percent_encoded() {
    let (_s, c) = client().await;
    let Json(e) = c.path(42, "en us/ü?#").await.unwrap();
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, "/api/v1/titles/42/lang/en%20us%2F%C3%BC%3F%23");
    assert_eq!(e.header("user-agent"), Some("palisade-test"));
}

#[tokio::test]
async fn query_single_optional_and_repeated() {
    let (_s, c) = client().await;
    let Json(e) = c
        .query("a b&c", Some(7), None, vec!["x", "y"])
        .await
        .unwrap();
    assert_eq!(e.path, "/api/v1/q");
    assert_eq!(e.query, "single=a+b%26c&opt=7&repeated=x&repeated=y");
    let Json(e) = c.query("s", None, Some("here"), vec![]).await.unwrap();
    assert_eq!(e.query, "single=s&absent=here");
}

#[tokio::test]
async fn query_flattened_struct() {
    let (_s, c) = client().await;
    let q = Search {
        q: "star wars".into(),
        page: 2,
        tag: None,
    };
    let Json(e) = c.flatten(&q, true).await.unwrap();
    assert_eq!(e.query, "q=star+wars&page=2&extra=true");
}

#[tokio::test]
async fn headers_single_optional_static_and_map() {
    let (_s, c) = client().await;
    let mut extra = HeaderMap::new();
    extra.insert("x-tenant", "acme".parse().unwrap());
    extra.append("x-multi", "1".parse().unwrap());
    extra.append("x-multi", "2".parse().unwrap());
    let Json(e) = c.headers("rid-1", 3, None, &extra).await.unwrap();
    assert_eq!(e.header("x-request-id"), Some("rid-1"));
    assert_eq!(e.header("x-count"), Some("3"));
    assert_eq!(e.header("x-none"), None);
    assert_eq!(e.header("x-static"), Some("on"));
    assert_eq!(e.header("x-tenant"), Some("acme"));
    assert_eq!(e.headers["x-multi"], vec!["1", "2"]);
}

#[tokio::test]
async fn invalid_header_value_is_an_encode_error() {
    let (s, c) = client().await;
    let err = c
        .headers("bad\nvalue", 1, None, &HeaderMap::new())
        .await
        .unwrap_err();
    assert!(err.is_encode(), "{err:?}");
    assert_eq!(err.method(), "Echoes::headers");
    assert_eq!(s.seen.total.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn json_body() {
    let (_s, c) = client().await;
    let Json(e) = c
        .json(Json(NewTitle {
            name: "Heat".into(),
            year: 1995,
        }))
        .await
        .unwrap();
    assert_eq!(e.method, "POST");
    assert_eq!(e.header("content-type"), Some("application/json"));
    assert_eq!(e.body, r#"{"name":"Heat","year":1995}"#);
}

#[tokio::test]
async fn form_body() {
    let (_s, c) = client().await;
    let q = Search {
        q: "a&b".into(),
        page: 1,
        tag: Some("x y".into()),
    };
    let Json(e) = c.form(Form(&q)).await.unwrap();
    assert_eq!(e.method, "PUT");
    assert_eq!(
        e.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(e.body, "q=a%26b&page=1&tag=x+y");
}

#[tokio::test]
async fn bytes_and_text_bodies() {
    let (_s, c) = client().await;
    let Json(e) = c.bytes(Bytes::from_static(b"raw")).await.unwrap();
    assert_eq!(e.method, "PATCH");
    assert_eq!(e.header("content-type"), Some("application/octet-stream"));
    assert_eq!(e.body, "raw");
    let Json(e) = c.text("héllo".to_owned()).await.unwrap();
    assert_eq!(e.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(e.body, "héllo");
}

#[tokio::test]
async fn streaming_body() {
    let (_s, c) = client().await;
    let chunks = futures::stream::iter(vec![
        Ok::<_, std::io::Error>("one,"),
        Ok("two,"),
        Ok("three"),
    ]);
    let Json(e) = c.stream(Body::from_stream(chunks)).await.unwrap();
    assert_eq!(e.body, "one,two,three");
    assert_eq!(e.header("transfer-encoding"), Some("chunked"));
}

#[tokio::test]
async fn delete_and_head() {
    let (s, c) = client().await;
    let Json(e) = c.delete(9).await.unwrap();
    assert_eq!(e.method, "DELETE");
    assert_eq!(e.path, "/api/v1/titles/9");
    c.head(9).await.unwrap();
    assert_eq!(s.seen.hits("/api/v1/titles/9"), 2);
}

#[tokio::test]
async fn raw_and_uppercase_identifiers() {
    let (_s, c) = client().await;
    let Json(e) = c.raw_idents("movie", 3, "t1").await.unwrap();
    assert_eq!(e.path, "/api/v1/kinds/movie");
    assert_eq!(e.query, "in=3");
    assert_eq!(e.header("x-trace-tag"), Some("t1"));
}
