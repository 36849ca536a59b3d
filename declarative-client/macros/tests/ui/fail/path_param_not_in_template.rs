use palisade_client::{client, ClientError};

#[client]
pub trait Api {
    #[get("/titles")]
    async fn title(&self, #[path] id: u64) -> Result<String, ClientError>;
}

fn main() {}
