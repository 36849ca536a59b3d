use palisade_client::{client, Bytes, ClientError};

#[client]
pub trait Api {
    #[post("/payments", retry = 3)]
    async fn pay(&self, #[body] b: Bytes) -> Result<(), ClientError>;
}

fn main() {}
