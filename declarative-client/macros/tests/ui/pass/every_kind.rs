use palisade_client::http::{HeaderMap, Response};
use palisade_client::{client, ApiError, Body, Bytes, ClientError, Form, Json, ResponseBody};

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Item {
    pub id: u64,
}

#[derive(Debug, serde::Deserialize)]
pub struct Problem {
    pub code: String,
}

/// Every parameter, body and response kind.
#[client(service = "items", base_path = "/api", timeout = "2s", retry = 2, headers("accept" = "application/json"))]
pub trait Items {
    /// Path and queries.
    #[get("/items/{id}")]
    async fn get(&self, #[path] id: u64, #[query] q: &str, #[query("o")] opt: Option<u32>, #[query] many: Vec<String>) -> Result<Json<Item>, ClientError>;
    #[get("/items")]
    async fn search(&self, #[query(flatten)] item: &Item, #[header("x-id")] id: Option<&str>, #[headers] extra: HeaderMap) -> Result<String, ApiError<Problem>>;
    #[post("/items", timeout = "500ms", retry = "never")]
    async fn create(&self, #[body] item: Json<Item>) -> Result<Bytes, ClientError>;
    #[put("/items/{id}", retry = 3, headers("x-op" = "put"))]
    async fn put(&self, #[path] id: u64, #[body] b: Bytes) -> Result<(), ClientError>;
    #[patch("/items/{id}", idempotent, retry = 1)]
    async fn patch(&self, #[path] id: u64, #[body] f: Form<Item>) -> Result<Response<ResponseBody>, ClientError>;
    #[delete("/items/{id}")]
    async fn delete(&self, #[path] id: u64) -> Result<(), ClientError>;
    #[head("/items")]
    async fn head(&self) -> Result<(), ClientError>;
    #[post("/upload")]
    async fn upload(&self, #[body] b: Body) -> Result<ResponseBody, ClientError>;
    #[post("/text")]
    async fn text(&self, #[body] b: String) -> Result<String, ClientError>;
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_eq!(ItemsClient::<()>::SERVICE, Some("items"));
    let stack = palisade_client::stack::StackBuilder::new("items").build_with(tower::service_fn(
        |_req: palisade_client::http::Request<Body>| async {
            Ok::<_, std::io::Error>(Response::new(Body::empty()))
        },
    ));
    let client = ItemsClient::new(stack.unwrap());
    assert_send(client.get(1, "x", None, vec![]));
}
