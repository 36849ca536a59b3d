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
    let want = std::env::var("PALISADE_CLIENT_EXPAND").ok();
    if let Some(text) = render(want.as_deref(), name, tokens) {
        eprintln!("{text}");
    }
}

/// The expansion as formatted Rust, if `want` (the variable's value) selects `name`.
fn render(want: Option<&str>, name: &str, tokens: &proc_macro2::TokenStream) -> Option<String> {
    let want = want?;
    if want != "1" && want != "all" && want != name {
        return None;
    }
    let text = match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    };
    Some(format!("// #[client] expansion of `{name}`\n{text}"))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn expansion() -> (String, proc_macro2::TokenStream) {
        crate::expand::expand(
            quote!(base_path = "/api", timeout = "2s"),
            quote! {
                pub trait Catalog {
                    #[get("/titles/{id}")]
                    async fn title(&self, #[path] id: u64) -> Result<String, ClientError>;
                }
            },
        )
        .expect("valid input")
    }

    #[test]
    fn env_switch_selects_traits() {
        let (name, tokens) = expansion();
        assert_eq!(name, "Catalog");
        assert!(super::render(None, &name, &tokens).is_none());
        assert!(super::render(Some("Other"), &name, &tokens).is_none());
        for want in ["1", "all", "Catalog"] {
            let text = super::render(Some(want), &name, &tokens).expect("selected");
            assert!(text.starts_with("// #[client] expansion of `Catalog`\n"));
            // Formatted by prettyplease: one item per line.
            assert!(text.contains("\npub struct CatalogClient<S> {\n"), "{text}");
            assert!(text.contains("\"Catalog::title\""), "{text}");
            assert!(text.contains("from_nanos(2000000000u64)"), "{text}");
        }
    }

    #[test]
    fn errors_are_values_not_panics() {
        let err = crate::expand::expand(
            quote!(retry = "sometimes"),
            quote!(
                pub trait T {}
            ),
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"never\""), "{err}");
        let err = crate::expand::expand(
            quote!(),
            quote!(
                struct NotATrait;
            ),
        )
        .unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
    }
}
