//! Parsing of `#[client(...)]` and of the method attributes.

use std::time::Duration;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::{Ident, LitBool, LitInt, LitStr, Token};

/// A retry setting.
#[derive(Clone, Copy)]
pub(crate) enum Retry {
    Never,
    Max(u32),
}

/// Attributes shared by the trait and its methods.
#[derive(Default)]
pub(crate) struct Common {
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: Option<(Retry, Span)>,
    pub(crate) headers: Vec<(String, String)>,
}

#[derive(Default)]
pub(crate) struct ClientArgs {
    pub(crate) service: Option<String>,
    pub(crate) base_path: String,
    pub(crate) fallback: Option<syn::Type>,
    pub(crate) fallback_on_failure: bool,
    pub(crate) common: Common,
}

/// A method's fallback setting.
pub(crate) enum MethodFallback {
    /// The trait's fallback, if any.
    Inherit,
    /// `fallback = false`: none for this method.
    Off,
    /// `fallback = Type`: this type (built with `Default`) instead of the trait's.
    Override(Box<syn::Type>),
}

pub(crate) struct MethodArgs {
    pub(crate) path: LitStr,
    pub(crate) idempotent: Option<Span>,
    pub(crate) fallback: MethodFallback,
    pub(crate) common: Common,
}

const CLIENT_KEYS: &str =
    "`service`, `base_path`, `timeout`, `retry`, `headers`, `fallback`, `fallback_on`";
const METHOD_KEYS: &str = "`timeout`, `retry`, `headers`, `idempotent`, `fallback`";

fn parse_common(key: &Ident, input: ParseStream<'_>, common: &mut Common) -> syn::Result<bool> {
    match key.to_string().as_str() {
        "timeout" => {
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            let d = humantime::parse_duration(&lit.value()).map_err(|e| {
                syn::Error::new(
                    lit.span(),
                    format!("invalid duration: {e} (write \"2s\", \"250ms\")"),
                )
            })?;
            if d.is_zero() {
                return Err(syn::Error::new(
                    lit.span(),
                    "a timeout must be more than zero",
                ));
            }
            common.timeout = Some(d);
        }
        "retry" => {
            input.parse::<Token![=]>()?;
            let retry = if input.peek(LitInt) {
                let n: LitInt = input.parse()?;
                Retry::Max(n.base10_parse()?)
            } else {
                let s: LitStr = input.parse()?;
                if s.value() != "never" {
                    return Err(syn::Error::new(
                        s.span(),
                        "`retry` takes a number of retries or \"never\"",
                    ));
                }
                Retry::Never
            };
            common.retry = Some((retry, key.span()));
        }
        "headers" => {
            let content;
            syn::parenthesized!(content in input);
            while !content.is_empty() {
                let name: LitStr = content.parse()?;
                content.parse::<Token![=]>()?;
                let value: LitStr = content.parse()?;
                let header = header_name(&name)?;
                if !value
                    .value()
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
                {
                    return Err(syn::Error::new(value.span(), "invalid header value"));
                }
                common.headers.push((header, value.value()));
                if !content.is_empty() {
                    content.parse::<Token![,]>()?;
                }
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Checks and lowercases a header name.
pub(crate) fn header_name(lit: &LitStr) -> syn::Result<String> {
    let name = lit.value().to_ascii_lowercase();
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(syn::Error::new(lit.span(), "invalid header name"))
    }
}

fn comma(input: ParseStream<'_>) -> syn::Result<()> {
    if !input.is_empty() {
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

pub(crate) fn parse_client(input: ParseStream<'_>) -> syn::Result<ClientArgs> {
    let mut args = ClientArgs::default();
    while !input.is_empty() {
        let key = input.call(Ident::parse_any)?;
        if !parse_common(&key, input, &mut args.common)? {
            match key.to_string().as_str() {
                "service" => {
                    input.parse::<Token![=]>()?;
                    let s: LitStr = input.parse()?;
                    if s.value().is_empty() {
                        return Err(syn::Error::new(s.span(), "`service` needs a name"));
                    }
                    args.service = Some(s.value());
                }
                "base_path" => {
                    input.parse::<Token![=]>()?;
                    let s: LitStr = input.parse()?;
                    let v = s.value();
                    if !v.starts_with('/') || v.contains(['{', '}', '?', '#']) {
                        return Err(syn::Error::new(
                            s.span(),
                            "`base_path` starts with `/` and has no placeholder or query",
                        ));
                    }
                    check_literal_path(&v, s.span())?;
                    args.base_path = v.trim_end_matches('/').to_owned();
                }
                "fallback" => {
                    input.parse::<Token![=]>()?;
                    args.fallback = Some(input.parse()?);
                }
                "fallback_on" => {
                    input.parse::<Token![=]>()?;
                    let s: LitStr = input.parse()?;
                    args.fallback_on_failure = match s.value().as_str() {
                        "rejection" => false,
                        "failure" => true,
                        _ => {
                            return Err(syn::Error::new(
                                s.span(),
                                "`fallback_on` is \"rejection\" (the breaker is open) or \"failure\" \
                                 (also transport errors and timeouts)",
                            ));
                        }
                    };
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown `#[client]` key `{other}`; expected one of {CLIENT_KEYS}"),
                    ));
                }
            }
        }
        comma(input)?;
    }
    Ok(args)
}

pub(crate) fn parse_method(input: ParseStream<'_>) -> syn::Result<MethodArgs> {
    let path: LitStr = input.parse()?;
    let mut args = MethodArgs {
        path,
        idempotent: None,
        fallback: MethodFallback::Inherit,
        common: Common::default(),
    };
    comma(input)?;
    while !input.is_empty() {
        let key = input.call(Ident::parse_any)?;
        if !parse_common(&key, input, &mut args.common)? {
            match key.to_string().as_str() {
                "idempotent" => args.idempotent = Some(key.span()),
                "fallback" => {
                    input.parse::<Token![=]>()?;
                    if input.peek(LitBool) {
                        let b: LitBool = input.parse()?;
                        if b.value {
                            return Err(syn::Error::new(
                                b.span(),
                                "`fallback = false` turns the trait's fallback off for this method; \
                                 `fallback = Type` names another fallback type",
                            ));
                        }
                        args.fallback = MethodFallback::Off;
                    } else {
                        args.fallback = MethodFallback::Override(Box::new(input.parse()?));
                    }
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown method key `{other}`; expected one of {METHOD_KEYS}"),
                    ));
                }
            }
        }
        comma(input)?;
    }
    Ok(args)
}

/// Literal path characters: RFC 3986 `pchar` and `/`.
pub(crate) fn check_literal_path(s: &str, span: Span) -> syn::Result<()> {
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(*c)))
    {
        Some(c) => Err(syn::Error::new(
            span,
            format!("`{c}` is not allowed in a path; pass it through a `#[path]` parameter"),
        )),
        None => Ok(()),
    }
}
