//! The `#[client]` attribute macro of [`palisade-client`](https://docs.rs/palisade-client).
//! Use it through `palisade_client::client`, whose documentation lists the attributes.

use proc_macro::TokenStream;

mod args;
mod expand;

/// Turns an annotated trait into an HTTP client.
///
/// See the `palisade-client` crate documentation for the attributes and an example.
#[proc_macro_attribute]
pub fn client(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match expand::expand(attr.into(), item.clone()) {
        Ok((name, tokens)) => {
            maybe_print(&name, &tokens);
            tokens.into()
        }
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(expand::plain_trait(item));
            out.into()
        }
    }
}

/// `PALISADE_CLIENT_EXPAND=1` (or `all`, or a trait name) prints the expansion on stderr.
fn maybe_print(name: &str, tokens: &proc_macro2::TokenStream) {
    let Ok(want) = std::env::var("PALISADE_CLIENT_EXPAND") else {
        return;
    };
    if want == "1" || want == "all" || want == name {
        let text = match syn::parse2::<syn::File>(tokens.clone()) {
            Ok(file) => prettyplease::unparse(&file),
            Err(_) => tokens.to_string(),
        };
        eprintln!("// #[client] expansion of `{name}`\n{text}");
    }
}
