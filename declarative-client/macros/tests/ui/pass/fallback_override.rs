use palisade_client::{client, ClientError, Json};

/// A client with a trait-level fallback and a per-method override.
#[client(fallback = Offline)]
pub trait Titles {
    /// One title: the trait's fallback.
    #[get("/titles/{id}")]
    async fn title(&self, #[path] id: u64) -> Result<Json<String>, ClientError>;
    /// The top titles: their own fallback.
    #[get("/top", fallback = EmptyTop)]
    async fn top(&self) -> Result<Json<Vec<String>>, ClientError>;
}

/// Answers from a cache.
pub struct Offline;

impl Titles for Offline {
    async fn title(&self, id: u64) -> Result<Json<String>, ClientError> {
        Ok(Json(format!("title {id}")))
    }
    async fn top(&self) -> Result<Json<Vec<String>>, ClientError> {
        Ok(Json(vec!["cached".into()]))
    }
}

/// Answers an empty list.
#[derive(Default)]
pub struct EmptyTop;

impl Titles for EmptyTop {
    async fn title(&self, id: u64) -> Result<Json<String>, ClientError> {
        Ok(Json(format!("title {id}")))
    }
    async fn top(&self) -> Result<Json<Vec<String>>, ClientError> {
        Ok(Json(Vec::new()))
    }
}

/// Only a per-method fallback: `new` takes no fallback.
#[client]
pub trait Search {
    /// Search.
    #[get("/search", fallback = NoHits)]
    async fn search(&self, #[query] q: &str) -> Result<Json<Vec<String>>, ClientError>;
}

/// No hits.
#[derive(Default)]
pub struct NoHits;

impl Search for NoHits {
    async fn search(&self, _q: &str) -> Result<Json<Vec<String>>, ClientError> {
        Ok(Json(Vec::new()))
    }
}

fn main() {
    let transport = tower::service_fn(|_req: palisade_client::http::Request<palisade_client::Body>| async {
        Ok::<_, std::io::Error>(palisade_client::http::Response::new(palisade_client::Body::empty()))
    });
    let client = TitlesClient::new(transport.clone(), Offline);
    let _clone = client.clone();
    let _search = SearchClient::new(transport);
}
