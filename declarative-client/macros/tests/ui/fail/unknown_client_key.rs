use palisade_client::{client, ClientError};

#[client(base_url = "http://x")]
pub trait Api {
    #[get("/x")]
    async fn x(&self) -> Result<String, ClientError>;
}

fn main() {}
