//! The expansion of `#[client]`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemTrait, LitStr, Pat, ReturnType, TraitItem, TraitItemFn, Type};

use crate::args::{self, ClientArgs, MethodArgs, MethodFallback, Retry};

const VERBS: [&str; 6] = ["get", "post", "put", "patch", "delete", "head"];

enum ParamKind {
    Path(String),
    Query(String),
    QueryFlatten,
    Header(String),
    Headers,
    Body,
}

struct Param {
    ident: Ident,
    ty: Type,
    kind: ParamKind,
    span: Span,
}

struct Method {
    sig_tokens: TokenStream,
    ident: Ident,
    verb: String,
    args: MethodArgs,
    params: Vec<Param>,
    ok_ty: Type,
    err_ty: Type,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<(String, TokenStream)> {
    let client = syn::parse::Parser::parse2(args::parse_client, attr)?;
    let mut tr: ItemTrait = syn::parse2(item)?;
    if !tr.generics.params.is_empty() || tr.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            tr.generics.span(),
            "a `#[client]` trait cannot be generic",
        ));
    }
    let mut methods = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for item in &mut tr.items {
        match item {
            TraitItem::Fn(f) => match parse_method(f) {
                Ok(m) => methods.push(m),
                Err(e) => match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                },
            },
            other => {
                let e = syn::Error::new(
                    other.span(),
                    "a `#[client]` trait has only `async fn` methods",
                );
                match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
            }
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }
    let name = tr.ident.to_string();
    Ok((name, generate(&client, &tr, &methods)?))
}

fn take_attr(attrs: &mut Vec<syn::Attribute>) -> syn::Result<Option<(String, syn::Attribute)>> {
    let mut found = None;
    let mut i = 0;
    while i < attrs.len() {
        let verb = VERBS
            .iter()
            .find(|v| attrs[i].path().is_ident(v))
            .map(|v| (*v).to_owned());
        if let Some(verb) = verb {
            let a = attrs.remove(i);
            if found.is_some() {
                return Err(syn::Error::new(
                    a.span(),
                    "a method has one HTTP verb attribute",
                ));
            }
            found = Some((verb, a));
        } else {
            i += 1;
        }
    }
    Ok(found)
}

fn parse_method(f: &mut TraitItemFn) -> syn::Result<Method> {
    let Some((verb, attr)) = take_attr(&mut f.attrs)? else {
        return Err(syn::Error::new(
            f.sig.ident.span(),
            "a client method needs `#[get(\"/path\")]`, `#[post]`, `#[put]`, `#[patch]`, `#[delete]` or `#[head]`",
        ));
    };
    let args = attr.parse_args_with(args::parse_method)?;
    if f.sig.asyncness.is_none() {
        return Err(syn::Error::new(
            f.sig.fn_token.span(),
            "client methods are `async fn`",
        ));
    }
    if f.default.is_some() {
        return Err(syn::Error::new(
            f.sig.ident.span(),
            "client methods have no body",
        ));
    }
    if !f.sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            f.sig.generics.span(),
            "client methods cannot be generic",
        ));
    }
    let mut inputs = f.sig.inputs.iter_mut();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        _ => {
            return Err(syn::Error::new(
                f.sig.ident.span(),
                "client methods take `&self`",
            ));
        }
    }
    let mut params = Vec::new();
    for arg in inputs {
        let FnArg::Typed(pt) = arg else {
            unreachable!("receiver comes first")
        };
        let Pat::Ident(pi) = &*pt.pat else {
            return Err(syn::Error::new(
                pt.pat.span(),
                "client method parameters are plain names",
            ));
        };
        let ident = pi.ident.clone();
        // `r#type` is named `type` in paths, queries and headers.
        let plain = ident.unraw().to_string();
        let mut kind = None;
        let mut keep = Vec::new();
        let pt_span = pt.span();
        for a in std::mem::take(&mut pt.attrs) {
            let k = if a.path().is_ident("path") {
                Some(ParamKind::Path(
                    opt_name(&a)?.unwrap_or_else(|| plain.clone()),
                ))
            } else if a.path().is_ident("query") {
                Some(match &a.meta {
                    syn::Meta::List(l) if l.tokens.to_string() == "flatten" => {
                        ParamKind::QueryFlatten
                    }
                    _ => ParamKind::Query(opt_name(&a)?.unwrap_or_else(|| plain.clone())),
                })
            } else if a.path().is_ident("header") {
                let name = match opt_name_lit(&a)? {
                    Some(lit) => args::header_name(&lit)?,
                    None => plain.replace('_', "-").to_ascii_lowercase(),
                };
                Some(ParamKind::Header(name))
            } else if a.path().is_ident("headers") {
                require_word(&a)?;
                Some(ParamKind::Headers)
            } else if a.path().is_ident("body") {
                require_word(&a)?;
                Some(ParamKind::Body)
            } else {
                keep.push(a);
                None
            };
            if let Some(k) = k {
                if kind.is_some() {
                    return Err(syn::Error::new(
                        pt_span,
                        "a parameter has one of `#[path]`, `#[query]`, `#[header]`, `#[headers]`, `#[body]`",
                    ));
                }
                kind = Some(k);
            }
        }
        pt.attrs = keep;
        let Some(kind) = kind else {
            return Err(syn::Error::new(
                pt.span(),
                "mark the parameter `#[path]`, `#[query]`, `#[header(\"name\")]`, `#[headers]` or `#[body]`",
            ));
        };
        params.push(Param {
            ident,
            ty: (*pt.ty).clone(),
            kind,
            span: pt.span(),
        });
    }
    let (ok_ty, err_ty) = result_types(&f.sig.output)?;
    let sig = &f.sig;
    let ident = sig.ident.clone();
    let inputs = &sig.inputs;
    let output = match &sig.output {
        ReturnType::Type(_, t) => t,
        ReturnType::Default => unreachable!("checked by result_types"),
    };
    let sig_tokens = quote! {
        fn #ident(#inputs) -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
    };
    Ok(Method {
        sig_tokens,
        ident,
        verb,
        args,
        params,
        ok_ty,
        err_ty,
    })
}

fn require_word(a: &syn::Attribute) -> syn::Result<()> {
    match &a.meta {
        syn::Meta::Path(_) => Ok(()),
        _ => Err(syn::Error::new(
            a.span(),
            "this attribute takes no arguments",
        )),
    }
}

fn opt_name_lit(a: &syn::Attribute) -> syn::Result<Option<LitStr>> {
    match &a.meta {
        syn::Meta::Path(_) => Ok(None),
        syn::Meta::List(_) => Ok(Some(a.parse_args::<LitStr>()?)),
        syn::Meta::NameValue(nv) => Err(syn::Error::new(nv.span(), "write `#[attr(\"name\")]`")),
    }
}

fn opt_name(a: &syn::Attribute) -> syn::Result<Option<String>> {
    Ok(opt_name_lit(a)?.map(|l| l.value()))
}

fn result_types(ret: &ReturnType) -> syn::Result<(Type, Type)> {
    let err = || {
        syn::Error::new(
            ret.span(),
            "client methods return `Result<T, ClientError>` or `Result<T, ApiError<E>>`",
        )
    };
    let ReturnType::Type(_, ty) = ret else {
        return Err(err());
    };
    let err = || {
        syn::Error::new(
            ty.span(),
            "client methods return `Result<T, ClientError>` or `Result<T, ApiError<E>>`",
        )
    };
    let Type::Path(tp) = &**ty else {
        return Err(err());
    };
    let seg = tp.path.segments.last().ok_or_else(err)?;
    if seg.ident != "Result" {
        return Err(err());
    }
    let syn::PathArguments::AngleBracketed(ab) = &seg.arguments else {
        return Err(err());
    };
    let tys: Vec<&Type> = ab
        .args
        .iter()
        .filter_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    match tys.as_slice() {
        [ok, e] => Ok(((*ok).clone(), (*e).clone())),
        _ => Err(err()),
    }
}

enum Segment {
    Lit(String),
    Var(String, Span),
}

fn parse_template(lit: &LitStr, base: &str) -> syn::Result<Vec<Segment>> {
    let s = lit.value();
    if !s.starts_with('/') && !s.is_empty() {
        return Err(syn::Error::new(lit.span(), "a path starts with `/`"));
    }
    let mut out = vec![Segment::Lit(base.to_owned())];
    let mut rest = s.as_str();
    while let Some(open) = rest.find('{') {
        let lit_part = &rest[..open];
        if lit_part.contains('}') {
            return Err(syn::Error::new(lit.span(), "unmatched `}` in the path"));
        }
        args::check_literal_path(lit_part, lit.span())?;
        out.push(Segment::Lit(lit_part.to_owned()));
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| syn::Error::new(lit.span(), "unclosed `{` in the path"))?;
        let name = &rest[open + 1..open + close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(syn::Error::new(
                lit.span(),
                format!("invalid placeholder `{{{name}}}`"),
            ));
        }
        out.push(Segment::Var(name.to_owned(), lit.span()));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(syn::Error::new(lit.span(), "unmatched `}` in the path"));
    }
    args::check_literal_path(rest, lit.span())?;
    out.push(Segment::Lit(rest.to_owned()));
    if base.is_empty() && s.is_empty() {
        out.push(Segment::Lit("/".to_owned()));
    }
    Ok(out)
}

fn generate(client: &ClientArgs, tr: &ItemTrait, methods: &[Method]) -> syn::Result<TokenStream> {
    let rt = quote!(::palisade_client);
    let p = quote!(#rt::__private);
    let trait_ident = &tr.ident;
    let vis = &tr.vis;
    let client_ident = format_ident!("{}Client", trait_ident);
    let trait_attrs = &tr.attrs;
    let supertraits = if tr.supertraits.is_empty() {
        quote!()
    } else {
        let s = &tr.supertraits;
        quote!(: #s)
    };

    // Per-method fallback types (`fallback = Type` on a method): one field each, built with
    // `Default` by `new`.
    let mut overrides: Vec<(String, Type, Ident)> = Vec::new();
    for m in methods {
        if let MethodFallback::Override(t) = &m.args.fallback {
            let key = quote!(#t).to_string();
            if !overrides.iter().any(|(k, _, _)| *k == key) {
                let field = format_ident!("__fallback_{}", overrides.len());
                overrides.push((key, (**t).clone(), field));
            }
        }
    }

    let mut trait_items = Vec::new();
    let mut impl_items = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for (m, item) in methods.iter().zip(tr.items.iter()) {
        let TraitItem::Fn(f) = item else { continue };
        let attrs = &f.attrs;
        let sig = &m.sig_tokens;
        trait_items.push(quote! { #(#attrs)* #sig; });
        let fallback = match &m.args.fallback {
            MethodFallback::Off => None,
            MethodFallback::Inherit => client
                .fallback
                .as_ref()
                .map(|t| (t, format_ident!("fallback"))),
            MethodFallback::Override(t) => {
                let key = quote!(#t).to_string();
                overrides
                    .iter()
                    .find(|(k, _, _)| *k == key)
                    .map(|(_, t, f)| (t, f.clone()))
            }
        };
        match method_impl(client, trait_ident, m, fallback) {
            Ok(body) => {
                // Lint levels and `cfg` apply to the implementation too.
                let carried = f.attrs.iter().filter(|a| {
                    ["allow", "expect", "warn", "deny", "cfg"]
                        .iter()
                        .any(|n| a.path().is_ident(n))
                });
                impl_items.push(quote! { #(#carried)* #sig { #body } })
            }
            Err(e) => match &mut errors {
                Some(all) => all.combine(e),
                None => errors = Some(e),
            },
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }

    let service = match &client.service {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::core::option::Option::None),
    };
    let doc = format!(
        "A client of [`{trait_ident}`] over a `tower::Service<http::Request<palisade_client::Body>>` \
         (generated by `#[client]`)."
    );
    let fb_clone = if client.fallback.is_some() {
        quote!(fallback: ::std::sync::Arc::clone(&self.fallback),)
    } else {
        quote!()
    };
    let ov_fields: Vec<&Ident> = overrides.iter().map(|(_, _, f)| f).collect();
    let ov_types: Vec<&Type> = overrides.iter().map(|(_, t, _)| t).collect();
    let ov_bounds = ov_types.iter().map(|t| {
        let bound = Ident::new(&trait_ident.to_string(), t.span());
        quote_spanned!(t.span()=> #t: #bound + ::core::default::Default + ::core::marker::Send + ::core::marker::Sync + 'static,)
    });
    let ov_bounds = quote!(#(#ov_bounds)*);
    let (fb_field, fb_new_arg, fb_init, fb_bound) = match &client.fallback {
        Some(fb) => (
            quote!(fallback: ::std::sync::Arc<#fb>,),
            quote!(, fallback: #fb),
            quote!(fallback: ::std::sync::Arc::new(fallback),),
            {
                let bound = Ident::new(&trait_ident.to_string(), fb.span());
                quote_spanned!(fb.span()=> #fb: #bound + ::core::marker::Send + ::core::marker::Sync + 'static,)
            },
        ),
        None => (quote!(), quote!(), quote!(), quote!()),
    };
    let trait_name = trait_ident.to_string();
    let (fb_type, from_stack, no_fallback) = match &client.fallback {
        Some(fb) => (
            quote!(#fb),
            quote!(Self::new(stack, fallback)),
            quote!(::core::option::Option::None),
        ),
        None => (
            quote!(()),
            quote!({
                let () = fallback;
                Self::new(stack)
            }),
            quote!(::core::option::Option::Some(())),
        ),
    };
    let new_doc = if client.fallback.is_some() {
        "A client sending requests through `inner`, with `fallback` answering the calls that the \
         circuit breaker rejects (and, with `fallback_on = \"failure\"`, those that fail)."
    } else {
        "A client sending requests through `inner`."
    };

    Ok(quote! {
        #(#trait_attrs)*
        #vis trait #trait_ident #supertraits {
            #(#trait_items)*
        }

        #[doc = #doc]
        #vis struct #client_ident<S> {
            inner: S,
            #fb_field
            #(#ov_fields: ::std::sync::Arc<#ov_types>,)*
        }

        impl<S: ::core::clone::Clone> ::core::clone::Clone for #client_ident<S> {
            fn clone(&self) -> Self {
                Self {
                    inner: ::core::clone::Clone::clone(&self.inner),
                    #fb_clone
                    #(#ov_fields: ::std::sync::Arc::clone(&self.#ov_fields),)*
                }
            }
        }

        impl<S> ::core::fmt::Debug for #client_ident<S> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::core::stringify!(#client_ident))
            }
        }


        impl<S> #client_ident<S> {
            /// The `service = "..."` name of the client, resolved through service discovery.
            pub const SERVICE: ::core::option::Option<&'static str> = #service;

            #[doc = #new_doc]
            pub fn new(inner: S #fb_new_arg) -> Self
            where
                #ov_bounds
            {
                Self {
                    inner,
                    #fb_init
                    #(#ov_fields: ::std::sync::Arc::new(<#ov_types as ::core::default::Default>::default()),)*
                }
            }

            /// The service the client sends requests through.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// The service the client sends requests through.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }
        }

        impl #client_ident<#rt::ClientStack> {
            /// A builder of the client over the standard stack: a fixed base URL, or the
            /// instances of `service` found through discovery.
            pub fn builder() -> #rt::ClientBuilder<Self> {
                #rt::ClientBuilder::new()
            }
        }

        impl #rt::GeneratedClient for #client_ident<#rt::ClientStack>
        where
            #ov_bounds
        {
            const NAME: &'static str = #trait_name;
            const SERVICE: ::core::option::Option<&'static str> = #service;
            type Fallback = #fb_type;
            fn from_stack(stack: #rt::ClientStack, fallback: Self::Fallback) -> Self {
                #from_stack
            }
            fn no_fallback() -> ::core::option::Option<Self::Fallback> {
                #no_fallback
            }
        }

        impl<S, __B> #trait_ident for #client_ident<S>
        where
            S: #p::tower_service::Service<#p::http::Request<#rt::Body>, Response = #p::http::Response<__B>>
                + ::core::clone::Clone
                + ::core::marker::Send
                + 'static,
            S::Future: ::core::marker::Send,
            S::Error: ::core::convert::Into<#rt::BoxError>,
            __B: #p::http_body::Body<Data = #rt::Bytes> + ::core::marker::Send + 'static,
            __B::Error: ::core::convert::Into<#rt::BoxError>,
            #fb_bound
            #ov_bounds
        {
            #(#impl_items)*
        }
    })
}

fn method_impl(
    client: &ClientArgs,
    trait_ident: &Ident,
    m: &Method,
    fallback: Option<(&Type, Ident)>,
) -> syn::Result<TokenStream> {
    let rt = quote!(::palisade_client);
    let p = quote!(#rt::__private);
    let verb = m.verb.to_uppercase();
    let verb_ident = format_ident!("{}", verb);
    let name = format!("{}::{}", trait_ident, m.ident);

    // Placeholders and #[path] parameters match one to one.
    let segments = parse_template(&m.args.path, &client.base_path)?;
    let path_params: Vec<&Param> = m
        .params
        .iter()
        .filter(|p| matches!(p.kind, ParamKind::Path(_)))
        .collect();
    for seg in &segments {
        if let Segment::Var(v, span) = seg
            && !path_params
                .iter()
                .any(|p| matches!(&p.kind, ParamKind::Path(n) if n == v))
        {
            return Err(syn::Error::new(
                *span,
                format!("the path has `{{{v}}}` but no `#[path]` parameter is named `{v}`"),
            ));
        }
    }
    for pp in &path_params {
        let ParamKind::Path(n) = &pp.kind else {
            continue;
        };
        if !segments
            .iter()
            .any(|s| matches!(s, Segment::Var(v, _) if v == n))
        {
            return Err(syn::Error::new(
                pp.span,
                format!("`#[path]` parameter `{n}` has no `{{{n}}}` in the path"),
            ));
        }
    }

    let bodies: Vec<&Param> = m
        .params
        .iter()
        .filter(|p| matches!(p.kind, ParamKind::Body))
        .collect();
    if bodies.len() > 1 {
        return Err(syn::Error::new(
            bodies[1].span,
            "a method has at most one `#[body]` parameter",
        ));
    }
    if let Some(b) = bodies.first()
        && (verb == "GET" || verb == "HEAD")
    {
        return Err(syn::Error::new(
            b.span,
            format!("a {verb} request has no body; use `#[post]`, `#[put]` or `#[patch]`"),
        ));
    }

    let idempotent_by_verb = matches!(verb.as_str(), "GET" | "HEAD" | "PUT" | "DELETE");
    let idempotent = idempotent_by_verb || m.args.idempotent.is_some();
    let method_retry = m.args.common.retry;
    if let Some((Retry::Max(_), span)) = method_retry
        && !idempotent
    {
        return Err(syn::Error::new(
            span,
            format!(
                "`retry` on a {verb} method needs `idempotent`: a {verb} may not be safe to send twice"
            ),
        ));
    }
    // The trait's retry applies to idempotent methods only (the stack checks it too).
    let retry = method_retry
        .map(|(r, _)| r)
        .or_else(|| client.common.retry.map(|(r, _)| r).filter(|_| idempotent));
    let timeout = m.args.common.timeout.or(client.common.timeout);

    let service = client
        .service
        .clone()
        .unwrap_or_else(|| trait_ident.to_string());
    let mut meta = quote!(#rt::MethodMeta::new(#name, #service, #verb).idempotent(#idempotent));
    if let Some(t) = timeout {
        let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        meta = quote!(#meta.timeout(::core::time::Duration::from_nanos(#nanos)));
    }
    match retry {
        Some(Retry::Max(n)) => meta = quote!(#meta.retry(#rt::RetrySpec::Max(#n))),
        Some(Retry::Never) => meta = quote!(#meta.retry(#rt::RetrySpec::Never)),
        None => {}
    }

    let mut build = Vec::new();
    let mut capacity = 16usize;
    for seg in &segments {
        match seg {
            Segment::Lit(s) if s.is_empty() => {}
            Segment::Lit(s) => {
                capacity += s.len();
                build.push(quote!(__b.path(#s);));
            }
            Segment::Var(v, _) => {
                capacity += 16;
                let param = path_params
                    .iter()
                    .find(|p| matches!(&p.kind, ParamKind::Path(n) if n == v))
                    .expect("checked above");
                let id = &param.ident;
                build.push(quote_spanned!(param.span=> __b.path_param(&#id);));
            }
        }
    }
    for h in client.common.headers.iter().chain(&m.args.common.headers) {
        let (n, v) = h;
        build.push(quote! {
            __b.static_header(#p::http::HeaderName::from_static(#n), #p::http::HeaderValue::from_static(#v));
        });
    }
    // Replay needs the body by reference: a retry or a fallback sends it again.
    let by_ref = fallback.is_some() || matches!(method_retry, Some((Retry::Max(_), _)));
    for param in &m.params {
        let id = &param.ident;
        let ts = match &param.kind {
            ParamKind::Path(_) => continue,
            ParamKind::Query(n) => {
                capacity += n.len() + 16;
                quote_spanned!(param.span=> __b.query(#n, &#id);)
            }
            ParamKind::QueryFlatten => quote_spanned!(param.span=> __b.query_flatten(&#id)?;),
            ParamKind::Header(n) => {
                quote_spanned!(param.span=> __b.header(#p::http::HeaderName::from_static(#n), &#id)?;)
            }
            ParamKind::Headers => quote_spanned!(param.span=> __b.headers(&#id);),
            ParamKind::Body if by_ref => quote_spanned!(param.ty.span()=> __b.body_ref(&#id)?;),
            ParamKind::Body => quote_spanned!(param.span=> __b.body(#id)?;),
        };
        build.push(ts);
    }

    let ok_ty = &m.ok_ty;
    let err_ty = &m.err_ty;
    let (fb_let, fb_call) = match fallback {
        Some((fb, field)) => {
            let method = &m.ident;
            let args = m.params.iter().map(|p| &p.ident);
            (quote!(let __fb = ::std::sync::Arc::clone(&self.#field);), {
                let on_failure = client.fallback_on_failure;
                quote! {
                if #p::wants_fallback(&__e, #on_failure) {
                    __obs.fallback(&__e);
                    return <#fb as #trait_ident>::#method(&*__fb, #(#args),*).await;
                }
                }
            })
        }
        None => (quote!(), quote!()),
    };

    Ok(quote! {
        let __svc = ::core::clone::Clone::clone(&self.inner);
        #fb_let
        static __META: #rt::MethodMeta = #meta;
        let __obs = #p::CallObserver::start(&__META);
        async move {
            #[allow(unused_mut)]
            let __req = (|| -> ::core::result::Result<#p::http::Request<#rt::Body>, #rt::ClientError> {
                let mut __b = #p::RequestBuilder::new(&__META, #p::http::Method::#verb_ident, #capacity);
                #(#build)*
                __b.build()
            })();
            let __req = match __req {
                ::core::result::Result::Ok(r) => r,
                ::core::result::Result::Err(__e) => {
                    __obs.failed(&__e);
                    return ::core::result::Result::Err(::core::convert::From::from(__e));
                }
            };
            let __resp = match #p::send(__svc, __req, &__META, &__obs).await {
                ::core::result::Result::Ok(r) => r,
                ::core::result::Result::Err(__e) => {
                    #fb_call
                    __obs.failed(&__e);
                    return ::core::result::Result::Err(::core::convert::From::from(__e));
                }
            };
            __obs.status(__resp.status());
            let __result = #p::finish::<#ok_ty, #err_ty, _>(__resp, &__META).await;
            __obs.finished(&__result);
            __result
        }
    })
}

/// The trait as the user wrote it, without the macro's attributes: emitted beside a
/// `compile_error!` so that one mistake does not cascade into unrelated errors.
pub(crate) fn plain_trait(item: TokenStream) -> TokenStream {
    let Ok(mut tr) = syn::parse2::<ItemTrait>(item) else {
        return TokenStream::new();
    };
    for item in &mut tr.items {
        if let TraitItem::Fn(f) = item {
            f.attrs
                .retain(|a| !VERBS.iter().any(|v| a.path().is_ident(v)));
            for arg in &mut f.sig.inputs {
                if let FnArg::Typed(pt) = arg {
                    pt.attrs.retain(|a| {
                        !["path", "query", "header", "headers", "body"]
                            .iter()
                            .any(|n| a.path().is_ident(n))
                    });
                }
            }
        }
    }
    quote! {
        #[allow(async_fn_in_trait)]
        #tr
    }
}
