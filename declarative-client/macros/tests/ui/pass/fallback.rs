use palisade_client::{client, ClientError, Json};

/// A client with a fallback.
#[client(fallback = Offline)]
pub trait Titles {
    /// One title.
    #[get("/titles/{id}")]
    async fn title(&self, #[path] id: u64) -> Result<Json<String>, ClientError>;
    /// Create one.
    #[post("/titles", fallback = false)]
    async fn create(&self, #[body] name: Json<String>) -> Result<(), ClientError>;
}

/// Answers from a cache.
pub struct Offline;

impl Titles for Offline {
    async fn title(&self, id: u64) -> Result<Json<String>, ClientError> {
        Ok(Json(format!("title {id}")))
    }
    async fn create(&self, _name: Json<String>) -> Result<(), ClientError> {
        Ok(())
    }
}

fn main() {
    let transport = tower::service_fn(|_req: palisade_client::http::Request<palisade_client::Body>| async {
        Ok::<_, std::io::Error>(palisade_client::http::Response::new(palisade_client::Body::empty()))
    });
    let client = TitlesClient::new(transport, Offline);
    let _clone = client.clone();
}
