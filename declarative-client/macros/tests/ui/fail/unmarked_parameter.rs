use palisade_client::{client, ClientError};

#[client]
pub trait Api {
    #[get("/x")]
    async fn x(&self, id: u64) -> Result<String, ClientError>;
}

fn main() {}
