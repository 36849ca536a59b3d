use palisade_client::{client, Body, ClientError};

#[client]
pub trait Api {
    #[put("/upload", retry = 2)]
    async fn upload(&self, #[body] b: Body) -> Result<(), ClientError>;
}

fn main() {}
