//! Paginated lists (`limit` and `continue`).
//!
//! A continue token names the last key returned (namespace and name, the order of
//! lists), so the next page starts with a range lookup in the ordered bucket: a page
//! costs O(log n + page), not a scan of everything before it. Tokens are not snapshots:
//! a page shows the objects as they are when it is read.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as TOKEN_BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ObjName, Store};
use crate::errors::{ApiError, ApiResult};
use crate::resources::ResourceType;

/// What a LIST asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageRequest<'a> {
    /// Only this namespace (`None`: all; ignored for cluster-scoped types).
    pub namespace: Option<&'a str>,
    /// At most this many items (`None` or 0: all).
    pub limit: Option<usize>,
    /// The `continue` token of the previous page.
    pub continue_token: Option<&'a str>,
}

/// One page of a LIST.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The objects, in their stored form (render them with [`Store::render`]).
    pub items: Vec<Arc<Value>>,
    /// The store's resourceVersion when the page was read.
    pub resource_version: u64,
    /// Set when more objects remain: pass it as `continue` for the next page.
    pub continue_token: Option<String>,
    /// How many objects remain after this page, when known (lists without selectors).
    pub remaining: Option<usize>,
}

/// The decoded form of a continue token (base64url JSON, like a real server's).
#[derive(Debug, Serialize, Deserialize)]
struct Token {
    /// resourceVersion of the first page (informational: pages are not snapshots).
    rv: u64,
    /// `namespace/name` of the last object returned.
    after: String,
    /// Objects returned before the next page (for `remainingItemCount`).
    offset: usize,
}

impl Token {
    fn encode(&self) -> String {
        // Serialising a struct of plain fields cannot fail.
        TOKEN_BASE64.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(s: &str) -> ApiResult<Token> {
        let invalid = || ApiError::bad_request(format!("invalid continue token {s:?}"));
        let json = TOKEN_BASE64.decode(s).map_err(|_| invalid())?;
        serde_json::from_slice(&json).map_err(|_| invalid())
    }

    fn after_key(&self) -> ObjName {
        match self.after.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (String::new(), self.after.clone()),
        }
    }
}

impl Store {
    /// One page of objects of `rt` that pass `filter` (`None`: all of them), in
    /// namespace and name order, starting after the request's continue token.
    pub fn list_page(
        &self,
        rt: &ResourceType,
        req: &PageRequest<'_>,
        filter: Option<&dyn Fn(&Value) -> bool>,
    ) -> ApiResult<ListPage> {
        let token = req
            .continue_token
            .filter(|c| !c.is_empty())
            .map(Token::decode)
            .transpose()?;
        let after = token.as_ref().map(Token::after_key);
        let offset = token.as_ref().map_or(0, |t| t.offset);
        let first_rv = token.as_ref().map_or(self.rv, |t| t.rv);
        let limit = req.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let scope = Self::list_scope(rt, req.namespace);
        let mut page = ListPage {
            items: Vec::new(),
            resource_version: self.rv,
            continue_token: None,
            remaining: None,
        };
        let Some(bucket) = self.bucket(rt) else {
            return Ok(page);
        };
        let selected = |o: &Value| filter.is_none_or(|f| f(o));
        let mut matching = bucket
            .range(scope, after.as_ref())
            .filter(|(_, r)| selected(&r.object));
        let mut last = None;
        for (key, r) in matching.by_ref().take(limit) {
            page.items.push(r.object.clone());
            last = Some(key);
        }
        if let (Some(key), Some(_)) = (last, matching.next()) {
            let returned = offset + page.items.len();
            page.continue_token = Some(
                Token {
                    rv: first_rv,
                    after: format!("{}/{}", key.0, key.1),
                    offset: returned,
                }
                .encode(),
            );
            if filter.is_none() {
                page.remaining = Some(bucket.count(scope).saturating_sub(returned).max(1));
            }
        }
        Ok(page)
    }
}
