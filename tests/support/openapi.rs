//! The forges' API descriptions (`fixtures/forge-apis/`) as a checker every fake forge uses:
//! a request is matched to its operation by method and path, then its path parameters'
//! types, its query parameters (declared ones only) and its JSON body (the operation's schema,
//! and no property the schema does not name) are checked; a fake's own answer can be checked
//! against the operation's response schema too, so a fake cannot drift from the real forge.
//! Three formats are read: GitHub's subset (operations keyed by id, OpenAPI 3.0 pieces),
//! Swagger 2.0 (Gitea, Forgejo) and OpenAPI 3.0 documents (GitLab, `openapi3`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One operation of an API.
pub struct Op {
    pub id: String,
    pub method: String,
    segments: Vec<String>,
    path_params: BTreeMap<String, String>,
    query_params: BTreeMap<String, String>,
    body: Option<jsonschema::Validator>,
    body_props: Option<Vec<String>>,
    /// By status code: the schema of the answer's body, when the description has one.
    responses: BTreeMap<u16, jsonschema::Validator>,
}

/// An API description, ready to check requests and answers.
pub struct Api {
    pub ops: Vec<Op>,
    /// Swagger 2.0 has no `nullable` while Gitea writes `null`: such answers are checked with
    /// their null-valued keys dropped.
    drop_nulls: bool,
}

fn load(file: &str) -> Value {
    let path = super::fixtures_dir().join("forge-apis").join(file);
    let text = std::fs::read_to_string(&path).expect("read the API description");
    serde_json::from_str(&text).expect("the API description is JSON")
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("unresolved {r}"));
            resolve(doc, target)
        }
        None => v,
    }
}

/// Compiles `schema` with the document's shared pieces (`key`: `components` or
/// `definitions`) beside it, so its `$ref`s resolve.
fn compile(doc: &Value, schema: &Value, key: &str) -> jsonschema::Validator {
    let mut s = schema.clone();
    if !s.is_object() {
        s = json!({ "allOf": [s] });
    }
    s[key] = doc[key].clone();
    jsonschema::validator_for(&s).expect("schema compiles")
}

/// The property names a body schema declares (after `$ref`s), when it declares any.
fn props(doc: &Value, schema: &Value) -> Option<Vec<String>> {
    resolve(doc, schema)["properties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').map(str::to_owned).collect()
}

impl Api {
    /// GitHub's subset: `operations` keyed by operationId, each with `method`, `path`,
    /// OpenAPI 3.0 `parameters` and `requestBody`.
    pub fn github() -> Api {
        let doc = load("github-openapi-subset.json");
        let mut ops = Vec::new();
        for (id, op) in doc["operations"].as_object().expect("operations") {
            let (path_params, query_params) = Self::parameters(&doc, op, |p| {
                p["schema"]["type"].as_str().unwrap_or("string").to_owned()
            });
            let schema = op.pointer("/requestBody/content/application~1json/schema");
            let (body, body_props) = match schema {
                Some(s) => {
                    let mut s = s.clone();
                    // Known drift since 2022 (see the subset's notes): environment is free-form.
                    if id == "repos/create-deployment-status" {
                        s["properties"]["environment"] = json!({"type": "string"});
                    }
                    (Some(compile(&doc, &s, "components")), props(&doc, &s))
                }
                None => (None, None),
            };
            ops.push(Op {
                id: id.clone(),
                method: op["method"].as_str().expect("method").to_owned(),
                segments: segments(op["path"].as_str().expect("path")),
                path_params,
                query_params,
                body,
                body_props,
                responses: BTreeMap::new(),
            });
        }
        Api {
            ops,
            drop_nulls: false,
        }
    }

    /// A Swagger 2.0 document (Gitea's and Forgejo's), paths under its `basePath`, answers
    /// checked with their null-valued keys dropped.
    pub fn swagger2(file: &str) -> Api {
        let doc = load(file);
        let base = doc["basePath"].as_str().unwrap_or("").to_owned();
        let mut ops = Vec::new();
        for (path, methods) in doc["paths"].as_object().expect("paths") {
            for (method, op) in methods.as_object().expect("methods") {
                let Some(id) = op["operationId"].as_str() else {
                    continue;
                };
                let (path_params, query_params) = Self::parameters(&doc, op, |p| {
                    p["type"].as_str().unwrap_or("string").to_owned()
                });
                let body_schema = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| resolve(&doc, p))
                    .find(|p| p["in"] == "body")
                    .map(|p| p["schema"].clone());
                let (body, body_props) = match &body_schema {
                    Some(s) => (Some(compile(&doc, s, "definitions")), props(&doc, s)),
                    None => (None, None),
                };
                let mut responses = BTreeMap::new();
                for (code, r) in op["responses"].as_object().into_iter().flatten() {
                    let (Ok(code), Some(schema)) =
                        (code.parse::<u16>(), resolve(&doc, r).get("schema"))
                    else {
                        continue;
                    };
                    responses.insert(code, compile(&doc, schema, "definitions"));
                }
                ops.push(Op {
                    id: id.to_owned(),
                    method: method.to_ascii_uppercase(),
                    segments: segments(&format!("{base}{path}")),
                    path_params,
                    query_params,
                    body,
                    body_props,
                    responses,
                });
            }
        }
        Api {
            ops,
            drop_nulls: true,
        }
    }

    /// An OpenAPI 3.0 document (GitLab's): paths as written (they carry `/api/v4`), bodies
    /// at `requestBody.content["application/json"]`, `nullable: true` made JSON Schema first.
    pub fn openapi3(file: &str) -> Api {
        let mut doc = load(file);
        denullable(&mut doc);
        let mut ops = Vec::new();
        for (path, methods) in doc["paths"].as_object().expect("paths") {
            for (method, op) in methods.as_object().expect("methods") {
                let Some(id) = op["operationId"].as_str() else {
                    continue;
                };
                let (path_params, query_params) = Self::parameters(&doc, op, |p| {
                    p["schema"]["type"].as_str().unwrap_or("string").to_owned()
                });
                let schema = op.pointer("/requestBody/content/application~1json/schema");
                let (body, body_props) = match schema {
                    Some(s) => (Some(compile(&doc, s, "components")), props(&doc, s)),
                    None => (None, None),
                };
                let mut responses = BTreeMap::new();
                for (code, r) in op["responses"].as_object().into_iter().flatten() {
                    let (Ok(code), Some(schema)) = (
                        code.parse::<u16>(),
                        r.pointer("/content/application~1json/schema"),
                    ) else {
                        continue;
                    };
                    responses.insert(code, compile(&doc, schema, "components"));
                }
                ops.push(Op {
                    id: id.to_owned(),
                    method: method.to_ascii_uppercase(),
                    segments: segments(path),
                    path_params,
                    query_params,
                    body,
                    body_props,
                    responses,
                });
            }
        }
        Api {
            ops,
            drop_nulls: false,
        }
    }

    /// Path parameters with their types, and query parameters with theirs.
    fn parameters(
        doc: &Value,
        op: &Value,
        ty: impl Fn(&Value) -> String,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let mut path = BTreeMap::new();
        let mut query = BTreeMap::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            let p = resolve(doc, p);
            let name = p["name"].as_str().expect("param name").to_owned();
            match p["in"].as_str() {
                Some("path") => {
                    path.insert(name, ty(p));
                }
                Some("query") => {
                    query.insert(name, ty(p));
                }
                _ => {}
            }
        }
        (path, query)
    }

    /// The operation `method path` is, with its path parameters; `None`: no such operation.
    pub fn find(&self, method: &str, path: &str) -> Option<(&Op, BTreeMap<String, String>)> {
        let segs: Vec<&str> = path.split('/').collect();
        self.ops.iter().find_map(|op| {
            if op.method != method || op.segments.len() != segs.len() {
                return None;
            }
            let mut params = BTreeMap::new();
            for (t, s) in op.segments.iter().zip(&segs) {
                if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    if s.is_empty() {
                        return None;
                    }
                    params.insert(name.to_owned(), s.to_string());
                } else if t != s {
                    return None;
                }
            }
            Some((op, params))
        })
    }

    /// What the real API would refuse in a request to `op`; empty when nothing.
    pub fn check_request(
        &self,
        op: &Op,
        params: &BTreeMap<String, String>,
        query: &BTreeMap<String, String>,
        body: &Value,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, ty) in &op.path_params {
            let v = params.get(name).map(String::as_str).unwrap_or("");
            if ty == "integer" && v.parse::<u64>().is_err() {
                problems.push(format!("path parameter {name}={v:?} is not an integer"));
            }
        }
        for (k, v) in query {
            match op.query_params.get(k) {
                None => problems.push(format!("query parameter {k} is not declared")),
                Some(ty) if ty == "integer" && v.parse::<i64>().is_err() => {
                    problems.push(format!("query parameter {k}={v:?} is not an integer"))
                }
                Some(_) => {}
            }
        }
        match (&op.body, body) {
            (Some(v), b) => {
                let b = if b.is_null() { json!({}) } else { b.clone() };
                for e in v.iter_errors(&b) {
                    problems.push(format!("body: {e} at {}", e.instance_path()));
                }
                if let (Some(props), Some(obj)) = (&op.body_props, b.as_object()) {
                    for k in obj.keys() {
                        if !props.contains(k) {
                            problems.push(format!("body property {k:?} is not in the schema"));
                        }
                    }
                }
            }
            (None, b) if !b.is_null() => problems.push("a body where none is expected".into()),
            _ => {}
        }
        problems
    }

    /// Where a fake's answer to `op` differs from what the real API describes; empty when
    /// it does not (or the description has no schema for `status`).
    pub fn check_response(&self, op: &Op, status: u16, body: &Value) -> Vec<String> {
        let Some(v) = op.responses.get(&status) else {
            return Vec::new();
        };
        let body = if self.drop_nulls {
            drop_nulls(body)
        } else {
            body.clone()
        };
        v.iter_errors(&body)
            .map(|e| format!("{} answer {status}: {e} at {}", op.id, e.instance_path()))
            .collect()
    }
}

/// OpenAPI 3.0's `nullable: true` is not JSON Schema (the validator ignores it): `{type: T,
/// nullable}` becomes `{type: [T, "null"]}`, and any other nullable schema accepts null too.
fn denullable(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                denullable(child);
            }
            if m.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = m.get("type").cloned() {
                    m.insert("type".into(), json!([t, "null"]));
                } else {
                    let inner = Value::Object(std::mem::take(m));
                    m.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(denullable),
        _ => {}
    }
}

/// `v` without its null-valued keys, at every depth.
pub fn drop_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

/// Decodes `%XX` (and `+` as a space) in a query value.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request URI's query, decoded.
pub fn query_of(uri: &axum::http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect()
}
