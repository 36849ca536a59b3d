use palisade_client::{client, ClientError};

#[client]
pub trait Api {
    #[get("/x", retries = 2)]
    async fn x(&self) -> Result<String, ClientError>;
}

fn main() {}
