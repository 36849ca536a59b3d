use palisade_client::{client, Bytes, ClientError};

#[client]
pub trait Api {
    #[get("/titles")]
    async fn list(&self, #[body] filter: Bytes) -> Result<String, ClientError>;
}

fn main() {}
