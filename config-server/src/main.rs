//! `palisade-config-server`: serve a git repository or a folder with the Spring Cloud Config API.
//!
//! ```text
//! palisade-config-server [--bind 127.0.0.1:8888] (--git URI [--basedir DIR] [--default-label main]
//!     [--refresh-rate SECS] | --native DIR) [--search-paths a,b] [--prefix /config] [--user NAME]
//! ```
//! The basic-auth password comes from `PALISADE_CONFIG_PASSWORD`; the encryption key (64 hex
//! digits) from `PALISADE_ENCRYPT_KEY` or the file named by `PALISADE_ENCRYPT_KEY_FILE`.

use std::time::Duration;

use palisade_config_server::{Cipher, ConfigServer, DirectoryBackend, GitBackend};

fn usage(msg: &str) -> ! {
    eprintln!("palisade-config-server: {msg}");
    eprintln!(
        "usage: palisade-config-server [--bind ADDR] (--git URI [--basedir DIR] [--default-label L] \
         [--refresh-rate SECS] | --native DIR) [--search-paths a,b] [--prefix P] [--user NAME]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut bind = "127.0.0.1:8888".to_owned();
    let (mut git, mut native, mut basedir, mut label, mut refresh, mut search, mut user) =
        (None, None, None, None, 0u64, None, None);
    let mut prefix = None;
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--bind" => bind = val(),
            "--git" => git = Some(val()),
            "--native" => native = Some(val()),
            "--basedir" => basedir = Some(val()),
            "--default-label" => label = Some(val()),
            "--refresh-rate" => {
                refresh = val()
                    .parse()
                    .unwrap_or_else(|_| usage("bad --refresh-rate"))
            }
            "--search-paths" => search = Some(val()),
            "--user" => user = Some(val()),
            "--prefix" => prefix = Some(val()),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let mut server = match (git, native) {
        (Some(uri), None) => {
            let dir = basedir.map_or_else(
                || std::env::temp_dir().join(format!("palisade-config-{}", std::process::id())),
                Into::into,
            );
            let mut b = GitBackend::new(uri, dir).refresh_rate(Duration::from_secs(refresh));
            if let Some(l) = label {
                b = b.default_label(l);
            }
            ConfigServer::new(b)
        }
        (None, Some(dir)) => ConfigServer::new(
            DirectoryBackend::new(&dir).unwrap_or_else(|e| usage(&format!("--native {dir}: {e}"))),
        ),
        _ => usage("give exactly one of --git and --native"),
    };
    if let Some(s) = search {
        server = server.search_paths(s.split(',').map(str::trim).map(str::to_owned));
    }
    if let Some(p) = prefix {
        server = server.prefix(&p);
    }
    if let Some(u) = user {
        let pass = std::env::var("PALISADE_CONFIG_PASSWORD")
            .unwrap_or_else(|_| usage("--user needs PALISADE_CONFIG_PASSWORD"));
        server = server.basic_auth(u, pass);
    }
    let cipher = match (
        std::env::var("PALISADE_ENCRYPT_KEY"),
        std::env::var("PALISADE_ENCRYPT_KEY_FILE"),
    ) {
        (Ok(k), _) => Some(Cipher::from_hex(&k)),
        (_, Ok(f)) => Some(Cipher::from_file(f.as_ref())),
        _ => None,
    };
    if let Some(c) = cipher {
        server = server.cipher(c.unwrap_or_else(|e| usage(&format!("encryption key: {e}"))));
    }
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|e| usage(&format!("cannot bind {bind}: {e}")));
    eprintln!("palisade-config-server listening on {bind}");
    if let Err(e) = axum::serve(listener, server.router()).await {
        eprintln!("palisade-config-server: {e}");
        std::process::exit(1);
    }
}
